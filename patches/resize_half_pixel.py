"""``Resize(x, mode=linear, coordinate_transformation_mode=half_pixel)`` →
``Resize(..., coordinate_transformation_mode=pytorch_half_pixel)`` when every resized output
dim is static and > 1 (where the two modes are the same formula).

X2Paddle 1.6.0 ``opset_legacy.py::_interpolate`` (Resize with ``scales``, 4-D input) maps
``pytorch_half_pixel`` to ``interpolate(align_corners=False, align_mode=0)`` (half-pixel
centres) and every other mode, ``half_pixel`` included, to ``align_corners=True``. No error:
the converted model silently computes a different interpolation (max abs diff ~1e-3 on a
U-Net with ``F.interpolate(scale_factor=2, mode="bilinear")``, which the TorchScript exporter
writes as ``half_pixel``). ONNX defines ``pytorch_half_pixel`` as ``half_pixel`` except that an
output length of 1 maps to coordinate 0, so the rename is exact when no resized dim is 1.
"""
from __future__ import annotations

import onnx

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, constant_value, get_attr, set_attrs


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _resized_lengths(ctx: PatchContext, node: onnx.NodeProto) -> list[int] | None:
    """Output lengths of the dims this Resize changes (scale != 1 or size != input length),
    or None where they cannot be known statically."""
    x_shape = ctx.shapes.get(node.input[0])
    y_shape = ctx.shapes.get(node.output[0])
    scales = constant_value(ctx, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    sizes = constant_value(ctx, node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if scales is not None and scales.size:
        axes = [i for i, s in enumerate(scales.tolist()) if s != 1.0]
        if y_shape is None or any(not isinstance(y_shape[i], int) for i in axes):
            return None
        return [y_shape[i] for i in axes]
    if sizes is not None and sizes.size:
        if x_shape is None:
            return None
        return [int(n) for i, n in enumerate(sizes.tolist()) if x_shape[i] != n]
    return None


class ResizeHalfPixel(Patch):
    name = "resize_half_pixel"
    op_types = ("Resize",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        mode = _text(get_attr(node, "mode", b"nearest"))
        if mode != "linear":
            return MatchResult.fail(f"mode {mode!r} (X2Paddle ignores the coordinate mode for it)")
        coords = _text(get_attr(node, "coordinate_transformation_mode", b"half_pixel"))
        if coords != "half_pixel":
            return MatchResult.fail(f"coordinate_transformation_mode is {coords!r}")
        lengths = _resized_lengths(ctx, node)
        if lengths is None:
            return MatchResult.fail("scales/sizes are not constant, or the resized dims' lengths are unknown")
        if any(n <= 1 for n in lengths):
            return MatchResult.fail(f"a resized dim has output length {min(lengths)}")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        set_attrs(new, coordinate_transformation_mode="pytorch_half_pixel")
        return [new]
