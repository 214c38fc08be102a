"""Compatibility shims that let X2Paddle 1.6.0 (the last release, unmaintained) run on
today's onnx and paddle, without telemetry and without killing the process.

Every shim is registered in this one file, applied in ``SHIMS`` order by ``install()`` (two
long ones, which replace X2Paddle and Paddle functions that are quadratic in the model size,
live in ``x2paddle_linear_time.py``); each is idempotent and has a test in ``tests/test_x2paddle_shims.py``. The generated-code fix-up
(``relocate_params_path``) runs after conversion, on the files X2Paddle wrote.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import types
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bridge.errors import BridgeError, X2PaddleExit


def require_undeclared_deps() -> None:
    """x2paddle 1.6.0 imports ``six`` (core/program.py) and ``requests`` (utils.py) but its
    wheel declares neither; without them ``import x2paddle.convert`` dies with
    ``ModuleNotFoundError``. bridge declares both; this turns a broken env into one clear line."""
    for name in ("six", "requests"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise BridgeError(
                f"x2paddle needs the package {name!r}, which it does not declare: pip install {name}"
            ) from exc


def import_onnx_version() -> None:
    """``onnx2paddle`` reads ``onnx.version.version`` without ``import onnx.version``; on
    onnx >= 1.19 that attribute is absent, its bare ``except`` logs "onnx is not installed"
    and it *returns* without converting anything."""
    import onnx

    if not hasattr(onnx, "version"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module("onnx.version")


def provide_onnx_mapping() -> None:
    """``from onnx.mapping import TENSOR_TYPE_TO_NP_TYPE`` (decoder/onnx_decoder.py,
    op_mapper/onnx2paddle/opset_legacy.py) fails with ``ModuleNotFoundError: No module named
    'onnx.mapping'`` on onnx >= 1.19. Provide the two tables from ``onnx.helper``."""
    import onnx
    import onnx.helper

    try:
        importlib.import_module("onnx.mapping")
        return
    except ImportError:
        pass
    tensor_to_np = {}
    for dtype in onnx.TensorProto.DataType.values():
        try:
            tensor_to_np[dtype] = onnx.helper.tensor_dtype_to_np_dtype(dtype)
        except (KeyError, ValueError, TypeError):
            continue  # UNDEFINED and types numpy cannot hold
    mapping = types.ModuleType("onnx.mapping")
    mapping.__doc__ = "Provided by bridge.patches.x2paddle_shims for x2paddle 1.6.0."
    mapping.TENSOR_TYPE_TO_NP_TYPE = tensor_to_np
    mapping.NP_TYPE_TO_TENSOR_TYPE = {v: k for k, v in reversed(tensor_to_np.items())}
    sys.modules["onnx.mapping"] = mapping
    onnx.mapping = mapping


class _NoFeedback(threading.Thread):
    """Stands in for ``x2paddle.utils.ConverterCheck``: never starts, never sends."""

    def __init__(self, *args, **kwargs):
        super().__init__(daemon=True)

    def start(self) -> None:  # noqa: D401 - deliberately does nothing
        return None


def disable_feedback() -> None:
    """Unless ``disable_feedback=True``, every conversion starts ``ConverterCheck``, a thread
    that sends an HTTP GET to paddlepaddle.org.cn/paddlehub/stat. bridge passes
    ``disable_feedback=True`` and also replaces the class, so no code path can phone home."""
    import x2paddle.convert
    import x2paddle.utils

    x2paddle.utils.ConverterCheck = _NoFeedback
    x2paddle.convert.ConverterCheck = _NoFeedback


def _exit_raises(code: int | None = None) -> None:
    raise X2PaddleExit(
        "X2Paddle gave up while saving the inference model (it called exit); see logs/convert.log"
    )


def exit_raises() -> None:
    """``PaddleGraph.dygraph2static`` (core/program.py) prints a ``ValueError`` from
    ``paddle.jit.save`` and calls ``exit(0)``: the process ends with status 0 and no model.
    Shadow ``exit`` in that module with a function that raises ``X2PaddleExit``."""
    import x2paddle.core.program

    x2paddle.core.program.exit = _exit_raises


class _ToArrayFrom:
    """``onnx.numpy_helper`` for X2Paddle's modules, except that ``to_array`` reads external
    data relative to the model's folder (X2Paddle calls it without ``base_dir``)."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir

    def to_array(self, tensor, base_dir: str = ""):
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor, base_dir or self.base_dir)

    def __getattr__(self, name: str):
        from onnx import numpy_helper

        return getattr(numpy_helper, name)


