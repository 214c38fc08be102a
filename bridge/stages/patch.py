"""Stage 3, patch: apply the ordered default patches, then ``onnx.checker`` (full check)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError
from bridge.onnx_io import has_external_data, load_onnx, load_tensors, replace_onnx, save_onnx
from bridge.patches import DEFAULT_PATCHES, Patch, PatchReport, apply_patches


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

    model = load_onnx(onnx_in, weights=False)
    external = has_external_data(model)
    if external:
        # Patches read the initializers of the nodes they match (GRU weights, Resize scales);
        # only those are loaded, the rest stays on disk and is streamed to the output.
        op_types = {op for patch in patches for op in patch.op_types}
        load_tensors(model, onnx_in.parent, {i for n in model.graph.node if n.op_type in op_types for i in n.input})
    patched, report = apply_patches(model, patches)
    del model
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{onnx_out.name}.tmp-", dir=onnx_out.parent) as scratch:
        tmp = Path(scratch) / onnx_out.name
        save_onnx(patched, tmp, external=external, base_dir=onnx_in.parent)
        try:
            # The path form: a proto over 2 GB cannot be checked in memory, and the checker
            # then also verifies the external data file and its offsets.
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise BridgeError(f"{label or onnx_in}: not valid ONNX after patching: {first}") from exc
        replace_onnx(tmp, onnx_out)
    return PatchResult(report)
