"""Op mappers X2Paddle 1.6.0 lacks, for ONNX ops Paddle 3.3.1 has a kernel for: GridSample,
AffineGrid, ScatterElements, Scatter, Compress, Col2Im, MaxUnpool, DeformConv, LpPool,
ReverseSequence, CenterCropPad.

X2Paddle 1.6.0 refuses each of these (``ONNXOpMapper.op_checker``: "========== GridSample
============" then ``Exception: Model is not supported yet.``). Its mapper looks an op up as
a method of the opset class (``hasattr(self.opset, node.layer_type)``, every ``OpSet7``..
``OpSet15`` derives from ``opset_legacy.OpSet``), so ``install()`` adds one method per op
to ``OpSet``: every opset gets it, and bridge's ``stages.convert.mapped_op_types`` (which
reads the same class) counts it as mapped. ONNX opsets above 15 run through ``OpSet15``;
these mappers read the attributes of every version (GridSample's ``linear``/``cubic``
spellings of opset 20 included).

A form Paddle cannot compute exactly is declined with ``ValueError(reason)``; X2Paddle's
``print_mapping_info`` turns that into "convert failed node", which bridge reports as
``UnsupportedModel`` naming the node and this reason (never wrong numbers).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

def _q(text: str) -> str:
    """A string attribute as X2Paddle's code generator writes it (``"{}={}".format``)."""
    return repr(text)


def _const(node) -> np.ndarray | None:
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    value = _const_weight_or_none(node)
    return None if value is None else np.asarray(value)


def _input(self, node, onnx_idx: int):
    """The ONNX input at position ``onnx_idx`` (X2Paddle's ``node.inputs`` skips empty
    optional inputs, so its index shifts), or None when absent."""
    names = list(node.layer.input)
    if onnx_idx >= len(names) or not names[onnx_idx]:
        return None
    return self.graph.get_input_node(node, idx=sum(1 for n in names[:onnx_idx] if n), copy=True)


def _static_shape(val, what: str) -> list[int]:
    shape = list(val.out_shapes[0]) if val.out_shapes and val.out_shapes[0] is not None else []
    if not shape or any(d is None or int(d) < 0 for d in shape):
        raise ValueError(f"{what} needs a static input shape, got {shape}")
    return [int(d) for d in shape]


def _symmetric(pads: list[int], op: str) -> list[int]:
    half = len(pads) // 2
    if list(pads[:half]) != list(pads[half:]):
        raise ValueError(f"{op} pads {list(pads)} are asymmetric: Paddle's kernel pads both sides alike")
    return list(pads[:half])


# --------------------------------------------------------------------------- mappers

_GRID_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest"}


def GridSample(self, node) -> None:
    x = self.graph.get_input_node(node, idx=0, copy=True)
    grid = self.graph.get_input_node(node, idx=1, copy=True)
    mode = node.get_attr("mode", "bilinear")
    if mode not in _GRID_MODES:  # opset 16 'bicubic', 20 'cubic'
        raise ValueError(f"GridSample mode {mode!r}: Paddle's grid_sample has only bilinear and nearest")
    padding_mode = node.get_attr("padding_mode", "zeros")
    self.paddle_graph.add_layer(
        "paddle.nn.functional.grid_sample", inputs={"x": x.name, "grid": grid.name}, outputs=[node.name],
        mode=_q(_GRID_MODES[mode]), padding_mode=_q(padding_mode),
        align_corners=bool(node.get_attr("align_corners", 0)))


def AffineGrid(self, node) -> None:
    theta = self.graph.get_input_node(node, idx=0, copy=True)
    size = self.graph.get_input_node(node, idx=1, copy=True)
    align = bool(node.get_attr("align_corners", 0))
    value = _const(size)
    inputs = {"theta": theta.name}
    attrs = {"align_corners": align}
    if value is not None:
        attrs["out_shape"] = [int(v) for v in value.reshape(-1)]
    elif len(theta.out_shapes[0] or []) == 3 and theta.out_shapes[0][1] == 2:
        # Paddle Inference's AffineGrid4DKernel dies of SIGFPE on a shape tensor (int32 or int64).
        raise ValueError("AffineGrid 2-D with a computed size: Paddle Inference's affine_grid crashes on it "
                         "(SIGFPE); give the size as a constant")
    else:
        inputs["out_shape"] = size.name
    self.paddle_graph.add_layer("paddle.nn.functional.affine_grid", inputs=inputs, outputs=[node.name], **attrs)


