"""Paddle's side of layerwise validation: which generated statements compute each ONNX node, and
running them, whole and one node at a time on ONNX Runtime's values.

X2Paddle 1.6.0 writes ``forward`` as straight-line code, one statement per Paddle layer, in the
order its mapper visited the ONNX nodes. It records nowhere which node a statement came from,
and a node's statements do not only assign its own outputs (``Reshape`` re-casts its shape input
in place, ``Gemm`` adds ``<out>_mm``), so names alone cannot group them. Here X2Paddle's decoder,
op mapper and optimizer passes are re-run on the patched ONNX (as ``onnx2paddle`` does, writing
nothing), recording which node added each layer; the layers are then matched one by one with the
statements of the generated file. A statement that does not match stops with a line naming it.
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

import numpy as np

from bridge.errors import BridgeError

MODEL_CLASS = "ONNXModel"
# X2Paddle's decoder turns graph inputs and initializers into data nodes of these "op types".
DATA_OPS = ("place_holder", "create_parameter")


class LayerwiseError(BridgeError):
    """Layerwise validation cannot pair the generated code with the ONNX graph."""


@dataclass
class NodeCode:
    """The generated ``forward`` statements X2Paddle emitted for one decoder node."""

    owner: str  # X2Paddle's node name (its first output, sanitized)
    op_type: str  # ONNX op type, or one of DATA_OPS
    outputs: list[str]  # the node's output variables, as X2Paddle names them
    statements: list[int] = field(default_factory=list)  # indices into forward's body
    reads: list[str] = field(default_factory=list)  # variables read before written, in order
    writes: set[str] = field(default_factory=set)
    code: CodeType | None = None  # all its statements, for the run on ONNX Runtime's values

    @property
    def is_data(self) -> bool:
        return self.op_type in DATA_OPS


@dataclass
class NodeRun:
    """One node's values: from the whole model's run, and from its own statements alone."""

    full: dict[str, np.ndarray | None] = field(default_factory=dict)
    full_error: str | None = None
    local: dict[str, np.ndarray | None] = field(default_factory=dict)
    local_error: str | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _mapper_layers(onnx_path: Path) -> tuple[list[tuple[Any, str]], dict[str, NodeCode], list[str]]:
    """Re-run X2Paddle on ``onnx_path``: its layers in code order with the node that added each,
    one ``NodeCode`` per decoder node (no statements yet), and the graph's input variables."""
    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()
    from x2paddle.core.program import PaddleGraph
    from x2paddle.decoder.onnx_decoder import ONNXDecoder, ONNXGraphNode
    from x2paddle.op_mapper.onnx2paddle.onnx_op_mapper import ONNXOpMapper
    from x2paddle.optimizer.optimizer import GraphOptimizer

    owner_of: dict[str, str] = {}
    nodes: dict[str, NodeCode] = {}

    class RecordingMapper(ONNXOpMapper):
        # ONNXOpMapper.__init__ of X2Paddle 1.6.0, recording which node added each layer.
        def __init__(self, decoder):
            self.support_op_sets = [7, 8, 9, 10, 11, 12, 13, 14, 15]
            self.default_op_set = 9
            self.graph = decoder.graph
            self.paddle_graph = PaddleGraph(parent_layer=None, source_type="onnx")
            self.paddle_graph.outputs = self.graph.output_nodes
            self.opset = self.create_opset(decoder)
            for node_name in self.graph.topo_sort:
                node = self.graph.get_node(node_name)
                before = len(self.paddle_graph.layers)
                op = node.layer_type
                if hasattr(self.opset, op):
                    getattr(self.opset, op)(node)
                elif op in self.opset.directly_map_ops:
                    self.opset.directly_map(node)
                elif op in self.opset.elementwise_ops:
                    self.opset.elementwise_map(node)
                for layer_id in list(self.paddle_graph.layers)[before:]:
                    owner_of[layer_id] = node_name
                if isinstance(node, ONNXGraphNode):
                    outputs = list(node.layer.output)
                    op_type = node.layer.op_type
                else:  # a graph input or an initializer
                    outputs = [node_name]
                    op_type = "place_holder" if getattr(node, "is_global_input", False) else "create_parameter"
                nodes[node_name] = NodeCode(node_name, op_type, outputs)
            self.paddle_graph.set_name(self.graph.graph_name)
            self.paddle_graph.set_parameters(self.opset.weights)
            self.paddle_graph.set_inputs_info(self.opset.inputs_info)

    # X2Paddle prints progress on both streams; the conversion log already has it.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            mapper = RecordingMapper(ONNXDecoder(str(onnx_path), True))
            mapper.paddle_graph.build()
            GraphOptimizer(source_frame="onnx").optimize(mapper.paddle_graph)
        except Exception as exc:
            raise LayerwiseError(f"{onnx_path}: re-running X2Paddle's mapper failed: {_one_line(exc)}") from exc
    graph = mapper.paddle_graph
    node_of_var = {v: n.owner for n in nodes.values() for v in n.outputs}
    layers = []
    for layer_id, layer in graph.layers.items():
        owner = owner_of.get(layer_id)
        if owner is None:  # made by an optimizer pass (a fusion): the node whose output it writes
            owner = next((node_of_var[o] for o in layer.outputs if o in node_of_var), None)
        layers.append((layer, owner))
    return layers, nodes, list(graph.inputs)


