"""The issue's baseline, case by case: X2Paddle 1.6.0 alone on each case's model, Paddle
Inference on its data sets, compared with ONNX's expected outputs as bridge's run compares them.

"X2Paddle alone" means: the model as ONNX ships it (no opset upgrade, no onnxsim, no patch),
``x2paddle.convert.onnx2paddle`` with only the shims it needs to import and to stay off the
network (``LOADING_SHIMS``), and Paddle Inference with a plain ``Config`` (what X2Paddle's own
README shows). With it, ``scripts/conformance.py --baseline`` writes ``baseline.jsonl`` beside
``results.jsonl``, and ``conformance/README.md`` lists every case that passed there and does
not pass through bridge (the issue asks for none).

Each case runs in a process forked from a server that imported only this (``PRELOAD``), as
``bridge.conformance_case`` cases do.
"""
from __future__ import annotations

import json
import pickle
import traceback
from pathlib import Path

import numpy as np

from bridge.conformance_case import (
    CODE_FILE, OUTCOME_FILE, PAYLOAD_FILE, CaseOutcome, CasePayload, _first_line, compare_outputs, load_case,
)

TARGET = "bridge.conformance_baseline:forked_main"
# X2Paddle 1.6.0 does not import on onnx 1.23 without the first three; the fourth keeps it from
# phoning home; the fifth turns its exit(0) on a failed save into an exception (the case fails
# either way; this way with a line that says so).
LOADING_SHIMS = ("require_undeclared_deps", "import_onnx_version", "provide_onnx_mapping",
                 "disable_feedback", "exit_raises")
PRELOAD = (
    "onnx", "onnx.numpy_helper", "paddle", "bridge.conformance_baseline:install_loading_shims",
    "x2paddle.convert", "x2paddle.decoder.onnx_decoder", "x2paddle.op_mapper.onnx2paddle.onnx_op_mapper",
    "bridge.compare", "bridge.conformance_case",
)


def install_loading_shims() -> None:
    from bridge.patches.x2paddle_shims import SHIMS

    for shim in SHIMS:
        if shim.name in LOADING_SHIMS:
            shim.apply()


def _inference_files(out: Path) -> tuple[Path, Path] | None:
    """The program and params X2Paddle saved (no params file when the model has no weights)."""
    folder = out / "inference_model"
    for name in ("model.json", "model.pdmodel"):  # Paddle 3's PIR program, or the old one
        if (folder / name).exists():
            return folder / name, folder / "model.pdiparams"
    return None


def _run_paddle(files: tuple[Path, Path], feeds: list[np.ndarray]) -> list[np.ndarray]:
    import paddle.inference as pi

    config = pi.Config(str(files[0]), str(files[1]))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(1)
    predictor = pi.create_predictor(config)
    for name, value in zip(predictor.get_input_names(), feeds):
        predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(value))
    predictor.run()
    return [predictor.get_output_handle(name).copy_to_cpu() for name in predictor.get_output_names()]


def run_case(payload: CasePayload, work: Path) -> CaseOutcome:
    """X2Paddle alone on the case's model inside ``work``; Paddle Inference on each data set."""
    import onnx
    from x2paddle.convert import onnx2paddle

    model, data_sets = load_case(payload)
    onnx_path = work / "model.onnx"
    onnx.save(model, str(onnx_path))
    try:
        onnx2paddle(str(onnx_path), str(work / "out"), disable_feedback=True)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - X2Paddle raises anything, or exits
        traceback.print_exc()
        status = "unsupported" if "not supported yet" in str(exc) else "convert_fail"
        return CaseOutcome(status, f"X2Paddle failed: {type(exc).__name__}: {_first_line(exc, work)}")
    files = _inference_files(work / "out")
    if files is None:
        return CaseOutcome("convert_fail", "X2Paddle wrote no inference_model")
    output_names = [o.name for o in model.graph.output]
    outcome = CaseOutcome("pass")
    for index, (inputs, expected) in enumerate(data_sets):
        if not all(isinstance(v, np.ndarray) for v in inputs):
            return CaseOutcome("run_fail", "an input is not a tensor; Paddle Inference feeds tensors only")
        try:
            got = _run_paddle(files, inputs)
        except Exception as exc:  # noqa: BLE001 - Paddle raises many types
            traceback.print_exc()
            return CaseOutcome("run_fail", f"{type(exc).__name__}: {_first_line(exc, work)}")
        # Generous where bridge's runner is too: a rank-0 output may come back as shape [1].
        got = [g.reshape(()) if isinstance(e, np.ndarray) and e.ndim == 0 and g.size == 1 else g
               for g, e in zip(got, expected)]
        problem, worst = compare_outputs(dict(zip(output_names, got)), expected, output_names, index)
        if worst is not None:
            outcome.max_abs_diff = worst if outcome.max_abs_diff is None else max(outcome.max_abs_diff, worst)
        if problem and outcome.status == "pass":
            outcome.status, outcome.error = "mismatch", problem
    return outcome


def forked_main(work: Path, bridge_code: str) -> int:
    """Entry point of a baseline case's process (``bridge.conformance_case.forked_main``'s twin)."""
    (work / CODE_FILE).write_text(bridge_code)
    try:
        payload: CasePayload = pickle.loads((work / PAYLOAD_FILE).read_bytes())
        outcome = run_case(payload, work)
    except Exception as exc:  # noqa: BLE001 - the harness itself broke
        traceback.print_exc()
        outcome = CaseOutcome("crash", f"harness: {type(exc).__name__}: {_first_line(exc, work)}")
    (work / OUTCOME_FILE).write_text(json.dumps(outcome.to_json()))
    return 0
