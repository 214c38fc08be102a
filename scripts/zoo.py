#!/usr/bin/env python3
"""The example zoo: convert and validate every model in ``examples/`` through the real CLI.

    python scripts/zoo.py [--only NAME]... [--out DIR] [--report DIR] [--batch-sizes 1,2,8]

Each model runs as ``bridge convert examples/NAME.py:build --out DIR/NAME`` and then
``bridge validate DIR/NAME --batch-sizes ... --atol TOL --rtol 0`` (so "pass" means every
runner's max abs diff against torch and ONNX Runtime is within the model's tolerance), each in
its own process, as a user would run them. The results go to ``results.json`` and a
``README.md`` table in the report folder: ``zoo/`` when every model ran, else the ``--out``
folder, so a partial run never overwrites the committed table.

Exit status: 0 when every model passed (or failed exactly as its ``KNOWN_FAILURES`` entry
says), 1 otherwise, including a known failure that now passes (remove it from the table).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bridge.cli import batch_sizes_arg

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEFAULT_OUT = Path("out/zoo")
DEFAULT_REPORT = ROOT / "zoo"
DEFAULT_BATCH_SIZES = (1, 2, 8)

# The targets: max abs diff <= 1e-5 against torch for models without attention or
# normalisation, <= 1e-4 for the others.
TIGHT, LOOSE = 1e-5, 1e-4


@dataclass(frozen=True)
class ZooModel:
    name: str  # examples/<name>.py, factory ``build``
    atol: float
    what: str  # one line for the table


ZOO: tuple[ZooModel, ...] = (
    ZooModel("seqnet", TIGHT, "seed ECG model: Conv1d branches, unbatched MaxPool2d((1, 200))"),
    ZooModel("signal_pools", TIGHT, "unbatched AvgPool2d((1,k)), ceil_mode, padding, kernel (2,1)"),
    ZooModel("resnet_cnn", LOOSE, "residual CNN, BatchNorm, MaxPool2d(3,2,1), AdaptiveAvgPool2d"),
    ZooModel("mobile_block", LOOSE, "depthwise conv, Hardswish, squeeze-excite (Hardsigmoid)"),
    ZooModel("unet", LOOSE, "U-Net: ConvTranspose2d, bilinear interpolate, skip concat"),
    ZooModel("lstm_text", TIGHT, "Embedding (int64 ids) + 2-layer LSTM"),
    ZooModel("gru_text", TIGHT, "Embedding (int64 ids) + bidirectional GRU"),
    ZooModel("transformer_encoder", LOOSE, "nn.TransformerEncoder, pre-norm, GELU"),
    ZooModel("hf_bert", LOOSE, "transformers BertModel, tiny config, input_ids + attention_mask"),
    ZooModel("hf_vit", LOOSE, "transformers ViTModel, tiny config, 32x32 images"),
)


@dataclass(frozen=True)
class KnownFailure:
    runner: str  # the only runner allowed to fail; anything else failing is a real FAIL
    reason: str


# Models that do not pass yet, with the reason. Reported in the table, never hidden. A model
# listed here that passes makes the run fail (XPASS), so the table cannot go stale; one that
# fails anywhere but in ``runner`` is an ordinary FAIL.
# Empty since bridge.inference_settings checks Paddle Inference's passes per model (unet needed
# onednn_placement_pass off; hf_bert and hf_vit needed inplace_pass off).
KNOWN_FAILURES: dict[str, KnownFailure] = {}


@dataclass
class ZooResult:
    name: str
    source: str
    what: str
    atol: float
    batch_sizes: list[int]
    passed: bool = False
    known_failure: str | None = None  # KNOWN_FAILURES' reason
    known_runner: str | None = None
    failing_runners: list[str] = field(default_factory=list)
    stage_failed: str | None = None  # convert or validate
    error: str | None = None
    exporter: str | None = None
    opset: int | None = None
    patches_fired: dict[str, int] = field(default_factory=dict)
    max_abs_vs_torch: dict[str, float | None] = field(default_factory=dict)  # per Paddle runner
    max_abs_overall: float | None = None
    comparisons: str | None = None
    convert_seconds: float | None = None
    validate_seconds: float | None = None

    @property
    def outcome(self) -> str:
        if self.passed:
            return "XPASS" if self.known_failure else "pass"
        if self.known_failure and self.stage_failed == "validate" and self.failing_runners == [self.known_runner]:
            return "known failure"
        return "FAIL"

    @property
    def ok(self) -> bool:
        return self.outcome in ("pass", "known failure")

    def to_json(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def _last_error_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].removeprefix("error: ")


def _bridge(args: list[str], log: Path) -> tuple[int, str, float]:
    """Run ``bridge ARGS`` in a child process, appending its output to ``log``."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
        capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    with open(log, "a") as fh:
        fh.write(f"$ bridge {shlex.join(args)}\n{proc.stdout}{proc.stderr}(exit {proc.returncode}, {seconds:.1f}s)\n\n")
    return proc.returncode, proc.stdout + proc.stderr, seconds


