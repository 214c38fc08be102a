"""Loading ONNX files with errors that name the file, and reading graph inputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: list  # ints, or str/None for symbolic/unknown dims
    dtype: str


def load_onnx(path: Path):
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise BridgeError(f"{path}: no such file")
    if path.is_dir():
        raise BridgeError(f"{path}: is a directory, expected an ONNX file")
    if path.stat().st_size == 0:
        raise BridgeError(f"{path}: empty file")
    try:
        _check_external_data(onnx.load(str(path), load_external_data=False), path)
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BridgeError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'parse error'})") from exc
    if not model.graph.node and not model.graph.output:
        raise BridgeError(f"{path}: not a valid ONNX model (empty graph)")
    return model


def _check_external_data(model, path: Path) -> None:
    """Name the tensor and the file when external data is missing (onnx.load says only
    "should be stored in ..., but it is not regular file")."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in model.graph.initializer:
        if uses_external_data(tensor):
            location = ExternalDataInfo(tensor).location
            if not (path.parent / location).is_file():
                raise BridgeError(f"{path}: external data file {path.parent / location} (initializer "
                                  f"{tensor.name!r}) is missing; keep it beside the .onnx file")


def graph_inputs(model) -> list[GraphInput]:
    """Graph inputs that are not initializers, with shape and numpy dtype name."""
    import onnx.helper

    inits = {t.name for t in model.graph.initializer}
    result = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "float32"
        result.append(GraphInput(vi.name, dims, dtype))
    return result
