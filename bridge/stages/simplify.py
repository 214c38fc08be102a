"""Stage 2, simplify: onnxsim (constant folding, shape inference). On failure the
unsimplified model is kept and the failure is recorded, never silently passed over."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.onnx_io import load_onnx
from bridge.workdir import atomic_path


@dataclass
class SimplifyResult:
    simplified: bool
    nodes_before: int
    nodes_after: int
    error: str | None = None


def simplify_model(model):
    """onnxsim on an in-memory model: ``(simplified, None)``, or ``(model, error)`` when it
    failed (the unsimplified model goes on). ``bridge.doctor`` simulates this stage with it."""
    from onnxsim import simplify

    try:
        # skip_fuse_bn: keep BatchNorm's state_dict-named initializers (see the weights map).
        simplified, ok = simplify(model, skip_fuse_bn=True)
        if ok:
            return simplified, None
        return model, "onnxsim's check of the simplified model failed"
    except Exception as exc:  # onnxsim raises bare RuntimeErrors from C++; keep going unsimplified
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return model, f"{type(exc).__name__}: {first}"


def run(onnx_in: Path, onnx_out: Path) -> SimplifyResult:
    import onnx

    model = load_onnx(onnx_in)
    before = len(model.graph.node)
    result_model, error = simplify_model(model)
    with atomic_path(onnx_out) as tmp:
        onnx.save(result_model, str(tmp))
    return SimplifyResult(error is None, before, len(result_model.graph.node), error)