def run_model(model: ZooModel, out: Path, batch_sizes: tuple[int, ...]) -> ZooResult:
    work = out / model.name
    log = out / f"{model.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    source = f"{EXAMPLES.relative_to(ROOT)}/{model.name}.py:build"
    known = KNOWN_FAILURES.get(model.name)
    result = ZooResult(model.name, source, model.what, model.atol, list(batch_sizes),
                       known_failure=known.reason if known else None, known_runner=known.runner if known else None)
    code, output, result.convert_seconds = _bridge(["convert", source, "--out", str(work.resolve())], log)
    if code != 0:
        result.stage_failed, result.error = "convert", _last_error_line(output)
        return result
    manifest = json.loads((work / "manifest.json").read_text())
    export = manifest["stages"]["export"]
    result.exporter, result.opset = export["exporter"], export["opset"]
    fired: dict[str, int] = {}
    for firing in manifest["stages"]["patch"]["fired"]:
        fired[firing["patch"]] = fired.get(firing["patch"], 0) + 1
    result.patches_fired = fired

    code, output, result.validate_seconds = _bridge(
        ["validate", str(work.resolve()), "--batch-sizes", ",".join(map(str, batch_sizes)),
         "--atol", repr(model.atol), "--rtol", "0"], log)
    report_path = work / "validation.json"
    # exit 2 with a report: a runner errored (recorded in it); without one: validate itself failed
    if not report_path.exists():
        result.stage_failed, result.error = "validate", _last_error_line(output)
        return result
    report = json.loads(report_path.read_text())
    diffs = report["diffs"]
    for runner in ("paddle_inference", "paddle_dygraph"):
        values = [d["max_abs_diff"] for d in diffs if d["runner"] == runner and d["reference"] == "torch"]
        result.max_abs_vs_torch[runner] = None if not values or None in values else max(values)
    finite = [d["max_abs_diff"] for d in diffs if d["max_abs_diff"] is not None]
    result.max_abs_overall = max(finite) if finite else None
    result.comparisons = f"{sum(d['passed'] for d in diffs)}/{len(diffs)}"
    result.passed = bool(report["passed"])
    if not result.passed:
        result.stage_failed = "validate"
        failing = [d for d in diffs if not d["passed"]]
        runners = {d["runner"] for d in failing} | {e.split(" at batch")[0] for e in report["errors"]}
        result.failing_runners = sorted(runners)
        errors = report["errors"]
        result.error = (errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")) if errors else (
            f"{len(failing)} comparison(s) outside atol {model.atol:g}, first: "
            f"{failing[0]['runner']} vs {failing[0]['reference']}, {failing[0]['output']}, "
            f"batch {failing[0]['batch']}: {failing[0]['problem']}")
    return result


