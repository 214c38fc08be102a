#!/usr/bin/env python3
"""Speed and memory: inference against ONNX Runtime, the pipeline's cost, scaling, big weights.

    python scripts/bench.py [--quick] [--only SECTION]... [--skip-big] [--no-zoo]
                            [--batch-sizes 1,8,32] [--runs N] [--out DIR] [--report DIR]
                            [--update-report]

Sections: ``inference`` (the seed model at each batch size and every zoo model at batch 1 under
torch, ONNX Runtime, three Paddle Inference configs and Paddle dygraph, each in a process of its
own and called in turn; then all in one process, to show what sharing one costs),
``profile`` (the same models at batch 1 under Paddle's and ONNX Runtime's profilers: time per op
type, and why Paddle's is larger; ``bridge.bench_profile``), ``pipeline`` (each stage of the
seed model's conversion as a child process: wall time, peak RSS; ``bridge --help`` start-up and
what it imports), ``scaling`` (synthetic ONNX models of 100 to 10,000 nodes, converted and
validated), ``big`` (a model with more than 2.5 GB of weights, under a memory limit). Work
directories go to ``--out`` (``out/bench/``).

The tables go to ``results.json`` and ``README.md`` in ``bench/`` for a full run (``make
bench``; ``--skip-big`` allowed), else in ``--out``, so a quick or partial run never overwrites
the committed tables; ``--update-report`` merges a partial run's sections into the report's
results instead (``--only profile --report bench --update-report`` redoes one table). Exit
status 1 when the seed model cannot be converted or benchmarked, or ``bridge --help`` imports
torch or Paddle; a failing zoo model or big model is a result, not a failure of the bench.
"""
from __future__ import annotations

import os
import sys

THREADS = 2
# Every child inherits these (this process never loads torch or Paddle; numpy reads them once).
from bridge.bench import thread_env  # noqa: E402 (bridge.bench imports nothing heavy)

ENV = thread_env(THREADS)
os.environ.update(ENV)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bridge import bench  # noqa: E402
from bridge import bench_cost, bench_inference, bench_profile  # noqa: E402
from bridge.bench import MIN_RUNS, Timing  # noqa: E402
from bridge.bench_inference import ROW_BUDGET_S, SLOW_ROUND_S  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SEED = "bridge.models.seqnet:seqnet"
DEFAULT_OUT = Path("out/bench")
DEFAULT_REPORT = ROOT / "bench"
SECTIONS = ("inference", "profile", "pipeline", "scaling", "big")
STAGES = ("export", "simplify", "patch", "convert", "validate")
SCALING_SIZES, QUICK_SCALING_SIZES, LARGEST_SIZE = (100, 1000, 5000), (100, 1000), 10000
LAYERWISE_SIZE = 1000  # bridge validate --layerwise is timed on this scaling model
SHARED_ZOO_MODELS = ("transformer_encoder",)  # besides the seed: a small model, where start-up costs show
MEMORY_LIMIT = 16 * 2**30  # the machine has 24 GiB
BRIDGE = [sys.executable, "-m", "bridge"]


def _say(text: str) -> None:
    print(text, flush=True)


def _rel(path: Path) -> str:
    return os.path.relpath(path, ROOT) if path.resolve().is_relative_to(ROOT) else str(path)


def _shown(argv: list[str]) -> str:
    """A child's command as a user types it: ``bridge ...`` / ``python ...``, paths relative."""
    words = ["bridge", *argv[3:]] if argv[:3] == BRIDGE else ["python", *argv[1:]]
    return shlex.join(_rel(Path(w)) if w.startswith("/") else w for w in words)


# --- 1. inference --------------------------------------------------------------------------

def measure(work: Path, label: str, batch_sizes: tuple[int, ...], args, log: Path) -> list[dict]:
    """Rows for one converted model, every runtime in a process of its own."""
    return bench_inference.measure_model(work, label, batch_sizes, args.runs, args.warmup, THREADS, log)


