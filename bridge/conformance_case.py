"""One conformance case, in this process: the model through bridge's ONNX path (opset upgrade,
then ``bridge.pipeline.convert``: export (copy) → simplify → patch → convert), Paddle Inference
on each of the case's data sets, outputs compared with ONNX's expected ones.

``bridge.conformance`` runs each case in a process of its own, forked by
``bridge.conformance_server`` (``forked_main``), so that a native abort or a hang costs that
case only; the case comes in as a pickled ``CasePayload`` in ``WORK/payload.pkl`` and the
outcome goes to ``WORK/outcome.json``. Being a throwaway process already, it runs X2Paddle in
itself (``bridge.stages.convert.x2paddle_in_this_process``) rather than in a child of its own.
"""
from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ONNX's backend tests use rtol 1e-3 and a per-case atol (1e-7 mostly); Paddle's float32
# kernels differ from numpy's reference beyond 1e-7, so the whole run uses one atol.
RTOL = 1e-3
ATOL = 1e-4
OUTCOME_FILE = "outcome.json"
PAYLOAD_FILE = "payload.pkl"
CODE_FILE = "bridge_code.txt"
# bridge.stages.convert's error when X2Paddle's child process died of a signal.
_KILLED_BY_SIGNAL = re.compile(r"process died \(exit status -\d+\)")


@dataclass
class CasePayload:
    """What a child needs to run one case: the model and its data sets, or the folder holding
    ``model.onnx`` and ``test_data_set_*/{input,output}_*.pb``."""

    name: str
    model_bytes: bytes | None = None
    data_sets: list[tuple[list[Any], list[Any]]] | None = None  # (inputs, expected outputs)
    model_dir: str | None = None


@dataclass
class CaseOutcome:
    status: str  # pass, mismatch, run_fail, convert_fail, unsupported, crash (X2Paddle's process)
    error: str | None = None  # the first line of what went wrong, paths made relative
    max_abs_diff: float | None = None
    upgraded_from: int | None = None  # the opset before onnx.version_converter, when it ran
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _load_proto(path: Path, type_proto):
    """A ``.pb`` of ONNX's backend test data as numpy (tensor) or list/None (sequence/optional),
    read as ``onnx.backend.test.runner`` reads it."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        proto = onnx.SequenceProto()
        proto.ParseFromString(data)
        return numpy_helper.to_list(proto)
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        proto.ParseFromString(data)
        return numpy_helper.to_optional(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return numpy_helper.to_array(proto)


def load_data_sets(model, model_dir: Path) -> list[tuple[list[Any], list[Any]]]:
    """``test_data_set_*`` of a backend-test folder: inputs follow the graph inputs that are not
    initializers, outputs the graph outputs."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    sets = []
    for folder in sorted(model_dir.glob("test_data_set_*")):
        count_in = len(list(folder.glob("input_*.pb")))
        count_out = len(list(folder.glob("output_*.pb")))
        ins = [_load_proto(folder / f"input_{i}.pb", inputs[i].type) for i in range(count_in)]
        outs = [_load_proto(folder / f"output_{i}.pb", model.graph.output[i].type) for i in range(count_out)]
        sets.append((ins, outs))
    return sets


def _as_numpy(value):
    """Node cases give some tensors as TensorProto (bfloat16, float8, ...), and rank-0 ones,
    inputs and expected outputs alike, as numpy scalars (``np.float32(1.0)``): a 0-d array."""
    import onnx
    from onnx import numpy_helper

    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value) if isinstance(value, np.generic) else value


def _first_line(exc: BaseException, work: Path) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r" \(log: [^)]*\)$", "", line)
    return line.replace(str(work), "<work>")


