"""The benchmark's rules as behaviour, never its timings: interleaved timing (medians of at
least ten runs between their min and max, every runtime called in turn), child-process memory
measurement, and ``scripts/bench.py --quick`` writing well-formed results for the seed model
(every runtime in a process of its own, equal thread counts, ratios that are quotients of the
medians)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import bench
from bridge.bench import MIN_RUNS, REFERENCE, RUNTIMES

ROOT = Path(__file__).resolve().parent.parent


def test_interleaved_calls_every_runtime_in_turn_rotating_who_goes_first():
    calls_made: list[str] = []
    calls = {name: (lambda name=name: calls_made.append(name)) for name in ("a", "b", "c")}
    timings, errors = bench.interleaved(calls, runs=MIN_RUNS, warmup=2)
    assert errors == {}
    rounds = [calls_made[i:i + 3] for i in range(0, len(calls_made), 3)]
    assert len(rounds) == MIN_RUNS + 2
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert [r[0] for r in rounds[:3]] == ["a", "b", "c"]  # drift hits every runtime alike
    for t in timings.values():
        assert t.runs == MIN_RUNS and t.warmup == 2
        assert t.min_s <= t.median_s <= t.max_s


def test_interleaved_reports_a_failing_runtime_and_times_the_others():
    def broken():
        raise RuntimeError("no kernel for op X\nmore detail")

    timings, errors = bench.interleaved({"ok": lambda: time.sleep(0.001), "broken": broken}, runs=MIN_RUNS, warmup=1)
    assert errors == {"broken": "RuntimeError: no kernel for op X"}
    assert list(timings) == ["ok"] and timings["ok"].median_s >= 0.001


def test_interleaved_can_take_durations_measured_where_the_call_ran():
    durations = iter([0.5, 0.25] * 20)
    timings, _ = bench.interleaved({"remote": lambda: next(durations)}, runs=MIN_RUNS, warmup=0,
                                   reports_seconds=True)
    assert (timings["remote"].min_s, timings["remote"].max_s) == (0.25, 0.5)


def test_interleaved_refuses_fewer_than_the_minimum_runs():
    with pytest.raises(ValueError, match=f"at least {MIN_RUNS}"):
        bench.interleaved({"a": lambda: None}, runs=MIN_RUNS - 1, warmup=1)


def test_ratio_is_the_quotient_of_medians():
    a, b = bench.Timing.of([2.0, 4.0, 9.0], 1), bench.Timing.of([1.0, 2.0, 3.0], 1)
    assert bench.ratio(a, b) == 2.0
    assert bench.ratio(a, None) is None


def test_run_child_measures_peak_rss_and_enforces_a_memory_limit(tmp_path):
    grow = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    child = bench.run_child([sys.executable, "-c", grow], log=tmp_path / "log", cwd=tmp_path)
    assert child.ok and child.peak_rss_bytes >= 300 * 2**20
    assert child.peak_tree_rss_bytes >= child.peak_rss_bytes

    limited = bench.run_child([sys.executable, "-c", grow], log=tmp_path / "log", cwd=tmp_path,
                              memory_limit=200 * 2**20)
    assert not limited.ok
    assert "MemoryError" in limited.first_error_line()
    assert limited.to_json()["error"] == limited.first_error_line()


def test_bench_quick_inference_writes_well_formed_results(tmp_path, seqnet_work):
    out = tmp_path / "out"
    shutil.copytree(seqnet_work, out / "seqnet")  # the conversion is reused, not rerun
    proc = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--only", "inference", "--batch-sizes", "1",
         "--out", str(out), "--report", str(tmp_path / "report")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert data["quick"] and data["threads"] == 2
    assert data["machine"]["cpu"] and data["machine"]["cores"] >= 1
    assert data["machine"]["tools"]["onnxruntime"] and data["machine"]["tools"]["paddlepaddle"]
    assert list(data["sections"]) == ["inference"]
    rows = data["sections"]["inference"]["rows"]
    assert [(r["model"], r["batch"]) for r in rows] == [("seqnet", 1)]
    row = rows[0]
    assert set(row["timings"]) | set(row["errors"]) == set(RUNTIMES)
    assert REFERENCE in row["timings"] and "paddle_inference" in row["timings"]
    assert row["runs"] >= MIN_RUNS and row["setup"] == "one process per runtime"
    for name, t in row["timings"].items():
        assert t["runs"] == row["runs"] and t["min_s"] <= t["median_s"] <= t["max_s"], name
        assert str(row["threads"][name]).startswith("2"), (name, row["threads"][name])
        assert row["peak_rss_bytes"][name] > 0, name  # each runtime's own process
    assert row["onednn"]["paddle_inference_no_onednn"] is False  # what "oneDNN off" claims
    assert "paddle_inference" in row["onednn"] and row["bridge_settings"] is not None
    ref = row["timings"][REFERENCE]["median_s"]
    for name, value in row["ratios"].items():
        if name in row["timings"]:
            assert value == pytest.approx(row["timings"][name]["median_s"] / ref), name
        else:
            assert value is None
    for name, diff in row["max_abs_vs_reference"].items():
        assert diff is not None and diff < 1e-4, name  # the seed converts exactly; no runtime is wrong
    readme = (tmp_path / "report" / "README.md").read_text()
    assert "python scripts/bench.py --quick --only inference" in readme
    assert "| seqnet | 1 |" in readme
    assert data["machine"]["cpu"] in readme
