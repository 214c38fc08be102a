"""Stage 4, convert: X2Paddle's ONNX frontend, through bridge's compatibility shims.

Writes ``paddle/x2paddle_code.py`` (dygraph ``ONNXModel``), ``paddle/model.pdparams`` and
``paddle/inference_model/`` (``model.json`` + ``model.pdiparams`` on Paddle 3). X2Paddle runs
in a child process whose output (X2Paddle's and Paddle's chatter) goes to the log file
(in this process inside ``x2paddle_in_this_process()``, for a caller that is itself a
throwaway process).
"""
from __future__ import annotations

import ast
import contextlib
import functools
import json
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import BridgeError, UnsupportedModel, X2PaddleExit
from bridge.onnx_io import graph_inputs, load_onnx
from bridge.patches import x2paddle_shims
from bridge.stages.export import X2PADDLE_OPSETS
from bridge.workdir import atomic_path, capture_fds

CODE_FILE = "x2paddle_code.py"
PARAMS_FILE = "model.pdparams"
INFERENCE_DIR = "inference_model"
MODEL_CLASS = "ONNXModel"


def x2paddle_name(onnx_name: str) -> str:
    """The name X2Paddle's decoder gives a tensor (decoder/onnx_decoder.py)."""
    return "x2paddle_" + re.sub(r"[ .*?\\/\-:;]", "_", onnx_name)


@dataclass
class ConvertResult:
    # The ONNX inputs the Paddle model takes, in the order it takes them: ONNX input name ->
    # X2Paddle/Paddle input name. X2Paddle drops a graph input its code never reads.
    inputs: dict[str, str]
    outputs: list[str]  # ONNX output names, in the order Paddle returns them
    x2paddle_opset: int
    relocated_paths: int
    notes: list[str] = field(default_factory=list)
    unused_inputs: list[str] = field(default_factory=list)  # graph inputs the Paddle model does not take
    rank0_outputs: list[str] = field(default_factory=list)  # outputs the ONNX graph declares rank 0


def paddle_input_names(code_path: Path) -> list[str]:
    """The inputs of X2Paddle's model: the arguments of the generated ``ONNXModel.forward``.
    X2Paddle writes them and the inference model's feeds (``dygraph2static``'s InputSpecs)
    from the same list, ``PaddleGraph.inputs``, which leaves out a graph input no layer reads
    (CastLike's ``like`` once castlike_to_cast made it a Cast, Pad's constant ``value``)."""
    tree = ast.parse(code_path.read_text(), str(code_path))
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name == MODEL_CLASS:
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "forward":
                    return [a.arg for a in fn.args.args[1:]]
    raise BridgeError(f"{code_path}: X2Paddle wrote no {MODEL_CLASS}.forward")


def _declared_rank0(output) -> bool:
    tensor = output.type.tensor_type
    return output.type.HasField("tensor_type") and tensor.HasField("shape") and not tensor.shape.dim


@functools.lru_cache(maxsize=None)
def x2paddle_op_tables(opset: int) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """X2Paddle's op tables for ``opset``: (op types with a mapper method of their own, those
    in ``directly_map_ops``, those in ``elementwise_ops``), read off its OpSet class."""
    x2paddle_shims.install()
    from x2paddle.op_mapper.onnx2paddle import onnx_op_mapper
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import OpSet

    # As ONNXOpMapper.create_opset: below 7 runs as its default 9, above 15 as 15.
    if opset in X2PADDLE_OPSETS:
        run_opset = opset
    else:
        run_opset = 9 if opset < X2PADDLE_OPSETS.start else X2PADDLE_OPSETS.stop - 1
    cls = getattr(onnx_op_mapper, f"OpSet{run_opset}")
    probe = cls.__new__(cls)
    OpSet.__init__(probe, types.SimpleNamespace(graph=None), None)  # fills the op tables only
    methods = frozenset(name for name in dir(cls) if name[:1].isupper() and callable(getattr(cls, name)))
    return methods, frozenset(probe.directly_map_ops), frozenset(probe.elementwise_ops)


