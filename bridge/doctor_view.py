"""X2Paddle 1.6.0's view of an ONNX model, for ``bridge.doctor_rules``: the graph its decoder
maps (its own shape inference, Constant nodes turned into initializers), the shapes and dtypes
its mappers read, the opset mapper it picks, and its op tables. Nothing here converts.
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bridge.stages.convert import mapped_op_types
from bridge.stages.export_strategies import X2PADDLE_OPSETS


def _quiet(fn, *args, **kwargs):
    """X2Paddle's shape inference prints progress and warnings to stdout."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def decoder_graph(model: onnx.ModelProto) -> onnx.GraphProto | None:
    """The graph X2Paddle's decoder maps (decoder/onnx_decoder.py::ONNXGraph.__init__): its
    SymbolicShapeInference, which also turns Constant nodes into initializers and drops nodes
    whose inputs are never defined; on an exception, onnx's shape inference of the model.
    None where X2Paddle gets None (opset < 7), which its decoder does not survive."""
    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()  # onnx.mapping, which x2paddle's decoder package imports
    from x2paddle.decoder.onnx_shape_inference import SymbolicShapeInference

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return _quiet(SymbolicShapeInference.infer_shapes, copy, fixed_input_shape={})
    except Exception:  # the decoder's bare except, then onnx's inference
        try:
            return _quiet(onnx.shape_inference.infer_shapes, model).graph
        except Exception:  # shapes are hints; rules that need one say so
            return model.graph


def _dims(type_proto) -> list[int] | None:
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return None
    # the decoder's out_shapes: dim_value, or -1 where it is 0 (symbolic or unknown)
    return [d.dim_value if d.dim_value > 0 else -1 for d in tt.shape.dim]


class GraphView:
    """One model as X2Paddle 1.6.0 will see it."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        # decoder/onnx_decoder.py::ONNXDecoder reads opset_import[0], whatever its domain
        self.declared_opset = model.opset_import[0].version if model.opset_import else 0
        # onnx_op_mapper.py::ONNXOpMapper.create_opset: 7..15 as is, below 7 as 9, above as 15
        if self.declared_opset in X2PADDLE_OPSETS:
            self.mapper_opset = self.declared_opset
        else:
            self.mapper_opset = 9 if self.declared_opset < X2PADDLE_OPSETS.start else X2PADDLE_OPSETS.stop - 1
        inferred = decoder_graph(model)
        self.decoder_failed = inferred is None
        self.graph = model.graph if inferred is None else inferred
        g = self.graph
        self.initializers = {t.name: t for t in g.initializer}
        self.inputs = [vi for vi in g.input if vi.name not in self.initializers]
        self.output_names = {o.name for o in g.output}
        # node outputs get shapes from value_info only (ONNXGraph.allocate_shapes); graph
        # inputs from their ValueInfo, initializers from their dims (ONNXGraphDataNode)
        self.shapes: dict[str, list[int] | None] = {}
        self.dtypes: dict[str, int] = {}
        for vi in g.value_info:
            self.shapes[vi.name] = _dims(vi.type)
            self.dtypes[vi.name] = vi.type.tensor_type.elem_type
        for vi in list(g.input) + list(g.output):
            self.dtypes.setdefault(vi.name, vi.type.tensor_type.elem_type)
        for vi in self.inputs:
            self.shapes[vi.name] = _dims(vi.type)
        for t in g.initializer:
            self.shapes[t.name] = [d if d > 0 else -1 for d in t.dims]
            self.dtypes[t.name] = t.data_type
        # Constant nodes of the model as given, by output: the decoder made them initializers
        self.constant_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant" and n.output}
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.mapped = mapped_op_types(self.declared_opset)
        self.methods, self.directly_mapped = _mapper_tables(self.mapper_opset)

    def shape(self, name: str) -> list[int] | None:
        return self.shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    def is_constant(self, name: str) -> bool:
        """opset_legacy.py::_const_weight_or_none: an initializer, or the output of a node
        whose op type contains "Constant" (Constant, ConstantOfShape)."""
        producer = self.producer.get(name)
        return name in self.initializers or (producer is not None and "Constant" in producer.op_type)

    def constant(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        producer = self.producer.get(name)
        if producer is not None and producer.op_type == "Constant":
            value = attr(producer, "value")
            return None if value is None else numpy_helper.to_array(value)
        return None


def _mapper_tables(opset: int) -> tuple[frozenset[str], frozenset[str]]:
    """(op types with their own mapper method, op types that go through ``directly_map``)."""
    from bridge.stages.convert import x2paddle_op_tables

    methods, direct, _ = x2paddle_op_tables(opset)
    return methods, direct - methods


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def present(node: onnx.NodeProto) -> list[str]:
    """The node's inputs as X2Paddle indexes them: ``node.inputs`` skips empty names
    (decoder/onnx_decoder.py::build_connection), while ``node.layer.input`` keeps them."""
    return [i for i in node.input if i]
