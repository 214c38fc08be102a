"""Stage 1, export: torch ``nn.Module`` + example inputs → ONNX (or copy an ONNX source)."""
from __future__ import annotations

import contextlib
import inspect
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import BridgeError
from bridge.spec import InputSpec
from bridge.stages.export_strategies import (
    X2PADDLE_OPSETS, ExportCall, first_line, strategies_for_opset, strategy_by_name, try_strategies,
)
from bridge.workdir import atomic_path, capture_fds

# X2Paddle 1.6.0 maps ONNX opsets 7..15 (op_mapper/onnx2paddle/opset7.py .. opset15.py);
# anything above runs as 15 with only a printed note. The strategies stay inside that range.


@dataclass
class ExportResult:
    exporter: str
    opset: int
    torch_version: str | None
    inputs: list[InputSpec]
    output_names: list[str]
    dynamic_batch: bool
    notes: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # the module's state_dict names: the simplify stage keeps those initializers as they are
    torch_keys: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "opset": self.opset,
            "torch_version": self.torch_version,
            "model_inputs": [s.to_json() for s in self.inputs],
            "model_outputs": self.output_names,
            "dynamic_batch": self.dynamic_batch,
            "notes": self.notes,
            "attempts": self.attempts,
            "torch_keys": self.torch_keys,
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


def _safe_name(text: str) -> str:
    return re.sub(r"\W", "_", str(text)) or "output"


def flatten_outputs(value, prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten a model's outputs (tensor, tuple/list, dict, Hugging Face ``ModelOutput``) in
    the order the ONNX exporters flatten them, with stable names: ``output`` for a single
    tensor, ``output_0``... for sequences, the keys for dicts (``pooler_output``)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [(prefix or "output", value)]
    if isinstance(value, dict):  # includes ModelOutput, which drops None fields itself
        return [pair for k, v in value.items() if v is not None
                for pair in flatten_outputs(v, f"{prefix}_{_safe_name(k)}" if prefix else _safe_name(k))]
    if isinstance(value, (tuple, list)):
        return [pair for i, v in enumerate(value) if v is not None
                for pair in flatten_outputs(v, f"{prefix or 'output'}_{i}")]
    raise BridgeError(f"model output of type {type(value).__name__} is not a tensor, tuple, list or dict")


def export_torch(
    module,
    example_inputs: tuple | None,
    input_specs: list[InputSpec],
    onnx_path: Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    dynamic_axes: dict[str, list[int]] | None = None,
    source_text: str = "model",
    log_path: Path | None = None,
    strategy: str | None = None,
) -> ExportResult:
    """Export with the first strategy that works (``export_strategies.DEFAULT_STRATEGIES``)."""
    import torch

    if opset is not None and opset not in X2PADDLE_OPSETS:
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
    unknown_dynamic = sorted(set(dynamic_axes or {}) - {s.name for s in specs})
    if unknown_dynamic:
        raise BridgeError(f"--dynamic {unknown_dynamic[0]}: the model has no input of that name (inputs: {', '.join(s.name for s in specs)})")

    shapes = ", ".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in specs)
    try:
        with torch.no_grad():
            outputs = flatten_outputs(module(*args))
    except BridgeError as exc:
        raise BridgeError(f"{source_text}: forward({shapes}): {exc}") from exc
    except Exception as exc:
        raise BridgeError(f"{source_text}: forward({shapes}) raised {first_line(exc)}") from exc
    output_names = [name for name, _ in outputs]
    axes: dict[str, dict[int, str]] = {}
    for spec in specs:
        for axis in (dynamic_axes or {}).get(spec.name, []):
            if not -len(spec.shape) <= axis < len(spec.shape):
                raise BridgeError(f"--dynamic {spec.name}:{axis}: input {spec.name} has rank {len(spec.shape)}")
            axes.setdefault(spec.name, {})[axis % len(spec.shape)] = f"{spec.name}_dim{axis % len(spec.shape)}"
    if dynamic_batch:
        for name in [s.name for s in specs] + output_names:
            axes.setdefault(name, {})[0] = "batch"
    call = ExportCall(module, args, [s.name for s in specs], output_names, axes or None)
    strategies = (strategy_by_name(strategy),) if strategy else strategies_for_opset(opset)
    with atomic_path(onnx_path) as tmp:
        context = capture_fds(log_path) if log_path else contextlib.nullcontext()
        with context, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attempts = try_strategies(call, tmp, strategies)
        if not attempts[-1].success:
            errors = "; ".join(f"{a.strategy}: {a.error}" for a in attempts)
            raise BridgeError(f"{source_text}: every export strategy failed: {errors}")
    winner = attempts[-1]
    notes = [f"{a.strategy} failed: {a.error}" for a in attempts[:-1]]
    return ExportResult(winner.strategy, winner.opset, torch.__version__, specs, output_names,
                        dynamic_batch, notes, attempts=[a.to_json() for a in attempts],
                        torch_keys=list(module.state_dict()))


