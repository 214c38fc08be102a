"""The weights map: for every Paddle parameter of a converted model, the torch ``state_dict``
key it came from and the transform applied (identity, transpose, reshape).

Matching the converted values against the torch ones cannot work in general: the exporter
deduplicates identical tensors (every default BatchNorm's ones and zeros become one
initializer) and initializers get new names. So the map is read off a *probe*: a copy of the
torch module whose every floating tensor holds unique values, run through the same export
strategy, simplify, patch and X2Paddle. Each probe parameter's values then name exactly one
torch tensor. A Paddle parameter that comes from no single torch tensor (fused or recombined,
e.g. LSTM gates) is listed as unmapped, and ``load-weights`` refuses such a model.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bridge.errors import BridgeError

MAP_FILE = "weights_map.json"


def _transform(src: np.ndarray, dst: np.ndarray) -> str | None:
    """The transform turning ``src`` into ``dst`` exactly, or None."""
    if src.size != dst.size:
        return None
    src = src.astype(dst.dtype, copy=False)
    if src.shape == dst.shape and np.array_equal(src, dst):
        return "identity"
    if src.ndim == 2 and src.T.shape == dst.shape and np.array_equal(src.T, dst):
        return "transpose"
    if np.array_equal(src.reshape(-1), dst.reshape(-1)):
        return "reshape"
    return None


def apply_transform(value: np.ndarray, transform: str, shape: list[int], dtype: str) -> np.ndarray:
    if transform == "transpose":
        value = value.T
    return np.ascontiguousarray(value).reshape(shape).astype(dtype)


def load_params(pdparams: Path) -> dict[str, np.ndarray]:
    import paddle

    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in paddle.load(str(pdparams)).items()}


def probe_module(module, seed: int = 20241126):
    """A copy of ``module`` whose floating parameters and buffers hold unique values in
    [0.5, 1.5) (positive, so BatchNorm variances stay valid)."""
    import torch

    probe = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(probe.parameters()) + list(probe.buffers()):
            if tensor.dtype.is_floating_point and tensor.numel() > 0:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return probe


def build(module, export_record: dict[str, Any], input_specs, dynamic_axes, paddle_dir: Path, log_path: Path) -> dict[str, Any]:
    """Build ``paddle_dir/weights_map.json`` for the model converted from ``module``."""
    from bridge.stages import convert as convert_stage
    from bridge.stages import export as export_stage
    from bridge.stages import patch as patch_stage
    from bridge.stages import simplify as simplify_stage

    probe = probe_module(module)
    with tempfile.TemporaryDirectory(prefix="bridge-probe-") as tmp:
        tmp = Path(tmp)
        export_stage.export_torch(
            probe, None, input_specs, tmp / "probe.onnx", dynamic_axes=dynamic_axes,
            strategy=export_record["exporter"], log_path=log_path, source_text="weights-map probe",
        )
        # the same torch tensors kept as in the real conversion, so both graphs fold alike
        simplify_stage.run(tmp / "probe.onnx", tmp / "probe.simplified.onnx",
                           frozenset(export_record.get("torch_keys", [])))
        patch_stage.run(tmp / "probe.simplified.onnx", tmp / "probe.patched.onnx")
        convert_stage.run(tmp / "probe.patched.onnx", tmp / "paddle", log_path)
        probe_params = load_params(tmp / "paddle" / "model.pdparams")
    torch_probe = {k: v.detach().cpu().numpy() for k, v in probe.state_dict().items()}
    real = load_params(paddle_dir / "model.pdparams")
    entries: dict[str, Any] = {}
    unmapped = []
    for key, value in real.items():
        entry = {"shape": list(value.shape), "dtype": str(value.dtype), "torch_key": None, "transform": None}
        probe_value = probe_params.get(key)
        if probe_value is not None and probe_value.shape == value.shape and probe_value.dtype.kind == "f":
            hits = [(k, t) for k, v in torch_probe.items() if (t := _transform(v, probe_value)) is not None]
            if hits:  # several hits only for tied tensors (one storage, several keys)
                entry.update(torch_key=hits[0][0], transform=hits[0][1])
        # Not from a single torch tensor: a constant if the probe left it unchanged, else a
        # value computed from several weights, which no map can reload.
        if entry["torch_key"] is None and value.dtype.kind == "f" and not (
                probe_value is not None and np.array_equal(probe_value, value)):
            unmapped.append(key)
        entries[key] = entry
    result = {"params": entries, "unmapped": unmapped,
              "torch_keys_used": sorted({e["torch_key"] for e in entries.values() if e["torch_key"]})}
    (paddle_dir / MAP_FILE).write_text(json.dumps(result, indent=1) + "\n")
    return result


def read_map(paddle_dir: Path) -> dict[str, Any]:
    path = paddle_dir / MAP_FILE
    if not path.exists():
        raise BridgeError(f"{path}: missing (an ONNX source, or converted by an older bridge); reconvert with --weights instead")
    return json.loads(path.read_text())


def new_params(weights_map: dict[str, Any], params: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Paddle parameters with every mapped one replaced by its value from ``state``."""
    if weights_map["unmapped"]:
        shown = ", ".join(weights_map["unmapped"][:3])
        raise BridgeError(
            f"cannot load torch weights: {len(weights_map['unmapped'])} Paddle parameter(s) come from no single "
            f"torch tensor (fused or recombined by the exporter): {shown}; reconvert with `bridge convert --weights` instead"
        )
    updated = dict(params)
    for key, entry in weights_map["params"].items():
        if entry["torch_key"] is not None:
            updated[key] = apply_transform(state[entry["torch_key"]], entry["transform"], entry["shape"], entry["dtype"])
    return updated


