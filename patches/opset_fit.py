"""Opset 16+ node forms → their opset-15 forms, and the model's opset → 15:
``ReduceMean(x, axes: constant)`` (and Max, Min, Prod, L1, L2, LogSum, LogSumExp, SumSquare)
→ ``ReduceMean<axes=[...]>(x)`` (for empty axes with noop_with_empty_axes=1 the elementwise part:
``Identity(x)``, ``Abs``, ``Sqrt(x·x)``, ``Log``, ``x·x``);
``Split<num_outputs=n>(x)`` → ``Split(x)`` (equal parts) or ``Split(x, sizes)``;
``Pad(x, pads, value, axes: constant)`` → ``Pad(x, pads over every axis, value)``;
``Resize``, ``Cast``, ``AveragePool``, ``ScatterElements``/``ScatterND`` with the newer
attributes at their defaults → without them.

X2Paddle 1.6.0 maps opsets 7-15; a model above runs through its opset-15 mapper
(``op_mapper/onnx2paddle/onnx_op_mapper.py::create_opset``), whose handlers read the older
forms: ``opset_legacy.py::directly_map`` asserts one input (``AssertionError: directly_map
error with multi inputs`` for ReduceMean/Max/Min/Prod with an axes input), ``ReduceL1``/
``ReduceL2`` read only the axes attribute (the axes input is dropped from the generated
``forward``: ``TypeError: ONNXModel.forward() takes N positional arguments``), ``Split`` never
reads ``num_outputs``, ``Pad`` never reads ``axes``. The rewritten nodes are valid only at the
older opset, so the patch fires only when the whole model fits opset 15 afterwards (every node
has the same form at 15 or is rewritten, checked with ``onnx.checker`` full_check on a trial
copy) and then declares opset 15. ``onnx.version_converter`` (18 → 15) does the Reduce part but
has no adapter down from 18 for Split or to 17 for Pad, and converts a whole model or nothing.
"""
from __future__ import annotations

import weakref

import numpy as np
import onnx
from onnx import helper

from bridge.opset_upgrade import default_opset
from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, constant_value, get_attr, set_attrs

TARGET_OPSET = 15  # X2Paddle 1.6.0's newest mapper (opset15.py)

REDUCE_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
             "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")  # axes input from opset 18
