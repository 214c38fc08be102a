"""Measurement for the benchmark (``scripts/bench.py``): interleaved timings, the runtimes of
one converted model, and child processes' wall time and peak memory.

Rules the numbers follow: a timing is the median of at least ``MIN_RUNS`` timed runs after
warm-up, kept with its min and max; runtimes being compared are timed in the same loop, one
call each per round in a rotating order, so drift hits all of them alike; every runtime gets
the same thread count.
"""
from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

MIN_RUNS = 10

# Inference runtimes, in table order. "default" is a plain paddle.inference.Config (only the
# thread count set); Paddle 3.3.1 turns oneDNN on by default there, so "no_onednn" also
# calls disable_mkldnn(): the configuration bridge's inference_config exists to avoid.
RUNTIMES = ("torch", "onnxruntime", "paddle_inference", "paddle_inference_default",
            "paddle_inference_no_onednn", "paddle_dygraph")
REFERENCE = "onnxruntime"


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a process that will load torch and Paddle: OpenMP and MKL pools sized
    ``threads``. ``KMP_BLOCKTIME=0``: Paddle's Intel OpenMP otherwise keeps its workers
    spinning 200 ms after each call, taking cores from whichever runtime runs next in an
    interleaved loop (torch uses GNU OpenMP, ONNX Runtime its own pool)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "KMP_BLOCKTIME": "0"}


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    runs: int
    warmup: int

    @classmethod
    def of(cls, seconds: list[float], warmup: int) -> "Timing":
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds), warmup)


def ratio(numerator: Timing | None, denominator: Timing | None) -> float | None:
    """A comparison: the quotient of two medians measured in the same interleaved loop."""
    if numerator is None or denominator is None:
        return None
    return numerator.median_s / denominator.median_s


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def interleaved(calls: dict[str, Callable[[], object]], runs: int, warmup: int,
                gap_s: float = 0.0) -> tuple[dict[str, Timing], dict[str, str]]:
    """Time every call ``runs`` times after ``warmup`` untimed calls each. Round ``i`` calls
    every runtime once, starting at a different one each round. A call that raises is dropped
    from the loop and reported in the second dict (first line of the error)."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs={runs}: a timing needs at least {MIN_RUNS} runs")
    errors: dict[str, str] = {}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(warmup + runs):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if name in errors:
                continue
            if gap_s:
                time.sleep(gap_s)
            start = time.perf_counter()
            try:
                calls[name]()
            except Exception as exc:  # noqa: BLE001 - a runtime failing is a result, not a crash
                errors[name] = first_line(exc)
                continue
            if round_ >= warmup:
                seconds[name].append(time.perf_counter() - start)
    timings = {n: Timing.of(s, warmup) for n, s in seconds.items() if n not in errors and s}
    return timings, errors


# --- the runtimes of one converted model -------------------------------------------------

def _model_file(inference_dir: Path) -> Path:
    model_file = inference_dir / "model.json"
    return model_file if model_file.exists() else inference_dir / "model.pdmodel"  # Paddle 2.x


def plain_inference_config(inference_dir: Path, threads: int, onednn: bool | None):
    """``paddle.inference.Config`` as a user writes it: CPU, ``threads`` math threads, and
    oneDNN as Paddle defaults it (``onednn=None``) or explicitly off (``False``)."""
    from paddle import inference

    config = inference.Config(str(_model_file(inference_dir)), str(inference_dir / "model.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if onednn is False:
        config.disable_mkldnn()
    config.disable_glog_info()
    return config


def _paddle_inference_runner(paddle_dir: Path, inputs: dict[str, str], outputs: list[str], config):
    from paddle import inference

    from bridge.runners import PaddleInferenceRunner

    runner = PaddleInferenceRunner.__new__(PaddleInferenceRunner)  # same run(), another config
    runner.predictor = inference.create_predictor(config)
    runner.inputs, runner.output_names = inputs, outputs
    return runner


@dataclass
class ModelRuntimes:
    """Runners for one work directory, the thread count each reports, and those that failed."""

    runners: dict[str, object] = field(default_factory=dict)
    threads: dict[str, int | str] = field(default_factory=dict)
    onednn: dict[str, bool] = field(default_factory=dict)
    bridge_settings: dict | None = None  # paddle/inference_config.json as convert chose it
    errors: dict[str, str] = field(default_factory=dict)
    input_specs: list = field(default_factory=list)


def build_runtimes(work: Path, threads: int, only: tuple[str, ...] = RUNTIMES) -> ModelRuntimes:
    """Every runtime of ``RUNTIMES`` (those in ``only``) on ``work``; a runtime that cannot be
    built is recorded with the first line of its error."""
    import paddle
    import torch
    from paddle.base import core

    from bridge import runners as r
    from bridge.runners import inference_config
    from bridge.spec import InputSpec, load_torch_source, parse_source
    from bridge.workdir import PADDLE_DIR, PATCHED_ONNX, TORCH_STATE, Manifest

    torch.set_num_threads(threads)
    core.set_num_threads(threads)  # Paddle's CPU math library (dygraph kernels)
    paddle.set_device("cpu")
    manifest = Manifest.load(work)
    convert = manifest.data["stages"]["convert"]
    input_names = [s["name"] for s in manifest.data["inputs"]]
    inputs = {name: convert["paddle_inputs"][name] for name in input_names}
    outputs = convert["paddle_outputs"]
    paddle_dir = work / PADDLE_DIR
    inference_dir = paddle_dir / "inference_model"
    result = ModelRuntimes(input_specs=[InputSpec.from_json(s) for s in manifest.data["inputs"]])
    try:
        from bridge.inference_settings import read_settings

        settings = read_settings(paddle_dir)
        result.bridge_settings = {k: settings.get(k) for k in ("chosen", "cpu", "delete_passes")}
    except ImportError:  # a bridge without per-model settings: inference_config is fixed
        pass

    def torch_runner():
        source = manifest.data["source"]
        if source.get("kind") != "torch":
            raise ValueError("the source is an ONNX file")
        module, _ = load_torch_source(parse_source(source["resolved"]))
        module.load_state_dict(torch.load(work / TORCH_STATE, weights_only=True))
        return r.TorchRunner(module, input_names, manifest.data["output_names"]), torch.get_num_threads()

    def ort_runner():
        runner = r.OrtRunner(work / PATCHED_ONNX, "cpu", threads)
        return runner, runner.session.get_session_options().intra_op_num_threads

    def paddle_runner(config):
        return (_paddle_inference_runner(paddle_dir, inputs, outputs, config),
                config.cpu_math_library_num_threads())

    def dygraph_runner():
        return r.PaddleDygraphRunner(paddle_dir, inputs, outputs), f"{threads} (core.set_num_threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"

    configs = {
        "paddle_inference": lambda: inference_config(inference_dir, "cpu", threads),
        "paddle_inference_default": lambda: plain_inference_config(inference_dir, threads, onednn=None),
        "paddle_inference_no_onednn": lambda: plain_inference_config(inference_dir, threads, onednn=False),
    }
    builders = {"torch": torch_runner, "onnxruntime": ort_runner, "paddle_dygraph": dygraph_runner}
    for name, make_config in configs.items():
        builders[name] = (lambda make_config=make_config: paddle_runner(make_config()))
        try:
            result.onednn[name] = make_config().mkldnn_enabled()
        except Exception as exc:  # noqa: BLE001 - building the runner reports it below
            result.errors[name] = first_line(exc)
    for name in RUNTIMES:
        if name not in only or name in result.errors:
            continue
        try:
            result.runners[name], result.threads[name] = builders[name]()
        except Exception as exc:  # noqa: BLE001 - reported in the table, the others still run
            result.errors[name] = first_line(exc)
    return result


def max_abs_diff(got: dict, ref: dict) -> float | None:
    """Worst max abs difference over ``ref``'s outputs (None when one is missing or mis-shaped)."""
    import numpy as np

    worst = 0.0
    for name, value in ref.items():
        other = got.get(name)
        if other is None or np.shape(other) != np.shape(value):
            return None
        if value.size:
            worst = max(worst, float(np.max(np.abs(other.astype(np.float64) - value.astype(np.float64)))))
    return worst


