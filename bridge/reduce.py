"""``bridge reduce``: shrink a failing model to a small subgraph that still fails the same way.

The graph reduced is the one X2Paddle sees (``model.patched.onnx``). ONNX Runtime runs it once
with every intermediate tensor exposed; a candidate is a set of the graph's nodes, and each
tensor feeding it from outside becomes a graph input fed with that ONNX Runtime value (or an
initializer holding it, where X2Paddle needs a constant), so the candidate sees the data the
full model saw. Each trial is a real conversion (X2Paddle in a child process) and a real
Paddle Inference run, compared with ONNX Runtime on the candidate by ``bridge.compare``'s rule.

Search: bisect the topological node range (keep the first or the second half while it still
fails), then remove single nodes while it still fails (delta debugging at granularity one),
each candidate tried once (cached by node set) and at most ``max_trials`` trials in all.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from bridge.compare import DEFAULT_ATOL, DEFAULT_RTOL, OutputDiff, compare_arrays
from bridge.errors import BridgeError
from bridge.workdir import (
    PADDLE_DIR, PATCHED_ONNX, atomic_path, capture_fds, check_out_dir, write_json_atomic, write_text_atomic,
)

REPRO_DIR = "repro"
REPRO_MODEL, REPRO_INPUTS, REPRO_FAILURE, REPRO_COMMAND = "model.onnx", "inputs.npz", "failure.json", "command.txt"
DEFAULT_MAX_TRIALS = 64
NONDETERMINISTIC_OPS = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli")


@dataclass(frozen=True)
class Failure:
    """How a model fails: ``kind`` and a normalised ``key`` must both agree for two failures to
    be "the same way"; ``detail`` is the line people read."""

    # "conversion" (X2Paddle refused or crashed), "paddle_runtime", "mismatch"; for a candidate
    # only: "reference_error" (ONNX Runtime cannot run it), "invalid_cut" (no value to cut at)
    kind: str
    key: str
    detail: str

    def same_as(self, other: Failure | None) -> bool:
        return other is not None and (self.kind, self.key) == (other.kind, other.key)


@dataclass
class CheckResult:
    failure: Failure | None
    diffs: list[OutputDiff] = field(default_factory=list)


@dataclass
class Trial:
    number: int
    nodes: tuple[int, ...]
    failure: Failure | None
    same: bool
    seconds: float


@dataclass
class ReduceResult:
    source: Path
    total_nodes: int
    failure: Failure | None  # the full model's; None: it does not fail
    kept: tuple[int, ...] = ()
    kept_names: list[str] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    exhausted: bool = False  # stopped at max_trials: the repro fails but may not be minimal
    repro: Path | None = None


def normalise(text: str, paths: Iterable[Path] = ()) -> str:
    """A failure message with what differs between trials removed: log and model paths, numbers."""
    text = re.sub(r"\s*\(log: [^)]*\)\s*$", "", text.strip())
    for path in sorted((str(p) for p in paths), key=len, reverse=True):
        text = text.replace(path, "<model>")
    text = re.sub(r"\.tmp-\w+", ".tmp-*", text)  # atomic_path's temp folders
    return re.sub(r"\d+", "#", text)


def _first_error_line(exc: BaseException) -> str:
    # Paddle's errors open with C++ stack frames; the "(InvalidArgument) ..." line says what.
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not set(line.strip()) <= set("-=")]
    named = next((line for line in lines if re.match(r"\(\w+\)", line) or "Error" in line), None)
    return f"{type(exc).__name__}: {named or (lines[0] if lines else '')}"


def _as_onnx_represents(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Paddle's value in ONNX's representation where X2Paddle only represents it differently:
    shape [1] for a 0-d tensor, int32 for int64 indices. Cut outputs are often such tensors,
    and counting these as mismatches would make a reduction chase them instead of the bug."""
    if ref.ndim == 0 and got.shape == (1,):
        got = got.reshape(())
    if got.dtype != ref.dtype and got.dtype.kind in "iub" and ref.dtype.kind in "iub":
        got = got.astype(ref.dtype)
    return got


