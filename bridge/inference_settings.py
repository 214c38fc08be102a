"""Choosing the Paddle Inference settings for a converted model, by checking them.

Paddle Inference 3.3.1's CPU passes are not all safe: ``inplace_pass`` computes wrong values
on the zoo's Hugging Face BERT and ViT (max abs 9.5e-3 and 0.26 while the same model is right
in dygraph), and under oneDNN placement ``bilinear_interp`` fails outright
("ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]").
So after conversion each candidate below is run on seeded inputs and compared with the Paddle
dygraph model; the first that agrees is saved as ``paddle/inference_config.json``, with what
was tried and why it was passed over.

oneDNN is not always the faster one: it wins on FLOPs (SeqNet at batch 1: 22 ms against 206 ms
without it) and loses on per-op cost (about 48 µs an op against 7 µs: a 201-op Sigmoid chain
runs 9.6 ms against 1.5 ms, the zoo's GRU model 19 ms against 4 ms; bench/README.md). So when a
oneDNN candidate is chosen, the plain CPU one is timed against it at batch 1 and taken instead
where it is clearly faster (and agrees with dygraph too). Both are timed at the thread count the
model will be served with when ``bridge convert --threads N`` gives it, and N is saved.
"""
from __future__ import annotations

import copy
import gc
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bridge.compare import compare_arrays

SETTINGS_FILE = "inference_config.json"

# Fastest first. oneDNN: SeqNet at batch 8 ran 5.3x slower than ONNX Runtime with Paddle's
# default CPU config, 0.74x with oneDNN.
CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("onednn", {"cpu": {"mkldnn": True, "mkldnn_cache_capacity": 16, "math_threads": None},
                "delete_passes": ["inplace_pass"]}),
    ("onednn-no-placement", {"cpu": {"mkldnn": True, "mkldnn_cache_capacity": 16, "math_threads": None},
                             "delete_passes": ["inplace_pass", "onednn_placement_pass"]}),
    ("plain-cpu", {"cpu": {"mkldnn": False, "mkldnn_cache_capacity": 0, "math_threads": None},
                   "delete_passes": ["inplace_pass"]}),
)
COMMON = {"gpu": {"memory_pool_mb": 256, "device_id": 0}, "glog_info": False}
DEFAULT_SETTINGS = {**COMMON, **CANDIDATES[0][1], "chosen": CANDIDATES[0][0]}

# Ops whose oneDNN kernel kills the process in Paddle Inference 3.3.1 instead of failing:
# no oneDNN candidate is tried on a program holding one (a check cannot catch a heap
# corruption; it aborts the conversion).
ONEDNN_CRASHES = {
    "pad": "oneDNN's pad kernel corrupts the heap (\"corrupted double-linked list\", \"malloc(): invalid "
           "size\"); bridge maps constant Pads to pad3d where it can (patches/x2paddle_pad_constant.py)",
}


def _program(paddle_dir: Path) -> list[dict]:
    try:
        data = json.loads((paddle_dir / "inference_model" / "model.json").read_text())
        return data["program"]["regions"][0]["blocks"][0]["ops"]
    except (OSError, ValueError, KeyError, IndexError):
        return []


def program_ops(paddle_dir: Path) -> set[str]:
    """Op names of the saved inference program (``pad3d``, ``conv2d``...); empty if unreadable."""
    return {op.get("#", "").split(".")[-1] for op in _program(paddle_dir)}


# The plain CPU candidate must beat oneDNN by this factor at batch 1 to be chosen: a clear win
# only, so that two conversions of one model choose alike (the file is a hashed artifact).
SPEED_MARGIN = 1.5
TIMED_RUNS = 5
# ``_time_apart``'s child times each candidate for at least this long (up to this many calls).
CHILD_BUDGET_S, CHILD_MAX_RUNS = 0.5, 200
# Above this many ops the check is not made: one more predictor costs Paddle's analysis passes
# over the whole program (the 10,000-node scaling model: +86 s and +3 GB at conversion).
SPEED_CHECK_MAX_OPS = 2000

# Loose on purpose: this tells a broken pass (1e-2 and worse) from float noise, and
# `bridge validate` then applies the real tolerances.
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-3


def _agrees(runner, feeds: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
            output_names: list[str]) -> tuple[bool, float]:
    """Whether ``runner`` gives dygraph's outputs on every feed, and the worst max abs diff."""
    worst, ok = 0.0, True
    for feed, want in zip(feeds, expected):
        got = runner.run(feed)
        for out in output_names:
            diff = compare_arrays(got[out], want[out], batch=0, output=out, runner="paddle_inference",
                                  reference="paddle_dygraph", atol=CHECK_ATOL, rtol=CHECK_RTOL)
            worst = max(worst, diff.max_abs_diff if diff.max_abs_diff is not None else np.inf)
            ok = ok and diff.passed
    return ok, worst


