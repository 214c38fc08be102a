"""Shared pieces of the ``decompose_*`` patches: element types, typed constants, and the
reductions in the form X2Paddle 1.6.0 maps at the model's opset.

The decompositions rewrite an op X2Paddle 1.6.0 has no mapping for into ops it maps. Only
the forms its mapper really handles are written (``x2paddle/op_mapper/onnx2paddle/
opset_legacy.py``):

- ``ReduceSum``: the generated ``paddle.sum`` gets ONNX's ``keepdims`` as an int whenever the
  attribute is present, and Paddle 3 aborts the process on ``keepdim=1``/``keepdim=0``
  ("Cannot interpret '1' as a data type"); without the attribute it is ``keepdim=True``
  below opset 13 and ``False`` (ONNX: 1) from 13. An ``axes`` *input* of more than one
  element also fails (``remove_default_attrs`` compares a numpy array). So: ``ReduceSum``
  with an ``axes`` attribute and no ``keepdims`` below opset 13 only.
- ``ReduceMean``/``ReduceMax``: ``directly_map`` turns ``keepdims`` into a bool, but asserts one
  input ("directly_map error with multi inputs"): the attribute form, i.e. opset < 18.
- So every reduction here keeps its dims, and from opset 13 a sum is ``ReduceMean · count``
  (below 18) or, from 18, a ``MatMul`` by a column of ones over the reduced axes flattened
  to the last one (a single non-trailing axis is transposed there and back). Both need
  static dims over the reduced axes; a max from 18 is not written.
- ``ArgMax``: ``axis`` is always written: the mapper passes a missing one as ``axis=None``,
  which Paddle reads as "flatten" (ONNX's default is 0). ``select_last_index`` is ignored
  by the mapper, so it is never written.
- ``Sum`` with more than two inputs adds the first input again (its loop reads
  ``idx=idx``): chains of ``Add`` are written instead.
"""
from __future__ import annotations

import math
import weakref

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bridge.patches._base import PatchContext

FLOAT_TYPES = (TensorProto.FLOAT16, TensorProto.FLOAT, TensorProto.DOUBLE)
SIGNED_INT_TYPES = (TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64)

# Element types per tensor, per PatchContext. A patch keeps the type of every tensor it
# replaces, so an entry never goes stale; a name not yet seen (a patch's new tensor) triggers
# one more inference.
_TYPES: "weakref.WeakKeyDictionary[PatchContext, dict[str, int]]" = weakref.WeakKeyDictionary()


def _infer_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is a hint; a decomposition declines without a type
        inferred = model
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    return types


def elem_type(ctx: PatchContext, name: str) -> int | None:
    """The ONNX element type of tensor ``name`` (``TensorProto.FLOAT`` ...), or None."""
    types = _TYPES.get(ctx)
    if types is None or name not in types:
        types = _infer_types(ctx.model)
        _TYPES[ctx] = types
    return types.get(name)


def type_name(data_type: int | None) -> str:
    return "unknown" if data_type is None else TensorProto.DataType.Name(data_type).lower()


def require_float(ctx: PatchContext, name: str) -> str | None:
    """None when ``name`` is float16/32/64, else the reason to decline."""
    t = elem_type(ctx, name)
    if t not in FLOAT_TYPES:
        return f"input '{name}' has element type {type_name(t)} (float16, float32, float64 only)"
    return None


def static_shape(ctx: PatchContext, name: str) -> list[int] | None:
    """The shape of ``name`` when every dim is a known number, else None."""
    shape = ctx.shapes.get(name)
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return list(shape)


def constant_value(ctx: PatchContext, name: str) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer or a Constant node's output."""
    if name in ctx.initializers:
        return numpy_helper.to_array(ctx.initializers[name])
    for node in ctx.model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
            return None
    return None


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def reduce_reason(ctx: PatchContext, shape: list | None, axes: list[int], kind: str) -> str | None:
    """None when ``Builder.reduce(kind, ...)`` can be written for a tensor of ``shape``, else why not."""
    if shape is None:
        return "input rank unknown"
    dims = [shape[a] for a in axes]
    static = all(isinstance(d, int) for d in dims)
    if kind == "max":
        return None if ctx.opset < 18 else f"no max reduction X2Paddle maps at opset {ctx.opset}"
    if (kind == "sum" and ctx.opset < 13) or (kind == "mean" and ctx.opset < 18) or static:
        if ctx.opset >= 18 and len(axes) > 1 and axes != list(range(len(shape) - len(axes), len(shape))):
            return f"axes {axes} are neither one axis nor the trailing ones (opset {ctx.opset})"
        return None
    return f"reduced dims {dims} not static (needed for a {kind} at opset {ctx.opset})"