def shared_rows(work: Path, label: str, args, log: Path) -> list[dict]:
    """What sharing one process costs: batch 1 with every runtime in one process, both import orders."""
    return [row for order in ("paddle", "torch")
            for row in bench_inference.measure_shared(work, label, (1,), args.runs, args.warmup, THREADS, log, order)]


def convert(source: str, work: Path, log: Path) -> tuple[bench.ChildRun, str | None]:
    """``bridge convert --threads THREADS`` in a child (the bench process itself never imports
    torch or Paddle): the inference settings are chosen at the thread count they are timed at."""
    child = bench.run_child(BRIDGE + ["convert", source, "--out", str(work), "--threads", str(THREADS)],
                            log=log, cwd=ROOT)
    return child, None if child.ok else child.first_error_line()


def zoo_models() -> list[Path]:
    """The example zoo's models (``examples/*.py`` with a ``build`` factory) when the zoo exists."""
    if not (ROOT / "scripts" / "zoo.py").exists() or not (ROOT / "examples").is_dir():
        return []
    return sorted(p for p in (ROOT / "examples").glob("*.py") if "build" in p.read_text())


def _add_costs(rows: list[dict], work: Path) -> list[dict]:
    """Each row's FLOPs (Conv/Gemm/MatMul of the patched ONNX at its batch) and the number of
    ops in the saved Paddle program: what the timings are read against."""
    ops = bench_cost.paddle_op_count(work / "paddle")
    for row in rows:
        row["paddle_ops"] = ops
        try:
            row["flops"] = bench_cost.onnx_flops(work / "model.patched.onnx", row["batch"])
        except Exception as exc:  # noqa: BLE001 - a missing count leaves the cell empty, not the bench
            row["flops"], row["flops_error"] = None, bench.first_line(exc)
    return rows


def dispatch_cost(args, out: Path, log: Path) -> dict:
    """Per-op cost of each runtime beyond arithmetic: Sigmoid chains of 1 and 201 nodes on a
    1×16 tensor, converted by bridge and timed like the models; (t201 - t1) / 200."""
    import onnx

    rows = {}
    for length in bench_cost.CHAIN_LENGTHS:
        folder = out / f"sigmoid_chain_{length}"
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(bench_cost.op_chain_model(length), str(folder / "model.onnx"))
        child, error = convert(str(folder / "model.onnx"), folder / "work", log)
        if error:
            return {"error": f"sigmoid chain of {length}: bridge convert failed: {error}"}
        rows[length] = measure(folder / "work", f"sigmoid_chain_{length}", (1,), args, log)[0]
    short, long_ = (rows[n] for n in bench_cost.CHAIN_LENGTHS)
    ops = bench_cost.CHAIN_LENGTHS[1] - bench_cost.CHAIN_LENGTHS[0]
    per_op = {}
    for name in long_["timings"]:
        if name in short["timings"]:
            per_op[name] = (long_["timings"][name]["median_s"] - short["timings"][name]["median_s"]) / ops
    return {"lengths": list(bench_cost.CHAIN_LENGTHS), "per_op_s": per_op,
            "rows": [rows[n] for n in bench_cost.CHAIN_LENGTHS]}