def _best_ms(runner, feed: dict[str, np.ndarray], runs: int) -> float:
    """The fastest of ``runs`` calls. Not the median: the two candidates are timed one after
    the other, not interleaved, and on a shared machine another process taking a core stalls
    multi-threaded calls (at 2 threads on 2 cores, lstm_text's Paddle Inference call ran 0.6 ms
    one minute and 4.7 ms the next); a stall only adds time, so the fastest call is the figure
    that does not depend on what else ran."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(feed)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def _settings(name: str, candidate: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """A candidate's full settings; ``threads``: the CPU math threads it runs with (saved, so
    ``bridge.runners.inference_config`` applies them when its caller gives none)."""
    settings = {**COMMON, **copy.deepcopy(candidate), "chosen": name}
    if threads is not None:
        settings["cpu"]["math_threads"] = threads
    return settings


def _plain_if_faster(paddle_dir: Path, inputs: dict[str, str], output_names: list[str],
                     feeds: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]],
                     onednn: dict[str, Any], onednn_ms: float | None, tried: list[dict],
                     threads: int | None = None) -> dict[str, Any] | None:
    """The plain CPU candidate's settings when it runs ``feeds[0]`` more than ``SPEED_MARGIN``
    times faster than the ``onednn`` settings and agrees with dygraph; else None. Without
    ``threads``, timed here against ``onednn_ms`` (measured here); with ``threads``, both timed
    at that count in a process of their own (``_time_apart``). What was found goes into
    ``tried`` without the timings (they differ from run to run)."""
    from bridge.runners import PaddleInferenceRunner

    name, candidate = next((n, c) for n, c in CANDIDATES if not c["cpu"]["mkldnn"])
    settings = _settings(name, candidate, threads)
    entry: dict[str, Any] = {"settings": name, "timed_against": f"{onednn['chosen']}, batch 1"}
    if threads is not None:
        entry["timed_against"] += f", {threads} threads, in a process of its own"
    tried.append(entry)
    try:
        if threads is not None:
            onednn_ms, plain_ms = _time_apart(paddle_dir, inputs, output_names, feeds[0], [onednn, settings], threads)
            runner = None
        else:
            runner = PaddleInferenceRunner(paddle_dir, inputs, output_names, settings=settings)
            runner.run(feeds[0])  # warm-up: the first run prepares the program
            if _best_ms(runner, feeds[0], 2) > 5 * onednn_ms:  # far slower: no need to time it well
                entry.update(faster=False, ok=False)
                return None
            plain_ms = _best_ms(runner, feeds[0], TIMED_RUNS)
        faster = plain_ms * SPEED_MARGIN < onednn_ms
        entry["faster"] = faster
        if not faster:
            entry["ok"] = False
            return None
        runner = runner or PaddleInferenceRunner(paddle_dir, inputs, output_names, settings=settings)
        ok, worst = _agrees(runner, feeds, expected, output_names)
        entry.update(max_abs_diff_vs_dygraph=worst, ok=ok)
        return settings if ok else None
    except Exception as exc:  # noqa: BLE001 - as choose(): a finding, and oneDNN stays
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        entry.update(error=f"{type(exc).__name__}: {first}"[:300], ok=False)
        return None


def _time_apart(paddle_dir: Path, inputs: dict[str, str], output_names: list[str], feed: dict[str, np.ndarray],
                candidates: list[dict[str, Any]], threads: int) -> list[float]:
    """The fastest of at least ``TIMED_RUNS`` calls (and ``CHILD_BUDGET_S``, after two warm-up
    calls) of each candidate's predictor on ``feed``, in a child process that imports Paddle only, its OpenMP and MKL pools
    sized ``threads``: as a server runs it. Not in the converting process, where torch's GNU
    OpenMP and the dygraph model share the cores: there, at 2 threads, lstm_text's plain CPU
    predictor took 2.2 ms against 0.6-1.0 ms in a process of its own, and oneDNN never lost."""
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bridge-settings-") as scratch:
        np.savez(Path(scratch) / "feed.npz", **{f"input:{k}": v for k, v in feed.items()})
        request = {"paddle_dir": str(paddle_dir), "inputs": inputs, "output_names": output_names,
                   "candidates": candidates, "runs": TIMED_RUNS, "feed": str(Path(scratch) / "feed.npz"),
                   "result": str(Path(scratch) / "result.json")}
        (Path(scratch) / "request.json").write_text(json.dumps(request))
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        proc = subprocess.run([sys.executable, "-m", "bridge.inference_settings", str(Path(scratch) / "request.json")],
                              env=env, capture_output=True, text=True)
        result = Path(request["result"])
        if proc.returncode != 0 or not result.exists():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise RuntimeError(f"timing child failed (exit status {proc.returncode}): {lines[-1] if lines else ''}")
        return json.loads(result.read_text())


def _time_child(request_path: Path) -> None:
    """``python -m bridge.inference_settings REQUEST.json``: ``_time_apart``'s child."""
    from bridge.runners import PaddleInferenceRunner

    request = json.loads(request_path.read_text())
    with np.load(request["feed"]) as saved:
        feed = {k.removeprefix("input:"): saved[k] for k in saved.files}
    times = []
    for settings in request["candidates"]:  # one predictor at a time
        runner = PaddleInferenceRunner(Path(request["paddle_dir"]), request["inputs"], request["output_names"],
                                       settings=settings)
        runner.run(feed)
        runner.run(feed)
        # At least ``runs`` calls and CHILD_BUDGET_S of them: a small model's calls take ms, and
        # the more of them, the likelier one ran with both cores free.
        best, spent, calls = float("inf"), 0.0, 0
        while calls < request["runs"] or (spent < CHILD_BUDGET_S and calls < CHILD_MAX_RUNS):
            ms = _best_ms(runner, feed, 1)
            best, spent, calls = min(best, ms), spent + ms / 1e3, calls + 1
        times.append(best)
        runner = None
        gc.collect()
    Path(request["result"]).write_text(json.dumps(times))


