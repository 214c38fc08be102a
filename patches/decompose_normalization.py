"""Normalizations X2Paddle 1.6.0 has no mapping for, rewritten into reductions and
elementwise ops it maps.

Each class is one rewrite. Without them X2Paddle's op checker lists the op and raises
``Exception: Model is not supported yet.``; bridge's convert stage refuses the model first with
``UnsupportedModel: node '...' (LayerNormalization): X2Paddle 1.6.0 has no mapping for op type
LayerNormalization``. Means and sums are written in the forms X2Paddle maps at the model's
opset (``bridge.patches._decompose``: from opset 18 a ``MatMul`` by ones, so the normalized
dims must be static there).

The variance is the two-pass form E[(x − mean)²] of ONNX's reference implementation, and the
result is ``(x − mean) · Reciprocal(Sqrt(var + eps))``: no ``Pow`` and no ``Div`` by the
square root, which keeps X2Paddle's ``onnx_layernorm_fuse_pass`` (written for torch's
last-axis pattern) off it.
"""
from __future__ import annotations

import math

import onnx
from onnx import TensorProto

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr
from bridge.patches._decompose import (
    FLOAT_TYPES,
    Builder,
    elem_type,
    normalize_axis,
    reduce_reason,
    require_float,
    type_name,
)


def _normalized_axes(ctx: PatchContext, node: onnx.NodeProto) -> list[int] | str:
    """The axes from ``axis`` to the last, or the reason to decline."""
    x = node.input[0]
    reason = require_float(ctx, x)
    if reason:
        return reason
    stash = get_attr(node, "stash_type", TensorProto.FLOAT)
    if stash not in FLOAT_TYPES:
        return f"stash_type {type_name(stash)}"
    rank = ctx.rank(x)
    if rank is None:
        return f"rank of '{x}' unknown"
    axis = get_attr(node, "axis", -1)
    if not -rank <= axis < rank:
        return f"axis {axis} out of range for rank {rank}"
    axes = list(range(normalize_axis(axis, rank), rank))
    return reduce_reason(ctx, ctx.shapes[x], axes, "mean") or axes


def _stash(b: Builder, x: str, node: onnx.NodeProto) -> tuple[str, int, int]:
    """``x`` in the stash type (a Cast when it differs), the stash type and x's type."""
    x_type = elem_type(b.ctx, x)
    stash = get_attr(node, "stash_type", TensorProto.FLOAT)
    return (x if stash == x_type else b.op("Cast", [x], to=stash)), stash, x_type


class DecomposeLayerNormalization(Patch):
    """``LayerNormalization(X, Scale, B?; axis, epsilon, stash_type)`` (opset 17) →
    d = X − ReduceMean(X), inv = Reciprocal(Sqrt(ReduceMean(d·d) + eps)),
    ``Y = Cast(d·inv, T)·Scale + B``; ``Mean`` and ``InvStdDev`` outputs kept (stash type, reduced
    dims kept as 1)."""

    name = "decompose_layer_normalization"
    op_types = ("LayerNormalization",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        found = _normalized_axes(ctx, node)
        return MatchResult.fail(found) if isinstance(found, str) else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        axes, shape = _normalized_axes(ctx, node), ctx.shapes[node.input[0]]
        b = Builder(ctx, node)
        outputs = list(node.output) + [""] * (3 - len(node.output))
        x, stash, x_type = _stash(b, node.input[0], node)
        mean = b.reduce("mean", x, axes, shape, stash, outputs[1] or None)
        dev = b.op("Sub", [x, mean])
        var = b.reduce("mean", b.op("Mul", [dev, dev]), axes, shape, stash)
        eps = b.const(get_attr(node, "epsilon", 1e-5), stash)
        inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, eps])])], outputs[2] or None)
        normalized = b.op("Mul", [dev, inv])
        if stash != x_type:
            normalized = b.op("Cast", [normalized], to=x_type)
        has_bias = len(node.input) > 2 and node.input[2]
        scaled = b.op("Mul", [normalized, node.input[1]], None if has_bias else outputs[0])
        if has_bias:
            b.op("Add", [scaled, node.input[2]], outputs[0])
        return b.nodes


class DecomposeRMSNormalization(Patch):
    """``RMSNormalization(X, scale; axis, epsilon, stash_type)`` (opset 23) →
    ``Cast(X · Reciprocal(Sqrt(ReduceMean(X·X) + eps)), T) · scale``."""

    name = "decompose_rms_normalization"
    op_types = ("RMSNormalization",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        found = _normalized_axes(ctx, node)
        return MatchResult.fail(found) if isinstance(found, str) else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        axes, shape = _normalized_axes(ctx, node), ctx.shapes[node.input[0]]
        b = Builder(ctx, node)
        x, stash, x_type = _stash(b, node.input[0], node)
        mean_square = b.reduce("mean", b.op("Mul", [x, x]), axes, shape, stash)
        eps = b.const(get_attr(node, "epsilon", 1e-5), stash)
        inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [mean_square, eps])])])
        normalized = b.op("Mul", [x, inv])
        if stash != x_type:
            normalized = b.op("Cast", [normalized], to=x_type)
        b.op("Mul", [normalized, node.input[1]], node.output[0])
        return b.nodes