def _adopt_kept_logs(exc: BaseException, work: Path) -> None:
    """A failed ``convert`` keeps its logs in a temporary folder of their own, named in the
    error ("(log: /tmp/bridge-out-logs-XXXX/convert.log)"): move it into the case's folder, which
    the harness removes (or keeps, with --keep)."""
    found = re.search(r"\(log: ([^)]+)\)", str(exc))
    if not found:
        return
    folder = Path(found.group(1)).parent
    if folder.is_dir() and work not in folder.parents and folder != work and folder.name.startswith("bridge-"):
        shutil.move(str(folder), str(work / "failed-logs"))


def input_texts(model, feeds: list[Any]) -> list[str]:
    """``--input`` specs for the inputs a user must spell out (a dim other than the batch is
    symbolic): the case's data shapes, as a user would type them. Inputs bridge reads from the
    graph itself, and ones that ``--input`` cannot express, are left to ``convert``."""
    from bridge.onnx_io import graph_inputs
    from bridge.spec import DTYPES

    texts = []
    for declared, value in zip(graph_inputs(model), feeds):
        static = declared.shape and all(isinstance(d, int) for d in declared.shape[1:])
        if static or not isinstance(value, np.ndarray):
            continue
        expressible = (re.fullmatch(r"[A-Za-z_][\w.]*", declared.name) and value.ndim
                       and all(value.shape) and value.dtype.name in DTYPES)
        if expressible:
            texts.append(f"{declared.name}:{'x'.join(map(str, value.shape))}:{value.dtype.name}")
    return texts


def compare_outputs(got: dict[str, np.ndarray], expected: list[Any], output_names: list[str],
                    data_set: int) -> tuple[str | None, float | None]:
    """The first failing output as one line (None when all pass), and the worst max abs diff."""
    from bridge.compare import compare_arrays

    problem, worst = None, None
    for name, ref in zip(output_names, expected):
        if not isinstance(ref, np.ndarray):
            problem = problem or f"output {name!r}: expected a {type(ref).__name__}, Paddle returns tensors only"
            continue
        if name not in got:
            problem = problem or f"output {name!r}: missing from Paddle's outputs"
            continue
        diff = compare_arrays(got[name], ref, batch=data_set, output=name, runner="paddle_inference",
                              reference="onnx_expected", atol=ATOL, rtol=RTOL)
        if diff.max_abs_diff is not None:
            worst = diff.max_abs_diff if worst is None else max(worst, diff.max_abs_diff)
        if not diff.passed and problem is None:
            problem = f"output {name!r}: {diff.problem}"
    return problem, worst


def load_case(payload: CasePayload):
    """The case's model and its data sets as (inputs, expected outputs) of numpy values."""
    import onnx

    if payload.model_dir is not None:
        model_dir = Path(payload.model_dir)
        model = onnx.load(str(model_dir / "model.onnx"))
        return model, load_data_sets(model, model_dir)
    model = onnx.load_from_string(payload.model_bytes)
    return model, [([_as_numpy(v) for v in ins], [_as_numpy(v) for v in outs]) for ins, outs in payload.data_sets]


