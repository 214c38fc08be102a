"""Fixes to X2Paddle 1.6.0's ONNX op mappers (op_mapper/onnx2paddle/opset_legacy.py, which
every opset's ``OpSet7``..``OpSet15`` inherits), applied as shims: each function below replaces
or wraps one ``OpSet`` method, is idempotent, and is registered in ``x2paddle_shims.SHIMS``
after ``reduce_sum_keepdims``. Tests: tests/test_x2paddle_mapper_fixes.py.

The mappers write Paddle layers with ``self.paddle_graph.add_layer(kernel, inputs=..., **attrs)``;
a name in ``inputs`` is a tensor of the generated code, an attribute is a literal. Where ONNX
gives an operand as a tensor that is not constant (a graph input, a computed value), the fixes
pass it to Paddle as a tensor (Paddle 3's reduce ops take ``axis`` as a tensor, ``paddle.clip``
takes ``min``/``max`` tensors) instead of X2Paddle's constant-only code path.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# ONNX reduce ops whose X2Paddle mapping is ``directly_map`` (one input only) -> Paddle kernel.
_DIRECT_REDUCE = {
    "ReduceMean": "paddle.mean",
    "ReduceMax": "paddle.max",
    "ReduceMin": "paddle.min",
    "ReduceProd": "paddle.prod",
}


def _install(name: str, func: Callable, owner: type | None = None) -> None:
    """Set ``owner.<name>`` (default ``OpSet``, opset_legacy.py) to ``func`` wrapped like
    X2Paddle's own mappers (errors reported through ``print_mapping_info``), unless it is
    already there."""
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    owner = owner or opset_legacy.OpSet
    current = owner.__dict__.get(name)
    if getattr(current, "__wrapped__", None) is func:
        return
    mapped = opset_legacy.print_mapping_info(func)
    mapped.__wrapped__ = func
    setattr(owner, name, mapped)


def _unwrapped(mapper: Callable) -> Callable:
    """The function under X2Paddle's ``print_mapping_info`` (which keeps no ``__wrapped__``,
    only a closure) or a shim's wrapper, so that a wrapper calling it reports its own error."""
    inner = getattr(mapper, "__wrapped__", None)
    if inner is not None:
        return inner
    for cell in getattr(mapper, "__closure__", None) or ():
        if callable(cell.cell_contents):
            return cell.cell_contents
    return mapper


def _wrap_mapper(name: str, func: Callable) -> Callable | None:
    """Install ``func`` as ``OpSet.<name>`` (``_install``) over the mapper there now, and return
    that mapper unwrapped, for ``func`` to call on the forms it leaves alone; None when ``func``
    is installed already (the caller keeps what it saved the first time)."""
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    current = opset_legacy.OpSet.__dict__[name]
    if getattr(current, "__wrapped__", None) is func:
        return None
    before = _unwrapped(current)
    _install(name, func)
    return before


def _axes_tensor(self, node):
    """``(axes_node, constant_value_or_None)`` for a reduce node's second input, ``(None, None)``
    when it has none."""
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    if len(node.inputs) < 2:
        return None, None
    axes_node = self.graph.get_input_node(node, idx=1, copy=True)
    return axes_node, _const_weight_or_none(axes_node)


def _static_length(axes_node) -> int | None:
    """The length of a 1-D axes tensor as the graph declares it; None when unknown."""
    from onnx import ValueInfoProto

    layer = getattr(axes_node, "layer", None)
    if isinstance(layer, ValueInfoProto):  # out_shapes reads a declared 0 as -1 (unknown)
        dims = layer.type.tensor_type.shape.dim
        if len(dims) == 1 and dims[0].HasField("dim_value"):
            return int(dims[0].dim_value)
        return None
    shapes = getattr(axes_node, "out_shapes", None) or [None]
    shape = shapes[0]
    if shape is None or len(shape) != 1 or shape[0] is None or shape[0] < 0:
        return None
    return int(shape[0])


