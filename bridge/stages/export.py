"""Stage 1, export: torch ``nn.Module`` + example inputs → ONNX (or copy an ONNX source)."""
from __future__ import annotations

import inspect
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import BridgeError
from bridge.spec import InputSpec
from bridge.workdir import atomic_path

# X2Paddle 1.6.0 maps ONNX opsets 7..15 (op_mapper/onnx2paddle/opset7.py .. opset15.py);
# anything above runs as 15 with only a printed note. 13 is the TorchScript exporter's
# best-tested opset inside that range (Unsqueeze/Squeeze/Reduce axes as in X2Paddle's opset13).
X2PADDLE_OPSETS = range(7, 16)
DEFAULT_OPSET = 13


@dataclass
class ExportResult:
    exporter: str
    opset: int
    torch_version: str | None
    inputs: list[InputSpec]
    output_names: list[str]
    dynamic_batch: bool
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "opset": self.opset,
            "torch_version": self.torch_version,
            "model_inputs": [s.to_json() for s in self.inputs],
            "model_outputs": self.output_names,
            "dynamic_batch": self.dynamic_batch,
            "notes": self.notes,
        }


def random_inputs(specs: list[InputSpec], batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random feeds for ``specs``; ``batch`` replaces each input's first dim."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = (batch, *spec.shape[1:]) if batch is not None and spec.shape else spec.shape
        if spec.dtype == "bool":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif spec.dtype.startswith(("int", "uint")):
            feeds[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(size=shape).astype(spec.dtype)
    return feeds


def _forward_arg_names(module, count: int) -> list[str]:
    params = [
        p.name for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    names = params[:count]
    return names + [f"input_{i}" for i in range(len(names), count)]


def _flatten_outputs(value) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flatten_outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten_outputs(v)]
    raise BridgeError(f"model output of type {type(value).__name__} is not a tensor, tuple, list or dict")


def export_torch(
    module,
    example_inputs: tuple | None,
    input_specs: list[InputSpec],
    onnx_path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    source_text: str = "model",
) -> ExportResult:
    """Export with the TorchScript exporter at an opset X2Paddle maps."""
    import torch

    if opset not in X2PADDLE_OPSETS:
        raise BridgeError(f"--opset {opset}: X2Paddle 1.6.0 maps opsets {X2PADDLE_OPSETS.start}-{X2PADDLE_OPSETS.stop - 1}")
    if input_specs:
        feeds = random_inputs(input_specs)
        args = tuple(torch.from_numpy(feeds[s.name]) for s in input_specs)
        specs = list(input_specs)
    elif example_inputs is not None:
        args = tuple(example_inputs)
        names = _forward_arg_names(module, len(args))
        specs = [
            InputSpec(n, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for n, t in zip(names, args)
        ]
    else:
        raise BridgeError(f"{source_text}: no example inputs; pass --input NAME:SHAPE[:DTYPE]")

    try:
        with torch.no_grad():
            outputs = _flatten_outputs(module(*args))
    except BridgeError:
        raise
    except Exception as exc:
        shapes = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in specs)
        raise BridgeError(f"{source_text}: forward({shapes}) raised {type(exc).__name__}: {exc}") from exc
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    input_names = [s.name for s in specs]
    dynamic_axes = (
        {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    )
    with atomic_path(onnx_path) as tmp:
        try:
            torch.onnx.export(
                module, args, str(tmp), dynamo=False, opset_version=opset,
                input_names=input_names, output_names=output_names,
                dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BridgeError(f"{source_text}: TorchScript export at opset {opset} failed: {first}") from exc
    return ExportResult("torchscript", opset, torch.__version__, specs, output_names, dynamic_batch)


def copy_onnx(src: Path, onnx_path: Path, input_specs: list[InputSpec]) -> ExportResult:
    """An ONNX source: check it parses, copy it in, read its inputs (``--input`` overrides)."""
    from bridge.onnx_io import graph_inputs, load_onnx

    model = load_onnx(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    declared = graph_inputs(model)
    given = {s.name: s for s in input_specs}
    unknown = sorted(set(given) - {d.name for d in declared})
    if unknown:
        raise BridgeError(f"--input {unknown[0]}: {src} has no input named {unknown[0]!r} (inputs: {', '.join(d.name for d in declared)})")
    specs, dynamic_batch = [], True
    for d in declared:
        if d.name in given:
            specs.append(given[d.name])
            continue
        if any(not isinstance(dim, int) for dim in d.shape[1:]) or not d.shape:
            raise BridgeError(f"{src}: input {d.name!r} has shape {d.shape}; give it with --input {d.name}:SHAPE")
        batch = d.shape[0] if isinstance(d.shape[0], int) else 2
        dynamic_batch = dynamic_batch and not isinstance(d.shape[0], int)
        specs.append(InputSpec(d.name, (batch, *d.shape[1:]), d.dtype))
    notes = [] if X2PADDLE_OPSETS.start <= opset < X2PADDLE_OPSETS.stop else [
        f"opset {opset} is outside X2Paddle's 7-15"
    ]
    with atomic_path(onnx_path) as tmp:
        shutil.copyfile(src, tmp)
    output_names = [o.name for o in model.graph.output]
    return ExportResult("onnx-file", opset, None, specs, output_names, dynamic_batch, notes)