def inference_section(args, out: Path) -> dict:
    log = out / "inference.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    seed_work = out / "seqnet"
    child, error = convert(SEED, seed_work, log)
    if error:
        raise RuntimeError(f"bridge convert {SEED} failed: {error} (log: {_rel(log)})")
    rows = measure(seed_work, "seqnet", args.batch_sizes, args, log)
    _add_costs(rows, seed_work)
    section = {"source": SEED, "work": _rel(seed_work), "batch_sizes": list(args.batch_sizes), "rows": rows,
               "zoo": [], "convert_seconds": {"seqnet": child.seconds},
               "peak": bench_cost.fp32_peak(THREADS)}
    if not args.quick:  # two more conversions and timings; the quick run only checks the machinery
        section["dispatch"] = dispatch_cost(args, out / "dispatch", log)
    if not args.quick:
        section["shared_rows"] = shared_rows(seed_work, "seqnet", args, log)
    if args.no_zoo:
        section["zoo_note"] = "Zoo models not benchmarked (--no-zoo)."
        return section
    models = [p for p in zoo_models() if p.stem != "seqnet"]  # seqnet is the seed, above
    for path in models:
        work = out / "zoo" / path.stem
        child, error = convert(f"{_rel(path)}:build", work, log)
        section["convert_seconds"][path.stem] = child.seconds
        if error:
            section["rows"].append({"model": path.stem, "batch": 1, "convert_error": error})
            _say(f"inference: {path.stem}: conversion failed: {error}")
            continue
        section["rows"] += _add_costs(measure(work, path.stem, (1,), args, log), work)
        if path.stem in SHARED_ZOO_MODELS:
            section.setdefault("shared_rows", []).extend(shared_rows(work, path.stem, args, log))
    section["zoo"] = [p.stem for p in models]
    if models:
        section["zoo_note"] = (
            f"Zoo models (`examples/*.py:build`, batch 1; converted into `{_rel(out / 'zoo')}/`): "
            f"{', '.join(p.stem for p in models)}; seqnet is the seed model's rows. A model whose "
            "conversion fails is a row saying so.")
    return section


# --- 1b. profile -----------------------------------------------------------------------------

def profile_section(args, out: Path) -> dict:
    """Per-op-type profiles of Paddle Inference (bridge config) and ONNX Runtime at batch 1, for
    the seed model and every zoo model (``bridge.bench_profile``). Each model is converted as the
    inference section converts it; ``bridge convert`` reuses a work directory its inputs, tools and
    code have not changed since, so after the inference section this converts nothing again."""
    log = out / "profile.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    models = [("seqnet", SEED, out / "seqnet")]
    if not args.no_zoo:
        models += [(p.stem, f"{_rel(p)}:build", out / "zoo" / p.stem) for p in zoo_models() if p.stem != "seqnet"]
    rows = []
    for label, source, work in models:
        child, error = convert(source, work, log)
        if error:
            rows.append({"model": label, "batch": 1, "convert_error": error, "profiles": {}, "errors": {}})
            _say(f"profile: {label}: conversion failed: {error}")
            continue
        row = bench_profile.profile_model(work, label, THREADS, args.runs, args.warmup, log)
        rows.append(row)
        totals = ", ".join(f"{n} {p['unprofiled_s'] * 1000:.3g} ms ({p['kernels']:.0f} kernels)"
                           for n, p in row["profiles"].items())
        _say(f"profile: {label}: {totals}" + (f"; errors: {row['errors']}" if row["errors"] else ""))
    return {"rows": rows, "runs": args.runs, "warmup": args.warmup, "threads": THREADS,
            "methods": {"paddle_inference": bench_profile.PADDLE_METHOD, "onnxruntime": bench_profile.ORT_METHOD}}


# --- 2. pipeline ----------------------------------------------------------------------------

def _stage_argv(stage: str, work: Path) -> list[str]:
    if stage == "export":
        return BRIDGE + ["stage", "export", SEED, "--out", str(work)]
    if stage == "validate":
        return BRIDGE + ["validate", str(work), "--threads", str(THREADS)]
    return BRIDGE + ["stage", stage, str(work)]