class Builder:
    """Collects the nodes of one rewrite, named after the node they replace."""

    def __init__(self, ctx: PatchContext, node: onnx.NodeProto):
        self.ctx = ctx
        self.base = node.name or node.output[0]
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """Append ``op_type(inputs)``; returns its output (``out`` or a fresh name)."""
        out = out or self.ctx.fresh_name(f"{self.base}_{op_type.lower()}")
        self.nodes.append(helper.make_node(
            op_type, inputs, [out], name=self.ctx.fresh_name(f"{self.base}/{op_type}"), **attrs))
        return out

    def const(self, value, data_type: int) -> str:
        """A Constant of ``value`` with ONNX element type ``data_type``, stored as raw_data
        (X2Paddle 1.6.0's decoder reads tensor attributes from raw_data only)."""
        np_type = helper.tensor_dtype_to_np_dtype(data_type)
        out = self.ctx.fresh_name(f"{self.base}_const")
        tensor = numpy_helper.from_array(np.asarray(value, dtype=np_type), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.ctx.fresh_name(f"{self.base}/Constant"),
                                           value=tensor))
        return out

    def ints(self, values: list[int]) -> str:
        return self.const(np.array(values, dtype=np.int64), TensorProto.INT64)

    def reduce(self, kind: str, x: str, axes: list[int], shape: list, data_type: int,
               out: str | None = None) -> str:
        """``kind`` ("sum", "mean", "max") of ``x`` over ``axes``, dims kept, in the form
        X2Paddle 1.6.0 maps at this opset (see the module docstring; check ``reduce_reason``
        first). ``data_type`` is x's element type."""
        opset = self.ctx.opset
        if kind == "max":
            return self.op("ReduceMax", [x], out, axes=axes, keepdims=1)
        if kind == "sum" and opset < 13:
            return self.op("ReduceSum", [x], out, axes=axes)  # keepdims left out: see above
        if opset < 18:
            if kind == "mean":
                return self.op("ReduceMean", [x], out, axes=axes, keepdims=1)
            mean = self.op("ReduceMean", [x], axes=axes, keepdims=1)
            return self.op("Mul", [mean, self.const(math.prod(shape[a] for a in axes), data_type)], out)
        count = math.prod(shape[a] for a in axes)
        total = self._matmul_sum(x, axes, shape, data_type, None if kind == "mean" else out)
        return self.op("Div", [total, self.const(count, data_type)], out) if kind == "mean" else total

    def _matmul_sum(self, x: str, axes: list[int], shape: list, data_type: int, out: str | None) -> str:
        rank = len(shape)
        count = math.prod(shape[a] for a in axes)
        perm = None
        if len(axes) == 1 and axes[0] != rank - 1:
            perm = list(range(rank))
            perm[axes[0]], perm[-1] = rank - 1, axes[0]
            x = self.op("Transpose", [x], perm=perm)
            axes = [rank - 1]
        lead = rank - len(axes)
        if len(axes) > 1:
            x = self.op("Reshape", [x, self.ints([0] * lead + [-1])])
        ones = self.const(np.ones((count, 1)), data_type)
        if len(axes) == 1 and perm is None:
            return self.op("MatMul", [x, ones], out)
        total = self.op("MatMul", [x, ones])
        if len(axes) > 1:
            return self.op("Reshape", [total, self.ints([0] * lead + [1] * len(axes))], out)
        return self.op("Transpose", [total], out, perm=perm)

    def add_all(self, inputs: list[str], out: str | None = None) -> str:
        acc = inputs[0]
        for i, term in enumerate(inputs[1:], start=2):
            acc = self.op("Add", [acc, term], out if i == len(inputs) else None)
        return acc