def check_model(onnx_path: Path, feeds: dict[str, np.ndarray], scratch: Path, *, settings: dict | None = None,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, compare: bool = True) -> CheckResult:
    """Convert ``onnx_path`` with X2Paddle and run it in Paddle Inference against ONNX Runtime on
    ``feeds``. ``compare=False`` stops after a successful conversion (a conversion failure is
    being reduced: a model that converts cannot fail that way)."""
    from bridge.runners import OrtRunner, PaddleInferenceRunner
    from bridge.stages import convert as convert_stage

    log = scratch / "trial.log"
    try:
        result = convert_stage.run(onnx_path, scratch / PADDLE_DIR, log)
    except BridgeError as exc:
        message = re.sub(r"\s*\(log: [^)]*\)\s*$", "", str(exc))
        if message.endswith(":") and log.exists():  # Paddle's "In transformed code:": the cause is in the log
            causes = [c for c in re.findall(r"^\s*(\w+(?:Error|Exception): .*\S)\s*$", log.read_text(errors="replace"),
                                            flags=re.M) if not c.endswith(":")]
            message += f" {causes[-1]}" if causes else ""
        return CheckResult(Failure("conversion", f"{type(exc).__name__}: {normalise(message, [onnx_path, scratch])}", message))
    if not compare:
        return CheckResult(None)
    try:
        reference = OrtRunner(onnx_path).run(feeds)
    except Exception as exc:  # no reference: a failure no full model (ORT ran it) shares
        line = _first_error_line(exc)
        return CheckResult(Failure("reference_error", normalise(line, [onnx_path, scratch]), line))
    try:
        with capture_fds(log):  # Paddle's glog chatter
            got = PaddleInferenceRunner(scratch / PADDLE_DIR, result.inputs, result.outputs, settings=settings).run(feeds)
    except Exception as exc:  # a runtime refusing the model is a failure kind of its own
        line = _first_error_line(exc)
        return CheckResult(Failure("paddle_runtime", normalise(line, [onnx_path, scratch]), line))
    missing = [name for name in result.outputs if name not in got]
    if missing:
        line = f"Paddle Inference returned no output {missing[0]!r}"
        return CheckResult(Failure("paddle_runtime", normalise(line), line))
    diffs = [compare_arrays(_as_onnx_represents(got[name], reference[name]), reference[name], batch=0, output=name,
                            runner="paddle_inference", reference="onnxruntime", atol=atol, rtol=rtol)
             for name in result.outputs]
    bad = [d for d in diffs if not d.passed]
    if not bad:
        return CheckResult(None, diffs)
    worst = bad[0]
    size = f" (max_abs {worst.max_abs_diff:.2e})" if worst.max_abs_diff is not None else ""
    detail = f"Paddle Inference vs ONNX Runtime: output {worst.output!r}: {worst.problem}{size}"
    if len(bad) > 1:
        detail += f", and {len(bad) - 1} more output(s)"
    # Any output over tolerance is this kind: a wrong stride shows as wrong values at the
    # model's output and as a wrong shape at the node's own output.
    return CheckResult(Failure("mismatch", "", detail), diffs)


# ---------------------------------------------------------------------------------------------
# The graph and its cuts


def _subgraph_reads(graph) -> set[str]:
    """Names a control-flow body reads from the enclosing scope."""
    import onnx

    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        reads |= {n for n in node.input if n and n not in defined}
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                reads |= _subgraph_reads(body) - defined
        defined |= set(node.output)
    return reads