def startup(runs: int, warmup: int) -> dict:
    """``bridge --help``: its start-up time against the bare interpreter, and what it imports."""
    help_argv, bare_argv = BRIDGE + ["--help"], [sys.executable, "-c", "pass"]
    calls = {name: (lambda argv=argv: subprocess.run(argv, check=True, capture_output=True, cwd=ROOT))
             for name, argv in (("help", help_argv), ("bare", bare_argv))}
    timings, errors = bench.interleaved(calls, runs, warmup)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bridge", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0]
               for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    heavy = sorted(modules & {"torch", "paddle", "onnx", "onnxruntime", "onnxsim", "x2paddle", "numpy",
                              "transformers", "onnxscript"})
    return {
        "command": "bridge --help", "baseline_command": "python -c pass", "runs": runs, "warmup": warmup,
        "timing": vars(timings["help"]) if "help" in timings else None,
        "baseline": vars(timings["bare"]) if "bare" in timings else None,
        "ratio": bench.ratio(timings.get("help"), timings.get("bare")),
        "errors": errors, "heavy_imports": heavy,
        "imports_torch": "torch" in modules, "imports_paddle": "paddle" in modules,
        "ok": not errors and proc.returncode == 0 and not {"torch", "paddle"} & modules,
    }


def pipeline_section(args, out: Path) -> dict:
    work = out / "pipeline" / "seqnet"
    log = out / "pipeline" / "commands.log"
    log.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    runs = {stage: [] for stage in STAGES}
    failed: dict[str, str] = {}
    for pass_ in range(args.pipeline_warmup + args.pipeline_runs):
        for stage in STAGES:
            child = bench.run_child(_stage_argv(stage, work), log=log, cwd=ROOT)
            if not child.ok:
                failed[stage] = child.first_error_line()
                break
            if pass_ >= args.pipeline_warmup:
                runs[stage].append(child)
        if failed:
            break
        _say(f"pipeline: pass {pass_ + 1}/{args.pipeline_warmup + args.pipeline_runs}")
    stages = []
    for stage in STAGES:
        children = runs[stage]
        complete = len(children) == args.pipeline_runs
        stages.append({
            "stage": stage, "command": _shown(_stage_argv(stage, work)),
            "timing": vars(Timing.of([c.seconds for c in children], args.pipeline_warmup)) if complete else None,
            "peak_rss_bytes": max((c.peak_rss_bytes for c in children), default=None),
            "peak_tree_rss_bytes": max((c.peak_tree_rss_bytes for c in children), default=None),
            "ok": complete,
            "error": failed.get(stage) or (None if complete else "not run: an earlier stage failed"),
        })
    return {"source": SEED, "work": _rel(work), "runs": args.pipeline_runs, "warmup": args.pipeline_warmup,
            "stages": stages, "startup": startup(max(MIN_RUNS, args.runs), args.warmup)}


# --- 3. scaling -----------------------------------------------------------------------------

def scale_one(nodes: int, out: Path, timeout: float | None = None) -> dict:
    import onnx

    from bridge.bench_models import scaling_model

    folder = out / "scaling"
    folder.mkdir(parents=True, exist_ok=True)
    model_path, work, log = folder / f"nodes_{nodes}.onnx", folder / f"nodes_{nodes}", folder / f"nodes_{nodes}.log"
    log.unlink(missing_ok=True)
    model = scaling_model(nodes)
    onnx.save(model, str(model_path))
    row = {"nodes": len(model.graph.node), "model": _rel(model_path)}
    convert = bench.run_child(BRIDGE + ["convert", str(model_path), "--out", str(work), "--force"],
                              log=log, cwd=ROOT, timeout=timeout)
    row.update(convert=convert.to_json(), ms_per_node=convert.seconds / row["nodes"] * 1000,
               ok=convert.ok, error=None if convert.ok else convert.first_error_line())
    if convert.ok:
        stages = json.loads((work / "manifest.json").read_text())["stages"]
        row["stage_seconds"] = {s: r.get("seconds") for s, r in stages.items()}
        validate = bench.run_child(BRIDGE + ["validate", str(work), "--batch-sizes", "1", "--threads", str(THREADS)],
                                   log=log, cwd=ROOT, timeout=timeout)
        row["validate"] = validate.to_json()
        report = work / "validation.json"
        if validate.killed is None and report.exists():  # exit 1 is a numerical mismatch, still measured
            data = json.loads(report.read_text())
            row["validation"] = ("passed" if data["passed"] else "mismatch") + \
                f" ({sum(d['passed'] for d in data['diffs'])}/{len(data['diffs'])})"
        else:
            row.update(ok=False, error=validate.first_error_line())
        if nodes == LAYERWISE_SIZE and row["ok"]:
            row["layerwise"] = layerwise_one(work, log, timeout)
    _say(f"scaling: {row['nodes']} nodes: convert {convert.seconds:.1f}s, "
         f"{'ok' if row['ok'] else 'failed: ' + str(row['error'])}")
    return row