# ONNX reduction -> put_along_axis reduce; ONNX combines with the data element (include_self).
_SCATTER_REDUCE = {"none": "assign", "add": "add", "mul": "mul", "min": "amin", "max": "amax"}


def ScatterElements(self, node) -> None:
    data = self.graph.get_input_node(node, idx=0, copy=True)
    indices = self.graph.get_input_node(node, idx=1, copy=True)
    updates = self.graph.get_input_node(node, idx=2, copy=True)
    reduction = node.get_attr("reduction", "none")
    if reduction not in _SCATTER_REDUCE:
        raise ValueError(f"{node.layer_type} reduction {reduction!r} is not one ONNX defines")
    rank = len(data.out_shapes[0]) if data.out_shapes and data.out_shapes[0] is not None else None
    axis = int(node.get_attr("axis", 0))
    if axis < 0:
        if rank is None:
            raise ValueError(f"{node.layer_type} axis {axis} needs the input rank, which is unknown")
        axis += rank
    # ONNX allows negative indices (counted from the end); put_along_axis does not.
    base = node.name + "_scatter"
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": indices.name}, outputs=[base + "_idx"], dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.shape", inputs={"input": data.name}, outputs=[base + "_shape"])
    self.paddle_graph.add_layer("paddle.slice", inputs={"input": base + "_shape"}, outputs=[base + "_dim"],
                                axes=[0], starts=[axis], ends=[axis + 1])
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": base + "_dim"}, outputs=[base + "_dim"], dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.remainder", inputs={"x": base + "_idx", "y": base + "_dim"},
                                outputs=[base + "_idx"])
    self.paddle_graph.add_layer(
        "paddle.put_along_axis", inputs={"arr": data.name, "indices": base + "_idx", "values": updates.name},
        outputs=[node.name], axis=axis, reduce=_q(_SCATTER_REDUCE[reduction]), include_self=True, broadcast=False)


def Compress(self, node) -> None:
    x = self.graph.get_input_node(node, idx=0, copy=True)
    cond = self.graph.get_input_node(node, idx=1, copy=True)
    axis = node.get_attr("axis")
    base = node.name + "_compress"
    source = x.name
    if axis is None:  # ONNX: select from the flattened input
        self.paddle_graph.add_layer("paddle.reshape", inputs={"x": x.name}, outputs=[base + "_flat"], shape=[-1])
        source, axis = base + "_flat", 0
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": cond.name}, outputs=[base + "_cond"], dtype=_q("bool"))
    self.paddle_graph.add_layer("paddle.nonzero", inputs={"x": base + "_cond"}, outputs=[base + "_idx"])
    self.paddle_graph.add_layer("paddle.reshape", inputs={"x": base + "_idx"}, outputs=[base + "_idx"], shape=[-1])
    self.paddle_graph.add_layer("paddle.index_select", inputs={"x": source, "index": base + "_idx"},
                                outputs=[node.name], axis=int(axis))


def Col2Im(self, node) -> None:
    x = self.graph.get_input_node(node, idx=0, copy=True)
    image_shape = _const(self.graph.get_input_node(node, idx=1, copy=True))
    block_shape = _const(self.graph.get_input_node(node, idx=2, copy=True))
    if image_shape is None or block_shape is None:
        raise ValueError("Col2Im image_shape and block_shape are computed: Paddle's fold needs them constant")
    if image_shape.size != 2:
        raise ValueError(f"Col2Im over {image_shape.size} spatial dims: Paddle's fold is 2-D only")
    # fold reads only [pad_h, pad_w] of a 4-list (its shape check fails on asymmetric pads).
    pads = _symmetric(list(node.get_attr("pads", [0, 0, 0, 0])), "Col2Im")
    self.paddle_graph.add_layer(
        "paddle.nn.functional.fold", inputs={"x": x.name}, outputs=[node.name],
        output_sizes=[int(v) for v in image_shape], kernel_sizes=[int(v) for v in block_shape],
        strides=list(node.get_attr("strides", [1, 1])), paddings=list(pads),
        dilations=list(node.get_attr("dilations", [1, 1])))