def _layer_targets(layer) -> list[str] | None:
    """The names the forward statement of ``layer`` assigns (PaddleGraph.gen_code's rules), or
    None when gen_code writes no forward statement for it."""
    kernel, outputs = layer.kernel, [o.strip() for o in layer.outputs]
    if ("paddle.nn" in kernel and "functional" not in kernel) or kernel == "paddle.to_tensor" \
            or kernel.startswith("custom_layer"):
        if kernel == "paddle.to_tensor" and not str(layer.attrs.get("data", "")).startswith("params["):
            return outputs[:1]
        if len(outputs) <= 2:
            return outputs[-1:]
        if kernel == "paddle.nn.LSTM":
            return [outputs[1], *outputs[-2:]]
        return outputs[1:]
    return outputs


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _names(elt)]
    return []


def _stmt_targets(stmt: ast.stmt) -> list[str]:
    return [n for t in stmt.targets for n in _names(t)] if isinstance(stmt, ast.Assign) else []


def _reads_writes(stmts: list[ast.stmt], ignore: set[str]) -> tuple[list[str], set[str]]:
    reads: list[str] = []
    writes: set[str] = set()
    for stmt in stmts:
        value = stmt.value if isinstance(stmt, ast.Assign) else stmt
        for node in ast.walk(value):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                    and node.id not in writes and node.id not in ignore and node.id not in reads:
                reads.append(node.id)
        writes.update(_stmt_targets(stmt))
    return reads, writes


def _forward(code_path: Path) -> tuple[list[str], list[ast.stmt], list[str]]:
    """forward's argument names, its statements before the return, and the returned names."""
    tree = ast.parse(code_path.read_text(), str(code_path))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == MODEL_CLASS), None)
    forward = cls and next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward"), None)
    if forward is None:
        raise LayerwiseError(f"{code_path}: no {MODEL_CLASS}.forward (not X2Paddle's generated code)")
    body = list(forward.body)
    returned = _names(body.pop().value) if body and isinstance(body[-1], ast.Return) else []
    return [a.arg for a in forward.args.args[1:]], body, returned