def layerwise_one(work: Path, log: Path, timeout: float | None) -> dict:
    """``bridge validate --layerwise`` on a converted scaling model (issue target: 1,000 nodes
    in under 2 minutes): the command's wall time, and the layerwise part alone from its report."""
    argv = BRIDGE + ["validate", str(work), "--batch-sizes", "1", "--threads", str(THREADS), "--layerwise"]
    child = bench.run_child(argv, log=log, cwd=ROOT, timeout=timeout)
    row = {"command": _shown(argv), **child.to_json()}
    try:
        data = json.loads((work / "validation.json").read_text())
        layerwise = data["layerwise"]
        row.update(layerwise_seconds=layerwise["seconds"], nodes_compared=layerwise["nodes"],
                   tensors_compared=layerwise["tensors"], first_divergent=(data.get("first_divergent") or {}).get("node"))
    except (OSError, ValueError, KeyError, TypeError):
        row["error"] = child.first_error_line() if not child.ok else "validation.json has no layerwise report"
    return row


def _total_seconds(row: dict) -> float:
    return row["convert"]["seconds"] + (row.get("validate") or {}).get("seconds", 0)


def scaling_section(args, out: Path) -> dict:
    sizes = QUICK_SCALING_SIZES if args.quick else SCALING_SIZES
    rows = [scale_one(n, out) for n in sizes]
    measured = [r for r in rows if r["ok"]]
    section = {"rows": rows, "budget_s": args.scaling_budget}
    if len(measured) >= 2:
        small, large = measured[-2], measured[-1]
        exponent = math.log(_total_seconds(large) / _total_seconds(small)) / math.log(large["nodes"] / small["nodes"])
        predicted = _total_seconds(large) * (LARGEST_SIZE / large["nodes"]) ** exponent
        section["trend"] = (
            f"Trend: convert + validate time grows as nodes^{exponent:.2f} between {small['nodes']:,} and "
            f"{large['nodes']:,} nodes; that predicts {predicted:.0f}s for {LARGEST_SIZE:,} nodes.")
        section.update(exponent=exponent, predicted_largest_s=predicted)
        if args.quick:
            rows.append({"nodes": LARGEST_SIZE, "skipped": "quick mode", "ok": False})
        elif predicted > args.scaling_budget:
            rows.append({"nodes": LARGEST_SIZE, "ok": False, "skipped": (
                f"predicted {predicted:.0f}s from the trend (nodes^{exponent:.2f}), over the "
                f"{args.scaling_budget:.0f}s budget (--scaling-budget)")})
        else:
            rows.append(scale_one(LARGEST_SIZE, out, timeout=max(3 * predicted, 600)))
    return section


# --- 4. big weights ---------------------------------------------------------------------------

# Known causes of big-model failures, matched on the error line, so the table says why, not
# only where. A pattern that no longer matches simply adds nothing.
BIG_DIAGNOSES = (
    (r"should be stored in .*\.data, but it is not regular file",
     "the export stage copies an ONNX source's .onnx file into the work directory without the external "
     "data file its initializers point to, so the next stage cannot load the weights"),
    (r"EncodeError: Failed to serialize proto|exceeds maximum protobuf size",
     "a ModelProto over protobuf's 2 GB limit was serialized in memory (onnx.save without "
     "save_as_external_data, or onnx.checker.check_model given the proto instead of its path)"),
)


