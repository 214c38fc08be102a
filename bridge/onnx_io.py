"""Loading ONNX files with errors that name the file, and reading graph inputs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: list  # ints, or str/None for symbolic/unknown dims
    dtype: str


def load_onnx(path: Path, weights: bool = True):
    """The model at ``path``; ``weights=False`` leaves external-data initializers on disk
    (their ``external_data`` still names the file beside ``path``): the graph only, cheap for
    a model of several GB."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.exists():
        raise BridgeError(f"{path}: no such file")
    if path.is_dir():
        raise BridgeError(f"{path}: is a directory, expected an ONNX file")
    if path.stat().st_size == 0:
        raise BridgeError(f"{path}: empty file")
    try:
        model = onnx.load(str(path), load_external_data=False)
        _check_external_data(model, path)
        if weights and has_external_data(model):
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


# --- external data ---------------------------------------------------------------------------
# A model over protobuf's 2 GB limit cannot be one file: its weights live in a sidecar file.
# bridge keeps one per ONNX artifact, named after it (``model.patched.onnx`` +
# ``model.patched.onnx.data``), and streams weights from file to file instead of holding them.

DATA_SUFFIX = ".data"
# As onnx.save's default: smaller initializers stay inline in the .onnx file.
EXTERNAL_THRESHOLD = 1024
# ONNX Runtime maps external data into memory instead of copying it when the offset is
# page-aligned.
_ALIGN = 4096
_CHUNK = 64 << 20


def data_path(onnx_path: Path) -> Path:
    """The external data file bridge writes beside ``onnx_path``."""
    return onnx_path.with_name(onnx_path.name + DATA_SUFFIX)


def _external_tensors(model) -> list:
    """Every tensor (initializers, attribute tensors, in subgraphs too) whose data is external."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def _nested_tensors(graph):
    """Tensors of ``graph`` other than its own initializers: attribute tensors, and every
    tensor of subgraphs."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from sub.initializer
                yield from _nested_tensors(sub)


def has_external_data(model) -> bool:
    return bool(_external_tensors(model))


def external_data_bytes(model) -> int:
    """Bytes of weights ``model`` keeps in external data files."""
    from onnx.external_data_helper import ExternalDataInfo

    return sum(ExternalDataInfo(t).length or 0 for t in _external_tensors(model))


def _copy_range(src: Path, offset: int, length: int | None, dst) -> None:
    with open(src, "rb") as f:
        f.seek(offset)
        left = length if length is not None else float("inf")
        while left > 0:
            block = f.read(int(min(_CHUNK, left)))
            if not block:
                break
            dst.write(block)
            left -= len(block)


def load_tensors(model, base_dir: Path, names: set[str]) -> int:
    """Read the external data of the initializers named ``names`` into the model (the rest
    stays on disk); returns the bytes read."""
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor, uses_external_data

    read = 0
    for tensor in model.graph.initializer:
        if tensor.name in names and uses_external_data(tensor):
            read += ExternalDataInfo(tensor).length or 0
            load_external_data_for_tensor(tensor, str(base_dir))
    return read


def save_onnx(model, onnx_path: Path, *, external: bool = False, base_dir: Path | None = None) -> None:
    """Write ``model`` to ``onnx_path``; with ``external``, its main-graph initializers of
    ``EXTERNAL_THRESHOLD`` bytes or more go to ``data_path(onnx_path)``, smaller ones inline.

    Initializers still on disk (``base_dir``: the folder their ``location`` is relative to) are
    streamed from their file into the new one in chunks, never whole in memory. Other tensors
    with external data (attribute tensors, subgraphs: X2Paddle reads Constant values from
    ``raw_data`` only) are read back inline. ``model`` is modified (its tensors end up
    describing the new file). Both files are written beside ``onnx_path`` under temporary
    names and renamed into place; a stale data file is removed when none is written.
    """
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_tensor, uses_external_data

    inline = [t for t in _nested_tensors(model.graph) if uses_external_data(t)]
    if not external:
        inline += [t for t in model.graph.initializer if uses_external_data(t)]
    for tensor in inline:
        if base_dir is None:
            raise BridgeError(f"{onnx_path}: tensor {tensor.name!r} has external data and no folder to read it from")
        load_external_data_for_tensor(tensor, str(base_dir))
    target_data = data_path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_onnx = onnx_path.with_name(f".{onnx_path.name}.tmp-{os.getpid()}")
    tmp_data = target_data.with_name(f".{target_data.name}.tmp-{os.getpid()}")
    wrote_data = False
    try:
        if external:
            with open(tmp_data, "wb") as data:
                for tensor in model.graph.initializer:
                    on_disk = uses_external_data(tensor)
                    if on_disk and (ExternalDataInfo(tensor).length or EXTERNAL_THRESHOLD) < EXTERNAL_THRESHOLD:
                        # Inline, as onnx.save would: the checker's shape inference cannot read
                        # shape data (Reshape's shape) from external tensors.
                        load_external_data_for_tensor(tensor, str(base_dir))
                        continue
                    if not on_disk and (not tensor.HasField("raw_data") or tensor.ByteSize() < EXTERNAL_THRESHOLD):
                        continue
                    offset = -(-data.tell() // _ALIGN) * _ALIGN
                    data.write(b"\0" * (offset - data.tell()))
                    if on_disk:
                        info = ExternalDataInfo(tensor)
                        _copy_range(base_dir / info.location, info.offset or 0, info.length, data)
                    else:
                        data.write(tensor.raw_data)
                        tensor.ClearField("raw_data")
                    _set_location(tensor, target_data.name, offset, data.tell() - offset)
                wrote_data = data.tell() > 0
        with open(tmp_onnx, "wb") as f:
            f.write(model.SerializeToString())
        if wrote_data:
            os.replace(tmp_data, target_data)
        else:
            target_data.unlink(missing_ok=True)
        os.replace(tmp_onnx, onnx_path)
    finally:
        for tmp in (tmp_onnx, tmp_data):
            tmp.unlink(missing_ok=True)


def replace_onnx(src: Path, dst: Path) -> None:
    """Move ``src`` and its data file (if any) over ``dst`` and its data file. Same file name
    on both sides: the tensors name their data file by its name."""
    if src.name != dst.name:
        raise ValueError(f"replace_onnx: {src.name} and {dst.name} differ; the data file name would go stale")
    if data_path(src).exists():
        os.replace(data_path(src), data_path(dst))
    else:
        data_path(dst).unlink(missing_ok=True)
    os.replace(src, dst)


def _set_location(tensor, location: str, offset: int, length: int) -> None:
    from onnx import TensorProto

    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
