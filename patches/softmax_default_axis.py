"""``Softmax``/``LogSoftmax`` without ``axis`` at opset ≥ 13 → the same op with ``axis = -1``
written out (ONNX's default from opset 13).

X2Paddle 1.6.0 maps both through ``directly_map`` (``op_mapper/onnx2paddle/opset_legacy.py``,
``'Softmax': ['paddle.nn.Softmax', dict(axis='axis'), dict(axis=1)]``, LogSoftmax alike), whose
default is the opset < 13 one, ``axis=1``, whatever the model's opset: the model converts and
normalizes over the wrong axis (ONNX's ``test_softmax_default_axis``: every element outside
tolerance; Attention's function body, ``test_attention_*_expanded``: NaN where a masked
position is -inf in every head). Below opset 13 the default 1 is what X2Paddle writes."""
from __future__ import annotations

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr


class SoftmaxDefaultAxis(Patch):
    name = "softmax_default_axis"
    op_types = ("Softmax", "LogSoftmax")

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        if get_attr(node, "axis") is not None:
            return MatchResult.fail("axis given")
        if ctx.opset < 13:
            return MatchResult.fail(f"opset {ctx.opset}: the default axis 1 is X2Paddle's")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.attribute.append(helper.make_attribute("axis", -1))
        return [new]