def _decoder_init(self, onnx_model, enable_onnx_checker, input_shape_dict=None):
    """``ONNXDecoder.__init__`` as X2Paddle 1.6.0 writes it, but loading the graph without its
    external weights and checking the model by path."""
    import onnx
    from x2paddle.decoder import onnx_decoder, onnx_shape_inference

    path = os.fspath(onnx_model)
    onnx_model = onnx.load(path, load_external_data=False)
    reader = _ToArrayFrom(os.path.dirname(os.path.abspath(path)))
    onnx_decoder.to_array = reader.to_array  # ONNXGraph.build / graph_weights: one weight at a time
    onnx_shape_inference.numpy_helper = reader  # SymbolicShapeInference._get_value
    print('model ir_version: {}, op version: {}'.format(onnx_model.ir_version, onnx_model.opset_import[0].version))
    self.op_set = onnx_model.opset_import[0].version
    if enable_onnx_checker:
        onnx.checker.check_model(path)
    onnx_model = self.optimize_model_skip_op(onnx_model)
    onnx_model = self.optimize_node_name(onnx_model)
    self.graph = onnx_decoder.ONNXGraph(onnx_model, input_shape_dict)
    _decoded_graphs.append(weakref.ref(self.graph))


# The ONNXGraphs decoded in this process, for release_weights_after_dump.
_decoded_graphs: list[weakref.ref] = []


def decoder_streams_weights() -> None:
    """``ONNXDecoder.__init__`` (decoder/onnx_decoder.py) does ``onnx.load(path)``, every weight
    in memory, then ``check_model(proto)``, which serializes it: over protobuf's 2 GB limit that
    dies with ``google.protobuf.message.EncodeError: Failed to serialize proto`` (and ONNX
    shape inference's fallback, ``infer_shapes(proto)``, the same way). Under 2 GB the proto's
    weights are still copied whole by ``optimize_model_skip_op`` (``CopyFrom``) and by
    ``SymbolicShapeInference._preprocess``, on top of the numpy arrays ``ONNXGraph.build``
    makes. The replacement loads the graph without external data, checks the file by path,
    and lets ``to_array`` read each external weight from disk when X2Paddle asks for it. A
    model without external data decodes exactly as before."""
    from x2paddle.decoder import onnx_decoder

    onnx_decoder.ONNXDecoder.__init__ = _decoder_init


_original_dump_parameter: Callable | None = None


def _dump_then_release(self, code_dir):
    """``PaddleGraph.dump_parameter``, then drop the in-memory weights it wrote."""
    _original_dump_parameter(self, code_dir)
    self.parameters.clear()
    for ref in _decoded_graphs:
        graph = ref()
        for node in (graph.node_map.values() if graph is not None else ()):
            if getattr(node, "weight", None) is not None:
                node.weight = None


def release_weights_after_dump() -> None:
    """``PaddleGraph.gen_model`` (core/program.py) writes ``model.pdparams`` from the weights it
    holds (``self.parameters``, the same arrays as the decoder's ``node.weight``), then
    ``dygraph2static`` loads that file (``paddle.load``) and copies it into a Paddle model
    (``set_dict``) while the first copy is still alive: three copies of every weight at once.
    Nothing reads them after the dump, so the replacement drops them there; the peak becomes
    the two copies ``paddle.load`` + ``set_dict`` need."""
    global _original_dump_parameter
    from x2paddle.core import program

    if program.PaddleGraph.dump_parameter is not _dump_then_release:
        _original_dump_parameter = program.PaddleGraph.dump_parameter
        program.PaddleGraph.dump_parameter = _dump_then_release


