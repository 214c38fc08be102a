"""One model's inference benchmark in a fresh process (``scripts/bench.py`` runs one per model):

    python -m bridge.bench_worker WORK --label NAME --batch-sizes 1,8 --runs 20 --warmup 3
                                  --threads 2 --json ROWS.json [--torch-first]

A process of its own per model because what ran before changes the numbers: with torch
imported before Paddle, Paddle Inference's oneDNN kernels ran 3-8x slower on SeqNet (torch's
GNU OpenMP and Paddle's Intel OpenMP in one process), and a conversion run in the same process
imports torch first. So this worker imports Paddle first, unless ``--torch-first`` asks for
the other order to measure exactly that.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from bridge.bench import thread_env

# Slow rows (SeqNet at batch 32: seconds per round of calls) get the minimum number of runs
# that fit this many seconds, and one warm-up round, instead of the defaults.
ROW_BUDGET_S, SLOW_ROUND_S = 120.0, 2.0


def measure_model(work: Path, label: str, batch_sizes: tuple[int, ...], runs: int, warmup: int,
                  threads: int) -> list[dict]:
    """One row per batch size: every runtime timed in one interleaved loop on the same feeds,
    after one untimed call each whose outputs are compared with ONNX Runtime's."""
    from bridge import bench
    from bridge.bench import MIN_RUNS, REFERENCE, RUNTIMES
    from bridge.stages.export import random_inputs

    runtimes = bench.build_runtimes(work, threads)
    rows = []
    for batch in batch_sizes:
        feeds = random_inputs(runtimes.input_specs, batch=batch, seed=batch)
        errors, outputs = dict(runtimes.errors), {}
        round_start = time.perf_counter()
        for name, runner in runtimes.runners.items():
            try:
                outputs[name] = runner.run(feeds)
            except Exception as exc:  # noqa: BLE001 - a runtime failing is a row entry
                errors[name] = bench.first_line(exc)
        round_s = time.perf_counter() - round_start
        row_runs = runs if round_s * runs <= ROW_BUDGET_S else max(MIN_RUNS, int(ROW_BUDGET_S / round_s))
        row_warmup = warmup if round_s <= SLOW_ROUND_S else 1
        calls = {n: (lambda r=r: r.run(feeds)) for n, r in runtimes.runners.items() if n not in errors}
        timings, loop_errors = bench.interleaved(calls, row_runs, row_warmup)
        errors.update(loop_errors)
        reference = outputs.get(REFERENCE)
        rows.append({
            "model": label,
            "batch": batch,
            "timings": {n: vars(t) for n, t in timings.items()},
            "ratios": {n: bench.ratio(timings.get(n), timings.get(REFERENCE)) for n in RUNTIMES if n != REFERENCE},
            "ratio_reference": REFERENCE,
            "runs": row_runs, "warmup": row_warmup, "round_seconds": round_s,
            "threads": dict(runtimes.threads),
            "onednn": dict(runtimes.onednn),
            "bridge_settings": runtimes.bridge_settings,
            "errors": errors,
            "max_abs_vs_reference": {n: bench.max_abs_diff(o, reference) if reference is not None else None
                                     for n, o in outputs.items() if n not in errors},
        })
        times = ", ".join(f"{n} {t.median_s * 1000:.3g}" for n, t in timings.items())
        print(f"inference: {label} batch {batch}: {times} ms" + (f"; errors: {', '.join(errors)}" if errors else ""),
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--batch-sizes", required=True, type=lambda t: tuple(int(b) for b in t.split(",")))
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--torch-first", action="store_true", help="import torch before Paddle")
    args = parser.parse_args(argv)
    os.environ.update(thread_env(args.threads))  # before either framework loads its thread pools
    for framework in ("torch", "paddle") if args.torch_first else ("paddle", "torch"):  # see the docstring
        importlib.import_module(framework)

    rows = measure_model(args.work, args.label, args.batch_sizes, args.runs, args.warmup, args.threads)
    for row in rows:
        row["import_order"] = "torch first" if args.torch_first else "paddle first"
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