def copy_onnx(src: Path, onnx_path: Path, input_specs: list[InputSpec]) -> ExportResult:
    """An ONNX source: check it parses, copy it in, read its inputs (``--input`` overrides)."""
    from bridge.onnx_io import graph_inputs, has_external_data, load_onnx, save_onnx
    from bridge.opset_upgrade import default_opset, upgrade_if_below

    model = load_onnx(src, weights=False)  # the graph; external weights are streamed, not loaded
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    declared = graph_inputs(model)
    given = {s.name: s for s in input_specs}
    unknown = sorted(set(given) - {d.name for d in declared})
    if unknown:
        raise BridgeError(f"--input {unknown[0]}: {src} has no input named {unknown[0]!r} (inputs: {', '.join(d.name for d in declared)})")
    # graph_inputs gives [] both for a scalar and for an input without a shape; only the
    # first is a known shape.
    ranked = {vi.name for vi in model.graph.input if vi.type.tensor_type.HasField("shape")}
    specs, dynamic_batch = [], True
    for d in declared:
        if d.name in given:
            specs.append(given[d.name])
            continue
        if not d.shape and d.name in ranked:
            # A rank-0 input (a learning rate, a Clip bound, a window length): fully known, and
            # it has no batch axis, so it neither makes nor unmakes the batch dynamic.
            specs.append(InputSpec(d.name, (), d.dtype))
            continue
        if any(not isinstance(dim, int) for dim in d.shape[1:]) or not d.shape:
            shape = d.shape if d.name in ranked else "unknown"
            raise BridgeError(f"{src}: input {d.name!r} has shape {shape}; give it with --input {d.name}:SHAPE")
        batch = d.shape[0] if isinstance(d.shape[0], int) else 2
        dynamic_batch = dynamic_batch and not isinstance(d.shape[0], int)
        specs.append(InputSpec(d.name, (batch, *d.shape[1:]), d.dtype))
    notes = [] if X2PADDLE_OPSETS.start <= opset < X2PADDLE_OPSETS.stop else [
        f"opset {opset} is outside X2Paddle's 7-15"
    ]
    # Old models (IR 3 / opset 6, e.g. onnx's own pytorch-converted test models): X2Paddle's
    # decoder cannot read them; onnx.version_converter lifts them to 7.
    # Weights in an external data file (a model over 2 GB) are copied into the work directory
    # as model.onnx.data, streamed; the tensors are pointed at it.
    external = has_external_data(model)
    upgraded = upgrade_if_below(model)
    if upgraded is model and not external:
        with atomic_path(onnx_path) as tmp:
            shutil.copyfile(src, tmp)
    elif upgraded is model:
        save_onnx(model, onnx_path, external=True, base_dir=src.parent)
    else:
        if external:  # the version converter may read weights (e.g. Reshape's shape): load them
            upgraded = upgrade_if_below(load_onnx(src))
        save_onnx(upgraded, onnx_path, external=external)
        notes = [f"upgraded from opset {opset} to {default_opset(upgraded)} with onnx.version_converter"]
        opset = default_opset(upgraded)
    output_names = [o.name for o in model.graph.output]
    return ExportResult("onnx-file", opset, None, specs, output_names, dynamic_batch, notes)