def _map_reduce_sum(self, node) -> None:
    """``OpSet.ReduceSum`` with ONNX's semantics, for every form opsets 7–15 write: ``axes``
    as an attribute (< 13) or a constant input (>= 13), ``keepdims`` (default 1) passed to
    ``paddle.sum`` as a bool, no axes (or none given with ``noop_with_empty_axes=0``) reducing
    every axis, ``noop_with_empty_axes=1`` without axes passing ``x`` through."""
    import numpy as np
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    axes = node.get_attr("axes")
    if len(node.inputs) > 1:
        axes_node = self.graph.get_input_node(node, idx=1, copy=True)
        value = _const_weight_or_none(axes_node)
        if value is None:  # as X2Paddle's own mapper (bridge's doctor: reducesum_axes)
            raise ValueError(f"ReduceSum axes {axes_node.name!r} is computed: X2Paddle needs it constant")
        axes = value
    axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if not axes and node.get_attr("noop_with_empty_axes", 0):
        self.paddle_graph.add_layer("paddle.assign", inputs={"x": val_x.name}, outputs=[node.name])
        return
    self.paddle_graph.add_layer("paddle.sum", inputs={"x": val_x.name}, outputs=[node.name],
                                axis=axes or None, keepdim=bool(node.get_attr("keepdims", 1)))


def reduce_sum_keepdims() -> None:
    """``OpSet.ReduceSum`` (op_mapper/onnx2paddle/opset_legacy.py, used by every opset) passes
    ONNX's ``keepdims`` attribute on as the int it is: the generated ``paddle.sum(...,
    keepdim=1)`` makes Paddle 3 abort the whole process (``terminate called after throwing
    an instance of 'pybind11::error_already_set' what(): TypeError: Cannot interpret '1' as
    a data type``, SIGABRT), while converting (``jit.to_static``) or later running it. It also
    drops ONNX's default ``keepdims=1`` when the attribute is absent from opset 13 (Paddle's
    default is False: one dim fewer than ONNX), and without an ``axes`` input from 13 fails
    on ``None.shape``. The replacement (``_map_reduce_sum``) maps the op as ONNX defines it."""
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    if getattr(opset_legacy.OpSet.ReduceSum, "__wrapped__", None) is not _map_reduce_sum:
        mapped = opset_legacy.print_mapping_info(_map_reduce_sum)  # errors reported as X2Paddle's
        mapped.__wrapped__ = _map_reduce_sum
        opset_legacy.OpSet.ReduceSum = mapped


def _pad_constant():
    from bridge.patches import x2paddle_pad_constant

    return x2paddle_pad_constant


def _linear_time():
    from bridge.patches import x2paddle_linear_time

    return x2paddle_linear_time


def _mappers_math():
    from bridge.patches import x2paddle_mappers_math

    return x2paddle_mappers_math


def _mapper_fixes():
    from bridge.patches import x2paddle_mapper_fixes

    return x2paddle_mapper_fixes


def _mappers_tensor():
    from bridge.patches import x2paddle_mappers_tensor

    return x2paddle_mappers_tensor


def _mappers_more():
    from bridge.patches import x2paddle_mappers_more

    return x2paddle_mappers_more


@dataclass(frozen=True)
class Shim:
    name: str
    apply: Callable[[], None]


