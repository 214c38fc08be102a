"""Stage 3, patch: apply the ordered default patches, then ``onnx.checker`` (full check)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError
from bridge.onnx_io import load_onnx
from bridge.patches import DEFAULT_PATCHES, Patch, PatchReport, apply_patches
from bridge.workdir import atomic_path


@dataclass
class PatchResult:
    report: PatchReport

    def summary(self) -> str:
        counts = self.report.fired_counts()
        total = sum(counts.values())
        if not total:
            return "0 fired"
        return f"{total} fired ({', '.join(f'{k} ×{v}' for k, v in counts.items())})"


def run(onnx_in: Path, onnx_out: Path, patches: tuple[Patch, ...] = DEFAULT_PATCHES,
        label: str | None = None) -> PatchResult:
    """``label`` names the model in errors (the user's source, not a work-dir artifact)."""
    import onnx

    model = load_onnx(onnx_in)
    patched, report = apply_patches(model, patches)
    try:
        onnx.checker.check_model(patched, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise BridgeError(f"{label or onnx_in}: not valid ONNX after patching: {first}") from exc
    with atomic_path(onnx_out) as tmp:
        onnx.save(patched, str(tmp))
    return PatchResult(report)