def _input_specs_from_code(code: str) -> list[tuple[str, list[int], str]]:
    """X2Paddle records its inputs in ``main()``: ``# x2paddle_x: shape-[-1, 12, 5000], type-float32.``"""
    found = re.findall(r"# (\w+): shape-\[([^\]]*)\], type-(\w+)\.", code)
    return [(name, [int(d) for d in dims.split(",") if d.strip()], dtype) for name, dims, dtype in found]


def save_inference_model(paddle_dir: Path) -> None:
    """Re-export ``paddle_dir/inference_model`` from the generated code and ``model.pdparams``
    (what X2Paddle's ``dygraph2static`` does)."""
    import paddle

    from bridge.runners import load_generated_module

    code_path = paddle_dir / "x2paddle_code.py"
    specs = [paddle.static.InputSpec(shape=s, name=n, dtype=d) for n, s, d in _input_specs_from_code(code_path.read_text())]
    module = load_generated_module(code_path)
    with paddle.utils.unique_name.guard():  # see PaddleDygraphRunner
        model = module.ONNXModel()
    model.set_dict(paddle.load(str(paddle_dir / "model.pdparams")))
    model.eval()
    static = paddle.jit.to_static(model, input_spec=specs, full_graph=True)
    paddle.jit.save(static, str(paddle_dir / "inference_model" / "model"))


def write_params(paddle_dir: Path, params: dict[str, np.ndarray], log_path: Path) -> None:
    """Write ``model.pdparams`` and re-export the inference model from it, in a child process
    (Paddle's static-graph export leaves global state behind)."""
    import paddle

    paddle.save(params, str(paddle_dir / "model.pdparams"))
    with open(log_path, "ab") as log:
        proc = subprocess.run([sys.executable, "-m", "bridge.weights_map", str(paddle_dir)],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise BridgeError(f"{paddle_dir}: re-exporting the inference model failed (log: {log_path})")


if __name__ == "__main__":  # child of write_params
    import bridge  # noqa: F401  (quiet Paddle's logging)

    save_inference_model(Path(sys.argv[1]))