def machine_info() -> dict:
    from bridge.pipeline import tool_versions

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "tools": {**tool_versions(), "transformers": _version("transformers")},
    }


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def render_readme(data: dict) -> str:
    m = data["machine"]
    tools = ", ".join(f"{k} {v}" for k, v in m["tools"].items() if v)
    lines = [
        "# Example zoo",
        "",
        "Generated by `scripts/zoo.py`; do not edit by hand. Regenerate with:",
        "",
        "```sh",
        data["command"],
        "```",
        "",
        f"- when: {data['finished']} ({data['seconds']:.0f}s in all)",
        f"- machine: {m['cpu']}, {m['cpus_available']} CPU(s) available, {m['platform']}",
        f"- tools: {tools}",
        "- pass: `bridge validate --atol TOL --rtol 0` at every batch size: torch, ONNX Runtime, "
        "Paddle Inference and Paddle dygraph agree within TOL (max abs diff) on every output",
        "",
        "| model | what | export strategy | opset | patches fired | max abs diff vs torch: Paddle Inference | dygraph "
        "| batch sizes | tol | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        patches = ", ".join(f"{k} ×{v}" for k, v in r["patches_fired"].items()) or "none"
        if r["stage_failed"] == "convert":
            patches = "-"
        outcome = {
            "pass": "pass",
            "known failure": f"known failure ({', '.join(r['failing_runners'])})",
            "XPASS": "**XPASS** (remove from KNOWN_FAILURES)",
        }.get(r["outcome"], f"**FAIL** ({r['stage_failed']})")
        lines.append(
            f"| [{r['name']}](../examples/{r['name']}.py) | {r['what']} | {r['exporter'] or '-'} | {r['opset'] or '-'} "
            f"| {patches} | {_num(r['max_abs_vs_torch'].get('paddle_inference'))} "
            f"| {_num(r['max_abs_vs_torch'].get('paddle_dygraph'))} "
            f"| {','.join(map(str, r['batch_sizes']))} | {r['atol']:g} | {outcome} |"
        )
    problems = [r for r in data["results"] if r["outcome"] != "pass"]
    if problems:
        lines += ["", "## Not passing", ""]
        for r in problems:
            reason = f" Known failure: {r['known_failure']}." if r["known_failure"] else ""
            lines.append(f"- **{r['name']}** ({r['outcome']}, {r['stage_failed'] or 'passed'}): {r['error'] or 'passed'}.{reason}")
            if r["max_abs_vs_torch"].get("paddle_dygraph") is not None and r["stage_failed"] == "validate":
                lines.append(f"  Paddle dygraph vs torch: max abs {_num(r['max_abs_vs_torch']['paddle_dygraph'])}.")
    passed = sum(r["outcome"] == "pass" for r in data["results"])
    known = sum(r["outcome"] == "known failure" for r in data["results"])
    lines += ["", f"{passed}/{len(data['results'])} models pass ({known} known failure(s), listed in "
              f"`KNOWN_FAILURES` in scripts/zoo.py). Work directories: `{data['out']}/<model>/` "
              "(manifest, ONNX at each stage, Paddle model, validation.txt); `<model>.log` has the CLI output.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = [m.name for m in ZOO]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=names, metavar="NAME",
                        help=f"run only this model (repeatable): {', '.join(names)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"work directories (default {DEFAULT_OUT}/)")
    parser.add_argument("--report", type=Path, default=None,
                        help="where results.json and README.md go (default: zoo/ for a full run, else --out)")
    parser.add_argument("--batch-sizes", type=batch_sizes_arg, default=DEFAULT_BATCH_SIZES,
                        help="default 1,2,8")
    args = parser.parse_args(argv)
    selected = [m for m in ZOO if not args.only or m.name in args.only]
    full_run = not args.only
    report_dir = args.report or (DEFAULT_REPORT if full_run else args.out)
    out = args.out if args.out.is_absolute() else (Path.cwd() / args.out)

    command = "make zoo" if os.environ.get("BRIDGE_ZOO_VIA_MAKE") == "1" and full_run and argv is None and len(sys.argv) == 1 else \
        shlex.join(["python", "scripts/zoo.py", *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    results = []
    for model in selected:
        result = run_model(model, out, args.batch_sizes)
        results.append(result)
        took = (result.convert_seconds or 0) + (result.validate_seconds or 0)
        detail = f"worst max abs {_num(result.max_abs_overall)}" if result.max_abs_overall is not None else ""
        if result.error:
            detail = f"{result.stage_failed}: {result.error}"
        print(f"{model.name}: {result.outcome} ({took:.0f}s) {detail}", flush=True)
    seconds = time.perf_counter() - start

    data = {
        "command": command,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(seconds, 1),
        "out": os.path.relpath(out, ROOT) if out.is_relative_to(ROOT) else str(out),
        "machine": machine_info(),
        "results": [r.to_json() for r in results],
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (report_dir / "README.md").write_text(render_readme(data))
    bad = [r for r in results if not r.ok]
    known = sum(r.outcome == "known failure" for r in results)
    print(f"{sum(r.outcome == 'pass' for r in results)}/{len(results)} passed"
          f"{f', {known} known failure(s)' if known else ''}"
          f"{', ' + str(len(bad)) + ' not as expected: ' + ', '.join(r.name for r in bad) if bad else ''}"
          f" in {seconds:.0f}s; wrote {report_dir / 'README.md'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
