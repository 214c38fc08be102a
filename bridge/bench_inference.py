"""The coordinator side of the inference benchmark: every runtime of a converted model in a
process of its own (``bridge.bench_worker serve``), called in turn from here.

The calls are interleaved as in one process (round ``i`` asks every runtime for one call,
rotating who goes first) while no two runtimes share an address space, so neither OpenMP
runtime slows the other (see ``bridge.bench_worker``). Durations are measured in the worker
around ``runner.run(feeds)``; the message round trip is not counted. This process imports
numpy, never torch or Paddle.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bridge.bench import MIN_RUNS, RUNTIMES, first_line, inference_row, interleaved, run_child, thread_env

# Slow rows (SeqNet at batch 32: seconds per round of calls) get the runs that fit this many
# seconds, at least MIN_RUNS, and one warm-up round, instead of the defaults.
ROW_BUDGET_S, SLOW_ROUND_S = 120.0, 2.0
SETUP = "one process per runtime"


class RuntimeProcess:
    """One runtime in its own process; ``request`` sends one message and returns the reply."""

    def __init__(self, work: Path, name: str, threads: int, log: Path):
        self.name = name
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.bench_worker", "serve", str(work), "--runtime", name,
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env={**os.environ, **thread_env(threads)},
        )
        self.peak_rss_bytes: int | None = None
        try:
            self.info = self._receive()
        except RuntimeError:
            self.close()
            raise

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: its process ended (exit status {self.proc.poll()}); "
                               f"see {self._log.name}")
        return json.loads(line)

    def request(self, **message) -> dict:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"{self.name}: its process ended; see {self._log.name}") from None
        reply = self._receive()
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error") or "failed")
        return reply

    def close(self) -> None:
        """Stop the process and keep its peak RSS (``wait4``: exact, the whole run)."""
        try:
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.proc.stdout.close()
        self.peak_rss_bytes = usage.ru_maxrss * 1024
        self._log.close()


def _row_runs(round_s: float, runs: int, warmup: int) -> tuple[int, int]:
    if round_s * runs <= ROW_BUDGET_S:
        return runs, (warmup if round_s <= SLOW_ROUND_S else 1)
    return max(MIN_RUNS, int(ROW_BUDGET_S / round_s)), 1


def measure_model(work: Path, label: str, batch_sizes: tuple[int, ...], runs: int, warmup: int,
                  threads: int, log: Path) -> list[dict]:
    """One row per batch size: one untimed call per runtime whose outputs are compared with
    ONNX Runtime's, then every runtime timed in one interleaved loop on the same feeds."""
    import numpy as np

    log.parent.mkdir(parents=True, exist_ok=True)
    processes: dict[str, RuntimeProcess] = {}
    infos, errors, rows, settings = {}, {}, [], None
    try:
        for name in RUNTIMES:  # one after the other: each imports its framework undisturbed
            try:
                process = RuntimeProcess(work, name, threads, log)
            except RuntimeError as exc:
                errors[name] = str(exc)
                continue
            processes[name] = process
            if process.info.get("ok"):
                infos[name] = {k: v for k, v in process.info.items() if k in ("threads", "onednn", "frameworks")}
                settings = settings or process.info.get("settings")
            else:
                errors[name] = process.info.get("error") or "failed to start"
        live = {n: p for n, p in processes.items() if n not in errors}
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as scratch:
            for batch in batch_sizes:
                row_errors, outputs, round_s = dict(errors), {}, 0.0
                for name, process in live.items():
                    path = Path(scratch) / f"{name}.npz"
                    try:
                        process.request(cmd="feeds", batch=batch, seed=batch)
                        round_s += process.request(cmd="check", path=str(path))["seconds"]
                    except RuntimeError as exc:
                        row_errors[name] = first_line(exc)
                        continue
                    with np.load(path) as saved:
                        outputs[name] = {k.removeprefix("output:"): saved[k] for k in saved.files}
                row_runs, row_warmup = _row_runs(round_s, runs, warmup)
                calls = {n: (lambda p=p: p.request(cmd="run")["seconds"]) for n, p in live.items() if n not in row_errors}
                timings, loop_errors = interleaved(calls, row_runs, row_warmup, reports_seconds=True)
                rows.append(inference_row(label, batch, timings, {**row_errors, **loop_errors}, outputs, infos,
                                          row_runs, row_warmup, setup=SETUP, settings=settings, round_seconds=round_s))
                times = ", ".join(f"{n} {t.median_s * 1000:.3g}" for n, t in timings.items())
                print(f"inference: {label} batch {batch}: {times} ms"
                      + (f"; errors: {', '.join(rows[-1]['errors'])}" if rows[-1]["errors"] else ""), flush=True)
    finally:
        for process in processes.values():
            process.close()
    for row in rows:
        row["peak_rss_bytes"] = {n: p.peak_rss_bytes for n, p in processes.items() if n in infos}
    return rows


def measure_shared(work: Path, label: str, batch_sizes: tuple[int, ...], runs: int, warmup: int,
                   threads: int, log: Path, import_order: str) -> list[dict]:
    """The same rows with every runtime in one process (``bench_worker shared``), frameworks
    imported in ``import_order`` ("paddle" or "torch" first)."""
    rows_json = log.with_name(f"{label}.shared-{import_order}.json")
    rows_json.unlink(missing_ok=True)
    child = run_child([sys.executable, "-m", "bridge.bench_worker", "shared", str(work), "--label", label,
                       "--import-order", import_order, "--batch-sizes", ",".join(map(str, batch_sizes)),
                       "--runs", str(runs), "--warmup", str(warmup), "--threads", str(threads),
                       "--json", str(rows_json)], log=log, cwd=Path.cwd(), env=thread_env(threads))
    if not child.ok or not rows_json.exists():
        raise RuntimeError(f"bench_worker shared ({label}, {import_order} first) failed: {child.first_error_line()}")
    rows = json.loads(rows_json.read_text())
    for row in rows:
        row["process_peak_rss_bytes"] = child.peak_rss_bytes
    return rows
