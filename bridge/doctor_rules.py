"""What X2Paddle 1.6.0 refuses or mishandles, checked statically on one ONNX model.

``scan(model)`` looks at the model the way X2Paddle's decoder will (``GraphView``: its shape
inference, Constant nodes turned into initializers, ``opset_import[0]``) and returns one
``Issue`` per (rule, node). It never runs X2Paddle's conversion. ``bridge.doctor`` runs it on
the raw model and again after each pipeline step to learn which patch fixes what.

Every rule names where it comes from: an assert or code path in X2Paddle 1.6.0
(``x2paddle/op_mapper/onnx2paddle/opset_legacy.py`` unless another file is named; "reading"
means the failure follows from that code) and, where marked "verified", a real conversion
through ``bridge.stages.convert.run`` of a tiny graph that failed (or, for "mismatch", converted
and then disagreed with ONNX Runtime). Checked and found to convert, so not rules: Slice with
computed starts/ends (equal to ONNX Runtime), Tile with computed repeats, Unsqueeze at opset 13+
with a computed axes tensor, Reshape with a computed shape (the seed), Cast to bfloat16 or
uint16, graph inputs of int16, uint16 or complex64, a one-element rank-1 Constant of -inf (the
decoder makes it a parameter).

Reason codes: ``op_not_mapped`` (no mapper for the op type at X2Paddle's opset),
``opset_out_of_range`` (model level), ``attribute_form`` (attributes or input layout the mapper
asserts against or mishandles), ``needs_constant_input`` (an input the mapper reads as a
constant is computed), ``dtype_unsupported`` (a tensor type Paddle lacks), ``unknown_rank`` (the
mapper needs a rank or dims X2Paddle's shape inference does not give), ``dynamic_shape`` (it
needs static dims), ``constant_value`` (±inf constants Paddle refuses), ``invalid_name`` (tensor
names that break X2Paddle's generated code), ``invalid_onnx`` (``onnx.checker`` full_check, which
bridge's patch stage requires).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from bridge.doctor_view import GraphView, attr, present
from bridge.stages.convert import x2paddle_name
from bridge.stages.export_strategies import X2PADDLE_OPSETS

# Reason codes. Severity: "error" (X2Paddle or Paddle refuses: the conversion fails),
# "mismatch" (it converts, but computes something else), "note" (worth knowing, never blocks).
OP_NOT_MAPPED = "op_not_mapped"
OPSET_OUT_OF_RANGE = "opset_out_of_range"
ATTRIBUTE_FORM = "attribute_form"
NEEDS_CONSTANT_INPUT = "needs_constant_input"
DTYPE_UNSUPPORTED = "dtype_unsupported"
UNKNOWN_RANK = "unknown_rank"
DYNAMIC_SHAPE = "dynamic_shape"
CONSTANT_VALUE = "constant_value"
INVALID_NAME = "invalid_name"
INVALID_ONNX = "invalid_onnx"

MODEL = "(model)"  # the node name of model-level issues


@dataclass(frozen=True)
class Issue:
    rule: str  # stable id, one per thing a rule checks (matching across pipeline steps)
    code: str
    severity: str  # "error" | "mismatch" | "note"
    reason: str
    node: str  # node name; a tensor name for inputs/initializers/outputs; MODEL
    op_type: str
    output: str = ""  # the node's first output (nodes are matched by name or by it)


# --- rules ------------------------------------------------------------------------------

Found = tuple[str, str, str, str]  # (rule, code, severity, reason)
Rule = Callable[[GraphView, onnx.NodeProto], Iterator[Found]]
RULES: dict[str, list[Rule]] = defaultdict(list)


def rule(*op_types: str):
    def register(fn: Rule) -> Rule:
        for op in op_types:
            RULES[op].append(fn)
        return fn
    return register


@rule("MaxPool", "AveragePool")
def _pool(view: GraphView, node) -> Iterator[Found]:
    kernel = attr(node, "kernel_shape") or []
    k = len(kernel)
    rank = view.rank(node.input[0])
    # MaxPool / opset7.py, opset10.py::AveragePool build paddle.nn.{Max,Avg}Pool{len(kernel)}D,
    # never looking at the input rank. The seed's unbatched pools (verified: the decoder dies
    # with KeyError: 0, see patches/maxpool_unbatched.py).
    if rank is not None and k and rank != k + 2:
        form = " (torch's unbatched form)" if rank == k + 1 else f": X2Paddle builds a {k}-D pool from the kernel"
        yield "pool_rank", ATTRIBUTE_FORM, "error", f"rank-{rank} input with a {k}-D kernel{form}"
    if not 1 <= k <= 3:  # assert 1 <= poolnd <= 3
        yield "pool_kernel", ATTRIBUTE_FORM, "error", f"{k}-D kernel: X2Paddle maps 1-D to 3-D pools only"
    dilations = attr(node, "dilations")
    if node.op_type == "MaxPool" and dilations is not None:
        # MaxPool: assert node.get_attr("dilations") is None (issue #1108)
        yield ("maxpool_dilations", ATTRIBUTE_FORM, "error",
               f"dilations {list(dilations)} present: X2Paddle asserts \"only dilations = 0 is supported\", even for all ones (#1108)")
    elif dilations is not None and any(d != 1 for d in dilations):
        # AveragePool (opset 19+ attribute): the mappers never read it
        yield "avgpool_dilations", ATTRIBUTE_FORM, "mismatch", f"dilations {list(dilations)}: X2Paddle ignores them"
    strides = attr(node, "strides")
    if strides is None:
        # the mappers pass stride=None; Paddle's pools then stride by the kernel, ONNX by 1
        yield "pool_strides", ATTRIBUTE_FORM, "mismatch", "no strides: X2Paddle passes stride=None and Paddle then strides by the kernel size"
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        yield from _same_padding(view, node, k, strides, "pool")
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1] and not _indices_shim_maps(view, node, k):
        # MaxPool builds MaxPoolND without return_mask; verified: NameError at save
        yield "maxpool_indices", ATTRIBUTE_FORM, "error", "Indices output is used: X2Paddle only builds the values"


def _indices_shim_maps(view: GraphView, node, k: int) -> bool:
    """bridge's maxpool_indices shim (patches/x2paddle_mappers_more.py) maps a 2-D MaxPool's
    Indices when the input's dims are static, the pads symmetric, auto_pad NOTSET/VALID and the
    dilations ones."""
    shape = view.shape(node.input[0])
    pads = list(attr(node, "pads") or [0] * 2 * k)
    return (k == 2 and shape is not None and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)
            and pads[:2] == pads[2:] and all(d == 1 for d in (attr(node, "dilations") or [1] * k))
            and attr(node, "auto_pad", "NOTSET") in ("NOTSET", "VALID", b"NOTSET", b"VALID"))


def _same_padding(view: GraphView, node, k: int, strides, what: str) -> Iterator[Found]:
    """auto_pad SAME_*: Conv, MaxPool and opset7/10.py::AveragePool call _get_same_padding
    with input_shape[2], input_shape[3], kernel[0..1], strides[0..1]: 2-D only, static H, W."""
    shape = view.shape(node.input[0])
    if k != 2:
        yield f"{what}_same_nd", ATTRIBUTE_FORM, "error", f"auto_pad SAME on a {k}-D kernel: X2Paddle computes SAME padding for 2-D only"
    elif strides is None and what == "pool":
        yield f"{what}_same_strides", ATTRIBUTE_FORM, "error", "auto_pad SAME without strides: X2Paddle indexes strides[0]"
    elif shape is None or len(shape) < 4:
        yield f"{what}_same_rank", UNKNOWN_RANK, "error", "auto_pad SAME: X2Paddle needs the input's H and W, its shape inference has no rank"
    elif shape[2] < 0 or shape[3] < 0:
        yield (f"{what}_same_dynamic", DYNAMIC_SHAPE, "mismatch",
               "auto_pad SAME on a dynamic H or W: X2Paddle computes the padding from -1 (it warns 'may have a diff')")


@rule("Conv")
def _conv(view: GraphView, node) -> Iterator[Found]:
    # No kernel_shape: bridge's conv_kernel_shape shim fills it in from W.
    kernel = attr(node, "kernel_shape")
    if kernel is not None and attr(node, "auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        yield from _same_padding(view, node, len(kernel), attr(node, "strides", [1] * len(kernel)), "conv")


@rule("ConvTranspose")
def _conv_transpose(view: GraphView, node) -> Iterator[Found]:
    # No kernel_shape: bridge's conv_kernel_shape shim fills it in from W.
    kernel = attr(node, "kernel_shape") or (view.shapes.get(node.input[1]) or [])[2:]
    if kernel and len(kernel) not in (2, 3):  # assert 2 <= convnd <= 3; verified with a 1-D ConvTranspose
        yield "convt_nd", ATTRIBUTE_FORM, "error", f"{len(kernel)}-D kernel: X2Paddle maps 2-D and 3-D ConvTranspose only"
    if view.rank(node.input[0]) is None:  # reads val_x.out_shapes[0][2] and [3]
        yield "convt_rank", UNKNOWN_RANK, "error", "X2Paddle reads input dims 2 and 3, and its shape inference has no rank"


@rule("Slice")
def _slice(view: GraphView, node) -> Iterator[Found]:
    inputs = present(node)
    if len(inputs) < 2:
        return  # opset < 10: starts/ends/axes are attributes, which X2Paddle reads
    # Non-constant starts/ends are fine: X2Paddle casts them and passes tensors to
    # paddle.slice (verified: converts, equal to ONNX Runtime).
    if len(node.input) > 3 and node.input[3] and not view.is_constant(node.input[3]):
        # axes = _const_weight_or_none(axes_node, necessary=True).tolist() (issue #697);
        # "necessary" only asserts a string, so it is None.tolist(). Verified.
        yield "slice_axes", NEEDS_CONSTANT_INPUT, "error", f"axes {node.input[3]!r} is computed: X2Paddle needs it constant (#697)"
    if len(node.input) > 4 and node.input[4] and not view.is_constant(node.input[4]):
        yield "slice_steps", NEEDS_CONSTANT_INPUT, "error", f"steps {node.input[4]!r} is computed: X2Paddle calls .tolist() on its constant value"
    if len(node.input) == 3:
        # no axes input: X2Paddle uses axes = range(rank of the input), not range(len(starts));
        # verified: starts of length 1 on a rank-2 input fails while saving
        rank = view.rank(node.input[0])
        starts = view.shape(node.input[1])
        if rank is None:
            yield "slice_default_axes", UNKNOWN_RANK, "error", "no axes input: X2Paddle uses range(rank of the input), and has no rank"
        elif starts is not None and len(starts) == 1 and 0 < starts[0] != rank:
            yield ("slice_default_axes", ATTRIBUTE_FORM, "error",
                   f"no axes input and {starts[0]} starts: X2Paddle slices all {rank} axes")


# Squeeze without axes (X2Paddle: IndexError) or with computed axes (X2Paddle squeezed every
# size-1 axis), Unsqueeze with unsorted computed axes: bridge's squeeze_unsqueeze_tensor_axes
# shim maps them (patches/x2paddle_mappers_more.py), so no rule.


# ReduceSum with a computed axes input: X2Paddle's mapper fails (_const_weight_or_none(axes).shape);
# bridge's reduce_sum_tensor_axes shim maps it (patches/x2paddle_mapper_fixes.py), so no rule.


# ReduceL1/L2 with an axes input: bridge's reduce_lp_axes shim maps it.


@rule("CumSum")
def _cumsum(view: GraphView, node) -> Iterator[Found]:
    if len(node.input) > 1 and not view.is_constant(node.input[1]):
        # CumSum: assert axis_values is not None, 'Axis only support constant tensor!'; verified
        yield "cumsum_axis", NEEDS_CONSTANT_INPUT, "error", f"axis {node.input[1]!r} is computed: X2Paddle asserts it is constant"


# Split with computed sizes (X2Paddle fell back to equal parts): bridge's split_tensor_sizes
# shim slices by them at run time (patches/x2paddle_mappers_more.py), so no rule.


@rule("Clip")
def _clip(view: GraphView, node) -> Iterator[Found]:
    inputs = present(node)
    if len(inputs) == 2 and not view.is_constant(inputs[1]):
        # Clip with one bound: _const_weight_or_none(val_ipt).shape (reading)
        yield "clip_bound", NEEDS_CONSTANT_INPUT, "error", f"a single bound {inputs[1]!r} is computed: X2Paddle needs it constant"


@rule("Resize")
def _resize(view: GraphView, node) -> Iterator[Found]:
    inputs = present(node)
    if len(node.input) == 3:
        # opset 11+ scales form: attrs['scale_factor'] = self.weights[val_scales.name], and only
        # initializers and multi-element Constants are in self.weights; verified KeyError
        if len(inputs) < 2:
            yield "resize_scales", ATTRIBUTE_FORM, "error", "no scales input: X2Paddle reads one"
            return
        scales = inputs[2] if len(inputs) > 2 else inputs[1]
        value = view.constant(scales)
        if scales not in view.initializers and (value is None or value.size < 2):
            yield "resize_scales", NEEDS_CONSTANT_INPUT, "error", f"scales {scales!r} is computed: X2Paddle reads it from its weights"
        mode = attr(node, "mode", "nearest")
        coords = attr(node, "coordinate_transformation_mode", "half_pixel")
        if mode == "linear" and view.rank(node.input[0]) == 4 and coords not in ("pytorch_half_pixel", "align_corners"):
            # _interpolate: bilinear with align_corners=True for every mode but
            # pytorch_half_pixel (verified in patches/resize_half_pixel.py)
            yield ("resize_coords", ATTRIBUTE_FORM, "mismatch",
                   f"linear with coordinate_transformation_mode {coords}: X2Paddle interpolates with align_corners=True")
    elif len(node.input) == 4 and len(inputs) < 4:
        # sizes form: get_input_node(node, idx=3) counts only non-empty inputs; verified IndexError
        yield "resize_empty_inputs", ATTRIBUTE_FORM, "error", "empty roi/scales inputs before sizes: X2Paddle indexes past the end"


@rule("Pad")
def _pad(view: GraphView, node) -> Iterator[Found]:
    """Pad: which Paddle op it builds depends on len(pads) against the input (or output) rank."""
    inputs = present(node)
    if len(inputs) > 3:  # opset 18 axes input: never read
        yield "pad_axes", ATTRIBUTE_FORM, "mismatch", "axes input: X2Paddle ignores it and reads pads as covering every axis"
    ranks = {r for r in (view.rank(node.input[0]), view.rank(node.output[0])) if r}
    pads = attr(node, "pads")
    if pads is None and len(inputs) > 1 and view.is_constant(inputs[1]):
        value = view.constant(inputs[1])
        pads = None if value is None else value.tolist()
    if pads is not None:
        n = 6 if len(pads) == 10 and sum(pads) == 0 else len(pads)
        if n in (2, 4, 6) and not any(n in (2 * (r - 2), 2 * r) for r in ranks):
            code = UNKNOWN_RANK if not ranks else ATTRIBUTE_FORM
            yield "pad_length", code, "error", f"{n} pads on a tensor of rank {'/'.join(map(str, sorted(ranks))) or 'unknown'}: X2Paddle raises 'The padding value is wrong'"
        return
    if len(inputs) < 2:
        return
    pads_shape = view.shape(inputs[1])
    length = pads_shape[0] if pads_shape else None
    if length is None:  # pads_len = val_pad.out_shapes[0][0]
        yield "pad_length", UNKNOWN_RANK, "error", "computed pads of unknown length: X2Paddle reads their shape"
    elif length in (2, 4, 6):
        if not any(length == 2 * (r - 2) or (length == 4 and r == 2) for r in ranks):
            yield "pad_length", ATTRIBUTE_FORM, "error", f"{length} computed pads on a tensor of rank {'/'.join(map(str, sorted(ranks))) or 'unknown'}: X2Paddle has no layer for it"
    elif length == 8 and 4 not in ranks:
        yield "pad_length", ATTRIBUTE_FORM, "error", "8 computed pads on a tensor that is not rank 4: X2Paddle emits nothing"
    elif length not in (8, -1):
        yield "pad_length", ATTRIBUTE_FORM, "error", f"{length} computed pads: X2Paddle raises 'The padding value is wrong'"


@rule("LSTM")
def _lstm(view: GraphView, node) -> Iterator[Found]:
    def given(i: int) -> bool:
        return len(node.input) > i and bool(node.input[i])

    missing = [name for i, name in ((3, "B"), (5, "initial_h"), (6, "initial_c")) if not given(i)]
    if missing:
        # LSTM reads bias, init_h, init_c whether or not they exist: UnboundLocalError
        # (verified, tests/test_patch_lstm_initial_states.py)
        yield "lstm_inputs", ATTRIBUTE_FORM, "error", f"no {', '.join(missing)} input: X2Paddle reads them unconditionally"
    for i, name in ((1, "W"), (2, "R"), (3, "B")):
        if given(i) and not view.is_constant(node.input[i]):
            yield f"lstm_{name}", NEEDS_CONSTANT_INPUT, "error", f"{name} {node.input[i]!r} is computed: X2Paddle reads the weights as constants"
    direction = attr(node, "direction", "forward")
    if direction == "reverse":
        # X2Paddle rejects only 'backward'; paddle.nn.LSTM then refuses 'reverse' (verified)
        yield "lstm_direction", ATTRIBUTE_FORM, "error", "direction reverse: paddle.nn.LSTM takes forward or bidirectional only"
    if attr(node, "layout", 0) != 0:  # time_major=True always
        yield "lstm_layout", ATTRIBUTE_FORM, "mismatch", "layout 1 (batch-major): X2Paddle builds a time-major LSTM"
    if given(4):  # sequence_lens is read and never used
        yield "lstm_sequence_lens", ATTRIBUTE_FORM, "mismatch", "sequence_lens given: X2Paddle ignores it"


# Gemm with alpha != 1 and beta != 0 (X2Paddle: "unhashable type: 'dict'") or without C
# (IndexError): bridge's gemm_all_forms shim maps every form (patches/x2paddle_mappers_more.py),
# so no rule. Likewise ArgMax without axis (argmax_defaults) and Max/Min with one or 3+ inputs
# (the sum_variadic patch; no rule was written for them).


@rule("Sum")
def _sum(view: GraphView, node) -> Iterator[Found]:
    if len(present(node)) > 2:
        # Sum: the loop over inputs[2:] re-reads inputs from index 0; verified: the third
        # input is never used
        yield "sum_inputs", ATTRIBUTE_FORM, "mismatch", f"{len(present(node))} inputs: X2Paddle adds the first ones again instead of inputs 3+"


@rule("Shape")
def _shape(view: GraphView, node) -> Iterator[Found]:
    if attr(node, "start") is not None or attr(node, "end") is not None:
        # Shape reads no attributes; verified: full shape returned
        yield "shape_slice", ATTRIBUTE_FORM, "mismatch", "start/end attributes (opset 15): X2Paddle returns the whole shape"


# TopK with Indices a graph output, or Values read while Indices is unused (X2Paddle's names
# <name>_p0/_p1 were never defined under the ONNX names, or read under the wrong one): bridge's
# multi_output_graph_outputs and topk_values_readers shims fix both
# (patches/x2paddle_mappers_more.py), so no rule.


@rule("IsInf")
def _isinf(view: GraphView, node) -> Iterator[Found]:
    if attr(node, "detect_negative") is not None or attr(node, "detect_positive") is not None:
        # opset10.py::IsInf: raises unless both are 1, and then emits nothing; verified
        yield "isinf_attrs", ATTRIBUTE_FORM, "error", "detect_negative/detect_positive set: X2Paddle maps only the attribute-free form"


@rule("Shrink")
def _shrink(view: GraphView, node) -> Iterator[Found]:
    if attr(node, "bias", 0.0) != 0.0:  # assert bias == 0.0, 'not support bias!=0'
        yield "shrink_bias", ATTRIBUTE_FORM, "error", "bias != 0: X2Paddle asserts bias == 0"


@rule("Constant")
def _constant(view: GraphView, node) -> Iterator[Found]:
    # Constant nodes reach X2Paddle's Constant mapper only where its shape inference raised
    # (otherwise they became initializers, see decoder_graph).
    value = attr(node, "value")
    if value is None:  # Constant: np.dtype(value.dtype) with value None
        yield "constant_value_attr", ATTRIBUTE_FORM, "error", "no tensor 'value' attribute (value_float, value_ints, ...): X2Paddle reads only 'value'"
        return
    yield from _raw_data(value, "constant_raw_data")
    array = numpy_helper.to_array(value)
    if array.size == 1 and array.dtype.kind == "f" and not np.isfinite(array).all():
        # Constant: one element -> paddle.full(fill_value='-inf' as a string), which Paddle 3
        # refuses (patches/constant_infinity.py)
        yield "constant_infinity", CONSTANT_VALUE, "error", f"one-element {array.reshape(-1)[0]} constant: X2Paddle writes it as a string, Paddle refuses"
    yield from _dtype(value.data_type, PARAMETER_DTYPES if array.size > 1 else CAST_DTYPES, "constant_dtype")


def _raw_data(value: onnx.TensorProto, rule_id: str) -> Iterator[Found]:
    """decoder/onnx_decoder.py::ONNXGraphNode.get_attribute_value reads a tensor attribute
    with np.frombuffer(attr.t.raw_data): values in float_data/int64_data/... read as empty.
    Verified: ConstantOfShape <value = float[1] {-inf}> written by onnx.parser fails the
    mapper's "given value not Scalar" assert."""
    if not value.raw_data and math.prod(value.dims) > 0:
        yield rule_id, ATTRIBUTE_FORM, "error", "value tensor kept in typed fields, not raw_data: X2Paddle reads raw_data only, so it is empty"