# --- child processes: wall time and peak memory ------------------------------------------

@dataclass
class ChildRun:
    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_bytes: int  # wait4's ru_maxrss: the largest single process of the tree
    peak_tree_rss_bytes: int  # sampled sum over the process tree (shared pages counted per process)
    killed: str | None = None  # "memory" or "timeout" when the bench stopped it
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.killed is None

    def first_error_line(self) -> str:
        if self.killed == "memory":
            return f"stopped by the bench: the process tree passed its memory limit ({self.peak_tree_rss_bytes / 2**30:.1f} GiB)"
        if self.killed == "timeout":
            return f"stopped by the bench after {self.seconds:.0f}s (time limit)"
        lines = [line.strip() for line in self.output_tail.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]  # bridge's one-line errors
        return (errors or lines or [f"exit status {self.returncode}"])[-1].removeprefix("error: ")

    def to_json(self) -> dict:
        record = {k: v for k, v in asdict(self).items() if k != "output_tail"}
        return {**record, "ok": self.ok, "error": None if self.ok else self.first_error_line()}


def _session_rss(session: int) -> int:
    """Sum of resident memory over the processes of ``session`` (from /proc)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # state ppid pgrp session ...: session is the 4th after ")"
            total += int(fields[21]) * page  # rss in pages
    return total


def run_child(argv: list[str], *, log: Path, cwd: Path, env: dict[str, str] | None = None,
              memory_limit: int | None = None, timeout: float | None = None, sample_s: float = 0.05) -> ChildRun:
    """Run ``argv`` in a session of its own; output to ``log``. Peak memory two ways: wait4's
    ``ru_maxrss`` (exact, the largest single process among it and its waited-for descendants)
    and the sampled sum over the session. Over ``memory_limit`` (the sampled sum; also each
    process's RLIMIT_AS) or ``timeout`` the whole session is killed."""
    import resource

    def limit_memory():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    log.parent.mkdir(parents=True, exist_ok=True)
    peak_tree, killed = 0, None
    done = threading.Event()
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        offset = out.tell()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=limit_memory if memory_limit else None)

        def watch():
            nonlocal peak_tree, killed
            while not done.wait(sample_s):
                rss = _session_rss(proc.pid)
                peak_tree = max(peak_tree, rss)
                over_time = timeout is not None and time.perf_counter() - start > timeout
                if (memory_limit and rss > memory_limit) or over_time:
                    killed = "memory" if not over_time else "timeout"
                    os.killpg(proc.pid, signal.SIGKILL)
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        watcher.join()
        try:  # descendants left behind (the bench kills the session it started, nothing else)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with open(log, "rb") as f:
        f.seek(max(offset, f.seek(0, os.SEEK_END) - 4000))
        tail = f.read().decode(errors="replace")
    return ChildRun(list(map(str, argv)), proc.returncode, seconds, usage.ru_maxrss * 1024,
                    max(peak_tree, usage.ru_maxrss * 1024) if killed is None else peak_tree, killed, tail)


# --- the machine --------------------------------------------------------------------------

def machine_info() -> dict:
    from bridge.pipeline import tool_versions

    cpu, memory = platform.processor() or platform.machine(), None
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
        memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal:"))) * 1024
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": memory,
        "platform": platform.platform(),
        "tools": tool_versions(),
    }