class GraphIndex:
    """The model's nodes in topological order, who produces and reads each tensor, and which
    tensors are constants (not computed from the graph's input data)."""

    def __init__(self, model):
        import onnx

        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.graph_inputs = {vi.name: vi for vi in graph.input if vi.name not in self.initializers}
        self.graph_outputs = {vi.name: vi for vi in graph.output}
        self.value_info = {vi.name: vi for vi in graph.value_info}
        self.reads: list[list[str]] = []
        self.readers: dict[str, set[int]] = {}
        self.constant: set[str] = set(self.initializers)
        self.producer: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            names = [n for n in node.input if n]
            for attr in node.attribute:
                for body in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    names += sorted(_subgraph_reads(body))
            names = list(dict.fromkeys(names))
            self.reads.append(names)
            for name in names:
                self.readers.setdefault(name, set()).add(i)
            self.producer.update({o: i for o in node.output if o})
            if node.op_type not in NONDETERMINISTIC_OPS and all(n in self.constant for n in names):
                self.constant |= {o for o in node.output if o}

    def close(self, keep: Iterable[int], values: dict[str, np.ndarray]) -> frozenset[int]:
        """``keep`` plus the producers of every tensor it reads that is not float data (shapes,
        masks, indices, constants computed by nodes), recursively: only float data is cut, the
        rest is computed inside the candidate as in the full model. Frozen into initializers
        such tensors mislead X2Paddle: an LSTM's initial state from ``ConstantOfShape`` of a
        constant shape ("batch size of Input and PreState should be equal. But received 1 and
        -1"), a rank-0 ``-inf`` initializer (``full(): argument (position 2) must be double, but
        got str``, the bug the constant_infinity patch works around)."""
        kept = set(keep)
        todo = list(kept)
        while todo:
            for name in self.reads[todo.pop()]:
                j = self.producer.get(name)
                if j is None or j in kept or name not in values:
                    continue
                if name in self.constant or values[name].dtype.kind not in "fc":
                    kept.add(j)
                    todo.append(j)
        return frozenset(kept)

    def describe(self, i: int) -> str:
        from bridge.stages.convert import describe_node

        return describe_node(self.nodes[i])

    def extract(self, keep: Iterable[int], values: dict[str, np.ndarray]):
        """The kept nodes (``close``d) as a model of their own, and the feeds for its inputs: a
        (float, data) tensor entering from a dropped node is an input fed with the ONNX Runtime
        value. Outputs: the kept nodes' non-constant tensors that a dropped node or the graph's
        output reads."""
        from onnx import helper

        kept_set = self.close(keep, values)
        kept = sorted(kept_set)
        produced = {o for i in kept for o in self.nodes[i].output if o}
        inputs, initializers, feeds = [], [], {}
        for name in dict.fromkeys(n for i in kept for n in self.reads[i] if n not in produced):
            if name in self.initializers:
                initializers.append(self.initializers[name])
            elif name in self.graph_inputs:
                inputs.append(self.graph_inputs[name])
                feeds[name] = values[name]
            elif name not in values:
                raise BridgeError(f"tensor {name!r}: ONNX Runtime gave no value for it; cannot cut there")
            else:
                value = values[name]
                inputs.append(helper.make_tensor_value_info(
                    name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
                feeds[name] = value
        if not inputs and self.graph_inputs:  # all folded to constants: X2Paddle writes no model for that
            raise BridgeError(f"{self.describe(kept[0])} and {len(kept) - 1} more: the kept nodes compute constants only")
        outputs = []
        for i in kept:
            for name in self.nodes[i].output:
                if name in self.graph_outputs:
                    outputs.append(self.graph_outputs[name])
                # Constants are no outputs: X2Paddle folds them into the code and then has no
                # variable to return ("name 'x2paddle_..._Constant_1_output_0' is not defined").
                elif name in values and name not in self.constant and self.readers.get(name, set()) - kept_set:
                    value = values[name]
                    outputs.append(helper.make_tensor_value_info(
                        name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
        if not outputs:  # the kept nodes feed nothing outside: their last node's outputs
            outputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype),
                                                     list(values[name].shape))
                       for name in self.nodes[kept[-1]].output if name in values]
        internal = produced - {o.name for o in outputs}
        graph = helper.make_graph(
            [self.nodes[i] for i in kept], f"{self.model.graph.name or 'graph'}_reduced", inputs, outputs,
            initializer=initializers, value_info=[vi for n, vi in self.value_info.items() if n in internal],
        )
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                  ir_version=self.model.ir_version, producer_name="bridge reduce")
        model.functions.extend(self.model.functions)
        return model, feeds