# Attributes added after opset 15 whose default is the older behaviour: dropped when default.
_DEFAULT_ATTRS: dict[str, dict[str, object]] = {
    "Resize": {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"},  # opset 18
    "Cast": {"saturate": 1},  # opset 19; only float8 targets saturate, none exists at 15
    "ScatterElements": {"reduction": b"none"},  # opset 16
    "ScatterND": {"reduction": b"none"},  # opset 16
}
# Same inputs and attributes as at 15, different meaning: never lowered.
_CHANGED_MEANING = {"RoiAlign": "opset 16 changed the default coordinate_transformation_mode"}


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    new = onnx.NodeProto()
    new.CopyFrom(node)
    return new


def needs_rewrite(node: onnx.NodeProto) -> bool:
    """The node is in a form opset 15 does not have (decided by its form, not the opset)."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return False
    if op in REDUCE_18:
        return len(node.input) > 1 or get_attr(node, "noop_with_empty_axes") is not None
    if op == "Split":
        return get_attr(node, "num_outputs") is not None
    if op == "Pad":
        return len(node.input) > 3
    if op == "AveragePool":
        return get_attr(node, "dilations") is not None
    if op == "Resize":
        return any(get_attr(node, a) is not None for a in ("antialias", "keep_aspect_ratio_policy", "axes"))
    if op in _DEFAULT_ATTRS:
        return any(get_attr(node, a) is not None for a in _DEFAULT_ATTRS[op])
    return False


def rewrite_node(ctx: PatchContext, node: onnx.NodeProto) -> tuple[list[onnx.NodeProto] | None, str]:
    """(the opset-15 nodes, "") or (None, why not)."""
    op = node.op_type
    if op in REDUCE_18:
        return _reduce(ctx, node)
    if op == "Split":
        return _split(ctx, node)
    if op == "Pad":
        return _pad(ctx, node)
    if op == "AveragePool":
        dilations = get_attr(node, "dilations")
        if any(d != 1 for d in dilations):
            return None, f"dilations {list(dilations)}: AveragePool has none before opset 19"
        new = _copy(node)
        set_attrs(new, dilations=None)
        return [new], ""
    if op == "Resize" and get_attr(node, "axes") is not None:
        return None, "axes attribute (opset 18): scales/sizes cover some axes only"
    if op == "Resize" and get_attr(node, "coordinate_transformation_mode") == b"half_pixel_symmetric":
        return None, "coordinate_transformation_mode half_pixel_symmetric (opset 19)"
    new = _copy(node)
    for attr, default in _DEFAULT_ATTRS.get(op, {}).items():
        value = get_attr(node, attr)
        if value is not None and value != default:
            return None, f"{attr}={value!r} has no opset-15 form"
        set_attrs(new, **{attr: None})
    return [new], ""


def _reduce(ctx: PatchContext, node: onnx.NodeProto) -> tuple[list[onnx.NodeProto] | None, str]:
    axes = None
    if len(node.input) > 1 and node.input[1]:
        axes = constant_value(ctx, node.input[1])
        if axes is None:
            return None, f"axes {node.input[1]!r} is not a constant: opset 15 needs the values as an attribute"
    noop = get_attr(node, "noop_with_empty_axes", 0)
    if (axes is None or axes.size == 0) and noop:
        return _reduce_nothing(ctx, node), ""
    # keepdims written out: directly_map looks a missing one up under the wrong default key
    # (``dict(axes=None, keepdim=True)`` for ReduceMin/Max/Prod: KeyError: 'keepdims')
    new = helper.make_node(node.op_type, [node.input[0]], list(node.output), name=node.name,
                           keepdims=get_attr(node, "keepdims", 1))
    if axes is not None and axes.size:
        new.attribute.append(helper.make_attribute("axes", [int(a) for a in axes.reshape(-1)]))
    return [new], ""


# A reduction over an empty set of axes (noop_with_empty_axes=1) still applies its elementwise
# part (ONNX Runtime: ReduceLogSum gives log(x), ReduceSumSquare x·x): ops applied in turn to
# x (Mul: x·x). Mean, Max, Min, Prod and LogSumExp (log(exp(x)), which ORT computes as
# log(exp(x − x)) + x) are x itself. Found by tests/test_fuzz_patches.py
# (an Identity for all nine gave x for ReduceLogSum). On integers Log/Exp/Sqrt are not valid
# at opset 15, so the trial's checker declines those models.
_EMPTY_AXES_OPS = {"ReduceL1": ("Abs",), "ReduceL2": ("Mul", "Sqrt"), "ReduceLogSum": ("Log",),
                   "ReduceSumSquare": ("Mul",)}


def _reduce_nothing(ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    ops = _EMPTY_AXES_OPS.get(node.op_type, ("Identity",))
    nodes, x = [], node.input[0]
    for i, op in enumerate(ops):
        last = i == len(ops) - 1
        out = node.output[0] if last else ctx.fresh_name(f"{node.output[0]}_{op.lower()}")
        nodes.append(helper.make_node(op, [x, x] if op == "Mul" else [x], [out],
                                      name=node.name if last else ctx.fresh_name(f"{node.name or node.output[0]}_{op.lower()}")))
        x = out
    return nodes


def _split(ctx: PatchContext, node: onnx.NodeProto) -> tuple[list[onnx.NodeProto] | None, str]:
    parts = get_attr(node, "num_outputs")
    new = _copy(node)
    set_attrs(new, num_outputs=None)
    shape = ctx.shapes.get(node.input[0])
    axis = get_attr(node, "axis", 0)
    size = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
    if isinstance(size, int) and size % parts == 0:
        return [new], ""  # opset 13 without split sizes: equal parts, one per output
    if not isinstance(size, int):
        return None, f"num_outputs {parts} on an axis of unknown size: the sizes cannot be written out"
    chunk = -(-size // parts)  # opset 18: ceil-sized parts, the last one smaller
    sizes, const = ctx.int64_constant(f"{node.name or node.output[0]}_split", [chunk] * (parts - 1) + [size - chunk * (parts - 1)])
    del new.input[1:]
    new.input.append(sizes)
    return [const, new], ""


def _pad(ctx: PatchContext, node: onnx.NodeProto) -> tuple[list[onnx.NodeProto] | None, str]:
    if get_attr(node, "mode", b"constant") == b"wrap":
        return None, "mode wrap (opset 19)"
    axes = constant_value(ctx, node.input[3]) if node.input[3] else None
    pads = constant_value(ctx, node.input[1])
    rank = ctx.rank(node.input[0])
    if node.input[3] and axes is None:
        return None, f"axes {node.input[3]!r} is not a constant"
    if pads is None:
        return None, f"pads {node.input[1]!r} is not a constant: it cannot be spread over every axis"
    if rank is None:
        return None, "input rank unknown"
    full = np.zeros(2 * rank, dtype=np.int64)
    listed = [int(a) % rank for a in axes] if axes is not None else list(range(rank))
    for i, axis in enumerate(listed):
        full[axis], full[rank + axis] = pads[i], pads[len(listed) + i]
    name, const = ctx.int64_constant(f"{node.name or node.output[0]}_pads", full.tolist())
    new = _copy(node)
    del new.input[:]
    new.input.extend([node.input[0], name] + [i for i in node.input[2:3]])
    while new.input and not new.input[-1]:
        del new.input[-1]
    return [const, new], ""


# One plan per model being patched: whether the whole model fits opset 15 once rewritten.
_PLANS: "weakref.WeakKeyDictionary[PatchContext, str]" = weakref.WeakKeyDictionary()


def _plan(ctx: PatchContext) -> str:
    """"" when the model fits opset 15 after the rewrites, else why not (first problem)."""
    if ctx in _PLANS:
        return _PLANS[ctx]
    _PLANS[ctx] = reason = _trial(ctx)
    return reason


def _trial(ctx: PatchContext) -> str:
    model = ctx.model
    for node in model.graph.node:
        if node.op_type in _CHANGED_MEANING and node.domain in ("", "ai.onnx"):
            return f"node {node.name!r} ({node.op_type}): {_CHANGED_MEANING[node.op_type]}"
    trial = onnx.ModelProto()
    trial.CopyFrom(model)
    trial_ctx = PatchContext(trial)
    nodes = []
    for node in model.graph.node:
        if not needs_rewrite(node):
            nodes.append(node)
            continue
        new, why = rewrite_node(trial_ctx, node)
        if new is None:
            return f"node {node.name!r} ({node.op_type}): {why}"
        nodes.extend(new)
    del trial.graph.node[:]
    trial.graph.node.extend(nodes)
    for entry in trial.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = TARGET_OPSET
    try:
        onnx.checker.check_model(trial, full_check=True)
    except Exception as exc:  # ValidationError / InferenceError: some node has no 15 form
        lines = str(exc).strip().splitlines()
        return f"not valid at opset {TARGET_OPSET}: {lines[0][:200] if lines else type(exc).__name__}"
    return ""


class OpsetFit(Patch):
    name = "opset_fit"
    op_types = REDUCE_18 + ("Split", "Pad", "AveragePool", *_DEFAULT_ATTRS)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if not needs_rewrite(node):
            return MatchResult.fail(f"already in its opset-{TARGET_OPSET} form")
        opset = default_opset(ctx.model)
        if opset <= TARGET_OPSET and ctx not in _PLANS:
            return MatchResult.fail(f"model at opset {opset}: nothing to lower")
        reason = _plan(ctx)
        if reason:
            return MatchResult.fail(f"model cannot go to opset {TARGET_OPSET}: {reason}")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new, why = rewrite_node(ctx, node)
        if new is None:  # check ran the same rewrite on a copy; reaching here is a bug
            raise AssertionError(f"opset_fit: node {node.name!r} ({node.op_type}): {why}")
        for entry in ctx.model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = TARGET_OPSET
        ctx.opset = TARGET_OPSET
        return new