def _emit_reduce(self, node, kernel: str, x: str, out: str) -> None:
    """``out = kernel(x, axis=..., keepdim=...)`` with ONNX's reduce semantics: ``axes`` as an
    attribute (< 13/18), a constant input, or a computed one (passed as a tensor ``axis``: Paddle 3
    reads it as an IntArray at run time, and to_static, jit.save and Paddle Inference all take
    it; with ``keepdims=0`` the output rank is the input rank minus the axes' length, which the
    graph declares). ``keepdims`` defaults to 1 (a bool for Paddle). No or empty axes reduce
    every axis, except with ``noop_with_empty_axes=1``, where x passes through: for a computed
    axes tensor that needs its length declared."""
    axes_node, value = _axes_tensor(self, node)
    keepdim = bool(node.get_attr("keepdims", 1))
    noop = bool(node.get_attr("noop_with_empty_axes", 0))
    if axes_node is not None and value is None:
        length = _static_length(axes_node)
        if noop and length is None:
            raise ValueError(
                f"{node.layer_type} axes {axes_node.name!r} is computed, of unknown length, with "
                "noop_with_empty_axes=1: whether it passes x through is only known at run time")
        if length != 0:
            self.paddle_graph.add_layer(kernel, inputs={"x": x, "axis": axes_node.name}, outputs=[out],
                                        keepdim=keepdim)
            return
        axes = []
    else:
        axes = value if axes_node is not None else node.get_attr("axes")
        axes = [] if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    if not axes and noop:
        self.paddle_graph.add_layer("paddle.assign", inputs={"x": x}, outputs=[out])
        return
    self.paddle_graph.add_layer(kernel, inputs={"x": x}, outputs=[out], axis=axes or None, keepdim=keepdim)


