"""``Cmp(a: T, b: T)`` → ``Cmp(Cast(a, to=INT32), Cast(b, to=INT32))`` for the comparisons
(Equal, Greater, Less, GreaterOrEqual, LessOrEqual) on int16 or uint16, which Paddle has no
kernel for.

X2Paddle 1.6.0 maps them (``paddle.equal``, ``paddle.greater_than`` ...) and saves the model,
but Paddle Inference 3.3.1 fails in ``predictor.run()``: ``ValueError: In user code:
InvalidArgumentError: The type of data we are trying to retrieve (int16) does not match the
type of data (int32) currently contained in the container.`` (uint16: "... retrieve (bfloat16)
...": Paddle's uint16 is bfloat16's storage type). Its Python ``copy_from_cpu`` stores an
int16/uint16 feed as int32, which the int16 kernels then refuse; ``cast`` reads the feed as
stored, so a Cast to int32 in front is what makes these feeds usable at all (checked in
tests/test_patch_cast_unsupported_dtypes.py). Exact: every int16 and uint16 value is an int32
value, and a comparison's output is bool, so nothing is cast back.

Arithmetic on int16/uint16 (Add, Sub, Mul, Div, Max, Min, Mod) is left alone: its int16 output
is not something Paddle Inference can hand back (``copy_to_cpu`` reads it as float32), so the
conformance cases that test it are listed in ``bridge/conformance_limits.py``. int8 and uint8
comparisons have Paddle kernels and are left alone too.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext
from bridge.patches.castlike_to_cast import elem_types

COMPARISONS = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")
# Element types Paddle 3.3.1 has no comparison kernel for (and no way to feed as they are).
WIDENED = {TensorProto.INT16: "int16", TensorProto.UINT16: "uint16"}


class CastUnsupportedDtypes(Patch):
    name = "cast_unsupported_dtypes"
    op_types = COMPARISONS

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        if len(node.input) != 2 or not all(node.input):
            return MatchResult.fail(f"{len(node.input)} inputs, expected 2")
        elem = elem_types(ctx).get(node.input[0])
        if elem is None:
            return MatchResult.fail(f"element type of {node.input[0]!r} unknown (shape inference gives none)")
        if elem not in WIDENED:
            return MatchResult.fail(f"element type {TensorProto.DataType.Name(elem)} has a Paddle kernel")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        casts, inputs = [], []
        for name in node.input:
            wide = ctx.fresh_name(f"{name}_int32")
            casts.append(helper.make_node("Cast", [name], [wide], name=ctx.fresh_name(f"{node.name or node.op_type}_cast"),
                                          to=TensorProto.INT32))
            inputs.append(wide)
        compare = onnx.NodeProto()
        compare.CopyFrom(node)
        del compare.input[:]
        compare.input.extend(inputs)
        return [*casts, compare]
