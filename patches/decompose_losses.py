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
        reason = _nll_reason(ctx, node.input[0], node.input[1], _reduction(node))
        return MatchResult.fail(reason) if reason else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, target = node.input[0], node.input[1]
        shape, rank = ctx.shapes[x], ctx.rank(x)
        x_type, t_type = elem_type(ctx, x), elem_type(ctx, target)
        classes = shape[1]
        kept = [shape[0], 1, *shape[2:]]  # the shape after summing over C, dims kept
        target_c = _axes_op(b, "Unsqueeze", target, [1])
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
            _axes_op(b, "Squeeze", loss, [1], y)
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


class DecomposeSoftmaxCrossEntropyLoss(Patch):
    """``SoftmaxCrossEntropyLoss(x[N, C, d...], t, w?; reduction, ignore_index)`` →
    log_prob = ``LogSoftmax(x, axis=1)`` (below opset 13 with d...: C moved last by
    ``Transpose`` and back, since LogSoftmax then flattens everything after its axis), loss =
    ``NegativeLogLikelihoodLoss(log_prob, t, w?)`` with the same attributes, which
    ``decompose_nll_loss`` then rewrites; the optional second output is log_prob.

    X2Paddle 1.6.0 has no mapping for SoftmaxCrossEntropyLoss: bridge refuses the model with
    ``UnsupportedModel: ... X2Paddle 1.6.0 has no mapping for op type
    SoftmaxCrossEntropyLoss`` (X2Paddle itself: ``Exception: Model is not supported yet.``).
    Declines what ``decompose_nll_loss`` would decline, so no NLL node is left behind."""

    name = "decompose_softmax_cross_entropy_loss"
    op_types = ("SoftmaxCrossEntropyLoss",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        reason = _nll_reason(ctx, node.input[0], node.input[1], _reduction(node))
        return MatchResult.fail(reason) if reason else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, rank = node.input[0], ctx.rank(node.input[0])
        log_prob = node.output[1] if len(node.output) > 1 and node.output[1] else None
        if rank == 2 or ctx.opset >= 13:
            log_prob = b.op("LogSoftmax", [x], log_prob, axis=1)
        else:
            last = list(range(rank))
            last[1], last[-1] = rank - 1, 1  # swaps C and the last axis; its own inverse
            moved = b.op("LogSoftmax", [b.op("Transpose", [x], perm=last)], axis=rank - 1)
            log_prob = b.op("Transpose", [moved], log_prob, perm=last)
        inputs = [log_prob, *node.input[1:]]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        b.nodes.append(onnx.helper.make_node(
            "NegativeLogLikelihoodLoss", inputs, [node.output[0]],
            name=ctx.fresh_name(f"{b.base}/NegativeLogLikelihoodLoss"), **attrs))
        return b.nodes


def _nll_reason(ctx: PatchContext, x: str, target: str, reduction: str) -> str | None:
    """None when an NLL loss of scores ``x`` (its shape, [N, C, d...]) can be decomposed, else why not."""
    reason = require_float(ctx, x)
    if reason:
        return reason
    if elem_type(ctx, target) not in (TensorProto.INT32, TensorProto.INT64):
        return f"target '{target}' has element type {type_name(elem_type(ctx, target))}"
    shape = ctx.shapes.get(x)
    if shape is None or len(shape) < 2 or not isinstance(shape[1], int):
        return f"class dim of '{x}' not static (shape {shape})"
    if reduction not in ("none", "sum", "mean"):
        return f"reduction={reduction!r}"
    reason = reduce_reason(ctx, shape, [1], "sum")
    if not reason and reduction != "none":
        reason = reduce_reason(ctx, shape, list(range(len(shape))), "sum")
    if not reason and reduction == "mean" and not all(isinstance(d, int) for d in shape):
        reason = f"shape {shape} not static (the mean's count)"
    return reason


def _axes_op(b: Builder, op_type: str, x: str, axes: list[int], out: str | None = None) -> str:
    """``Unsqueeze``/``Squeeze`` with ``axes`` as the attribute below opset 13 (NLL exists from
    12), as an input from 13."""
    if b.ctx.opset < 13:
        return b.op(op_type, [x], out, axes=axes)
    return b.op(op_type, [x, b.ints(axes)], out)


def _reduction(node: onnx.NodeProto) -> str:
    value = get_attr(node, "reduction", b"mean")
    return value.decode() if isinstance(value, bytes) else value


# SoftmaxCrossEntropyLoss first: it writes the NegativeLogLikelihoodLoss the next one rewrites.
LOSS_PATCHES: tuple[Patch, ...] = (DecomposeSoftmaxCrossEntropyLoss(), DecomposeNegativeLogLikelihoodLoss())