class PaddleProgram:
    """The generated dygraph model with its ``forward`` split into per-node statement groups."""

    def __init__(self, paddle_dir: Path, onnx_path: Path, device: str = "cpu"):
        import paddle

        from bridge.runners import load_generated_module

        self._paddle = paddle
        paddle.set_device("gpu" if device == "gpu" else "cpu")
        code_path = paddle_dir / "x2paddle_code.py"
        self.args, body, self.returned = _forward(code_path)
        layers, self.nodes, inputs = _mapper_layers(onnx_path)
        self.stmt_owner = self._align(code_path, body, layers, set(inputs))
        module = load_generated_module(code_path)
        with paddle.utils.unique_name.guard():  # see PaddleDygraphRunner
            self.model = getattr(module, MODEL_CLASS)()
        self.model.set_dict(paddle.load(str(paddle_dir / "model.pdparams")))
        self.model.eval()
        self.globals = dict(vars(module))
        ignore = set(self.globals) | set(dir(builtins)) | {"self"}
        self.statements = [compile(ast.Module([s], []), f"{code_path}:{s.lineno}", "exec") for s in body]
        self.order: list[str] = []  # owners in the order their first statement runs
        for index, owner in enumerate(self.stmt_owner):
            node = self.nodes[owner]
            if not node.statements:
                self.order.append(owner)
            node.statements.append(index)
        for node in self.nodes.values():
            stmts = [body[i] for i in node.statements]
            node.reads, node.writes = _reads_writes(stmts, ignore)
            node.code = compile(ast.Module(stmts, []), f"{code_path}:{node.owner}", "exec")
        self._first = {self.nodes[o].statements[0]: o for o in self.order}
        self._last = {self.nodes[o].statements[-1]: o for o in self.order}

    def _align(self, code_path: Path, body: list[ast.stmt], layers, inputs: set[str]) -> list[str]:
        """The owner of each forward statement: X2Paddle's layers and the file's statements,
        matched in order by the names each assigns."""
        owners: list[str] = []
        pending: list[int] = []  # statements of layers no node claimed yet (fusion leftovers)
        index = 0
        for layer, owner in layers:
            if layer.kernel == "paddle.to_tensor" and layer.attrs.get("data") in inputs:
                continue  # gen_code drops these: the graph inputs are forward's arguments
            expected = _layer_targets(layer)
            got = _stmt_targets(body[index]) if index < len(body) else None
            if got != expected:
                where = f"statement {index + 1} of forward ({ast.unparse(body[index])[:90]})" \
                    if index < len(body) else "the end of forward"
                raise LayerwiseError(
                    f"{code_path}: {where} is not X2Paddle's {layer.kernel} layer assigning "
                    f"{', '.join(expected or [])} (the code was not written by this X2Paddle from this ONNX file)")
            if owner is None:
                pending.append(index)
            else:
                owners.extend([owner] * (len(pending) + 1))
                pending = []
            index += 1
        if pending or index != len(body):
            raise LayerwiseError(f"{code_path}: forward has {len(body)} statements, X2Paddle's re-run {index}")
        return owners

    def run(self, inputs: dict[str, np.ndarray], ort_values: dict[str, np.ndarray]) -> dict[str, NodeRun]:
        """Run forward on ``inputs`` (by argument name), statement by statement, snapshotting
        each node's outputs; before each node's first statement, also run all its statements
        alone, with ``ort_values`` (by variable name) for the variables it reads."""
        paddle = self._paddle
        scope = dict(self.globals, self=self.model)
        scope.update({a: paddle.to_tensor(np.ascontiguousarray(inputs[a])) for a in self.args})
        runs = {owner: NodeRun() for owner in self.order}
        with paddle.no_grad():
            for index, statement in enumerate(self.statements):
                first = self._first.get(index)
                if first is not None and not self.nodes[first].is_data:
                    self._run_local(self.nodes[first], runs[first], scope, ort_values)
                owner = self.stmt_owner[index]
                try:
                    exec(statement, scope)
                except Exception as exc:  # a runtime failure is a finding for this node
                    runs[owner].full_error = runs[owner].full_error or _one_line(exc)
                if index in self._last:
                    node = self.nodes[self._last[index]]
                    runs[node.owner].full = {v: _numpy(scope.get(v)) for v in node.outputs if v in node.writes}
                    if node.is_data:  # reads nothing: its own statements are the whole run's
                        runs[node.owner].local = runs[node.owner].full
        return runs

    def _run_local(self, node: NodeCode, run: NodeRun, scope: dict, ort_values: dict[str, np.ndarray]) -> None:
        paddle = self._paddle
        local = dict(self.globals, self=self.model)
        for name in node.reads:
            current = scope.get(name)
            if name in ort_values:
                array = np.ascontiguousarray(ort_values[name])
                # Feed it as the whole run holds it here: X2Paddle keeps some index tensors
                # int32 and holds 0-d tensors as shape [1].
                if array.ndim == 0 and isinstance(current, paddle.Tensor) and list(current.shape) == [1]:
                    array = array.reshape(1)
                value = paddle.to_tensor(array)
                if isinstance(current, paddle.Tensor) and value.dtype != current.dtype:
                    value = value.astype(current.dtype)
                local[name] = value
            elif name in scope:
                local[name] = current  # parameters, constants, X2Paddle's own intermediates
            else:
                run.local_error = f"input {name} was not computed by the whole-model run"
                return
        try:
            exec(node.code, local)
        except Exception as exc:
            run.local_error = _one_line(exc)
            return
        run.local = {v: _numpy(local.get(v)) for v in node.outputs if v in node.writes}


def _numpy(value: Any) -> np.ndarray | None:
    if value is None or isinstance(value, (list, tuple, dict)):
        return None
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)
