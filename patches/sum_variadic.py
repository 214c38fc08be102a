"""``Sum(x)`` → ``Identity(x)``; ``Sum(x1, x2, ..., xn)`` (n ≥ 3) → ``Add(...Add(Add(x1, x2), x3)..., xn)``.

X2Paddle 1.6.0's Sum mapper (``op_mapper/onnx2paddle/opset_legacy.py::OpSet.Sum``) adds the
first two inputs, then for the third input on reads ``get_input_node(node, idx=idx)`` with
``idx`` counting from 0 again: ``Sum(a, b, c)`` becomes ``a + b + a``, silently (onnx's
pytorch-operator ``test_operator_symbolic_override_nested``: max abs diff 2). With one input
it reads input 1, which does not exist: "IndexError: list index out of range"
(``test_sum_one_input``). Add broadcasts as Sum does, and adds in the same order.
"""
from __future__ import annotations

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext


class SumVariadic(Patch):
    name = "sum_variadic"
    op_types = ("Sum",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        if len(node.input) == 2:
            return MatchResult.fail("two inputs: X2Paddle maps that right")
        if any(not name for name in node.input):
            return MatchResult.fail("an empty input name")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        base = node.name or node.output[0]
        if len(node.input) == 1:
            return [helper.make_node("Identity", [node.input[0]], list(node.output), name=ctx.fresh_name(f"{base}_identity"))]
        nodes, acc = [], node.input[0]
        for i, term in enumerate(node.input[1:], start=1):
            last = i == len(node.input) - 1
            out = node.output[0] if last else ctx.fresh_name(f"{base}_partial{i}")
            nodes.append(helper.make_node("Add", [acc, term], [out], name=ctx.fresh_name(f"{base}_add{i}")))
            acc = out
        return nodes
