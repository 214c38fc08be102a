"""``CastLike(x, like: T)`` → ``Cast(x, to=T)``, T the element type of ``like`` (static in ONNX:
a graph input's, an initializer's, or what shape inference gives the tensor).

X2Paddle 1.6.0 has no mapper for CastLike (``op_mapper/onnx2paddle/onnx_op_mapper.py::
op_checker`` prints "========== CastLike ============" and raises ``Exception: Model is not
supported yet.``; bridge reports "X2Paddle 1.6.0 has no mapping for op type CastLike"). ONNX's
function bodies use it wherever a constant must follow the input's type (Elu, HardSigmoid,
LeakyRelu, ReduceL2, ReduceLogSumExp ... expanded), and so do the exporters. Cast takes the
same attributes from opset 19 on (``saturate``, later ``round_mode``), so they are carried over.
"""
from __future__ import annotations

import weakref

import onnx
from onnx import helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext

# Element types per PatchContext: CastLike's output type never differs from ``like``'s, so
# rewriting one does not change another's; one inference per patch run is enough.
_TYPES: "weakref.WeakKeyDictionary[PatchContext, dict[str, int]]" = weakref.WeakKeyDictionary()


def elem_types(ctx: PatchContext) -> dict[str, int]:
    """Tensor name → ONNX element type, from graph inputs, initializers, Constant nodes and
    (non-strict) shape inference."""
    if ctx in _TYPES:
        return _TYPES[ctx]
    model = ctx.model
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is a hint; without it only declared types are known
        inferred = model
    types: dict[str, int] = {}
    graph = inferred.graph
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    types[node.output[0]] = attr.t.data_type
    _TYPES[ctx] = types
    return types


class CastLikeToCast(Patch):
    name = "castlike_to_cast"
    op_types = ("CastLike",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        if len(node.input) < 2 or not node.input[1]:
            return MatchResult.fail("no target_type input")
        if not elem_types(ctx).get(node.input[1]):
            return MatchResult.fail(f"element type of {node.input[1]!r} unknown (shape inference gives none)")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        cast = helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name,
                                to=elem_types(ctx)[node.input[1]])
        cast.attribute.extend(a for a in node.attribute if a.name != "to")
        return [cast]