def mapped_op_types(opset: int) -> set[str]:
    """Op types X2Paddle's mapper for ``opset`` handles (the same test as its op_checker)."""
    methods, direct, elementwise = x2paddle_op_tables(opset)
    return set(methods | direct | elementwise)


def describe_node(node) -> str:
    """``node 'name' (output 'y', OpType)``: the output too, since onnxsim renames nodes."""
    output = f"output {node.output[0]!r}, " if node.output and node.output[0] != node.name else ""
    return f"node {node.name or node.output[0]!r} ({output}{node.op_type})"


def _node_by_x2paddle_name(model, name: str):
    """X2Paddle names a node after its first output tensor, sanitized (decoder/onnx_decoder.py)."""
    return next((n for n in model.graph.node if n.output and x2paddle_name(n.output[0]) == "x2paddle_" + name), None)


def check_supported(model) -> None:
    """Name the first node X2Paddle has no mapping for, before it prints a bare refusal."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    supported = mapped_op_types(opset)
    missing = [n for n in model.graph.node if n.op_type not in supported and n.op_type != "Dropout"]
    if missing:
        ops = sorted({n.op_type for n in missing})
        first = missing[0]
        raise UnsupportedModel(
            f"{describe_node(first)}: X2Paddle 1.6.0 has no mapping for "
            f"op type{'s' if len(ops) > 1 else ''} {', '.join(ops)} ({len(missing)} node(s))"
        )


def _cause_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return ""
    text = str(cause).strip().splitlines()
    return f": {type(cause).__name__}{': ' + text[0] if text else ''}"


def convert_in_process(onnx_in: Path, out_dir: Path) -> None:
    """Run X2Paddle's ONNX frontend here, in this process, raising bridge errors.

    X2Paddle leaves global state behind (``sys.path`` entries, a cached ``x2paddle_code``
    module, Paddle parameter names that may not be reused: a second conversion in one process
    fails with "parameter name [...] have be been used"), so ``run`` calls this in a child.
    """
    x2paddle_shims.install()
    from x2paddle.convert import onnx2paddle

    try:
        onnx2paddle(str(onnx_in), str(out_dir), disable_feedback=True, enable_onnx_checker=True)
    except BridgeError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        found = re.match(r"convert failed node:(.*), op_type is (\w+)", message)
        if found:  # X2Paddle's print_mapping_info swallowed the cause; it is in __context__
            node = _node_by_x2paddle_name(load_onnx(onnx_in), found.group(1))
            where = describe_node(node) if node is not None else f"node {found.group(1)!r} ({found.group(2)})"
            raise UnsupportedModel(f"{where}: X2Paddle failed to map it{_cause_line(exc)}") from exc
        raise BridgeError(f"{onnx_in}: X2Paddle failed: {type(exc).__name__}: {message}") from exc


_ERRORS = {cls.__name__: cls for cls in (BridgeError, UnsupportedModel, X2PaddleExit)}

# Set by x2paddle_in_this_process(): ``run`` then converts here instead of in a child.
_IN_THIS_PROCESS: ContextVar[bool] = ContextVar("x2paddle_in_this_process", default=False)


@contextlib.contextmanager
def x2paddle_in_this_process() -> Iterator[None]:
    """Within this block ``run`` calls X2Paddle in this process, not in a child.

    Only for a process that is itself disposable and converts once (the conformance harness
    forks one per case from a server that imported Paddle and X2Paddle already): X2Paddle's
    global state stays behind (see ``convert_in_process``), and a native abort in X2Paddle
    takes the calling process down with it. What is written and raised is what the child
    path writes and raises, X2Paddle's output going to the same log file.
    """
    token = _IN_THIS_PROCESS.set(True)
    try:
        yield
    finally:
        _IN_THIS_PROCESS.reset(token)


def _convert_here(onnx_in: Path, out_dir: Path, log_path: Path) -> None:
    """``_child_main``'s conversion and error mapping, in this process."""
    import traceback

    with capture_fds(log_path):
        try:
            convert_in_process(onnx_in, out_dir)
        except BridgeError as exc:
            traceback.print_exc()
            raise _ERRORS.get(type(exc).__name__, BridgeError)(f"{exc} (log: {log_path})") from exc
        except (Exception, SystemExit) as exc:  # as _child_main; Ctrl-C still stops the caller
            traceback.print_exc()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise BridgeError(f"X2Paddle failed: {type(exc).__name__}: {first} (log: {log_path})") from exc


