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


def _install(name: str, func: Callable) -> None:
    """Set ``OpSet.<name>`` to ``func`` wrapped like X2Paddle's own mappers (errors reported
    through ``print_mapping_info``), unless it is already there."""
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    current = getattr(opset_legacy.OpSet, name, None)
    if getattr(current, "__wrapped__", None) is func:
        return
    mapped = opset_legacy.print_mapping_info(func)
    mapped.__wrapped__ = func
    setattr(opset_legacy.OpSet, name, mapped)


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


def _map_reduce_tensor_axes(self, node, kernel: str, axes_node) -> None:
    """``kernel(x, axis=<axes tensor>, keepdim=...)``. Paddle 3 reads a tensor ``axis`` as an
    IntArray at run time (to_static, jit.save and Paddle Inference all take it); with
    ``keepdims=0`` the output rank is the input rank minus the axes' length, which the graph
    declares statically. An empty axes tensor means "every axis" in ONNX and in Paddle, except
    with ``noop_with_empty_axes=1``, where ONNX passes x through: that needs the length known."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    length = _static_length(axes_node)
    if node.get_attr("noop_with_empty_axes", 0):
        if length is None:
            raise ValueError(
                f"{node.layer_type} axes {axes_node.name!r} is computed, of unknown length, with "
                "noop_with_empty_axes=1: whether it passes x through is only known at run time")
        if length == 0:
            self.paddle_graph.add_layer("paddle.assign", inputs={"x": val_x.name}, outputs=[node.name])
            return
    if length == 0:  # reduce every axis
        self.paddle_graph.add_layer(kernel, inputs={"x": val_x.name}, outputs=[node.name],
                                    axis=None, keepdim=bool(node.get_attr("keepdims", 1)))
        return
    self.paddle_graph.add_layer(kernel, inputs={"x": val_x.name, "axis": axes_node.name},
                                outputs=[node.name], keepdim=bool(node.get_attr("keepdims", 1)))


def _map_reduce(self, node) -> None:
    """ReduceMean/Max/Min/Prod with ONNX's semantics: ``axes`` as an attribute (< 18), a
    constant input or a computed one (>= 18); ``keepdims`` default 1, as a bool; no axes
    reducing every axis unless ``noop_with_empty_axes=1`` (then x passes through)."""
    kernel = _DIRECT_REDUCE[node.layer_type]
    axes_node, value = _axes_tensor(self, node)
    if axes_node is not None and value is None:
        _map_reduce_tensor_axes(self, node, kernel, axes_node)
        return
    axes = value if axes_node is not None else node.get_attr("axes")
    axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    if not axes and node.get_attr("noop_with_empty_axes", 0):
        self.paddle_graph.add_layer("paddle.assign", inputs={"x": val_x.name}, outputs=[node.name])
        return
    self.paddle_graph.add_layer(kernel, inputs={"x": val_x.name}, outputs=[node.name],
                                axis=axes or None, keepdim=bool(node.get_attr("keepdims", 1)))


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
        _map_reduce_tensor_axes(self, node, "paddle.sum", axes_node)
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
