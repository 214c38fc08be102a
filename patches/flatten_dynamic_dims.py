"""``Flatten(x, axis=a)`` with one dynamic dim in x → ``Reshape(x, [prod(d[:a]), prod(d[a:])])``
with ``-1`` for the group that holds the dynamic dim.

X2Paddle 1.6.0 ``opset_legacy.py::Flatten`` multiplies the decoder's shape entries to get the
target shape, and a dynamic dim is ``-1`` there: ``Flatten(x: [N, 16], axis=2)`` becomes
``paddle.reshape(x, shape=[-16, 1])``, which Paddle refuses while X2Paddle saves the
inference model (``AssertionError: In transformed code: ... paddle.reshape(..., shape=[-16,
1])``, from ``get_attr_shape``), and a wrong shape wherever a product happens to stay valid.
The TorchScript exporter writes such Flattens in Hugging Face attention-mask code. With a
single dynamic dim the ``-1`` of Reshape is exact. The common ``torch.flatten(x, 1)`` on
``[N, C, ...]`` is left alone: there the dynamic dim is alone in its group and X2Paddle's
product is the right ``-1``.
"""
from __future__ import annotations

import math

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr


class FlattenDynamicDims(Patch):
    name = "flatten_dynamic_dims"
    op_types = ("Flatten",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        shape = ctx.shapes.get(node.input[0])
        if shape is None:
            return MatchResult.fail(f"shape of input {node.input[0]!r} is unknown")
        if ctx.opset < 5:
            return MatchResult.fail(f"opset {ctx.opset}: Reshape takes its shape as an input from opset 5")
        axis = get_attr(node, "axis", 1)
        axis = axis + len(shape) if axis < 0 else axis
        if axis == 0:
            return MatchResult.fail("axis 0: X2Paddle writes reshape [1, -1], which is right")
        dynamic = [d for d in shape if not isinstance(d, int) or d < 0]
        if not dynamic:
            return MatchResult.fail("every dim is static: X2Paddle's product is right")
        if len(dynamic) > 1:
            return MatchResult.fail(f"{len(dynamic)} dynamic dims: one -1 cannot stand for them")
        if 0 in shape:
            # Reshape cannot infer -1 beside a zero-sized group ("Invalid Target shape product of
            # 0"; found by tests/test_fuzz_patches.py); the tensor is empty anyway
            return MatchResult.fail("a static dim is 0: Reshape cannot infer -1 beside it")
        if shape[:axis] == dynamic or shape[axis:] == dynamic:
            return MatchResult.fail("the dynamic dim is alone in its group: X2Paddle's product is -1, which is right")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        shape = ctx.shapes[node.input[0]]
        axis = get_attr(node, "axis", 1)
        axis = axis + len(shape) if axis < 0 else axis

        def group(dims) -> int:
            return -1 if any(not isinstance(d, int) or d < 0 for d in dims) else math.prod(dims)

        target, const = ctx.int64_constant(f"{node.name or node.output[0]}_shape", [group(shape[:axis]), group(shape[axis:])])
        reshape = helper.make_node("Reshape", [node.input[0], target], [node.output[0]],
                                   name=ctx.fresh_name(f"{node.name}_reshape"))
        return [const, reshape]