def ort_intermediates(model, feeds: dict[str, np.ndarray], scratch: Path) -> dict[str, np.ndarray]:
    """Every node output's value under ONNX Runtime (plus the feeds): one run, all exposed."""
    import onnx
    from onnx import helper

    from bridge.runners import OrtRunner

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in have:
                exposed.graph.output.append(helper.ValueInfoProto(name=name))  # ORT infers the type
                have.add(name)
    path = scratch / "intermediates.onnx"
    onnx.save(exposed, str(path), save_as_external_data=exposed.ByteSize() > 1_900_000_000)
    try:
        values = OrtRunner(path).run(feeds)
    except BridgeError:
        raise
    except Exception as exc:  # the reference itself cannot run: nothing to compare against
        raise BridgeError(f"{path.name}: ONNX Runtime cannot run the model: {_first_error_line(exc)}") from exc
    return {**feeds, **{k: v for k, v in values.items() if isinstance(v, np.ndarray)}}


# ---------------------------------------------------------------------------------------------
# The search


class Reducer:
    def __init__(self, index: GraphIndex, values: dict[str, np.ndarray], scratch: Path, *,
                 settings: dict | None, atol: float, rtol: float, max_trials: int,
                 echo: Callable[[str], None]):
        self.index, self.values, self.scratch = index, values, scratch
        self.settings, self.atol, self.rtol = settings, atol, rtol
        self.max_trials, self.echo = max_trials, echo
        self.trials: list[Trial] = []
        self.cache: dict[frozenset[int], bool] = {}
        self.target: Failure | None = None

    @property
    def exhausted(self) -> bool:
        return len(self.trials) >= self.max_trials

    def _label(self, nodes: tuple[int, ...]) -> str:
        n = len(self.index.nodes)
        if len(nodes) == n:
            return f"all {n} nodes"
        if nodes == tuple(range(nodes[0], nodes[-1] + 1)):
            return f"nodes {nodes[0]}-{nodes[-1]} ({len(nodes)})" if len(nodes) > 1 else f"node {nodes[0]} (1)"
        return f"{len(nodes)} nodes"

    def run_trial(self, nodes: Iterable[int]) -> Failure | None:
        nodes = tuple(sorted(set(nodes)))
        folder = self.scratch / f"trial-{len(self.trials) + 1:03d}"
        folder.mkdir(parents=True)
        start = time.perf_counter()
        try:
            model, feeds = self.index.extract(nodes, self.values)
            import onnx

            onnx.save(model, str(folder / REPRO_MODEL))
            check = check_model(folder / REPRO_MODEL, feeds, folder, settings=self.settings, atol=self.atol,
                                rtol=self.rtol, compare=self.target is None or self.target.kind != "conversion")
            failure = check.failure
        except BridgeError as exc:  # a cut the runtimes cannot take is a candidate that does not fail
            failure = Failure("invalid_cut", normalise(str(exc)), str(exc))
        seconds = time.perf_counter() - start
        same = self.target.same_as(failure) if self.target is not None else failure is not None
        self.trials.append(Trial(len(self.trials) + 1, nodes, failure, same, seconds))
        if same:
            verdict = "FAILS the same way" if self.target is not None else f"FAILS: {failure.kind}: {failure.detail}"
        elif failure is None:
            verdict = "passes"
        else:
            verdict = f"fails differently ({failure.kind}: {failure.detail[:120]})"
        self.echo(f"trial {len(self.trials):>3}: {self._label(nodes)} -> {verdict} [{seconds:.1f}s]")
        shutil.rmtree(folder / PADDLE_DIR, ignore_errors=True)
        return failure

    def fails(self, nodes: Iterable[int]) -> tuple[bool, frozenset[int]]:
        """Whether ``nodes`` (closed over shape computations) fails as the full model does, and
        the closed set. Cached; False once out of trials."""
        key = self.index.close(nodes, self.values)
        if not key:
            return False, key
        if key not in self.cache:
            if self.exhausted:
                return False, key
            self.cache[key] = self.target.same_as(self.run_trial(key))
        return self.cache[key], key

    def search(self) -> tuple[int, ...]:
        kept = frozenset(range(len(self.index.nodes)))
        lo, hi = 0, len(self.index.nodes)
        while hi - lo > 1 and not self.exhausted:
            mid = (lo + hi) // 2
            for a, b in ((lo, mid), (mid, hi)):
                failed, closed = self.fails(range(a, b))
                if failed:
                    lo, hi, kept = a, b, closed
                    break
            else:  # the failure needs nodes from both halves
                break
        changed = True
        while changed and len(kept) > 1 and not self.exhausted:
            changed = False
            for node in sorted(kept):
                if node not in kept:
                    continue
                smaller = self.index.close(kept - {node}, self.values)
                if node in smaller:  # a kept node computes with its output: they go together or not at all
                    continue
                failed, closed = self.fails(smaller)
                if failed:
                    kept, changed = closed, True
        return tuple(sorted(kept))


