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
    op_counts,
)
from bridge.patches.drop_unit_dilations import DropUnitDilations
from bridge.patches.maxpool_unbatched import MaxPoolUnbatched
from bridge.patches.pool_default_strides import PoolDefaultStrides

DEFAULT_PATCHES: tuple[Patch, ...] = (
    # First: it makes the graph valid ONNX again (it keeps the pool's other attributes,
    # trimmed to the new kernel rank), so the patches below see ordinary pools.
    MaxPoolUnbatched(),
    # After maxpool_unbatched, which can leave all-ones dilations on the rewritten pool.
    DropUnitDilations(),
    PoolDefaultStrides(),
)

PATCHES_BY_NAME = {p.name: p for p in DEFAULT_PATCHES}


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    # The graph's node list is rebuilt below; keep no reference into the old one.
    new = onnx.NodeProto()
    new.CopyFrom(node)
    return new


def apply_patches(
    model: onnx.ModelProto, patches: tuple[Patch, ...] = DEFAULT_PATCHES
) -> tuple[onnx.ModelProto, PatchReport]:
    """Apply ``patches`` in order to a copy of ``model``; the input is not modified."""
    patched = onnx.ModelProto()
    patched.CopyFrom(model)
    report = PatchReport(op_counts_before=op_counts(model))
    ctx = PatchContext(patched)
    for patch in patches:
        new_nodes: list[onnx.NodeProto] = []
        fired = False
        for node in patched.graph.node:
            if node.op_type not in patch.op_types:
                new_nodes.append(_copy(node))
                continue
            result: MatchResult = patch.check(ctx, node)
            if not result.ok:
                report.declined.append(Declined(patch.name, node.name, node.op_type, result.reason))
                new_nodes.append(_copy(node))
                continue
            new_nodes.extend(patch.rewrite(ctx, node))
            report.fired.append(Firing(patch.name, node.name, node.op_type))
            fired = True
        if fired:
            del patched.graph.node[:]
            patched.graph.node.extend(new_nodes)
            ctx.refresh_shapes()
    report.op_counts_after = op_counts(patched)
    return patched, report


__all__ = ["DEFAULT_PATCHES", "PATCHES_BY_NAME", "Patch", "PatchReport", "apply_patches"]
