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
    _reduce_sum_before = getattr(current, "__wrapped__", current)  # unwrapped: errors reported once
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