def MaxUnpool(self, node) -> None:
    x = self.graph.get_input_node(node, idx=0, copy=True)
    indices = self.graph.get_input_node(node, idx=1, copy=True)
    kernel = list(node.get_attr("kernel_shape"))
    n = len(kernel)
    if n not in (1, 2, 3):
        raise ValueError(f"MaxUnpool over {n} spatial dims: Paddle has max_unpool1d/2d/3d")
    strides = list(node.get_attr("strides", [1] * n))
    pads = _symmetric(list(node.get_attr("pads", [0] * 2 * n)), "MaxUnpool")
    shape = _static_shape(x, "MaxUnpool")
    out_node = _input(self, node, 2)
    if out_node is not None:
        out_shape = _const(out_node)
        if out_shape is None:
            raise ValueError("MaxUnpool output_shape is computed: Paddle needs it constant")
        spatial = [int(v) for v in out_shape.reshape(-1)[2:]]
    else:
        spatial = [(shape[2 + i] - 1) * strides[i] + kernel[i] - 2 * pads[i] for i in range(n)]
    # ONNX indices count over the whole output tensor (N, C included, as MaxPool writes
    # them); Paddle's count within one (n, c) plane.
    plane = int(np.prod(spatial))
    base = node.name + "_unpool"
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": indices.name}, outputs=[base + "_idx"], dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.remainder", inputs={"x": base + "_idx"}, outputs=[base + "_idx"], y=plane)
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": base + "_idx"}, outputs=[base + "_idx"], dtype=_q("int32"))
    self.paddle_graph.add_layer(
        f"paddle.nn.functional.max_unpool{n}d", inputs={"x": x.name, "indices": base + "_idx"}, outputs=[node.name],
        kernel_size=kernel, stride=strides, padding=pads, output_size=spatial)


def DeformConv(self, node) -> None:
    x = _input(self, node, 0)
    weight = _input(self, node, 1)
    offset = _input(self, node, 2)
    bias = _input(self, node, 3)
    mask = _input(self, node, 4)
    kernel = node.get_attr("kernel_shape") or list(_static_shape(weight, "DeformConv weight")[2:])
    if len(kernel) != 2:
        raise ValueError(f"DeformConv over {len(kernel)} spatial dims: Paddle's deform_conv2d is 2-D only")
    inputs = {"x": x.name, "offset": offset.name, "weight": weight.name}
    if bias is not None:
        inputs["bias"] = bias.name
    if mask is not None:
        inputs["mask"] = mask.name
    self.paddle_graph.add_layer(
        "paddle.vision.ops.deform_conv2d", inputs=inputs, outputs=[node.name],
        stride=list(node.get_attr("strides", [1, 1])),
        padding=_symmetric(list(node.get_attr("pads", [0, 0, 0, 0])), "DeformConv"),
        dilation=list(node.get_attr("dilations", [1, 1])),
        deformable_groups=int(node.get_attr("offset_group", 1)), groups=int(node.get_attr("group", 1)))


