"""Measurement for the benchmark (``scripts/bench.py``): interleaved timings, output diffs, and
child processes' wall time and peak memory. Imports nothing heavy: the bench's own process
never loads torch or Paddle (``bridge.bench_worker`` runs each runtime in a process of its own).

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
from dataclasses import asdict, dataclass
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
    spinning 200 ms after each call, taking cores from whichever runtime is called next in an
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
                reports_seconds: bool = False) -> tuple[dict[str, Timing], dict[str, str]]:
    """Time every call ``runs`` times after ``warmup`` untimed calls each. Round ``i`` calls
    every runtime once, starting at a different one each round. With ``reports_seconds`` each
    call returns its own duration (measured where it ran, e.g. in a runtime's process, without
    the message round trip); else the wall time around the call counts. A call that raises is
    dropped from the loop and reported in the second dict (first line of the error)."""
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
            start = time.perf_counter()
            try:
                returned = calls[name]()
            except Exception as exc:  # noqa: BLE001 - a runtime failing is a result, not a crash
                errors[name] = first_line(exc)
                continue
            if round_ >= warmup:
                seconds[name].append(float(returned) if reports_seconds else time.perf_counter() - start)
    timings = {n: Timing.of(s, warmup) for n, s in seconds.items() if n not in errors and s}
    return timings, errors


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


def inference_row(model: str, batch: int, timings: dict[str, Timing], errors: dict[str, str],
                  outputs: dict[str, dict], infos: dict[str, dict], runs: int, warmup: int, *,
                  setup: str, settings: dict | None = None, round_seconds: float | None = None) -> dict:
    """One table row: every runtime's timing and error, ratios against ``REFERENCE`` (the
    quotient of the medians), thread counts as each runtime reported them, and each runtime's
    max abs diff against the reference's outputs on the same feeds."""
    reference = outputs.get(REFERENCE)
    return {
        "model": model,
        "batch": batch,
        "setup": setup,
        "timings": {n: vars(t) for n, t in timings.items()},
        "ratios": {n: ratio(timings.get(n), timings.get(REFERENCE)) for n in RUNTIMES if n != REFERENCE},
        "ratio_reference": REFERENCE,
        "runs": runs,
        "warmup": warmup,
        "round_seconds": round_seconds,
        "threads": {n: info.get("threads") for n, info in infos.items()},
        "onednn": {n: info["onednn"] for n, info in infos.items() if "onednn" in info},
        "bridge_settings": settings,
        "errors": errors,
        "max_abs_vs_reference": {n: max_abs_diff(o, reference) if reference is not None else None
                                 for n, o in outputs.items() if n not in errors},
    }


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
