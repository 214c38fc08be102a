"""Activations X2Paddle 1.6.0 has no mapping for, rewritten into ones it maps.

Each class is one rewrite. Without them X2Paddle's op checker lists the op and raises
``Exception: Model is not supported yet.``; bridge's convert stage refuses the model first with
``UnsupportedModel: node '...' (Selu): X2Paddle 1.6.0 has no mapping for op type Selu``. All
of them need a float input (float16/32/64): constants are written in the input's type, and
ONNX defines these ops on floats only. X2Paddle writes a one-element constant as
``paddle.full(shape=[1])``, so a rank-0 input comes out of Paddle with shape [1].
"""
from __future__ import annotations

import math

import onnx

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr
from bridge.patches._decompose import Builder, elem_type, require_float


class _FloatUnary(Patch):
    """A one-input activation on a float tensor."""

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        reason = require_float(ctx, node.input[0])
        return MatchResult.fail(reason) if reason else MATCH


class DecomposeSelu(_FloatUnary):
    """``Selu(x, alpha, gamma)`` → ``Mul(Elu(x, alpha), gamma)`` (Elu is X2Paddle's
    ``paddle.nn.functional.elu``); ONNX's defaults alpha 1.6732632, gamma 1.0507010."""

    name = "decompose_selu"
    op_types = ("Selu",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        # Selu exists from opset 6, but Mul broadcasts (the scalar gamma) only from 7 (6 wants
        # broadcast=1, and ONNX Runtime has no Mul-6 kernel: "Could not find an implementation
        # for Mul(6)"); X2Paddle 1.6.0 maps opset 7 on. Found by tests/test_fuzz_patches.py.
        if ctx.opset < 7:
            return MatchResult.fail(f"opset {ctx.opset}: Mul broadcasts from opset 7")
        return super().check(ctx, node)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        alpha = get_attr(node, "alpha", 1.67326319217681884765625)
        gamma = get_attr(node, "gamma", 1.05070102214813232421875)
        elu = b.op("Elu", [node.input[0]], alpha=alpha)
        b.op("Mul", [elu, b.const(gamma, elem_type(ctx, node.input[0]))], node.output[0])
        return b.nodes


class DecomposeCelu(_FloatUnary):
    """``Celu(x, alpha)`` → ``Mul(Elu(Div(x, alpha), 1), alpha)`` (``Elu(x, 1)`` when alpha
    is 1): max(0, x) + min(0, alpha·(exp(x/alpha) − 1)) is alpha·Elu(x/alpha)."""

    name = "decompose_celu"
    op_types = ("Celu",)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        alpha = get_attr(node, "alpha", 1.0)
        if alpha == 1.0:
            b.op("Elu", [node.input[0]], node.output[0], alpha=1.0)
            return b.nodes
        dtype = elem_type(ctx, node.input[0])
        scaled = b.op("Div", [node.input[0], b.const(alpha, dtype)])
        elu = b.op("Elu", [scaled], alpha=1.0)
        b.op("Mul", [elu, b.const(alpha, dtype)], node.output[0])
        return b.nodes


class DecomposeMish(_FloatUnary):
    """``Mish(x)`` → ``Mul(x, Tanh(Softplus(x)))``."""

    name = "decompose_mish"
    op_types = ("Mish",)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        soft = b.op("Softplus", [node.input[0]])
        b.op("Mul", [node.input[0], b.op("Tanh", [soft])], node.output[0])
        return b.nodes


class DecomposeHardSwish(_FloatUnary):
    """``HardSwish(x)`` → ``Mul(x, HardSigmoid(x, alpha=1/6, beta=0.5))``, the ONNX
    definition x·max(0, min(1, x/6 + 0.5))."""

    name = "decompose_hardswish"
    op_types = ("HardSwish",)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        gate = b.op("HardSigmoid", [node.input[0]], alpha=1.0 / 6.0, beta=0.5)
        b.op("Mul", [node.input[0], gate], node.output[0])
        return b.nodes


class DecomposeSwish(_FloatUnary):
    """``Swish(x, alpha)`` (opset 24) → ``Mul(x, Sigmoid(Mul(x, alpha)))`` (no inner Mul when
    alpha is 1, the default)."""

    name = "decompose_swish"
    op_types = ("Swish",)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        alpha = get_attr(node, "alpha", 1.0)
        scaled = x if alpha == 1.0 else b.op("Mul", [x, b.const(alpha, elem_type(ctx, x))])
        b.op("Mul", [x, b.op("Sigmoid", [scaled])], node.output[0])
        return b.nodes


class DecomposeGelu(_FloatUnary):
    """``Gelu(x, approximate="none")`` (opset 20) → ``Mul(Mul(x, Add(Erf(Div(x, √2)), 1)),
    0.5)``, the form X2Paddle's ``onnx_gelu_fuse_pass`` fuses into ``paddle`` gelu;
    ``approximate="tanh"`` → 0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³)))."""

    name = "decompose_gelu"
    op_types = ("Gelu",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        approximate = get_attr(node, "approximate", b"none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
        if approximate not in ("none", "tanh"):
            return MatchResult.fail(f"approximate={approximate!r} (none and tanh only)")
        return super().check(ctx, node)

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x = node.input[0]
        dtype = elem_type(ctx, x)
        approximate = get_attr(node, "approximate", b"none")
        if (approximate.decode() if isinstance(approximate, bytes) else approximate) == "none":
            inner = b.op("Erf", [b.op("Div", [x, b.const(math.sqrt(2.0), dtype)])])
        else:
            cube = b.op("Mul", [b.op("Mul", [x, x]), x])
            poly = b.op("Add", [x, b.op("Mul", [cube, b.const(0.044715, dtype)])])
            inner = b.op("Tanh", [b.op("Mul", [poly, b.const(math.sqrt(2.0 / math.pi), dtype)])])
        one_plus = b.op("Add", [inner, b.const(1.0, dtype)])
        b.op("Mul", [b.op("Mul", [x, one_plus]), b.const(0.5, dtype)], node.output[0])
        return b.nodes


ACTIVATION_PATCHES: tuple[Patch, ...] = (
    DecomposeSelu(), DecomposeCelu(), DecomposeMish(), DecomposeHardSwish(), DecomposeSwish(), DecomposeGelu(),
)