def read_settings(paddle_dir: Path) -> dict[str, Any]:
    path = paddle_dir / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else copy.deepcopy(DEFAULT_SETTINGS)


def choose(paddle_dir: Path, feeds: list[dict[str, np.ndarray]], inputs: dict[str, str],
           output_names: list[str], threads: int | None = None) -> dict[str, Any]:
    """Write and return the first candidate whose Paddle Inference outputs match dygraph's.
    ``threads``: the CPU thread count the model will be served with (``bridge convert
    --threads``); every candidate is checked and timed at it, and it is saved as the settings'
    ``math_threads``. None: Paddle's default, nothing saved. oneDNN's lead depends on it (at 2
    threads mobile_block ran 6.2 ms with oneDNN, 4.8 ms without; at the default, alike)."""
    from bridge.runners import PaddleDygraphRunner, PaddleInferenceRunner

    crashing = sorted(program_ops(paddle_dir) & set(ONEDNN_CRASHES))
    fallback = _settings(CANDIDATES[0][0], CANDIDATES[0][1], threads)
    if crashing:  # the first candidate without oneDNN
        name, candidate = next((n, c) for n, c in CANDIDATES if not c["cpu"]["mkldnn"])
        fallback = _settings(name, candidate, threads)
    try:
        dygraph = PaddleDygraphRunner(paddle_dir, inputs, output_names)
        expected = [dygraph.run(f) for f in feeds]
        del dygraph  # its weights need not stay beside each predictor's
    except Exception as exc:  # no reference to check against: keep the default, say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        chosen = fallback
        chosen["tried"] = [{"settings": None, "ok": False,
                            "error": f"not checked: Paddle dygraph failed on seeded inputs: {type(exc).__name__}: {first}"[:300]}]
        (paddle_dir / SETTINGS_FILE).write_text(json.dumps(chosen, indent=2) + "\n")
        return chosen
    tried = []
    chosen = None
    runner = None
    for name, candidate in CANDIDATES:
        settings = _settings(name, candidate, threads)
        if crashing and candidate["cpu"]["mkldnn"]:
            tried.append({"settings": name, "ok": False, "skipped": f"the program has op {crashing[0]!r}: "
                          f"{ONEDNN_CRASHES[crashing[0]]}"})
            continue
        try:
            runner = PaddleInferenceRunner(paddle_dir, inputs, output_names, settings=settings)
            ok, worst = _agrees(runner, feeds, expected, output_names)
            tried.append({"settings": name, "max_abs_diff_vs_dygraph": worst, "ok": ok})
        except Exception as exc:  # a pass that cannot run this model is a finding, not a crash
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            tried.append({"settings": name, "error": f"{type(exc).__name__}: {first}"[:300], "ok": False})
            ok = False
        if ok:
            chosen = settings
            break
    if chosen is None:  # none agrees: keep the fastest that runs; validate will report the mismatch
        chosen = fallback
    elif chosen["cpu"]["mkldnn"] and len(_program(paddle_dir)) > SPEED_CHECK_MAX_OPS:
        tried.append({"settings": "plain-cpu", "skipped": f"not timed: over {SPEED_CHECK_MAX_OPS} ops"})
    elif chosen["cpu"]["mkldnn"]:
        onednn_ms = _best_ms(runner, feeds[0], TIMED_RUNS) if threads is None else None
        runner = None  # one predictor at a time: a model's weights are not held twice more
        gc.collect()
        chosen = _plain_if_faster(paddle_dir, inputs, output_names, feeds, expected, chosen, onednn_ms, tried,
                                  threads) or chosen
    chosen["tried"] = tried
    (paddle_dir / SETTINGS_FILE).write_text(json.dumps(chosen, indent=2) + "\n")
    return chosen


if __name__ == "__main__":
    import sys

    _time_child(Path(sys.argv[1]))
