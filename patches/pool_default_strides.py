"""``MaxPool(x)`` without ``strides`` → ``MaxPool(x, strides=[1, ..., 1])`` (ONNX's default made
explicit). Same for AveragePool.

X2Paddle 1.6.0 ``opset_legacy.py::MaxPool``/``AveragePool`` pass a missing ``strides`` on as
``stride=None``, and ``paddle.nn.MaxPool2D(stride=None)`` uses ``stride = kernel_size``. No
error is raised: the converted model silently computes a different (smaller) output, or
fails later on a shape mismatch. ONNX's default stride is 1 along each axis.
"""
from __future__ import annotations

import onnx

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr, set_attrs


class PoolDefaultStrides(Patch):
    name = "pool_default_strides"
    op_types = ("MaxPool", "AveragePool")

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if get_attr(node, "strides") is not None:
            return MatchResult.fail("strides already given")
        if not get_attr(node, "kernel_shape"):
            return MatchResult.fail("no kernel_shape attribute")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        set_attrs(new, strides=[1] * len(get_attr(node, "kernel_shape")))
        return [new]
