"""``MaxPool(x, kernel k, strides s, pads p, dilations d ≠ 1)`` → ``Pad(x, p, lowest)``,
then axis by axis ``Max`` (pairwise) of the ``k`` strided ``Slice``s along that axis, one per
kernel tap ``o``: ``Slice(starts=o·d, ends=o·d + (out−1)·s + 1, steps=s)`` (the max over a
box is the max over each axis in turn: ``sum(k)`` slices, not ``prod(k)``).

X2Paddle 1.6.0's MaxPool mapper (``op_mapper/onnx2paddle/opset_legacy.py::OpSet.MaxPool``)
asserts "only dilations = 0 is supported" for any dilation other than 1, and Paddle's
``max_pool*d`` has no dilation (onnx's pytorch-converted ``test_MaxPool1d_stride_padding_dilation``
and ``test_MaxPool2d_stride_padding_dilation``). Padding uses the lowest value of the input's
type instead of -inf (X2Paddle writes ``-inf`` into Python code as a bare name); a window is
never all padding (ONNX requires pads < kernel extent), so the maximum is the same. Declines:
``ceil_mode``, ``auto_pad``, the ``Indices`` output, spatial shapes not static, more than 256
kernel taps over all axes, padding on an input of unknown element type.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext
from bridge.patches._decompose import elem_type

MAX_OFFSETS = 256  # one Slice + Max per tap; onnx's test_MaxPool1d_stride_padding_dilation has 200


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    attr = next((a for a in node.attribute if a.name == name), None)
    return list(attr.ints) if attr is not None else default


def _lowest(ctx: PatchContext, name: str) -> np.ndarray | None:
    """The lowest value of tensor ``name``'s element type, as a scalar of that type (Pad's
    constant_value must have the input's type: float32 on a float16, float64 or int8 pool is
    invalid ONNX, found by tests/test_fuzz_patches.py), or None when the type is unknown."""
    data_type = elem_type(ctx, name)
    if data_type is None:
        return None
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
        info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    except (TypeError, ValueError, KeyError):  # bfloat16/float8 (ml_dtypes): no MaxPool in X2Paddle
        return None
    return np.array(info.min, dtype)


class MaxPoolDilated(Patch):
    name = "maxpool_dilated"
    op_types = ("MaxPool",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        kernel = _ints(node, "kernel_shape", [])
        dilations = _ints(node, "dilations", [1] * len(kernel))
        if not kernel or all(d == 1 for d in dilations):
            return MatchResult.fail("no dilation other than 1")
        if len(node.output) > 1 and node.output[1]:
            return MatchResult.fail("the Indices output is used")
        attrs = {a.name: a for a in node.attribute}
        if "ceil_mode" in attrs and attrs["ceil_mode"].i:
            return MatchResult.fail("ceil_mode=1")
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            return MatchResult.fail(f"auto_pad {attrs['auto_pad'].s.decode()}")
        shape = ctx.shapes.get(node.input[0])
        if shape is None or len(shape) != len(kernel) + 2 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
            return MatchResult.fail(f"spatial shape of {node.input[0]!r} not static: {shape}")
        if sum(kernel) > MAX_OFFSETS:
            return MatchResult.fail(f"{sum(kernel)} kernel taps over all axes (> {MAX_OFFSETS})")
        if self._out_sizes(ctx, node) is None:
            return MatchResult.fail("empty output")
        if any(self._pads(node)) and _lowest(ctx, node.input[0]) is None:
            return MatchResult.fail(f"element type of {node.input[0]!r} unknown (the padding value is written in it)")
        return MATCH

    @staticmethod
    def _pads(node: onnx.NodeProto) -> list[int]:
        return _ints(node, "pads", [0] * 2 * len(_ints(node, "kernel_shape", [])))

    @staticmethod
    def _out_sizes(ctx: PatchContext, node: onnx.NodeProto) -> list[int] | None:
        kernel = _ints(node, "kernel_shape", [])
        n = len(kernel)
        strides, dilations = _ints(node, "strides", [1] * n), _ints(node, "dilations", [1] * n)
        pads = _ints(node, "pads", [0] * 2 * n)
        spatial = ctx.shapes[node.input[0]][2:]
        sizes = [(spatial[i] + pads[i] + pads[n + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
                 for i in range(n)]
        return sizes if all(s > 0 for s in sizes) else None

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        kernel = _ints(node, "kernel_shape", [])
        n = len(kernel)
        strides, dilations = _ints(node, "strides", [1] * n), _ints(node, "dilations", [1] * n)
        pads = _ints(node, "pads", [0] * 2 * n)
        out = self._out_sizes(ctx, node)
        base = node.name or node.output[0]
        nodes: list[onnx.NodeProto] = []
        x = node.input[0]
        if any(pads):
            all_pads = [0, 0, *pads[:n], 0, 0, *pads[n:]]
            lowest = _lowest(ctx, node.input[0])
            padded = ctx.fresh_name(f"{base}_padded")
            if ctx.opset < 11:
                # Pad-2 (dilated MaxPool exists from opset 10): pads and a float32 value as
                # attributes (a float16/float32/float64 pool there; float64's lowest would be -inf)
                value = float(max(lowest, np.finfo(np.float32).min))
                nodes.append(helper.make_node("Pad", [x], [padded], mode="constant", pads=all_pads, value=value,
                                              name=ctx.fresh_name(f"{base}_pad")))
            else:
                pads_name = ctx.fresh_name(f"{base}_pads")
                lowest_name = ctx.fresh_name(f"{base}_lowest")
                ctx.model.graph.initializer.extend([
                    numpy_helper.from_array(np.array(all_pads, np.int64), pads_name),
                    numpy_helper.from_array(lowest, lowest_name),
                ])
                nodes.append(helper.make_node("Pad", [x, pads_name, lowest_name], [padded], mode="constant",
                                              name=ctx.fresh_name(f"{base}_pad")))
            x = padded
        # Max over a box is max over each axis in turn: one axis at a time, sum(k) slices, not prod(k).
        for i in range(n):
            last_axis = i == n - 1
            axes_name, steps_name = ctx.fresh_name(f"{base}_axis{i}"), ctx.fresh_name(f"{base}_step{i}")
            ctx.model.graph.initializer.extend([
                numpy_helper.from_array(np.array([2 + i], np.int64), axes_name),
                numpy_helper.from_array(np.array([strides[i]], np.int64), steps_name),
            ])
            acc = None
            for o in range(kernel[i]):
                start = o * dilations[i]
                starts_name, ends_name = ctx.fresh_name(f"{base}_starts{i}_{o}"), ctx.fresh_name(f"{base}_ends{i}_{o}")
                ctx.model.graph.initializer.extend([
                    numpy_helper.from_array(np.array([start], np.int64), starts_name),
                    numpy_helper.from_array(np.array([start + (out[i] - 1) * strides[i] + 1], np.int64), ends_name),
                ])
                window = ctx.fresh_name(f"{base}_window{i}_{o}")
                nodes.append(helper.make_node("Slice", [x, starts_name, ends_name, axes_name, steps_name], [window],
                                              name=ctx.fresh_name(f"{base}_slice{i}_{o}")))
                if acc is None:
                    acc = window
                    continue
                target = node.output[0] if (last_axis and o == kernel[i] - 1) else ctx.fresh_name(f"{base}_max{i}_{o}")
                nodes.append(helper.make_node("Max", [acc, window], [target], name=ctx.fresh_name(f"{base}_maxof{i}_{o}")))
                acc = target
            x = acc
        if x != node.output[0]:  # a last axis of kernel 1
            nodes.append(helper.make_node("Identity", [x], [node.output[0]], name=ctx.fresh_name(f"{base}_id")))
        return nodes
