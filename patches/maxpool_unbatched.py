"""``MaxPool(x: rank k+1, kernel k-D)`` → ``Squeeze(MaxPool(Unsqueeze(x, 0)), 0)``, or a
(k-1)-D pool on ``x`` when that is exactly equivalent. Same for AveragePool.

torch pools accept an unbatched input (``nn.MaxPool2d((1, 200))`` on ``(C, H, W)``), and the
TorchScript exporter (torch 2.13, ``dynamo=False``) writes that as an ONNX pool whose input
has rank ``len(kernel_shape) + 1``. That is invalid ONNX: ``onnx.checker`` (full_check) and
ONNX Runtime reject it ("Attribute dilations has incorrect size"), and X2Paddle 1.6.0 dies in
``ONNXDecoder`` with ``KeyError: 0`` (``collect_value_infos``) or builds the wrong
``paddle.nn.MaxPoolND`` (it picks N from the kernel length, never the input rank).

The unbatched form treats the first axis as channels, so the kernel's first dim pools over
it too: ``MaxPool2d((2, 4))`` on ``(A, B, L)`` pools across B (pairs of rows). When that first
dim is a no-op (kernel 1, stride 1, dilation 1, no padding) the pool is exactly a (k-1)-D pool
of ``x`` read as ``(N=A, C=B, spatial...)``, which every backend handles natively.
"""
from __future__ import annotations

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr, set_attrs


class MaxPoolUnbatched(Patch):
    name = "maxpool_unbatched"
    op_types = ("MaxPool", "AveragePool")

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        kernel = get_attr(node, "kernel_shape")
        if not kernel:
            return MatchResult.fail("no kernel_shape attribute")
        rank = ctx.rank(node.input[0])
        if rank is None:
            return MatchResult.fail(f"rank of input {node.input[0]!r} is unknown")
        if rank == len(kernel) + 2:
            return MatchResult.fail(f"input rank {rank} is the batched form for a {len(kernel)}-D kernel")
        if rank != len(kernel) + 1:
            return MatchResult.fail(f"input rank {rank} does not fit a {len(kernel)}-D kernel")
        if len(node.output) > 1 and node.output[1]:
            return MatchResult.fail("MaxPool Indices output is used")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        if self._first_dim_is_noop(node):
            return [self._drop_first_dim(node)]
        return self._add_batch_axis(ctx, node)

    @staticmethod
    def _first_dim_is_noop(node: onnx.NodeProto) -> bool:
        kernel = get_attr(node, "kernel_shape")
        k = len(kernel)
        strides = get_attr(node, "strides") or [1] * k
        dilations = get_attr(node, "dilations") or [1] * k
        pads = get_attr(node, "pads") or [0] * (2 * k)
        auto_pad = get_attr(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        return (
            k >= 2
            and kernel[0] == 1
            and strides[0] == 1
            and dilations[0] == 1
            and pads[0] == 0
            and pads[k] == 0
            and auto_pad in ("NOTSET", "VALID")
        )

    @staticmethod
    def _drop_first_dim(node: onnx.NodeProto) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        kernel = get_attr(node, "kernel_shape")
        k = len(kernel)
        strides = get_attr(node, "strides")
        dilations = get_attr(node, "dilations")
        pads = get_attr(node, "pads")
        set_attrs(
            new,
            kernel_shape=list(kernel[1:]),
            strides=list(strides[1:]) if strides else None,
            dilations=list(dilations[1:]) if dilations else None,
            pads=list(pads[1:k]) + list(pads[k + 1:]) if pads else None,
        )
        return new

    @staticmethod
    def _add_batch_axis(ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        x, y = node.input[0], node.output[0]
        x4 = ctx.fresh_name(f"{x}_batched")
        y4 = ctx.fresh_name(f"{y}_batched")
        nodes: list[onnx.NodeProto] = []
        if ctx.opset >= 13:  # Unsqueeze/Squeeze take axes as an input from opset 13
            axes, const = ctx.int64_constant(f"{node.name or y}_axis0", [0])
            nodes.append(const)
            unsqueeze = helper.make_node("Unsqueeze", [x, axes], [x4], name=ctx.fresh_name(f"{node.name}_unsqueeze"))
            squeeze = helper.make_node("Squeeze", [y4, axes], [y], name=ctx.fresh_name(f"{node.name}_squeeze"))
        else:
            unsqueeze = helper.make_node("Unsqueeze", [x], [x4], axes=[0], name=ctx.fresh_name(f"{node.name}_unsqueeze"))
            squeeze = helper.make_node("Squeeze", [y4], [y], axes=[0], name=ctx.fresh_name(f"{node.name}_squeeze"))
        pool = onnx.NodeProto()
        pool.CopyFrom(node)
        del pool.input[:]
        pool.input.append(x4)
        del pool.output[:]
        pool.output.append(y4)
        return nodes + [unsqueeze, pool, squeeze]
