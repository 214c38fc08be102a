"""Losses X2Paddle 1.6.0 has no mapping for, rewritten into comparisons, ``Where`` and sums.

Without this X2Paddle's op checker lists the op and raises ``Exception: Model is not supported
yet.``; bridge's convert stage refuses the model first with ``UnsupportedModel: node '...'
(NegativeLogLikelihoodLoss): X2Paddle 1.6.0 has no mapping for op type
NegativeLogLikelihoodLoss``. ``SoftmaxCrossEntropyLoss``'s function body (what exporters and
ONNX's ``_expanded`` cases write) is ``LogSoftmax`` followed by this op.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr
from bridge.patches._decompose import Builder, elem_type, reduce_reason, require_float, type_name


class DecomposeNegativeLogLikelihoodLoss(Patch):
    """``NegativeLogLikelihoodLoss(x[N, C, d...], t[N, d...], w[C]?; reduction, ignore_index)``
    → hit = ``Equal(Unsqueeze(t, 1), iota[1, C, 1...])``, picked = Σ_C ``Where(hit, x, 0)``,
    weight = Σ_C ``Where(hit, w, 0)`` (1 without w), 0 where t is ignore_index;
    loss = −picked·weight, ``Squeeze``d for "none", Σ for "sum", Σ loss / Σ weight for "mean".
    C must be static; "sum" and "mean" need every dim static from opset 13."""

    name = "decompose_nll_loss"
    op_types = ("NegativeLogLikelihoodLoss",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        x, target = node.input[0], node.input[1]
        reason = require_float(ctx, x)
        if reason:
            return MatchResult.fail(reason)
        if elem_type(ctx, target) not in (TensorProto.INT32, TensorProto.INT64):
            return MatchResult.fail(f"target '{target}' has element type {type_name(elem_type(ctx, target))}")
        shape = ctx.shapes.get(x)
        if shape is None or len(shape) < 2 or not isinstance(shape[1], int):
            return MatchResult.fail(f"class dim of '{x}' not static (shape {shape})")
        reduction = _reduction(node)
        if reduction not in ("none", "sum", "mean"):
            return MatchResult.fail(f"reduction={reduction!r}")
        reason = reduce_reason(ctx, shape, [1], "sum")
        if not reason and reduction != "none":
            reason = reduce_reason(ctx, shape, list(range(len(shape))), "sum")
        if not reason and reduction == "mean" and not all(isinstance(d, int) for d in shape):
            reason = f"shape {shape} not static (the mean's count)"
        return MatchResult.fail(reason) if reason else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, target = node.input[0], node.input[1]
        shape, rank = ctx.shapes[x], ctx.rank(x)
        x_type, t_type = elem_type(ctx, x), elem_type(ctx, target)
        classes = shape[1]
        kept = [shape[0], 1, *shape[2:]]  # the shape after summing over C, dims kept
        target_c = b.op("Unsqueeze", [target, b.ints([1])])
        iota = np.arange(classes).reshape([1, classes] + [1] * (rank - 2))
        hit = b.op("Equal", [target_c, b.const(iota, t_type)])
        zero, one = b.const(0.0, x_type), b.const(1.0, x_type)
        picked = b.reduce("sum", b.op("Where", [hit, x, zero]), [1], shape, x_type)
        if len(node.input) > 2 and node.input[2]:
            per_class = b.op("Reshape", [node.input[2], b.ints([1, classes] + [1] * (rank - 2))])
            weight = b.reduce("sum", b.op("Where", [hit, per_class, zero]), [1], shape, x_type)
        else:
            weight = None
        ignore = get_attr(node, "ignore_index")
        if ignore is not None:
            ignored = b.op("Equal", [target_c, b.const(ignore, t_type)])
            weight = b.op("Where", [ignored, zero, weight or one])
        loss = b.op("Neg", [picked if weight is None else b.op("Mul", [picked, weight])])
        reduction, y = _reduction(node), node.output[0]
        if reduction == "none":
            b.op("Squeeze", [loss, b.ints([1])], y)
            return b.nodes
        everything = list(range(rank))
        # divide while dims are kept: X2Paddle writes a one-element constant as shape [1], so a
        # rank-0 quotient would come out of Paddle as [1]
        total = b.reduce("sum", loss, everything, kept, x_type)
        if reduction == "mean":
            if weight is None:  # every element counts once
                count = b.const(float(np.prod(kept)), x_type)
            else:
                count = b.reduce("sum", weight, everything, kept, x_type)
            total = b.op("Div", [total, count])
        b.op("Reshape", [total, b.ints([])], y)
        return b.nodes


def _reduction(node: onnx.NodeProto) -> str:
    value = get_attr(node, "reduction", b"mean")
    return value.decode() if isinstance(value, bytes) else value


LOSS_PATCHES: tuple[Patch, ...] = (DecomposeNegativeLogLikelihoodLoss(),)
