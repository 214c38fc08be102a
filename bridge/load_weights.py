"""``bridge load-weights``: a later torch checkpoint into an already converted model, through
the weights map, without rerunning X2Paddle."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from bridge import weights_map
from bridge.errors import BridgeError
from bridge.integrity import verify_work
from bridge.pipeline import (
    _require_stage, step_export, step_patch, step_simplify, validate,
)
from bridge.spec import InputSpec, parse_source
from bridge.workdir import LOGS_DIR, PADDLE_DIR, TORCH_STATE, Manifest, atomic_path, sha256_tree, work_lock


def load_weights(work: Path, weights_file: Path) -> str:
    """Load a later torch checkpoint into the converted model through the weights map, without
    rerunning X2Paddle. The ONNX files are re-exported with the new weights (the cheap stages)
    and the result is validated before it replaces ``work``; on a mismatch nothing changes."""
    Manifest.load(work)
    with work_lock(work):
        return _load_weights(work, weights_file)


def _load_weights(work: Path, weights_file: Path) -> str:
    import torch

    from bridge.weights import check_state_matches, read_state_dict

    manifest = Manifest.load(work)
    _require_stage(manifest, "convert")
    verify_work(work, manifest)  # before the weights map, params or torch state are read
    start = time.perf_counter()
    wmap = weights_map.read_map(work / PADDLE_DIR)
    state = read_state_dict(weights_file)
    check_state_matches(state, torch.load(work / TORCH_STATE, weights_only=True), weights_file)
    params = weights_map.new_params(
        wmap, weights_map.load_params(work / PADDLE_DIR / "model.pdparams"),
        {k: v.detach().cpu().numpy() for k, v in state.items()},
    )
    convert_record = manifest.data["stages"]["convert"]
    source = parse_source(manifest.data["source"]["resolved"])
    specs = [InputSpec.from_json(s) for s in manifest.data["inputs"]]
    with atomic_path(work) as staged:
        shutil.copytree(work, staged)
        weights_map.write_params(staged / PADDLE_DIR, params, staged / LOGS_DIR / "load_weights.log")
        step_export(staged, source, specs, dynamic_axes=manifest.data.get("dynamic_axes"),
                    weights=weights_file, strategy=manifest.data["stages"]["export"]["exporter"])
        step_simplify(staged)
        step_patch(staged)
        restaged = Manifest.load(staged)
        restaged.data["stages"]["convert"] = {
            **convert_record, "outputs": sha256_tree(staged / PADDLE_DIR), "loaded_weights": str(weights_file),
        }
        restaged.save()
        report = validate(staged, batch_sizes=(2,))
        if not report.passed:
            raise BridgeError(f"load-weights {weights_file}: the loaded model does not match torch "
                              f"({report.summary()}); {work} is unchanged")
    seconds = time.perf_counter() - start
    mapped = sum(1 for e in wmap["params"].values() if e["torch_key"])
    return (f"load-weights: {seconds:.1f}s {mapped} Paddle parameters set from {weights_file}; "
            f"validated at batch 2 ({report.summary()})")
