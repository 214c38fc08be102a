"""Parse what users type: a model SOURCE and ``--input NAME:SHAPE[:DTYPE]`` specs."""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError

DTYPES = ("float32", "float64", "float16", "int32", "int64", "int8", "uint8", "bool")


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, an example shape (batch first) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InputSpec":
        return cls(data["name"], tuple(data["shape"]), data["dtype"])


def parse_input_spec(text: str) -> InputSpec:
    """``x:2x12x5000`` or ``x:2,12,5000:float32`` -> InputSpec."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise BridgeError(f"--input {text!r}: expected NAME:SHAPE[:DTYPE], e.g. x:2x12x5000:float32")
    name, shape_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    if not re.fullmatch(r"[A-Za-z_][\w.]*", name):
        raise BridgeError(f"--input {text!r}: bad input name {name!r}")
    dims = [d for d in re.split(r"[x,]", shape_text)]
    if not shape_text or not all(re.fullmatch(r"\d+", d) for d in dims):
        raise BridgeError(f"--input {text!r}: shape must be positive integers joined by 'x' or ',', got {shape_text!r}")
    shape = tuple(int(d) for d in dims)
    if any(d == 0 for d in shape):
        raise BridgeError(f"--input {text!r}: dimensions must be >= 1")
    if dtype not in DTYPES:
        raise BridgeError(f"--input {text!r}: unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    return InputSpec(name, shape, dtype)


def parse_input_specs(texts: list[str]) -> list[InputSpec]:
    specs = [parse_input_spec(t) for t in texts]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BridgeError(f"--input: duplicate input name(s): {', '.join(dupes)}")
    return specs


def parse_dynamic_specs(texts: list[str]) -> dict[str, list[int]]:
    """``--dynamic seq:1`` (repeatable) -> ``{"seq": [1]}``: extra dynamic axes beyond batch."""
    axes: dict[str, list[int]] = {}
    for text in texts:
        name, sep, axis = text.partition(":")
        if not sep or not name or not re.fullmatch(r"-?\d+", axis):
            raise BridgeError(f"--dynamic {text!r}: expected NAME:AXIS, e.g. input_ids:1")
        axes.setdefault(name, []).append(int(axis))
    return axes


@dataclass(frozen=True)
class Source:
    """Where the model comes from: ``kind`` is "onnx" or "torch"."""

    text: str
    kind: str
    path: Path | None = None  # the .onnx file, or the .py file of a torch spec
    module: str | None = None  # dotted module of a torch spec
    attr: str | None = None  # class or factory name of a torch spec


def parse_source(text: str) -> Source:
    """``model.onnx``, ``path/file.py:Name`` or ``package.module:Name``."""
    if text.endswith(".onnx"):
        path = Path(text)
        if not path.exists():
            raise BridgeError(f"{text}: no such file")
        if path.is_dir():
            raise BridgeError(f"{text}: is a directory, expected an ONNX file")
        return Source(text, "onnx", path=path)
    where, sep, attr = text.rpartition(":")
    if not sep or not where or not re.fullmatch(r"[A-Za-z_]\w*", attr):
        raise BridgeError(
            f"{text}: expected a .onnx file, path/file.py:Name or package.module:Name"
        )
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise BridgeError(f"{where}: no such file")
        return Source(text, "torch", path=path, attr=attr)
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*", where):
        raise BridgeError(f"{text}: {where!r} is neither a .py file nor a dotted module name")
    return Source(text, "torch", module=where, attr=attr)


def _import_source_module(source: Source):
    try:
        if source.path is not None:
            name = f"bridge_user_{abs(hash(str(source.path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, source.path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(source.module)
    except ModuleNotFoundError as exc:
        raise BridgeError(f"{source.text}: cannot import module: {exc}") from exc
    except (Exception, SystemExit) as exc:  # user code: report whatever it raised, on one line
        raise BridgeError(f"{source.text}: importing the module failed: {type(exc).__name__}: {exc}") from exc


def load_torch_source(source: Source) -> tuple[Any, tuple | None]:
    """Build the torch module a spec names: returns ``(module, example_inputs or None)``.

    ``Name`` is an ``nn.Module`` subclass built with no arguments, or a factory returning a
    module or ``(module, example_inputs)``. Weights are seeded so a rebuild is identical.
    """
    import torch

    module = _import_source_module(source)
    if not hasattr(module, source.attr):
        raise BridgeError(f"{source.text}: module has no attribute {source.attr!r}")
    target = getattr(module, source.attr)
    torch.manual_seed(0)
    try:
        built = target()
    except (Exception, SystemExit) as exc:  # SystemExit too: user code must not end bridge quietly
        raise BridgeError(f"{source.text}: calling {source.attr}() failed: {type(exc).__name__}: {exc}") from exc
    example = None
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        built, example = built
        example = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    if not isinstance(built, torch.nn.Module):
        raise BridgeError(
            f"{source.text}: {source.attr}() returned {type(built).__name__}, expected an nn.Module "
            "or (module, example_inputs)"
        )
    return built.eval(), example