def _auto_pads(auto_pad: str, spatial: list[int], kernel: list[int], strides: list[int]) -> list[int]:
    """ONNX's SAME_UPPER/SAME_LOWER pads (begins then ends); VALID is no padding."""
    if auto_pad == "VALID":
        return [0] * 2 * len(kernel)
    begins, ends = [], []
    for size, k, s in zip(spatial, kernel, strides):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def LpPool(self, node) -> None:
    """(sum over the window of |x|^p)^(1/p): |x|^p average-pooled with zero pads, counting
    every kernel element (exclusive=False), times the kernel size, to the power 1/p."""
    x = self.graph.get_input_node(node, idx=0, copy=True)
    kernel = [int(k) for k in node.get_attr("kernel_shape")]
    n = len(kernel)
    if n not in (1, 2, 3):
        raise ValueError(f"LpPool over {n} spatial dims: Paddle pools 1-D to 3-D")
    if any(int(d) != 1 for d in node.get_attr("dilations", [1] * n)):
        raise ValueError(f"LpPool dilations {list(node.get_attr('dilations'))}: Paddle's avg_pool has no dilation")
    strides = [int(s) for s in node.get_attr("strides", [1] * n)]
    p = float(node.get_attr("p", 2))
    auto_pad = node.get_attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pads = _auto_pads(auto_pad, _static_shape(x, "LpPool auto_pad")[2:], kernel, strides)
    else:
        pads = [int(v) for v in node.get_attr("pads", [0] * 2 * n)]
    base = node.name + "_lp"
    self.paddle_graph.add_layer("paddle.abs", inputs={"x": x.name}, outputs=[base + "_abs"])
    source = base + "_abs"
    if p != 1.0:
        self.paddle_graph.add_layer("paddle.pow", inputs={"x": source}, outputs=[base + "_pow"], y=p)
        source = base + "_pow"
    # Pads go to avg_pool (zeros, counted since exclusive=False), not to a Pad layer: Paddle
    # Inference's pad kernel corrupts the heap here (SIGABRT "malloc(): unaligned tcache chunk").
    # avg_pool divides an end-padded window by too small a count when the pads differ (it
    # clips windows with the begin pad), so pad both sides by the larger pad and slice off the
    # outputs the smaller begin pad does not have.
    ceil_mode = bool(node.get_attr("ceil_mode", 0))
    begins, ends = pads[:n], pads[n:]
    wide = [max(b, e) for b, e in zip(begins, ends)]
    skip = [w - b for w, b in zip(wide, begins)]
    asymmetric = begins != ends
    if asymmetric and (ceil_mode or any(k % s for k, s in zip(skip, strides))):
        raise ValueError(f"LpPool pads {pads} are asymmetric with ceil_mode or strides {strides}: "
                         "Paddle's avg_pool cannot count them")
    self.paddle_graph.add_layer(
        f"paddle.nn.functional.avg_pool{n}d", inputs={"x": source}, outputs=[base + "_avg"],
        kernel_size=kernel, stride=strides, padding=[v for w in wide for v in (w, w)], ceil_mode=ceil_mode,
        exclusive=False)
    if asymmetric:
        spatial = _static_shape(x, "LpPool with asymmetric pads")[2:]
        sizes = [(spatial[i] + begins[i] + ends[i] - kernel[i]) // strides[i] + 1 for i in range(n)]
        firsts = [skip[i] // strides[i] for i in range(n)]
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": base + "_avg"}, outputs=[base + "_avg"],
                                    axes=list(range(2, 2 + n)), starts=firsts,
                                    ends=[f + size for f, size in zip(firsts, sizes)])
    self.paddle_graph.add_layer("paddle.scale", inputs={"x": base + "_avg"},
                                outputs=[base + "_sum" if p != 1.0 else node.name], scale=float(np.prod(kernel)))
    if p != 1.0:
        self.paddle_graph.add_layer("paddle.pow", inputs={"x": base + "_sum"}, outputs=[node.name], y=1.0 / p)


def ReverseSequence(self, node) -> None:
    """take_along_axis(x, where(t < len[b], len[b] - 1 - t, t), time_axis)."""
    x = self.graph.get_input_node(node, idx=0, copy=True)
    lens = self.graph.get_input_node(node, idx=1, copy=True)
    shape = _static_shape(x, "ReverseSequence")
    batch_axis = int(node.get_attr("batch_axis", 1))
    time_axis = int(node.get_attr("time_axis", 0))
    rank = len(shape)
    t_shape = [shape[time_axis] if i == time_axis else 1 for i in range(rank)]
    b_shape = [shape[batch_axis] if i == batch_axis else 1 for i in range(rank)]
    base = node.name + "_rev"
    self.paddle_graph.add_layer("paddle.arange", inputs={}, outputs=[base + "_t"], end=shape[time_axis],
                                dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.reshape", inputs={"x": base + "_t"}, outputs=[base + "_t"], shape=t_shape)
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": lens.name}, outputs=[base + "_len"], dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.reshape", inputs={"x": base + "_len"}, outputs=[base + "_len"], shape=b_shape)
    self.paddle_graph.add_layer("paddle.less_than", inputs={"x": base + "_t", "y": base + "_len"},
                                outputs=[base + "_in"])
    self.paddle_graph.add_layer("paddle.subtract", inputs={"x": base + "_len", "y": base + "_t"},
                                outputs=[base + "_back"])
    self.paddle_graph.add_layer("paddle.scale", inputs={"x": base + "_back"}, outputs=[base + "_back"],
                                scale=1.0, bias=-1.0)
    self.paddle_graph.add_layer("paddle.expand", inputs={"x": base + "_t"}, outputs=[base + "_tt"],
                                shape=[shape[i] if i in (time_axis, batch_axis) else 1 for i in range(rank)])
    self.paddle_graph.add_layer("paddle.where", inputs={"condition": base + "_in", "x": base + "_back",
                                                        "y": base + "_tt"}, outputs=[base + "_idx"])
    self.paddle_graph.add_layer("paddle.expand", inputs={"x": base + "_idx"}, outputs=[base + "_idx"], shape=shape)
    self.paddle_graph.add_layer("paddle.take_along_axis", inputs={"arr": x.name, "indices": base + "_idx"},
                                outputs=[node.name], axis=time_axis)


def CenterCropPad(self, node) -> None:
    x = self.graph.get_input_node(node, idx=0, copy=True)
    target = _const(self.graph.get_input_node(node, idx=1, copy=True))
    if target is None:
        raise ValueError("CenterCropPad shape is computed: bridge needs it constant")
    shape = _static_shape(x, "CenterCropPad")
    rank = len(shape)
    axes = node.get_attr("axes")
    axes = list(range(rank)) if axes is None else [int(a) + rank if int(a) < 0 else int(a) for a in axes]
    crop_axes, starts, ends, pad = [], [], [], [0] * (2 * rank)
    for axis, size in zip(axes, [int(v) for v in target.reshape(-1)]):
        dim = shape[axis]
        if size < dim:  # as ONNX's reference: the smaller half before
            crop_axes.append(axis)
            starts.append((dim - size) // 2)
            ends.append((dim - size) // 2 + size)
        elif size > dim:
            pad[2 * axis] = (size - dim) // 2
            pad[2 * axis + 1] = size - dim - (size - dim) // 2
    source, current = x.name, list(shape)
    if crop_axes:
        out = node.name if not any(pad) else node.name + "_crop"
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": source}, outputs=[out], axes=crop_axes,
                                    starts=starts, ends=ends)
        source = out
        for axis, start, end in zip(crop_axes, starts, ends):
            current[axis] = end - start
    # Zeros concatenated on, not a Pad layer: Paddle Inference's pad kernel hangs or corrupts
    # the heap on these small tensors (the same fault as Pad's "malloc(): unaligned tcache chunk").
    padded = [a for a in range(rank) if pad[2 * a] or pad[2 * a + 1]]
    for i, axis in enumerate(padded):
        parts = []
        for side, width in (("before", pad[2 * axis]), ("after", pad[2 * axis + 1])):
            if width:
                zeros = f"{node.name}_zeros{axis}_{side}"
                self.paddle_graph.add_layer(
                    "paddle.full", inputs={}, outputs=[zeros], dtype=_q(str(x.dtype)), fill_value=0,
                    shape=[width if a == axis else d for a, d in enumerate(current)])
                parts.append(zeros)
            if side == "before":
                parts.append(source)
        out = node.name if i == len(padded) - 1 else f"{node.name}_pad{axis}"
        self.paddle_graph.add_layer("paddle.concat", inputs={"x": parts}, outputs=[out], axis=axis)
        source, current[axis] = out, current[axis] + pad[2 * axis] + pad[2 * axis + 1]
    if not crop_axes and not padded:
        self.paddle_graph.add_layer("paddle.assign", inputs={"x": source}, outputs=[node.name])


# Op type -> mapper; Scatter (opsets 9-10) is ScatterElements without reduction.
MAPPERS: dict[str, Callable] = {
    "GridSample": GridSample,
    "AffineGrid": AffineGrid,
    "ScatterElements": ScatterElements,
    "Scatter": ScatterElements,
    "Compress": Compress,
    "Col2Im": Col2Im,
    "MaxUnpool": MaxUnpool,
    "DeformConv": DeformConv,
    "LpPool": LpPool,
    "ReverseSequence": ReverseSequence,
    "CenterCropPad": CenterCropPad,
}


def install() -> None:
    """Add every mapper in ``MAPPERS`` to X2Paddle's ``OpSet`` (idempotent); X2Paddle's own
    mapper for an op type, where one exists, is left alone."""
    from x2paddle.op_mapper.onnx2paddle import onnx_op_mapper, opset_legacy

    for op_type, mapper in MAPPERS.items():
        current = getattr(opset_legacy.OpSet, op_type, None)
        if current is not None and getattr(current, "__wrapped__", None) is mapper:
            continue  # installed already
        if current is not None or any(hasattr(getattr(onnx_op_mapper, f"OpSet{v}"), op_type) for v in range(7, 16)):
            continue  # X2Paddle maps it itself
        mapped = opset_legacy.print_mapping_info(mapper)  # errors reported as X2Paddle's
        mapped.__wrapped__ = mapper
        mapped.__name__ = op_type
        setattr(opset_legacy.OpSet, op_type, mapped)