def _feeds_for(work: Path, batch: int | None) -> tuple[Path, dict[str, np.ndarray], int]:
    """The model X2Paddle saw and the feeds validate used at ``batch`` (same seed)."""
    from bridge.spec import InputSpec
    from bridge.stages.export import random_inputs
    from bridge.workdir import Manifest, require_artifact

    if work.is_file():
        from bridge.onnx_io import graph_inputs, load_onnx

        declared = graph_inputs(load_onnx(work))
        specs = []
        for gi in declared:
            if not gi.shape or any(not isinstance(d, int) for d in gi.shape[1:]):
                raise BridgeError(f"{work}: input {gi.name!r} has shape {gi.shape}; reduce its work directory "
                                  f"instead (`bridge stage export {work} --out DIR --input {gi.name}:SHAPE`, then simplify, patch)")
            specs.append(InputSpec(gi.name, (gi.shape[0] if isinstance(gi.shape[0], int) else 1, *gi.shape[1:]), gi.dtype))
        dynamic = any(not isinstance(gi.shape[0], int) for gi in declared)
        onnx_path = work
    else:
        manifest = Manifest.load(work)
        onnx_path = require_artifact(work, PATCHED_ONNX, "patch")
        specs = [InputSpec.from_json(s) for s in manifest.data["inputs"]]
        dynamic = manifest.data.get("dynamic_batch", True)
    if batch is not None and batch < 1:
        raise BridgeError(f"--batch {batch}: must be >= 1")
    if not dynamic:
        fixed = specs[0].shape[0]
        if batch not in (None, fixed):
            raise BridgeError(f"--batch {batch}: {work} has a static batch of {fixed}")
        batch = fixed
    batch = batch or 1
    return onnx_path, random_inputs(specs, batch=batch, seed=batch), batch


def reduce(work: Path, *, out: Path | None = None, max_trials: int = DEFAULT_MAX_TRIALS, batch: int | None = None,
           atol: float | None = None, rtol: float | None = None, echo: Callable[[str], None] = print) -> ReduceResult:
    """Reduce ``work`` (a work directory, or an ONNX file) and write the repro folder ``out``
    (default ``work/repro``) atomically. Returns with ``failure=None`` when the model does not fail."""
    from bridge.inference_settings import read_settings
    from bridge.onnx_io import load_onnx
    from bridge.workdir import work_lock

    if max_trials < 1:
        raise BridgeError(f"--max-trials {max_trials}: must be >= 1")
    if not work.exists():
        raise BridgeError(f"{work}: no such work directory or ONNX file")
    is_dir = work.is_dir()
    out = out or (work / REPRO_DIR if is_dir else work.with_name(f"{work.stem}.{REPRO_DIR}"))
    check_out_dir(out)
    lock = work_lock(work) if is_dir else contextlib.nullcontext()
    if is_dir:
        from bridge.workdir import Manifest

        Manifest.load(work)  # a clear error for a folder that is not a work directory, before locking
    with lock, tempfile.TemporaryDirectory(prefix="bridge-reduce-") as scratch_text:
        scratch = Path(scratch_text)
        onnx_path, feeds, batch = _feeds_for(work, batch)
        index = GraphIndex(load_onnx(onnx_path))
        settings = read_settings(work / PADDLE_DIR) if is_dir and (work / PADDLE_DIR).is_dir() else None
        with capture_fds(scratch / "ort.log"):
            values = ort_intermediates(index.model, feeds, scratch)
        echo(f"reduce: {onnx_path} ({len(index.nodes)} nodes), batch {batch}; "
             f"ONNX Runtime gave {len(values) - len(feeds)} intermediate tensors")
        reducer = Reducer(index, values, scratch, settings=settings, atol=DEFAULT_ATOL if atol is None else atol,
                          rtol=DEFAULT_RTOL if rtol is None else rtol, max_trials=max_trials, echo=echo)
        everything = tuple(range(len(index.nodes)))
        reducer.target = reducer.run_trial(everything)
        result = ReduceResult(onnx_path, len(index.nodes), reducer.target, trials=reducer.trials)
        if reducer.target is None:
            return result
        reducer.cache[frozenset(everything)] = True
        result.kept = reducer.search()
        result.exhausted = reducer.exhausted
        result.kept_names = [index.describe(i) for i in result.kept]
        result.repro = out
        _write_repro(out, index, values, result, {"batch": batch, "atol": reducer.atol, "rtol": reducer.rtol,
                                                  "inference_settings": settings})
    return result


