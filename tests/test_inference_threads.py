"""``bridge convert --threads N``: the inference settings are checked and timed at N threads,
``paddle/inference_config.json`` records N, and ``bridge.runners.inference_config`` applies it
unless its caller gives a thread count; without the flag nothing is recorded."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bridge import runners
from bridge.inference_settings import SETTINGS_FILE
from bridge.workdir import Manifest

ROOT = Path(__file__).resolve().parent.parent


def _model() -> onnx.ModelProto:
    """y = sigmoid(x @ w) on x: batch × 8."""
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])], "threads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", "convert", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_convert_threads_is_recorded_and_applied_and_reruns_the_check(tmp_path):
    onnx.save(_model(), str(tmp_path / "model.onnx"))
    work = tmp_path / "work"
    proc = _convert(str(tmp_path / "model.onnx"), "--out", str(work), "--threads", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    settings = json.loads((work / "paddle" / SETTINGS_FILE).read_text())
    assert settings["cpu"]["math_threads"] == 3
    timed = [t for t in settings["tried"] if "timed_against" in t]
    assert timed and all(t["timed_against"].endswith(", 3 threads, in a process of its own") and "error" not in t
                         and "faster" in t for t in timed), settings["tried"]  # timed in the child, not failed
    assert Manifest.load(work).data["inference_threads"] == 3
    inference_dir = work / "paddle" / "inference_model"
    assert runners.inference_config(inference_dir).cpu_math_library_num_threads() == 3
    assert runners.inference_config(inference_dir, threads=1).cpu_math_library_num_threads() == 1  # the caller's wins

    # Without --threads: the convert stage is not reused (its settings were chosen at 3 threads)
    # and nothing is recorded, as before the flag existed.
    proc = _convert(str(tmp_path / "model.onnx"), "--out", str(work))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "convert: reused" not in proc.stdout and "simplify: reused" in proc.stdout, proc.stdout
    settings = json.loads((work / "paddle" / SETTINGS_FILE).read_text())
    assert settings["cpu"]["math_threads"] is None
    assert not any("threads" in t.get("timed_against", "") for t in settings["tried"])
    assert "inference_threads" not in Manifest.load(work).data


def test_convert_threads_must_be_a_positive_whole_number(tmp_path):
    for bad in ("0", "two"):
        proc = _convert(str(tmp_path / "model.onnx"), "--out", str(tmp_path / "work"), "--threads", bad)
        assert proc.returncode == 2 and "--threads" in proc.stderr, proc.stderr
