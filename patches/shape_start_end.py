"""``Shape`` with ``start``/``end`` (opset ≥ 15) → ``Shape`` then ``Slice`` over axis 0.

X2Paddle 1.6.0 maps Shape (``op_mapper/onnx2paddle/opset_legacy.py``, ``OpSet.Shape``) to
``paddle.shape(x)`` and reads neither attribute: the model converts and returns the whole shape
(ONNX's ``test_shape_start_1``: ``output 'y': shape [3] != [2]``). Shape's own clamping of
``start``/``end`` into ``[0, rank]`` (negatives counted from the end) is Slice's on a rank-long
vector, so the rewrite is exact; ``end`` absent is "to the end"."""
from __future__ import annotations

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr

_TO_THE_END = 2**63 - 1  # Slice clamps it to the dimension


class ShapeStartEnd(Patch):
    name = "shape_start_end"
    op_types = ("Shape",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        if get_attr(node, "start") is None and get_attr(node, "end") is None:
            return MatchResult.fail("no start or end")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        start = get_attr(node, "start", 0)
        end = get_attr(node, "end", _TO_THE_END)
        base = node.name or node.output[0]
        whole = ctx.fresh_name(f"{base}_whole_shape")
        starts, starts_node = ctx.int64_constant(f"{base}_start", [start])
        ends, ends_node = ctx.int64_constant(f"{base}_end", [end])
        axes, axes_node = ctx.int64_constant(f"{base}_axis", [0])
        shape = helper.make_node("Shape", [node.input[0]], [whole], name=ctx.fresh_name(f"{base}_shape"))
        cut = helper.make_node("Slice", [whole, starts, ends, axes], [node.output[0]], name=node.name)
        return [starts_node, ends_node, axes_node, shape, cut]