class DecomposeGroupNormalization(Patch):
    """``GroupNormalization(X, scale, bias; num_groups, epsilon, stash_type)`` (opset 21,
    per-channel scale and bias) → Reshape(X, [0, G, −1]), the layer-norm steps over the last
    axis, Reshape back to [0, C, spatial...], then ``· Reshape(scale, [C, 1...]) +
    Reshape(bias, [C, 1...])``. C and the spatial dims must be static."""

    name = "decompose_group_normalization"
    op_types = ("GroupNormalization",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if ctx.opset < 21:
            return MatchResult.fail(f"opset {ctx.opset}: the opset-18 form scales per group, not per channel")
        x = node.input[0]
        reason = require_float(ctx, x)
        if reason:
            return MatchResult.fail(reason)
        shape = ctx.shapes.get(x)
        if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape[1:]):
            return MatchResult.fail(f"shape of '{x}' is {shape} (rank >= 3 with static channel and spatial dims needed)")
        groups = get_attr(node, "num_groups")
        if not groups or shape[1] % groups:
            return MatchResult.fail(f"{shape[1]} channels not divisible into num_groups={groups}")
        if get_attr(node, "stash_type", TensorProto.FLOAT) not in FLOAT_TYPES:
            return MatchResult.fail("stash_type not a float type")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        shape = ctx.shapes[node.input[0]]
        channels, spatial, groups = shape[1], shape[2:], get_attr(node, "num_groups")
        grouped_shape = [shape[0], groups, channels // groups * math.prod(spatial)]
        x, stash, x_type = _stash(b, node.input[0], node)
        grouped = b.op("Reshape", [x, b.ints([0, groups, -1])])
        mean = b.reduce("mean", grouped, [2], grouped_shape, stash)
        dev = b.op("Sub", [grouped, mean])
        var = b.reduce("mean", b.op("Mul", [dev, dev]), [2], grouped_shape, stash)
        eps = b.const(get_attr(node, "epsilon", 1e-5), stash)
        inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, eps])])])
        normalized = b.op("Reshape", [b.op("Mul", [dev, inv]), b.ints([0, channels, *spatial])])
        if stash != x_type:
            normalized = b.op("Cast", [normalized], to=x_type)
        per_channel = b.ints([channels] + [1] * len(spatial))
        scaled = b.op("Mul", [normalized, b.op("Reshape", [node.input[1], per_channel])])
        b.op("Add", [scaled, b.op("Reshape", [node.input[2], per_channel])], node.output[0])
        return b.nodes


class DecomposeLpNormalization(Patch):
    """``LpNormalization(x; axis, p)`` → ``x / n`` with n = ``Sqrt(ReduceSum(x·x))`` (p = 2)
    or ``ReduceSum(Abs(x))`` (p = 1) over ``axis``, keepdims; where n is 0 the result is 0,
    as ONNX Runtime's kernel gives (x / ``Where(n == 0, 1, n)``)."""

    name = "decompose_lp_normalization"
    op_types = ("LpNormalization",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if ctx.opset < 11:  # the zero test is an Equal on floats (from opset 11)
            return MatchResult.fail(f"opset {ctx.opset}: Equal takes floats from opset 11")
        reason = require_float(ctx, node.input[0])
        if reason:
            return MatchResult.fail(reason)
        if get_attr(node, "p", 2) not in (1, 2):
            return MatchResult.fail(f"p={get_attr(node, 'p')} (1 and 2 only)")
        rank = ctx.rank(node.input[0])
        if rank is None:
            return MatchResult.fail(f"rank of '{node.input[0]}' unknown")
        axis = get_attr(node, "axis", -1)
        if not -rank <= axis < rank:
            return MatchResult.fail(f"axis {axis} out of range for rank {rank}")
        reason = reduce_reason(ctx, ctx.shapes[node.input[0]], [normalize_axis(axis, rank)], "sum")
        return MatchResult.fail(reason) if reason else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        dtype = elem_type(ctx, x)
        axes, shape = [normalize_axis(get_attr(node, "axis", -1), ctx.rank(x))], ctx.shapes[x]
        if get_attr(node, "p", 2) == 2:
            norm = b.op("Sqrt", [b.reduce("sum", b.op("Mul", [x, x]), axes, shape, dtype)])
        else:
            norm = b.reduce("sum", b.op("Abs", [x]), axes, shape, dtype)
        zero, one = b.const(0.0, dtype), b.const(1.0, dtype)
        safe = b.op("Where", [b.op("Equal", [norm, zero]), one, norm])
        b.op("Div", [x, safe], node.output[0])
        return b.nodes


NORMALIZATION_PATCHES: tuple[Patch, ...] = (
    DecomposeLayerNormalization(), DecomposeRMSNormalization(), DecomposeGroupNormalization(),
    DecomposeLpNormalization(),
)