# Order matters: the import shims must run before anything imports x2paddle.convert.
SHIMS: tuple[Shim, ...] = (
    Shim("require_undeclared_deps", require_undeclared_deps),
    Shim("import_onnx_version", import_onnx_version),
    Shim("provide_onnx_mapping", provide_onnx_mapping),
    Shim("disable_feedback", disable_feedback),
    Shim("exit_raises", exit_raises),
    # Quadratic steps made linear (patches/x2paddle_linear_time.py).
    Shim("pattern_matcher_linear", lambda: _linear_time().pattern_matcher_linear()),
    Shim("name_struct_linear", lambda: _linear_time().name_struct_linear()),
    Shim("decoder_streams_weights", decoder_streams_weights),
    Shim("release_weights_after_dump", release_weights_after_dump),
    Shim("reduce_sum_keepdims", reduce_sum_keepdims),
    Shim("pad_constant", lambda: _pad_constant().pad_constant()),  # patches/x2paddle_pad_constant.py
    # Mapper bugs (patches/x2paddle_mapper_fixes.py); reduce_sum_tensor_axes wraps reduce_sum_keepdims.
    Shim("reduce_tensor_axes", lambda: _mapper_fixes().reduce_tensor_axes()),
    Shim("reduce_sum_tensor_axes", lambda: _mapper_fixes().reduce_sum_tensor_axes()),
    Shim("reduce_lp_axes", lambda: _mapper_fixes().reduce_lp_axes()),
    Shim("constant_value_forms", lambda: _mapper_fixes().constant_value_forms()),
    Shim("tensor_attrs_typed_fields", lambda: _mapper_fixes().tensor_attrs_typed_fields()),
    Shim("clip_bounds", lambda: _mapper_fixes().clip_bounds()),
    Shim("conv_kernel_shape", lambda: _mapper_fixes().conv_kernel_shape()),
    Shim("gather_input_table", lambda: _mapper_fixes().gather_input_table()),
    # Mappers X2Paddle lacks for ops Paddle has (patches/x2paddle_mappers_math.py).
    Shim("mappers_math", lambda: _mappers_math().install()),
    # Mappers X2Paddle lacks for tensor ops Paddle has (patches/x2paddle_mappers_tensor.py).
    Shim("mappers_tensor", lambda: _mappers_tensor().install()),
    # More mapper bugs (patches/x2paddle_mappers_more.py).
    Shim("multi_output_graph_outputs", lambda: _mappers_more().multi_output_graph_outputs()),
    Shim("topk_values_readers", lambda: _mappers_more().topk_values_readers()),
    Shim("argmax_defaults", lambda: _mappers_more().argmax_defaults()),
    Shim("gemm_all_forms", lambda: _mappers_more().gemm_all_forms()),
    Shim("split_tensor_sizes", lambda: _mappers_more().split_tensor_sizes()),
    Shim("squeeze_unsqueeze_tensor_axes", lambda: _mappers_more().squeeze_unsqueeze_tensor_axes()),
    Shim("dropout", lambda: _mappers_more().dropout()),
    Shim("expand_tensor_shape", lambda: _mappers_more().expand_tensor_shape()),
    Shim("div_integers", lambda: _mappers_more().div_integers()),
    Shim("topk_stable_ties", lambda: _mappers_more().topk_stable_ties()),
    Shim("scatter_nd_reduction", lambda: _mappers_more().scatter_nd_reduction()),
    Shim("narrow_max_min_mod", lambda: _mappers_more().narrow_max_min_mod()),
    Shim("maxpool_indices", lambda: _mappers_more().maxpool_indices()),
    Shim("gather_nd_batch_dims", lambda: _mappers_more().gather_nd_batch_dims()),
)

_installed = False


def install() -> None:
    """Apply every shim once per process."""
    global _installed
    if _installed:
        return
    for shim in SHIMS:
        shim.apply()
    _installed = True


_PARAMS_LOAD = re.compile(r"paddle\.load\(r?(['\"])(?P<path>[^'\"]*model\.pdparams)\1\)")
_RELOCATED = (
    "paddle.load(__import__('os').path.join("
    "__import__('os').path.dirname(__import__('os').path.abspath(__file__)), 'model.pdparams'))"
)


def relocate_params_path(code_path: Path) -> int:
    """X2Paddle's generated ``main()`` loads ``paddle.load(r'/abs/save_dir/model.pdparams')``,
    so the output folder breaks when moved. Rewrite it relative to the code file; returns the
    number of paths rewritten."""
    text = code_path.read_text()
    new_text, count = _PARAMS_LOAD.subn(_RELOCATED, text)
    if count:
        code_path.write_text(new_text)
    return count
