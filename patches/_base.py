"""What a graph patch is, and the context it sees.

A patch is a class with ``name``, ``op_types``, ``check(ctx, node) -> MatchResult`` and
``rewrite(ctx, node) -> list[NodeProto]`` (after onnxscript's rewrite rules). ``check``
declines with a reason, so a report can say why a patch did not fire on a node.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class MatchResult:
    ok: bool
    reason: str = ""

    @classmethod
    def fail(cls, reason: str) -> "MatchResult":
        return cls(False, reason)


MATCH = MatchResult(True)


class PatchContext:
    """The model being patched: opset, known tensor ranks, initializers, fresh names."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0
        )
        self.initializers = {t.name: t for t in model.graph.initializer}
        self._names = {n.name for n in model.graph.node} | {
            o for n in model.graph.node for o in n.output
        } | set(self.initializers) | {i.name for i in model.graph.input}
        self.shapes: dict[str, list[int | str | None] | None] = {}
        self.refresh_shapes()

    def refresh_shapes(self) -> None:
        """Infer shapes (non-strict: an invalid node elsewhere must not stop us)."""
        try:
            inferred = onnx.shape_inference.infer_shapes(_without_large_data(self.model), strict_mode=False)
        except Exception:  # shape inference is a hint; a patch declines when it lacks one
            inferred = self.model
        graph = inferred.graph
        for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in tt.shape.dim
                ]
        for name, init in self.initializers.items():
            self.shapes[name] = list(init.dims)

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def fresh_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def int64_constant(self, base: str, values: list[int]) -> tuple[str, onnx.NodeProto]:
        """A Constant node holding an int64 vector; returns (output name, node). The value is
        stored as raw_data: X2Paddle 1.6.0's decoder reads tensor attributes from raw_data only."""
        out = self.fresh_name(base)
        node = helper.make_node(
            "Constant", [], [out], name=self.fresh_name(f"{base}_const"),
            value=numpy_helper.from_array(np.array(values, dtype=np.int64), out),
        )
        return out, node


# Initializers this big are never shape data (Reshape's shape, Slice's starts); shape inference
# gets them as data-less references, so a model over protobuf's 2 GB limit still infers.
_SHAPE_DATA_LIMIT = 1 << 20


def _without_large_data(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as shape inference needs it: a copy whose large initializers keep their type
    and dims but no data (marked external). The model itself when it has none."""
    large = {i for i, t in enumerate(model.graph.initializer)
             if t.data_location != onnx.TensorProto.EXTERNAL and t.ByteSize() >= _SHAPE_DATA_LIMIT}
    if not large:
        return model
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(model.graph, light.graph, skip="initializer")
    for i, tensor in enumerate(model.graph.initializer):
        if i not in large:
            light.graph.initializer.append(tensor)
            continue
        stub = light.graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims,
                                           data_location=onnx.TensorProto.EXTERNAL)
        stub.external_data.add(key="location", value="bridge-shape-inference-stub")
    return light


def _copy_fields(src, dst, skip: str) -> None:
    """Copy every set field of message ``src`` into ``dst`` except ``skip`` (a CopyFrom that
    leaves out one large field)."""
    for desc, value in src.ListFields():
        if desc.name == skip:
            continue
        if desc.is_repeated:
            getattr(dst, desc.name).extend(value)
        elif desc.message_type is not None:
            getattr(dst, desc.name).CopyFrom(value)
        else:
            setattr(dst, desc.name, value)


class Patch:
    name: str = ""
    op_types: tuple[str, ...] = ()

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        raise NotImplementedError

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        raise NotImplementedError


@dataclass
class Firing:
    patch: str
    node: str
    op_type: str


@dataclass
class Declined:
    patch: str
    node: str
    op_type: str
    reason: str


@dataclass
class PatchReport:
    fired: list[Firing] = field(default_factory=list)
    declined: list[Declined] = field(default_factory=list)
    op_counts_before: dict[str, int] = field(default_factory=dict)
    op_counts_after: dict[str, int] = field(default_factory=dict)
    # What each patch that changed the graph changed, in application order (op_diff's form).
    op_diff_by_patch: dict[str, dict[str, str]] = field(default_factory=dict)

    def fired_counts(self) -> dict[str, int]:
        return dict(Counter(f.patch for f in self.fired))

    def op_diff(self) -> dict[str, str]:
        """tf2onnx style: ``{"MaxPool": "+0 (4->4)", "Unsqueeze": "+4 (1->5)"}``, changes only."""
        return count_diff(self.op_counts_before, self.op_counts_after)


def count_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, str]:
    """``{"Unsqueeze": "+4 (1->5)"}`` for every op type whose count changed."""
    diff = {}
    for op in sorted(set(before) | set(after)):
        a, b = before.get(op, 0), after.get(op, 0)
        if a != b:
            diff[op] = f"{b - a:+d} ({a}->{b})"
    return diff


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def get_attr(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def constant_value(ctx: PatchContext, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` when it is an initializer or a ``Constant``'s output, else None."""
    if name in ctx.initializers:
        return numpy_helper.to_array(ctx.initializers[name])
    for node in ctx.model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            value = get_attr(node, "value")
            return None if value is None else numpy_helper.to_array(value)
    return None


def set_attrs(node: onnx.NodeProto, **values) -> None:
    """Replace or add attributes; a value of None removes the attribute."""
    keep = [a for a in node.attribute if a.name not in values]
    del node.attribute[:]
    node.attribute.extend(keep)
    for name, value in values.items():
        if value is not None:
            node.attribute.append(helper.make_attribute(name, value))
