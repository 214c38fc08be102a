"""Elementwise math X2Paddle 1.6.0 has no mapping for, rewritten into ops it maps.

Each class is one rewrite. Without them X2Paddle's op checker lists the op and raises
``Exception: Model is not supported yet.``; bridge's convert stage refuses the model first with
``UnsupportedModel: node '...' (Sinh): X2Paddle 1.6.0 has no mapping for op type Sinh``.
Constants are written in the input's type; a rank-0 input comes out of Paddle with shape [1]
(X2Paddle writes one-element constants as ``paddle.full(shape=[1])``).

The hyperbolic identities are exact in real arithmetic; in floating point they lose some
relative precision where a difference cancels (``Sinh`` near 0: about eps/|x|, ``Asinh``
and ``Atanh`` near 0) and overflow earlier than a native kernel (``Asinh``/``Acosh`` square x,
so |x| > 1.8e19 in float32 gives inf). Asin, Acos and Atan have no exact form in mapped ops
(Paddle's ``atan`` is reachable only through an ONNX ``Atan`` X2Paddle does not map) and
stay unmapped.
"""
from __future__ import annotations

import onnx

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext
from bridge.patches._decompose import Builder, elem_type, require_float


class _FloatUnary(Patch):
    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        reason = require_float(ctx, node.input[0])
        return MatchResult.fail(reason) if reason else MATCH


class DecomposeHyperbolic(_FloatUnary):
    """``Sinh(x)`` → ``Mul(Sub(Exp(x), Exp(Neg(x))), 0.5)``; ``Cosh(x)`` → the same with
    ``Add``; ``Tan(x)`` → ``Div(Sin(x), Cos(x))``."""

    name = "decompose_hyperbolic"
    op_types = ("Sinh", "Cosh", "Tan")

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, y = node.input[0], node.output[0]
        if node.op_type == "Tan":
            b.op("Div", [b.op("Sin", [x]), b.op("Cos", [x])], y)
            return b.nodes
        pos, neg = b.op("Exp", [x]), b.op("Exp", [b.op("Neg", [x])])
        both = b.op("Sub" if node.op_type == "Sinh" else "Add", [pos, neg])
        b.op("Mul", [both, b.const(0.5, elem_type(ctx, x))], y)
        return b.nodes


class DecomposeInverseHyperbolic(_FloatUnary):
    """``Asinh(x)`` → ``Sign(x)·Log(|x| + Sqrt(x² + 1))`` (odd, so no cancellation for x < 0);
    ``Acosh(x)`` → ``Log(x + Sqrt((x − 1)(x + 1)))`` (NaN below 1, as ONNX);
    ``Atanh(x)`` → ``0.5·Log((1 + x) / (1 − x))``."""

    name = "decompose_inverse_hyperbolic"
    op_types = ("Asinh", "Acosh", "Atanh")

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, y = node.input[0], node.output[0]
        one = b.const(1.0, elem_type(ctx, x))
        if node.op_type == "Asinh":
            root = b.op("Sqrt", [b.op("Add", [b.op("Mul", [x, x]), one])])
            magnitude = b.op("Log", [b.op("Add", [b.op("Abs", [x]), root])])
            b.op("Mul", [b.op("Sign", [x]), magnitude], y)
        elif node.op_type == "Acosh":
            root = b.op("Sqrt", [b.op("Mul", [b.op("Sub", [x, one]), b.op("Add", [x, one])])])
            b.op("Log", [b.op("Add", [x, root])], y)
        else:
            ratio = b.op("Div", [b.op("Add", [one, x]), b.op("Sub", [one, x])])
            b.op("Mul", [b.op("Log", [ratio]), b.const(0.5, elem_type(ctx, x))], y)
        return b.nodes


class DecomposeRound(_FloatUnary):
    """``Round(x)`` (half to even) → ``f + Where(d > 0.5, 1, Where(d == 0.5, f mod 2, 0))``
    with f = ``Floor(x)``, d = x − f and f mod 2 = f − 2·``Floor(f·0.5)``. ±inf and NaN pass
    through (d is NaN there, both tests false)."""

    name = "decompose_round"
    op_types = ("Round",)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        dtype = elem_type(ctx, x)
        half, zero, one, two = (b.const(v, dtype) for v in (0.5, 0.0, 1.0, 2.0))
        floor = b.op("Floor", [x])
        frac = b.op("Sub", [x, floor])
        parity = b.op("Sub", [floor, b.op("Mul", [b.op("Floor", [b.op("Mul", [floor, half])]), two])])
        tie = b.op("Where", [b.op("Equal", [frac, half]), parity, zero])
        step = b.op("Where", [b.op("Greater", [frac, half]), one, tie])
        b.op("Add", [floor, step], node.output[0])
        return b.nodes


class DecomposeIsNaN(_FloatUnary):
    """``IsNaN(x)`` → ``Not(Equal(x, x))`` (NaN is the one value not equal to itself)."""

    name = "decompose_isnan"
    op_types = ("IsNaN",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        # IsNaN exists from opset 9, Equal on floats from 11 (7-10: bool and ints only).
        # Found by tests/test_fuzz_patches.py.
        if ctx.opset < 11:
            return MatchResult.fail(f"opset {ctx.opset}: Equal takes floats from opset 11")
        return super().check(ctx, node)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        b.op("Not", [b.op("Equal", [node.input[0], node.input[0]])], node.output[0])
        return b.nodes


class DecomposeMean(Patch):
    """``Mean(x1, ..., xn)`` → ``Div(Add(...Add(x1, x2)..., xn), n)`` (``Identity`` for one
    input). Not ``Sum``: X2Paddle 1.6.0's ``Sum`` adds its first input again for every input
    after the second."""

    name = "decompose_mean"
    op_types = ("Mean",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if ctx.opset < 7:  # Add and Div broadcast from opset 7 (the count is a scalar)
            return MatchResult.fail(f"opset {ctx.opset}: Add/Div broadcast from opset 7")
        for name in node.input:
            reason = require_float(ctx, name)
            if reason:
                return MatchResult.fail(reason)
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        if len(node.input) == 1:
            b.op("Identity", [node.input[0]], node.output[0])
            return b.nodes
        total = b.add_all(list(node.input))
        b.op("Div", [total, b.const(len(node.input), elem_type(ctx, node.input[0]))], node.output[0])
        return b.nodes


MATH_PATCHES: tuple[Patch, ...] = (
    DecomposeHyperbolic(), DecomposeInverseHyperbolic(), DecomposeRound(), DecomposeIsNaN(), DecomposeMean(),
)