@rule("ConstantOfShape")
def _constant_of_shape(view: GraphView, node) -> Iterator[Found]:
    value = attr(node, "value")
    if value is None:  # ConstantOfShape: value.dtype with value None
        yield "cos_value", ATTRIBUTE_FORM, "error", "no 'value' attribute: X2Paddle reads its dtype"
        return
    yield from _raw_data(value, "cos_raw_data")
    array = numpy_helper.to_array(value)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        # paddle.full(fill_value='-inf' as a string); verified TypeError
        yield "cos_infinity", CONSTANT_VALUE, "error", f"value {array.reshape(-1)[0]}: X2Paddle writes it as a string, Paddle refuses"
    yield from _dtype(value.data_type, CAST_DTYPES, "cos_dtype")


@rule("Cast")
def _cast(view: GraphView, node) -> Iterator[Found]:
    yield from _dtype(attr(node, "to", 0), CAST_DTYPES, "cast_to")


@rule("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(view: GraphView, node) -> Iterator[Found]:
    rank = view.rank(node.input[0])  # poolnd from len(input_shape) in 3, 4, 5, else unbound
    if rank is None:
        yield "global_pool_rank", UNKNOWN_RANK, "error", "X2Paddle picks the pool from the input rank, and has none"
    elif rank not in (3, 4, 5):
        yield "global_pool_rank", ATTRIBUTE_FORM, "error", f"rank-{rank} input: X2Paddle maps ranks 3 to 5"


@rule("BatchNormalization")
def _batch_norm(view: GraphView, node) -> Iterator[Found]:
    rank = view.rank(node.input[0])  # c = val_x.out_shapes[0][1]
    if rank is None or rank < 2:
        yield "bn_rank", UNKNOWN_RANK, "error", "X2Paddle reads the channel count from the input shape, and has none"


@rule("InstanceNormalization")
def _instance_norm(view: GraphView, node) -> Iterator[Found]:
    rank = view.rank(node.input[0])  # raises unless the input is rank 3, 4 or 5
    if rank is None:
        yield "in_rank", UNKNOWN_RANK, "error", "X2Paddle picks InstanceNorm1D/2D/3D from the input rank, and has none"
    elif rank not in (3, 4, 5):
        yield "in_rank", ATTRIBUTE_FORM, "error", f"rank-{rank} input: X2Paddle maps ranks 3 to 5"


@rule("DepthToSpace", "SpaceToDepth")
def _depth_space(view: GraphView, node) -> Iterator[Found]:
    shape = view.shape(node.input[0])  # b, c, h, w = val_x.out_shapes[0]
    if shape is None or len(shape) != 4:
        yield "d2s_rank", UNKNOWN_RANK, "error", "X2Paddle unpacks a rank-4 input shape, and has none"
    elif any(d < 0 for d in shape[1:]):
        yield "d2s_dynamic", DYNAMIC_SHAPE, "error", f"input shape {shape}: X2Paddle builds reshapes from C, H, W and needs them static"


@rule("Transpose")
def _transpose(view: GraphView, node) -> Iterator[Found]:
    if attr(node, "perm") is None and view.rank(node.input[0]) is None:
        # perm defaults to reversed(range(len(val_x.out_shapes[0])))
        yield "transpose_perm", UNKNOWN_RANK, "error", "no perm: X2Paddle reverses range(rank), and has no rank"


@rule("GatherElements")
def _gather_elements(view: GraphView, node) -> Iterator[Found]:
    x, indices = view.shape(node.input[0]), view.shape(node.input[1])
    # linspace/meshgrid over indices_shape, transpose over len(val_x_shape)
    if x is None or indices is None:
        yield "gather_elements_rank", UNKNOWN_RANK, "error", "X2Paddle builds index grids from the shapes, and has none"
    elif any(d < 0 for d in indices):
        yield "gather_elements_dynamic", DYNAMIC_SHAPE, "error", f"indices shape {indices}: X2Paddle builds index grids from static dims"


@rule("Flatten")
def _flatten(view: GraphView, node) -> Iterator[Found]:
    axis = attr(node, "axis", 1)
    if axis == 0:
        return
    shape = view.shape(node.input[0])
    if not shape:  # flatten + reshape [0, -1]: right for axis 1 only
        if axis != 1:
            yield "flatten_shape", UNKNOWN_RANK, "mismatch", f"axis {axis} with no known shape: X2Paddle flattens from axis 1"
        return
    # Flatten: reshape to [prod(shape[:axis]), prod(shape[axis:])] with -1 for dynamic dims
    # (patches/flatten_dynamic_dims.py: verified reshape [-16, 1])
    target = [math.prod(shape[:axis]), math.prod(shape[axis:])]
    if any(t < -1 for t in target) or target == [-1, -1]:
        yield "flatten_dynamic", DYNAMIC_SHAPE, "error", f"input shape {shape}, axis {axis}: X2Paddle reshapes to {target}"


# --- dtypes (paddle 3.3.1) --------------------------------------------------------------
_T = onnx.TensorProto
# Graph inputs: paddle/base/framework.py::convert_np_dtype_to_var_type_ (numpy table);
# verified: uint32, uint64, bfloat16, float8e4m3fn inputs fail "Not supported numpy dtype";
# int16, uint16, complex64 convert.
INPUT_DTYPES = {_T.FLOAT, _T.DOUBLE, _T.FLOAT16, _T.INT8, _T.INT16, _T.INT32, _T.INT64, _T.UINT8,
                _T.UINT16, _T.BOOL, _T.COMPLEX64, _T.COMPLEX128}
# Initializers and multi-element constants become parameters: tensor.set() "supports array
# with bool, float16, float32, float64, int8, int16, int32, int64, uint8 or uint16" (verified
# with a uint32 initializer).
PARAMETER_DTYPES = {_T.BOOL, _T.FLOAT16, _T.FLOAT, _T.DOUBLE, _T.INT8, _T.INT16, _T.INT32, _T.INT64,
                    _T.UINT8, _T.UINT16}
# Cast targets, paddle.full dtypes, graph outputs: Paddle's own dtypes (framework.py's string
# table) plus uint16 (verified: Cast to uint16 converts, Cast to uint32 fails at save).
CAST_DTYPES = {_T.FLOAT, _T.DOUBLE, _T.FLOAT16, _T.BFLOAT16, _T.INT8, _T.INT16, _T.INT32, _T.INT64,
               _T.UINT8, _T.UINT16, _T.BOOL, _T.COMPLEX64, _T.COMPLEX128, _T.FLOAT8E4M3FN, _T.FLOAT8E5M2}


def dtype_name(elem_type: int) -> str:
    return _T.DataType.Name(elem_type).lower() if elem_type in _T.DataType.values() else str(elem_type)


def _dtype(elem_type: int, allowed: set[int], rule_id: str) -> Iterator[Found]:
    if elem_type and elem_type not in allowed:
        yield rule_id, DTYPE_UNSUPPORTED, "error", f"dtype {dtype_name(elem_type)}: Paddle has no such tensor type here"


# --- model-level checks ----------------------------------------------------------------

def _model_issues(view: GraphView) -> Iterator[Issue]:
    declared = view.declared_opset
    first = view.model.opset_import[0] if view.model.opset_import else None
    if view.decoder_failed:
        # onnx_shape_inference.py::infer_shapes returns None below opset 7 (or without an
        # ONNX opset); the decoder then fails on None.node (verified with an opset-6 model)
        yield Issue("opset", OPSET_OUT_OF_RANGE, "error", f"opset {view.opset}: X2Paddle's decoder fails below opset 7", MODEL, "model")
    elif first is not None and first.domain not in ("", "ai.onnx"):
        # decoder/onnx_decoder.py::ONNXDecoder: op_set = opset_import[0].version, any domain
        # (a model listing com.microsoft first converted a Relu with the opset-9 mapper)
        yield Issue("opset", OPSET_OUT_OF_RANGE, "note",
                    f"opset_import[0] is {first.domain or 'ai.onnx'} v{first.version}: X2Paddle reads it as the model's opset "
                    f"and maps the ONNX opset-{view.opset} nodes with its opset-{view.mapper_opset} mapper", MODEL, "model")
    elif declared not in X2PADDLE_OPSETS:
        yield Issue("opset", OPSET_OUT_OF_RANGE, "note",
                    f"opset {declared} is outside X2Paddle's 7-15: it maps the nodes with its opset-{view.mapper_opset} mapper "
                    "(node forms it cannot take are listed separately)", MODEL, "model")
    try:  # bridge's patch stage requires full_check; X2Paddle's decoder runs check_model
        onnx.checker.check_model(view.model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        yield Issue("checker", INVALID_ONNX, "error", f"onnx.checker (full_check) rejects it: {_checker_message(exc)}", MODEL, "model")
    except Exception as exc:  # e.g. a model over 2 GB: the checker wants a path
        yield Issue("checker", INVALID_ONNX, "note", f"onnx.checker could not run: {_first_line(exc)}", MODEL, "model")
    for vi in view.inputs:
        for r, code, sev, reason in _dtype(vi.type.tensor_type.elem_type, INPUT_DTYPES, "input_dtype"):
            yield Issue(r, code, sev, reason, vi.name, "graph input", vi.name)
    for name, t in view.initializers.items():
        const = view.constant_nodes.get(name)  # report a former Constant node as that node
        where = (const.name or name, "Constant") if const is not None else (name, "initializer")
        for r, code, sev, reason in _dtype(t.data_type, PARAMETER_DTYPES, "initializer_dtype"):
            yield Issue(r, code, sev, reason, *where, name)
        if not t.dims and t.data_type in (_T.FLOAT, _T.DOUBLE, _T.FLOAT16):
            # create_parameter: a rank-0 weight becomes paddle.full(fill_value=...), ±inf as a
            # string (patches/constant_infinity.py); Constant nodes land here too (decoder_graph)
            value = numpy_helper.to_array(t)
            if not np.isfinite(value).all():
                yield Issue("initializer_infinity", CONSTANT_VALUE, "error",
                            f"rank-0 {value} constant: X2Paddle writes it as a string, Paddle refuses", *where, name)
    for o in view.graph.output:
        for r, code, sev, reason in _dtype(o.type.tensor_type.elem_type, CAST_DTYPES, "output_dtype"):
            yield Issue(r, code, sev, reason, o.name, "graph output", o.name)
    yield from _name_issues(view)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_NODE_ERROR = re.compile(r"\(op_type:(\w+), node name: ([^)]*)\): \[\w+\] ([^\n]*?)(?=\s*\(op_type:|$)", re.S)


def _checker_message(exc: BaseException) -> str:
    """The first failing node of a shape-inference error, and how many more there are."""
    errors = _NODE_ERROR.findall(str(exc))
    if not errors:
        line = _first_line(exc)
        return line if len(line) <= 200 else line[:199] + "…"
    op, node, message = errors[0]
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"node {node} ({op}): {message.strip()}{more}"


def _name_issues(view: GraphView) -> Iterator[Issue]:
    """decoder/onnx_decoder.py::make_variable_name prefixes "x2paddle_" and replaces only
    ' .*?\\/-:;' by '_'; the names become Python variables in x2paddle_code.py. Verified: a
    tensor 'h+1' fails with SyntaxError; 'h.a' and 'h_a' in one graph convert into one
    variable and compute something else (X2Paddle issues #883, #627)."""
    names = [vi.name for vi in view.graph.input] + list(view.initializers)
    names += [o for n in view.graph.node for o in n.output if o]
    seen: dict[str, str] = {}
    for name in dict.fromkeys(names):
        var = x2paddle_name(name)
        if not var.isidentifier():
            yield Issue("tensor_name", INVALID_NAME, "error", f"tensor name {name!r} becomes {var!r}, not a Python name", name, "tensor", name)
        elif var in seen:
            yield Issue("tensor_name_clash", INVALID_NAME, "mismatch",
                        f"tensor names {seen[var]!r} and {name!r} both become {var!r}", name, "tensor", name)
        else:
            seen[var] = name


# --- scanning ---------------------------------------------------------------------------

def scan(model: onnx.ModelProto) -> tuple[GraphView, list[Issue]]:
    """Every issue in ``model``, model-level ones first, then per node in graph order."""
    view = GraphView(model)
    issues = list(_model_issues(view))
    for node in view.graph.node:
        name, out = node.name or (node.output[0] if node.output else ""), node.output[0] if node.output else ""
        if node.op_type == "Dropout":  # the decoder drops it (optimize_model_skip_op)
            continue
        if node.op_type not in view.mapped:
            # onnx_op_mapper.py::op_checker: no method, directly_map or elementwise entry
            issues.append(Issue("op", OP_NOT_MAPPED, "error",
                                f"X2Paddle 1.6.0 has no mapper for {node.op_type} (opset {view.mapper_opset})", name, node.op_type, out))
            continue
        if node.op_type in view.directly_mapped and len(node.input) != 1:
            # directly_map: assert len(inputs) == 1 (ReduceMean/Max/Min/Prod take axes as an
            # input from opset 18); verified
            issues.append(Issue("directly_map_inputs", ATTRIBUTE_FORM, "error",
                                f"{len(node.input)} inputs (opset-18 axes input?): X2Paddle maps {node.op_type} with one input only",
                                name, node.op_type, out))
        for check in RULES.get(node.op_type, ()):
            for rule_id, code, severity, reason in check(view, node):
                issues.append(Issue(rule_id, code, severity, reason, name, node.op_type, out))
    return view, issues