def _diagnose(error: str) -> str | None:
    import re

    return next((why for pattern, why in BIG_DIAGNOSES if re.search(pattern, error)), None)


def _failed_stage(output: str) -> str | None:
    printed = {line.split(":", 1)[0] for line in output.splitlines()}
    return next((s for s in STAGES[:4] if s not in printed), None)


def big_section(args, out: Path) -> dict:
    from bridge.bench_models import write_big_weights_model

    folder = out / "big"
    shutil.rmtree(folder, ignore_errors=True)
    model_path, work, log = folder / "big_weights.onnx", folder / "work", folder / "commands.log"
    start = time.perf_counter()
    weight_bytes = write_big_weights_model(model_path)
    _say(f"big: wrote {_rel(model_path)} + external data, {weight_bytes / 1e9:.2f} GB in {time.perf_counter() - start:.0f}s")
    section = {"model": "3 × MatMul 16384×16384 (fp32) with Relu between", "onnx": _rel(model_path),
               "weight_bytes": weight_bytes, "memory_limit_bytes": MEMORY_LIMIT, "rows": []}
    steps = [("convert", BRIDGE + ["convert", str(model_path), "--out", str(work), "--force"]),
             ("validate", BRIDGE + ["validate", str(work), "--batch-sizes", "1", "--threads", str(THREADS)])]
    try:
        for step, argv in steps:
            child = bench.run_child(argv, log=log, cwd=ROOT, memory_limit=MEMORY_LIMIT, timeout=args.big_timeout)
            row = {"step": step, "command": _shown(argv), **child.to_json()}
            if step == "convert":
                section["stage_lines"] = [line for line in child.output_tail.splitlines()
                                          if line.split(":", 1)[0] in STAGES or line.startswith("error:")]
                if not child.ok:
                    row["failed_at"] = _failed_stage(child.output_tail)
            if not child.ok:
                row["diagnosis"] = _diagnose(child.first_error_line())
            section["rows"].append(row)
            _say(f"big: {step}: {child.seconds:.0f}s, peak RSS {child.peak_rss_bytes / 2**30:.1f} GiB, "
                 f"{'ok' if child.ok else 'failed: ' + child.first_error_line()}")
            if not child.ok:
                break
    finally:
        if not args.keep_big:  # several GB; the model is rebuilt in a minute
            shutil.rmtree(folder, ignore_errors=True)
            section["removed"] = True
    return section


# --- the run ----------------------------------------------------------------------------------