def _map_reduce(self, node) -> None:
    """ReduceMean/Max/Min/Prod: ``_emit_reduce`` with the op's Paddle kernel."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    _emit_reduce(self, node, _DIRECT_REDUCE[node.layer_type], val_x.name, node.name)


def reduce_tensor_axes() -> None:
    """ReduceMean, ReduceMax, ReduceMin, ReduceProd: X2Paddle maps them with
    ``OpSet.directly_map`` (opset_legacy.py), which asserts a single input, so from opset 18
    (``axes`` an input) every one fails with ``AssertionError: directly_map error with multi
    inputs``; without a ``keepdims`` attribute ReduceMax/Min/Prod fail with ``KeyError:
    'keepdims'`` (their defaults table spells it ``keepdim``). Adds ``OpSet.ReduceMean`` etc.
    (X2Paddle's dispatch, onnx_op_mapper.py, prefers a method over ``directly_map_ops``) mapping
    every form, a computed ``axes`` as a tensor ``axis`` (``_map_reduce``)."""
    for op_type in _DIRECT_REDUCE:
        _install(op_type, _map_reduce)


# The ReduceSum mapper in place before ``reduce_sum_tensor_axes`` (the ``reduce_sum_keepdims``
# shim's ``_map_reduce_sum`` when it ran first, else X2Paddle's own): every non-computed form.
_reduce_sum_before: Callable | None = None


def _map_reduce_sum_tensor_axes(self, node) -> None:
    """ReduceSum: a computed ``axes`` input as a tensor ``axis``; every other form as the
    mapper this shim found (``x2paddle_shims._map_reduce_sum`` in ``SHIMS`` order) maps it."""
    axes_node, value = _axes_tensor(self, node)
    if axes_node is not None and value is None:
        val_x = self.graph.get_input_node(node, idx=0, copy=True)
        _emit_reduce(self, node, "paddle.sum", val_x.name, node.name)
        return
    _reduce_sum_before(self, node)


def reduce_sum_tensor_axes() -> None:
    """ReduceSum with ``axes`` a graph input or computed tensor (opset >= 13): X2Paddle's
    ``OpSet.ReduceSum`` (opset_legacy.py) reads it as a constant, and the ``reduce_sum_keepdims``
    shim refuses it (``ValueError: ReduceSum axes '…' is computed: X2Paddle needs it
    constant``). Paddle's ``paddle.sum`` takes the axes as a tensor: wraps the mapper in place
    (registered after ``reduce_sum_keepdims``) to pass it on (``_map_reduce_sum_tensor_axes``)."""
    global _reduce_sum_before
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    current = opset_legacy.OpSet.ReduceSum
    if getattr(current, "__wrapped__", None) is _map_reduce_sum_tensor_axes:
        return
    _reduce_sum_before = _unwrapped(current)  # errors reported once, as the mapper's own
    _install("ReduceSum", _map_reduce_sum_tensor_axes)


def _map_reduce_lp(self, node) -> None:
    """ReduceL1 as ``sum(abs(x))``, ReduceL2 as ``sqrt(sum(x * x))``, reduced by
    ``_emit_reduce`` (every axes form, ``keepdims`` default 1)."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    summed = node.name + "_lp_sum"
    if node.layer_type == "ReduceL1":
        self.paddle_graph.add_layer("paddle.abs", inputs={"x": val_x.name}, outputs=[node.name + "_abs"])
        _emit_reduce(self, node, "paddle.sum", node.name + "_abs", node.name)
        return
    self.paddle_graph.add_layer("paddle.square", inputs={"x": val_x.name}, outputs=[node.name + "_sq"])
    _emit_reduce(self, node, "paddle.sum", node.name + "_sq", summed)
    self.paddle_graph.add_layer("paddle.sqrt", inputs={"x": summed}, outputs=[node.name])


def reduce_lp_axes() -> None:
    """ReduceL1, ReduceL2: X2Paddle's ``OpSet7.ReduceL1``/``ReduceL2`` (opset7.py, overriding
    opset_legacy.py's) read ``axes`` from the attribute only, so from opset 18 (``axes`` an
    input) they reduce every axis and come out wrong with no error (conformance: ``output
    'reduced': shape [1, 1, 1] != [3, 2, 1]``); ``paddle.norm`` also takes at most two axes.
    Replaces both, on ``OpSet`` and ``OpSet7``, with ``_map_reduce_lp``."""
    from x2paddle.op_mapper.onnx2paddle import opset7

    for op_type in ("ReduceL1", "ReduceL2"):
        _install(op_type, _map_reduce_lp)
        _install(op_type, _map_reduce_lp, opset7.OpSet7)


# ONNX Constant attributes other than ``value`` -> the numpy dtype of the tensor they define.
_CONSTANT_FORMS = {"value_float": np.float32, "value_floats": np.float32,
                   "value_int": np.int64, "value_ints": np.int64}
_constant_before: Callable | None = None
_constant_of_shape_before: Callable | None = None


def _value_attr_from_other_forms(node) -> None:
    """Give ``node.attr_map`` a ``value`` array (1-D, as X2Paddle's own TENSOR reading gives
    it) from ``value_float(s)``/``value_int(s)``, where ``value`` is absent; every later
    reader (the mapper, ``_const_weight_or_none`` in consumers) then sees it."""
    if "value" in node.attr_map:
        return
    for form, dtype in _CONSTANT_FORMS.items():
        if form in node.attr_map:
            node.attr_map["value"] = np.atleast_1d(np.asarray(node.attr_map[form], dtype=dtype))
            return


def _map_constant(self, node) -> None:
    """Constant: ``value_float(s)``/``value_int(s)`` read as ``value``, then X2Paddle's mapper."""
    _value_attr_from_other_forms(node)
    _constant_before(self, node)


def _map_constant_of_shape(self, node) -> None:
    """ConstantOfShape: no ``value`` is ONNX's float32 0, then X2Paddle's mapper."""
    if "value" not in node.attr_map:
        node.attr_map["value"] = np.zeros(1, np.float32)
    _constant_of_shape_before(self, node)


def constant_value_forms() -> None:
    """Constant with ``value_float``/``value_floats``/``value_int``/``value_ints`` (opset >= 12;
    the ``*_expanded`` function bodies of Celu, LeakyRelu, ThresholdedRelu, Swish, Shrink...
    write them), and ConstantOfShape without ``value`` (default float 0): X2Paddle's
    ``OpSet.Constant``/``ConstantOfShape`` (opset_legacy.py) read only ``value``
    (``AttributeError: 'NoneType' object has no attribute 'dtype'``). Wraps both to supply it."""
    global _constant_before, _constant_of_shape_before
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    for name, func in (("Constant", _map_constant), ("ConstantOfShape", _map_constant_of_shape)):
        current = opset_legacy.OpSet.__dict__[name]
        if getattr(current, "__wrapped__", None) is func:
            continue
        before = _unwrapped(current)
        if name == "Constant":
            _constant_before = before
        else:
            _constant_of_shape_before = before
        _install(name, func)


def _attribute_value(self, attr):
    """``ONNXGraphNode.get_attribute_value``, but a TENSOR attribute held in its typed fields
    (``float_data``, ``int64_data``...) read with ``numpy_helper`` (flat, as X2Paddle's own
    ``raw_data`` reading gives it)."""
    import onnx
    from onnx import numpy_helper

    if attr.type == onnx.AttributeProto.TENSOR and not attr.t.raw_data and not attr.t.external_data:
        return numpy_helper.to_array(attr.t).reshape(-1)
    return _attribute_value_before(self, attr)


_attribute_value_before: Callable | None = None


def tensor_attrs_typed_fields() -> None:
    """Constant, ConstantOfShape (any node's TENSOR attribute): X2Paddle's decoder
    (decoder/onnx_decoder.py, ``ONNXGraphNode.get_attribute_value``) reads only the tensor's
    ``raw_data``; one written in ``float_data``/``int32_data``/``int64_data`` (onnx.helper's
    and onnx.parser's way for small tensors, e.g. the ``*_expanded`` function bodies' ``Zero =
    Constant <value = float {0}>``) reads as an empty array: ``ValueError: cannot reshape
    array of size 0 into shape ()`` (Constant), ``AssertionError: given value not Scalar,
    shape of value > 1, this is not supported`` (ConstantOfShape)."""
    global _attribute_value_before
    from x2paddle.decoder.onnx_decoder import ONNXGraphNode

    current = ONNXGraphNode.__dict__["get_attribute_value"]
    if current is not _attribute_value:
        _attribute_value_before = current
        ONNXGraphNode.get_attribute_value = _attribute_value


_clip_before: Callable | None = None


def _map_clip(self, node) -> None:
    """Clip (opset >= 11) with ``min``/``max`` inputs: each by its position in the node (an
    empty name is an absent bound), a constant as a number, anything else as a tensor
    (``paddle.clip`` takes both); the attribute form (< 11) as X2Paddle maps it."""
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    names = list(node.layer.input)
    if len(names) == 1:
        _clip_before(self, node)
        return
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    # Paddle's clip has no int8/uint8/int16 kernel ("TypeError: In transformed code"): clip
    # an int32 copy and cast back.
    narrow = str(val_x.dtype) if str(val_x.dtype) in ("int8", "uint8", "int16") else None
    x_name = val_x.name
    if narrow:
        x_name = node.name + "_clip_in"
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": val_x.name}, outputs=[x_name], dtype="'int32'")
    inputs, attrs = {"x": x_name}, {}
    present = [n for n in names[1:] if n]  # node.inputs skips the empty names
    for position, bound in ((1, "min"), (2, "max")):
        if position >= len(names) or not names[position]:
            continue
        bound_node = self.graph.get_input_node(node, idx=1 + present.index(names[position]), copy=True)
        value = _const_weight_or_none(bound_node)
        if value is not None:
            attrs[bound] = np.asarray(value).reshape(-1)[0].item()
        elif narrow:
            inputs[bound] = f"{node.name}_clip_{bound}"
            self.paddle_graph.add_layer("paddle.cast", inputs={"x": bound_node.name}, outputs=[inputs[bound]],
                                        dtype="'int32'")
        else:
            inputs[bound] = bound_node.name
    out = node.name + "_clip_out" if narrow else node.name
    self.paddle_graph.add_layer("paddle.clip", inputs=inputs, outputs=[out], **attrs)
    if narrow:
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": out}, outputs=[node.name], dtype=f"'{narrow}'")


def clip_bounds() -> None:
    """Clip with ``min`` or ``max`` a graph input or computed tensor, or with only one bound
    given: X2Paddle's ``OpSet.Clip`` (opset_legacy.py) reads a single bound as a constant
    (``AttributeError: 'NoneType' object has no attribute 'shape'``) and passes two as tensors.
    Replaces it with ``_map_clip``."""
    global _clip_before
    _clip_before = _wrap_mapper("Clip", _map_clip) or _clip_before


_conv_before: dict[str, Callable] = {}


def _map_conv_kernel_shape(self, node) -> None:
    """Conv/ConvTranspose: without ``kernel_shape``, ONNX takes it from W's spatial dims; give
    X2Paddle's mapper that attribute (W's declared shape; its rank alone when the dims are not
    known, enough for a W that is a tensor: the mapper then only counts the dims)."""
    if node.get_attr("kernel_shape") is None:
        val_w = self.graph.get_input_node(node, idx=1, copy=True)
        w_shape = (getattr(val_w, "out_shapes", None) or [None])[0]
        if not w_shape:
            val_x = self.graph.get_input_node(node, idx=0, copy=True)
            w_shape = (getattr(val_x, "out_shapes", None) or [None])[0]
        if w_shape and len(w_shape) >= 3:
            node.attr_map["kernel_shape"] = [int(d) for d in w_shape[2:]]
    _conv_before[node.layer_type](self, node)


def conv_kernel_shape() -> None:
    """Conv and ConvTranspose without a ``kernel_shape`` attribute (optional in ONNX: W's
    spatial dims; the ``*_expanded`` CausalConvWithState bodies leave it out): X2Paddle's
    ``OpSet.Conv`` (opset_legacy.py) fails with ``TypeError: object of type 'NoneType' has no
    len()``, ``OpSet.ConvTranspose`` with ``AssertionError: kernel_shape not inferred``.
    Wraps both to fill it in from W (``_map_conv_kernel_shape``)."""
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    for name in ("Conv", "ConvTranspose"):
        current = opset_legacy.OpSet.__dict__[name]
        if getattr(current, "__wrapped__", None) is _map_conv_kernel_shape:
            continue
        _conv_before[name] = _unwrapped(current)
        _install(name, _map_conv_kernel_shape)


_gather_before: Callable | None = None


def _map_gather(self, node) -> None:
    """Gather on axis 0 with indices of rank != 1, ``gather_nd(x, unsqueeze(indices, -1))``
    (ONNX's output, ``indices.shape + x.shape[1:]``), where X2Paddle gets it wrong: data that is
    a graph input (or a computed tensor X2Paddle's decoder holds as a data node without a
    weight), or constant indices of shape ``[1, ...]`` (BERT's position ids, ``[1, seq]``, over
    the position-embedding weight), which its ``len(indices_values) == 1`` test takes for a
    single index and hands to ``paddle.gather`` whole ("The last dim of index should be 0 or 1
    when it is 2D, but we get 16"). Every other form as X2Paddle maps it."""
    from x2paddle.decoder.onnx_decoder import ONNXGraphDataNode
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    indices = self.graph.get_input_node(node, idx=1, copy=True)
    axis = node.get_attr("axis", 0)
    x_rank = len((val_x.out_shapes or [[]])[0] or [])
    indices_shape = (indices.out_shapes or [None])[0]
    constant = _const_weight_or_none(indices)
    one_row = constant is not None and np.ndim(constant) >= 2 and len(constant) == 1
    input_table = isinstance(val_x, ONNXGraphDataNode) and getattr(val_x, "weight", None) is None
    if ((input_table or one_row) and axis in (0, -x_rank)
            and indices_shape is not None and len(indices_shape) != 1):
        index = node.name + "_gather_index"
        self.paddle_graph.add_layer("paddle.unsqueeze", inputs={"x": indices.name}, outputs=[index], axis=-1)
        self.paddle_graph.add_layer("paddle.gather_nd", inputs={"x": val_x.name, "index": index},
                                    outputs=[node.name])
        return
    _gather_before(self, node)


def gather_input_table() -> None:
    """Gather on axis 0 of a graph input with multi-dimensional indices (NegativeLogLikelihoodLoss'
    ``*_expanded`` bodies gather the class weights this way): X2Paddle's ``OpSet.Gather``
    (opset_legacy.py) takes any data node for an embedding table, reads its weight (None for a
    graph input) and ``embedding_dim=val_x_shape[1]`` (``IndexError: list index out of
    range`` for a 1-D one). Wraps it to map that form with ``gather_nd`` (``_map_gather``)."""
    global _gather_before
    _gather_before = _wrap_mapper("Gather", _map_gather) or _gather_before
