"""Graph rewrites for what X2Paddle 1.6.0 cannot take, one per file, and the X2Paddle shims.

``DEFAULT_PATCHES`` is the one ordered list the patch stage applies.
"""
from __future__ import annotations

import onnx

from bridge.patches._base import (
    Declined,
    Firing,
    MatchResult,
    Patch,
    PatchContext,
    PatchReport,
    count_diff,
    op_counts,
)
from bridge.patches.cast_unsupported_dtypes import CastUnsupportedDtypes
from bridge.patches.castlike_to_cast import CastLikeToCast
from bridge.patches.constant_infinity import ConstantInfinity
from bridge.patches.decompose_activations import ACTIVATION_PATCHES
from bridge.patches.decompose_attention import ATTENTION_PATCHES
from bridge.patches.decompose_indexing import INDEXING_PATCHES
from bridge.patches.decompose_losses import LOSS_PATCHES
from bridge.patches.decompose_math import MATH_PATCHES
from bridge.patches.decompose_normalization import NORMALIZATION_PATCHES
from bridge.patches.drop_unit_dilations import DropUnitDilations
from bridge.patches.flatten_dynamic_dims import FlattenDynamicDims
from bridge.patches.gru_unroll import GruUnroll
from bridge.patches.lstm_initial_states import LstmInitialStates
from bridge.patches.maxpool_dilated import MaxPoolDilated
from bridge.patches.maxpool_unbatched import MaxPoolUnbatched
from bridge.patches.opset_fit import OpsetFit
from bridge.patches.pool_default_strides import PoolDefaultStrides
from bridge.patches.resize_half_pixel import ResizeHalfPixel
from bridge.patches.shape_start_end import ShapeStartEnd
from bridge.patches.softmax_default_axis import SoftmaxDefaultAxis
from bridge.patches.sum_variadic import SumVariadic

DEFAULT_PATCHES: tuple[Patch, ...] = (
    # First: it makes the graph valid ONNX again (it keeps the pool's other attributes,
    # trimmed to the new kernel rank), so the patches below see ordinary pools.
    MaxPoolUnbatched(),
    # After maxpool_unbatched, which can leave all-ones dilations on the rewritten pool.
    DropUnitDilations(),
    # After maxpool_unbatched (ordinary pools) and drop_unit_dilations (what is left has real
    # dilations): X2Paddle and Paddle have no dilated max pool.
    MaxPoolDilated(),
    PoolDefaultStrides(),
    SoftmaxDefaultAxis(),
    # The rest touch disjoint op types and do not depend on each other's output.
    LstmInitialStates(),
    GruUnroll(),
    # Before constant_infinity: it writes one-element -inf Constants (attention bias), which
    # that patch turns into what X2Paddle can load.
    *ATTENTION_PATCHES,
    ConstantInfinity(),
    FlattenDynamicDims(),
    ResizeHalfPixel(),
    CastLikeToCast(),
    SumVariadic(),
    ShapeStartEnd(),
    # Decompositions of ops X2Paddle 1.6.0 does not map into ops it maps (several rewrite
    # classes per file, one per op or op family). Last: they write only ops that no patch
    # above rewrites, so nothing above needs to see their output.
    *ACTIVATION_PATCHES,
    *MATH_PATCHES,
    *NORMALIZATION_PATCHES,
    *INDEXING_PATCHES,
    *LOSS_PATCHES,
    # After the decompositions, which may write comparisons of their own: int16/uint16
    # comparisons on int32 copies (Paddle has no kernels for them).
    CastUnsupportedDtypes(),
    # Last: it lowers the model to opset 15 once every node has an opset-15 form, which the
    # decompositions above can create (ops newer than 15 gone) and whose forms (ReduceMean
    # with an axes input at 18+) it rewrites.
    OpsetFit(),
)

PATCHES_BY_NAME = {p.name: p for p in DEFAULT_PATCHES}


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    # The graph's node list is rebuilt below; keep no reference into the old one.
    new = onnx.NodeProto()
    new.CopyFrom(node)
    return new


MAX_PASSES = 16  # per patch; each pass is one walk over the graph


def _apply_once(patch: Patch, model: onnx.ModelProto, ctx: PatchContext, report: PatchReport) -> tuple[list[Declined], bool]:
    """One walk of ``patch`` over the graph; rewrites in place, returns (declines, fired)."""
    new_nodes: list[onnx.NodeProto] = []
    declined: list[Declined] = []
    fired = False
    for node in model.graph.node:
        if node.op_type not in patch.op_types:
            new_nodes.append(_copy(node))
            continue
        result: MatchResult = patch.check(ctx, node)
        if not result.ok:
            declined.append(Declined(patch.name, node.name, node.op_type, result.reason))
            new_nodes.append(_copy(node))
            continue
        new_nodes.extend(patch.rewrite(ctx, node))
        report.fired.append(Firing(patch.name, node.name, node.op_type))
        fired = True
    if fired:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        ctx.refresh_shapes()
    return declined, fired


def apply_patches(
    model: onnx.ModelProto, patches: tuple[Patch, ...] = DEFAULT_PATCHES
) -> tuple[onnx.ModelProto, PatchReport]:
    """Apply ``patches`` in order to a copy of ``model``; the input is not modified."""
    patched = onnx.ModelProto()
    patched.CopyFrom(model)
    report = PatchReport(op_counts_before=op_counts(model))
    ctx = PatchContext(patched)
    counts = report.op_counts_before
    for patch in patches:
        firings = len(report.fired)
        # A patch runs until it stops firing: a node it declined for want of a shape (inference
        # stops at the first invalid node, e.g. an unbatched pool upstream) may match once the
        # rewrite before it made the graph valid. Only the last pass's declines are reported.
        for _ in range(MAX_PASSES):
            declined, fired = _apply_once(patch, patched, ctx, report)
            if not fired:
                break
        report.declined.extend(declined)
        if len(report.fired) > firings:  # the op-count diff this patch alone made
            after = op_counts(patched)
            if count_diff(counts, after):
                report.op_diff_by_patch[patch.name] = count_diff(counts, after)
            counts = after
    report.op_counts_after = op_counts(patched)
    return patched, report


__all__ = ["DEFAULT_PATCHES", "PATCHES_BY_NAME", "Patch", "PatchReport", "apply_patches"]