def _write_repro(out: Path, index: GraphIndex, values: dict[str, np.ndarray], result: ReduceResult,
                 conditions: dict) -> None:
    """``out``/: the kept nodes' model, the ONNX Runtime values feeding it, what failed and
    under which conditions (``--check`` reuses them), and the command that shows it."""
    import onnx

    model, feeds = index.extract(result.kept, values)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        onnx.save(model, str(tmp / REPRO_MODEL))
        np.savez(tmp / REPRO_INPUTS, **feeds)
        write_json_atomic(tmp / REPRO_FAILURE, {
            "source": str(result.source), **conditions, "failure": asdict(result.failure),
            "repro_failure": asdict(next(t.failure for t in reversed(result.trials) if t.same and t.nodes == result.kept)),
            "nodes_total": result.total_nodes, "nodes_kept": list(result.kept), "kept": result.kept_names,
            "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feeds.items()},
            "trials": len(result.trials), "exhausted_max_trials": result.exhausted,
            "seconds": round(sum(t.seconds for t in result.trials), 1),
        })
        write_text_atomic(tmp / REPRO_COMMAND, f"bridge reduce --check {out}\n")


def check_repro(repro: Path, *, atol: float | None = None, rtol: float | None = None) -> tuple[CheckResult, Failure | None]:
    """Run a repro folder: X2Paddle on its model, Paddle Inference vs ONNX Runtime on its
    inputs. Returns the outcome and the failure recorded when the repro was written."""
    if not (repro / REPRO_MODEL).is_file() or not (repro / REPRO_INPUTS).is_file():
        raise BridgeError(f"{repro}: not a repro folder (needs {REPRO_MODEL} and {REPRO_INPUTS}; written by `bridge reduce DIR`)")
    record: dict = {}
    if (repro / REPRO_FAILURE).is_file():
        try:
            record = json.loads((repro / REPRO_FAILURE).read_text())
            recorded = Failure(**record["failure"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BridgeError(f"{repro / REPRO_FAILURE}: not a failure record written by `bridge reduce` ({exc})") from exc
    else:
        recorded = None
    with np.load(repro / REPRO_INPUTS) as data:
        feeds = {k: data[k] for k in data.files}
    # The tolerances and Paddle Inference settings the reduction ran under, unless overridden.
    atol = record.get("atol", DEFAULT_ATOL) if atol is None else atol
    rtol = record.get("rtol", DEFAULT_RTOL) if rtol is None else rtol
    with tempfile.TemporaryDirectory(prefix="bridge-reduce-check-") as scratch:
        check = check_model(repro / REPRO_MODEL, feeds, Path(scratch), settings=record.get("inference_settings"),
                            atol=atol, rtol=rtol)
    return check, recorded