def run_case(payload: CasePayload, work: Path) -> CaseOutcome:
    """Convert and run one case inside ``work`` (an empty folder)."""
    import onnx

    from bridge import pipeline
    from bridge.errors import BridgeError, UnsupportedModel
    from bridge.opset_upgrade import default_opset, upgrade_if_below
    from bridge.runners import PaddleInferenceRunner

    model, data_sets = load_case(payload)
    outcome = CaseOutcome("convert_fail")
    before = default_opset(model)
    try:
        upgraded = upgrade_if_below(model)
    except BridgeError as exc:
        outcome.error = _first_line(exc, work)
        return outcome
    if upgraded is not model:
        outcome.upgraded_from = before
    onnx_path = work / "model.onnx"
    onnx.save(upgraded, str(onnx_path))
    out = work / "out"
    lines: list[str] = []
    try:
        pipeline.convert(str(onnx_path), out, input_texts(upgraded, data_sets[0][0] if data_sets else []),
                         echo=lines.append)
    except UnsupportedModel as exc:
        _adopt_kept_logs(exc, work)
        return CaseOutcome("unsupported", _first_line(exc, work), upgraded_from=outcome.upgraded_from)
    except BridgeError as exc:
        _adopt_kept_logs(exc, work)
        outcome.error = _first_line(exc, work)
        if _KILLED_BY_SIGNAL.search(outcome.error):  # a native abort in X2Paddle's process
            outcome.status = "crash"
        return outcome
    except Exception as exc:  # noqa: BLE001 - an internal error in bridge is this case's result
        traceback.print_exc()  # into the case's child.log (--keep keeps it)
        outcome.error = f"internal error: {type(exc).__name__}: {_first_line(exc, work)}"
        return outcome
    outcome.notes = [line for line in lines if "FAILED" in line or "fired (" in line]
    manifest = json.loads((out / "manifest.json").read_text())
    conv = manifest["stages"]["convert"]
    input_names = [s["name"] for s in manifest["inputs"]]
    outcome.status = "run_fail"
    try:
        runner = PaddleInferenceRunner(out / "paddle", conv["paddle_inputs"], conv["paddle_outputs"], threads=1,
                                       rank0_outputs=conv.get("rank0_outputs", ()))
        results = []
        for inputs, _ in data_sets:
            odd = next((n for n, v in zip(input_names, inputs) if not isinstance(v, np.ndarray)), None)
            if odd is not None:
                outcome.error = f"input {odd!r} is not a tensor; Paddle Inference feeds tensors only"
                return outcome
            results.append(runner.run(dict(zip(input_names, inputs))))
    except Exception as exc:  # noqa: BLE001 - Paddle raises many types; the case records it
        traceback.print_exc()
        outcome.error = f"{type(exc).__name__}: {_first_line(exc, work)}"
        return outcome
    outcome.status = "pass"
    if runner.reshaped_outputs:
        outcome.notes.append(f"rank-0 output(s) {', '.join(sorted(runner.reshaped_outputs))} came back as "
                             "shape [1]; compared as rank 0")
    for index, ((_, expected), got) in enumerate(zip(data_sets, results)):
        problem, worst = compare_outputs(got, expected, manifest["output_names"], index)
        if worst is not None:
            outcome.max_abs_diff = worst if outcome.max_abs_diff is None else max(outcome.max_abs_diff, worst)
        if problem and outcome.status == "pass":
            outcome.status, outcome.error = "mismatch", problem
    return outcome


def loaded_bridge_code() -> str:
    """sha256 (12 hex digits) over the source of every bridge module this process has imported,
    the harness's own left out: the bridge code a case ran, unmoved by edits elsewhere in the tree."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(sys.modules):
        module = sys.modules[name]
        path = getattr(module, "__file__", None)
        if name.startswith("bridge.") and not name.startswith("bridge.conformance") and path:
            digest.update(name.encode())
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def forked_main(work: Path, bridge_code: str) -> int:
    """Entry point of a case's process, forked by ``bridge.conformance_server`` in WORK:
    payload in WORK/payload.pkl, outcome in WORK/outcome.json; first WORK/bridge_code.txt, the
    bridge code the server imported (``loaded_bridge_code``), read even after a crash."""
    from bridge.stages.convert import x2paddle_in_this_process

    (work / CODE_FILE).write_text(bridge_code)
    try:
        payload: CasePayload = pickle.loads((work / PAYLOAD_FILE).read_bytes())
        with x2paddle_in_this_process():
            outcome = run_case(payload, work)
    except Exception as exc:  # noqa: BLE001 - the harness itself broke (e.g. an unreadable .pb)
        traceback.print_exc()
        outcome = CaseOutcome("crash", f"harness: {type(exc).__name__}: {_first_line(exc, work)}")
    (work / OUTCOME_FILE).write_text(json.dumps(outcome.to_json()))
    return 0