def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return sizes


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"fewer runs ({MIN_RUNS}), warm-ups (1), batches (1) and sizes; no zoo, no big model (for tests)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--skip-big", action="store_true", help="skip the >2.5 GB weights model")
    parser.add_argument("--keep-big", action="store_true", help="keep the big model and its work dir afterwards")
    parser.add_argument("--no-zoo", action="store_true", help="inference: the seed model only")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=None, help="seed model batches (default 1,8,32)")
    parser.add_argument("--runs", type=int, default=None, help=f"timed runs per figure (default 20, at least {MIN_RUNS})")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs (default 3)")
    parser.add_argument("--pipeline-runs", type=int, default=None, help=f"timed pipeline passes (default {MIN_RUNS})")
    parser.add_argument("--scaling-budget", type=float, default=420.0,
                        help="seconds the 10,000-node model may take by the trend, else it is skipped (default 420)")
    parser.add_argument("--big-timeout", type=float, default=1800.0, help="seconds per big-model command (default 1800)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"work directories (default {DEFAULT_OUT}/)")
    parser.add_argument("--report", type=Path, default=None,
                        help="where results.json and README.md go (default: bench/ for a full run, else --out)")
    parser.add_argument("--update-report", action="store_true",
                        help="merge this run's sections into the report's existing results.json and render "
                             "README.md from it (e.g. --only profile --report bench --update-report)")
    args = parser.parse_args(argv)
    if args.quick:
        args.no_zoo, args.skip_big = True, True
        args.warmup = min(args.warmup, 1)
    args.batch_sizes = args.batch_sizes or ((1,) if args.quick else (1, 8, 32))
    args.runs = args.runs or (MIN_RUNS if args.quick else 20)
    args.pipeline_runs = args.pipeline_runs or MIN_RUNS
    args.pipeline_warmup = 1
    if args.runs < MIN_RUNS or args.pipeline_runs < MIN_RUNS:
        parser.error(f"--runs and --pipeline-runs: at least {MIN_RUNS} (every timing is a median of {MIN_RUNS}+)")
    return args


def _merged(path: Path, data: dict) -> dict:
    """``--update-report``: this run's sections put into the report's existing results, whose
    header (command, machine, load) stays that of the run that wrote it; each section merged in
    says which command, when and under what load it ran."""
    if not path.exists():
        return data
    merged = json.loads(path.read_text())
    for name, section in data["sections"].items():
        merged["sections"][name] = {**section, "run": {
            "command": data["command"], "finished": data["finished"], "load_average": data["load_average"],
            "bridge_code_sha256": data["machine"]["tools"].get("bridge_code_sha256")}}
    merged["sections"] = {n: merged["sections"][n] for n in SECTIONS if n in merged["sections"]}  # table order
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = [s for s in SECTIONS if not args.only or s in args.only]
    full_run = not args.only and not args.quick
    report_dir = args.report or (DEFAULT_REPORT if full_run else args.out)
    out = (args.out if args.out.is_absolute() else Path.cwd() / args.out).resolve()
    words = sys.argv[1:] if argv is None else argv
    command = "make bench" + (f" ARGS={shlex.quote(shlex.join(words))}" if words else "") \
        if os.environ.get("BRIDGE_BENCH_VIA_MAKE") == "1" and argv is None else shlex.join(["python", "scripts/bench.py", *words])

    start, load_start = time.perf_counter(), os.getloadavg()[0]
    results: dict[str, dict] = {}
    status = 0
    runners = {"inference": inference_section, "profile": profile_section, "pipeline": pipeline_section,
               "scaling": scaling_section, "big": big_section}
    for name in sections:
        if name == "big" and args.skip_big:
            results[name] = {"skipped": "--skip-big" if not args.quick else "quick mode"}
            continue
        _say(f"== {name}")
        section_start = time.perf_counter()
        try:
            results[name] = runners[name](args, out)
        except Exception as exc:  # noqa: BLE001 - one section failing leaves the others' tables
            if name == "inference" or name == "pipeline":
                status = 1
            results[name] = {"skipped": f"the section failed: {bench.first_line(exc)}"}
            _say(f"{name}: FAILED: {bench.first_line(exc)}")
        results[name]["seconds"] = round(time.perf_counter() - section_start, 1)
    if not results.get("pipeline", {}).get("startup", {}).get("ok", True):
        status = 1

    data = {
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.perf_counter() - start, 1),
        "quick": args.quick,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "machine": bench.machine_info(),
        "threads": THREADS,
        "thread_settings": "torch.set_num_threads; ORT intra_op_num_threads; Paddle Inference "
                           "set_cpu_math_library_num_threads; dygraph paddle.base.core.set_num_threads",
        "env": ENV,
        "runs": args.runs,
        "warmup": args.warmup,
        "min_runs": MIN_RUNS, "row_budget_s": ROW_BUDGET_S, "slow_round_s": SLOW_ROUND_S,
        "setup": bench_inference.SETUP,
        "out": _rel(out),
        "sections": results,
    }
    from bridge.bench_report import render

    report_dir.mkdir(parents=True, exist_ok=True)
    if args.update_report:
        data = _merged(report_dir / "results.json", data)
    (report_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (report_dir / "README.md").write_text(render(data))
    _say(f"wrote {_rel(report_dir / 'README.md')} in {time.perf_counter() - start:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
