"""``Sum|Max|Min(x)`` → ``Identity(x)``; ``Sum|Max|Min(x1, x2, ..., xn)`` (n ≥ 3) → a left-to-right
chain of two-input ``Add``/``Max``/``Min`` (``Add(...Add(Add(x1, x2), x3)..., xn)``).

X2Paddle 1.6.0's Sum mapper (``op_mapper/onnx2paddle/opset_legacy.py::OpSet.Sum``) adds the
first two inputs, then for the third input on reads ``get_input_node(node, idx=idx)`` with
``idx`` counting from 0 again: ``Sum(a, b, c)`` becomes ``a + b + a``, silently (onnx's
pytorch-operator ``test_operator_symbolic_override_nested``: max abs diff 2). With one input
it reads input 1, which does not exist: "IndexError: list index out of range"
(``test_sum_one_input``).

Its Max and Min mappers (``OpSet.Max``/``OpSet.Min``, same file) with three or more inputs
assign ``val_x.name = temp_name``: "AttributeError: property 'name' of 'ONNXGraphDataNode'
object has no setter" (``test_max_example``, ``test_min_example``); with one input they emit no
layer at all, and the generated code fails with "UnboundLocalError: cannot access local
variable 'x2paddle_data_0' where it is not associated with a value" (``test_max_one_input``,
``test_min_one_input``). Two-input Max/Min map right (``paddle.maximum``/``paddle.minimum``).

Add, Max and Min broadcast as the variadic forms do (multidirectional), and the chain keeps the
inputs' order. The name ``sum_variadic`` stays (manifests and the README refer to it).
"""
from __future__ import annotations

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext

# The variadic op -> the two-input op its chain is written with.
_BINARY = {"Sum": "Add", "Max": "Max", "Min": "Min"}


class SumVariadic(Patch):
    name = "sum_variadic"
    op_types = tuple(_BINARY)

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
        binary = _BINARY[node.op_type]
        nodes, acc = [], node.input[0]
        for i, term in enumerate(node.input[1:], start=1):
            last = i == len(node.input) - 1
            out = node.output[0] if last else ctx.fresh_name(f"{base}_partial{i}")
            nodes.append(helper.make_node(binary, [acc, term], [out], name=ctx.fresh_name(f"{base}_{binary.lower()}{i}")))
            acc = out
        return nodes
