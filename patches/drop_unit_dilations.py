"""``MaxPool(x, dilations=[1, ..., 1])`` → ``MaxPool(x)`` (the attribute's default). Same for
AveragePool.

X2Paddle 1.6.0 ``op_mapper/onnx2paddle/opset_legacy.py::MaxPool`` asserts the attribute is
absent, even when it is all ones: ``AssertionError: only dilations = 0 is supported``
(X2Paddle issue #1108), reported as "convert failed node:..., op_type is MaxPool". Both
torch exporters write ``dilations`` on every pool, so every exported ResNet and the seed's
SeqNet hit it. Dilations other than 1 are left alone: X2Paddle cannot map those at all.
"""
from __future__ import annotations

import onnx

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr, set_attrs


class DropUnitDilations(Patch):
    name = "drop_unit_dilations"
    op_types = ("MaxPool", "AveragePool")

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        dilations = get_attr(node, "dilations")
        if dilations is None:
            return MatchResult.fail("no dilations attribute")
        if any(d != 1 for d in dilations):
            return MatchResult.fail(f"dilations {list(dilations)} are not all ones")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        set_attrs(new, dilations=None)
        return [new]