def _child_main(onnx_in: str, out_dir: str, result_json: str) -> int:
    """Entry point of the conversion child: outcome as JSON, tracebacks into the log."""
    import traceback

    result = {"ok": True}
    try:
        convert_in_process(Path(onnx_in), Path(out_dir))
    except BridgeError as exc:
        traceback.print_exc()
        result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - the parent turns this into one line
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {"ok": False, "error": "BridgeError", "message": f"X2Paddle failed: {type(exc).__name__}: {first}"}
    Path(result_json).write_text(json.dumps(result))
    return 0


def _convert_in_child(onnx_in: Path, tmp: Path, log_path: Path, timeout: float) -> None:
    """Run ``_child_main`` in a child process, raising its error here."""
    result_json = tmp.parent / "result.json"
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "bridge.stages.convert", str(onnx_in), str(tmp), str(result_json)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise BridgeError(f"{onnx_in}: X2Paddle did not finish in {timeout:.0f}s (log: {log_path})") from exc
    if not result_json.exists():
        raise BridgeError(
            f"{onnx_in}: X2Paddle's process died (exit status {proc.returncode}) (log: {log_path})"
        )
    outcome = json.loads(result_json.read_text())
    if not outcome["ok"]:
        raise _ERRORS.get(outcome["error"], BridgeError)(f"{outcome['message']} (log: {log_path})")


def run(onnx_in: Path, paddle_dir: Path, log_path: Path, timeout: float = 1800) -> ConvertResult:
    """Convert ``onnx_in`` into ``paddle_dir`` (atomically) in a child process (in this one
    inside ``x2paddle_in_this_process()``); its output goes to ``log_path``."""
    model = load_onnx(onnx_in, weights=False)  # the graph only: X2Paddle reads the weights itself
    check_supported(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paddle_dir) as tmp:
        if _IN_THIS_PROCESS.get():
            _convert_here(onnx_in, tmp, log_path)
        else:
            _convert_in_child(onnx_in, tmp, log_path, timeout)
        expected = [tmp / CODE_FILE, tmp / PARAMS_FILE, tmp / INFERENCE_DIR]
        missing = [p.name for p in expected if not p.exists()]
        if missing:
            raise BridgeError(f"{onnx_in}: X2Paddle wrote no {', '.join(missing)} (log: {log_path})")
        relocated = x2paddle_shims.relocate_params_path(tmp / CODE_FILE)
        shutil.rmtree(tmp / "__pycache__", ignore_errors=True)
    by_paddle_name = {x2paddle_name(g.name): g.name for g in graph_inputs(model)}
    taken = paddle_input_names(paddle_dir / CODE_FILE)
    strange = [name for name in taken if name not in by_paddle_name]
    if strange:
        raise BridgeError(f"{onnx_in}: X2Paddle's model takes an input {strange[0]!r} that is no graph input")
    inputs = {by_paddle_name[name]: name for name in taken}
    unused = [name for name in by_paddle_name.values() if name not in inputs]
    notes = [] if opset in X2PADDLE_OPSETS else [f"opset {opset} converted with X2Paddle's nearest mapper"]
    if unused:
        notes.append(f"graph input(s) {', '.join(unused)} unused by the converted model (X2Paddle drops an "
                     "input no layer reads): the Paddle model does not take them")
    rank0 = [o.name for o in model.graph.output if _declared_rank0(o)]
    return ConvertResult(inputs, [o.name for o in model.graph.output], opset, relocated, notes, unused, rank0)


if __name__ == "__main__":
    sys.exit(_child_main(*sys.argv[1:4]))
