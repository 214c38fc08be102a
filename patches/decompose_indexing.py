"""Index-picking ops X2Paddle 1.6.0 has no mapping for, rewritten into ``ArgMax``, reductions,
comparisons and ``Where``.

Each class is one rewrite. Without them X2Paddle's op checker lists the op and raises
``Exception: Model is not supported yet.``; bridge's convert stage refuses the model first with
``UnsupportedModel: node '...' (ArgMin): X2Paddle 1.6.0 has no mapping for op type ArgMin``.
``ArgMax`` is always written with its ``axis`` (X2Paddle passes a missing one as
``axis=None``, which Paddle reads as "flatten") and without ``select_last_index`` (ignored
by X2Paddle's mapper).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr
from bridge.patches._decompose import (
    FLOAT_TYPES,
    SIGNED_INT_TYPES,
    Builder,
    constant_value,
    elem_type,
    normalize_axis,
    reduce_reason,
    type_name,
)


def _axis_and_dim(ctx: PatchContext, x: str, axis: int) -> tuple[int, int | None] | str:
    """(axis made non-negative, its dim when static) or the reason to decline."""
    rank = ctx.rank(x)
    if rank is None:
        return f"rank of '{x}' unknown"
    if not -rank <= axis < rank:
        return f"axis {axis} out of range for rank {rank}"
    axis = normalize_axis(axis, rank)
    dim = ctx.shapes[x][axis]
    return axis, dim if isinstance(dim, int) else None


def _iota(b: Builder, rank: int, axis: int, dim: int) -> str:
    """int64 [0, 1, ..., dim − 1] laid along ``axis`` of a rank-``rank`` tensor (ones elsewhere)."""
    shape = [1] * rank
    shape[axis] = dim
    return b.const(np.arange(dim, dtype=np.int64).reshape(shape), TensorProto.INT64)


class DecomposeArgMin(Patch):
    """``ArgMin(x; axis, keepdims)`` → ``ArgMax(Neg(x))`` (floats) or ``ArgMax(Sub(−1, x))``
    (signed ints: −1 − x reverses the order without overflowing at the type's minimum); with
    ``select_last_index=1`` → ``ReduceMax(Where(Equal(x, ReduceMin(x)), iota, −1))`` (opset <
    18, static dim along axis)."""

    name = "decompose_argmin"
    op_types = ("ArgMin",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        x = node.input[0]
        x_type = elem_type(ctx, x)
        if x_type not in FLOAT_TYPES + SIGNED_INT_TYPES:
            return MatchResult.fail(f"input '{x}' has element type {type_name(x_type)} (floats and signed ints only)")
        found = _axis_and_dim(ctx, x, get_attr(node, "axis", 0))
        if isinstance(found, str):
            return MatchResult.fail(found)
        if get_attr(node, "select_last_index", 0):
            if found[1] is None:
                return MatchResult.fail(f"select_last_index=1 with a dynamic dim along axis {found[0]}")
            reason = reduce_reason(ctx, ctx.shapes[x], [found[0]], "max")
            if reason:
                return MatchResult.fail(f"select_last_index=1: {reason}")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, y = node.input[0], node.output[0]
        x_type = elem_type(ctx, x)
        axis, dim = _axis_and_dim(ctx, x, get_attr(node, "axis", 0))
        keepdims = get_attr(node, "keepdims", 1)
        if not get_attr(node, "select_last_index", 0):
            flipped = b.op("Neg", [x]) if x_type in FLOAT_TYPES else b.op("Sub", [b.const(-1, x_type), x])
            b.op("ArgMax", [flipped], y, axis=axis, keepdims=keepdims)
            return b.nodes
        smallest = b.op("ReduceMin", [x], axes=[axis], keepdims=1)
        where = b.op("Where", [b.op("Equal", [x, smallest]), _iota(b, ctx.rank(x), axis, dim),
                               b.const(-1, TensorProto.INT64)])
        b.op("ReduceMax", [where], y, axes=[axis], keepdims=keepdims)
        return b.nodes


class DecomposeHardmax(Patch):
    """``Hardmax(x; axis)`` (opset 13) → ``Cast(Equal(iota, ArgMax(x, axis, keepdims=1)), T)``:
    1 at the first maximum along ``axis``, as ONNX. The dim along ``axis`` must be static."""

    name = "decompose_hardmax"
    op_types = ("Hardmax",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if ctx.opset < 13:
            return MatchResult.fail(f"opset {ctx.opset}: Hardmax before 13 works on x flattened to 2-D")
        x = node.input[0]
        if elem_type(ctx, x) not in FLOAT_TYPES:
            return MatchResult.fail(f"input '{x}' has element type {type_name(elem_type(ctx, x))}")
        found = _axis_and_dim(ctx, x, get_attr(node, "axis", -1))
        if isinstance(found, str):
            return MatchResult.fail(found)
        if found[1] is None:
            return MatchResult.fail(f"dim along axis {found[0]} of '{x}' is not static")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        axis, dim = _axis_and_dim(ctx, x, get_attr(node, "axis", -1))
        first = b.op("ArgMax", [x], axis=axis, keepdims=1)
        hit = b.op("Equal", [_iota(b, ctx.rank(x), axis, dim), first])
        b.op("Cast", [hit], node.output[0], to=elem_type(ctx, x))
        return b.nodes


class DecomposeTrilu(Patch):
    """``Trilu(x, k?; upper)`` → ``Where(mask, x, 0)`` (bool x: ``And(mask, x)``) with the mask
    j − i ≥ k (upper) or j − i ≤ k (lower) over the last two dims, which must be static: a
    constant when k is absent or constant, else ``GreaterOrEqual``/``LessOrEqual`` of the
    constant j − i and k."""

    name = "decompose_trilu"
    op_types = ("Trilu",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        x = node.input[0]
        shape = ctx.shapes.get(x)
        if shape is None or len(shape) < 2 or not all(isinstance(d, int) for d in shape[-2:]):
            return MatchResult.fail(f"last two dims of '{x}' not static (shape {shape})")
        if elem_type(ctx, x) is None:
            return MatchResult.fail(f"element type of '{x}' unknown")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        rows, cols = ctx.shapes[x][-2:]
        upper = get_attr(node, "upper", 1)
        offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]  # j - i
        k_name = node.input[1] if len(node.input) > 1 and node.input[1] else None
        k_value = 0 if k_name is None else constant_value(ctx, k_name)
        if k_value is not None:
            k = int(np.asarray(k_value).reshape(-1)[0])
            mask = b.const(offset >= k if upper else offset <= k, TensorProto.BOOL)
        else:
            mask = b.op("GreaterOrEqual" if upper else "LessOrEqual", [b.const(offset, TensorProto.INT64), k_name])
        if elem_type(ctx, x) == TensorProto.BOOL:
            # ONNX Runtime has no bool Where kernel ("Could not find an implementation for
            # Where(9)"); And is the same mask exactly. Found by tests/test_fuzz_patches.py.
            b.op("And", [mask, x], node.output[0])
        else:
            b.op("Where", [mask, x, b.const(0, elem_type(ctx, x))], node.output[0])
        return b.nodes


INDEXING_PATCHES: tuple[Patch, ...] = (DecomposeArgMin(), DecomposeHardmax(), DecomposeTrilu())
