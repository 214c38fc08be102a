"""``Constant(value=±inf, one element)`` → an initializer holding ±inf (shape kept; a rank-0
constant becomes ``Squeeze(initializer[1], axes=[0])``).

X2Paddle 1.6.0 ``opset_legacy.py::Constant`` turns any one-element constant into
``paddle.full(shape=[1], fill_value=...)`` and writes an infinite value as the *string*
``'-inf'``; Paddle 3 rejects it when X2Paddle saves the inference model: ``TypeError: (InvalidType)
full(): argument (position 2) must be double, but got str``. The TorchScript exporter writes
such constants for ``masked_fill(mask, float("-inf"))`` (attention masks: bridge's plain-
attention export of ``scaled_dot_product_attention``, Hugging Face models). An initializer of
rank >= 1 reaches Paddle as a parameter holding the real value. (A rank-0 *initializer* with
±inf has the same problem in ``create_parameter``; it is not a node, so this patch does not
see it.)
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr


class ConstantInfinity(Patch):
    name = "constant_infinity"
    op_types = ("Constant",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        value = get_attr(node, "value")
        if value is None:
            return MatchResult.fail("no tensor 'value' attribute")
        array = numpy_helper.to_array(value)
        if array.size != 1:
            return MatchResult.fail(f"{array.size} elements (X2Paddle stores those as parameters)")
        if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
            return MatchResult.fail("value is finite")
        if array.ndim == 0 and ctx.opset < 13:
            return MatchResult.fail(f"rank-0 value at opset {ctx.opset} (written for Squeeze with input axes)")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        array = numpy_helper.to_array(get_attr(node, "value"))
        out = node.output[0]
        if array.ndim >= 1:
            self._add_initializer(ctx, array, out)
            return []
        stored = ctx.fresh_name(f"{out}_1d")
        self._add_initializer(ctx, array.reshape(1), stored)
        axes, const = ctx.int64_constant(f"{node.name or out}_axis0", [0])
        return [const, helper.make_node("Squeeze", [stored, axes], [out], name=ctx.fresh_name(f"{node.name}_squeeze"))]

    @staticmethod
    def _add_initializer(ctx: PatchContext, array: np.ndarray, name: str) -> None:
        tensor = numpy_helper.from_array(array, name)
        ctx.model.graph.initializer.append(tensor)
        ctx.initializers[name] = tensor
