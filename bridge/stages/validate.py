"""Stage 5, validate: the same inputs to every runner, per-output diffs against references.

The validator only sees runners and feeds; how each runtime runs lives in ``bridge.runners``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.compare import (
    DEFAULT_ATOL, DEFAULT_RTOL, PASS_RULE, OutputDiff, Tolerance, Tolerances, compare_arrays, repeat_spread,
)
from bridge.runners import Runner

# Runs of each reference runner on the same input, for the noise floor (the first is the run
# the diffs use; the others only measure how far the reference repeats itself).
NOISE_RUNS = 2


# The pipeline's stages and the runner that runs each one's artifact, in order.
STAGE_RUNNERS = (
    ("export", "ort_exported"),
    ("simplify", "ort_simplified"),
    ("patch", "onnxruntime"),
    ("convert", "paddle_inference"),
)


@dataclass
class StageDiff:
    """The outputs after one pipeline stage against the reference, worst over outputs and batches."""

    stage: str
    runner: str
    reference: str
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    passed: bool | None = None  # None: the stage's artifact could not run
    error: str | None = None
    noise_floor: float | None = None  # the reference's spread over repeated runs, worst case


@dataclass
class NoiseFloor:
    """How far one reference runner repeats itself: max |run_k - run_0| over ``runs`` runs on
    the same input, per output (0.0: bit-identical)."""

    batch: int
    reference: str
    output: str
    max_abs_spread: float


@dataclass
class ValidationReport:
    device: str
    batch_sizes: list[int]
    runners: list[str]
    pairs: list[tuple[str, str]]
    atol: float
    rtol: float
    diffs: list[OutputDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stage_diffs: list[StageDiff] = field(default_factory=list)
    per_output_tolerance: dict[str, Tolerance] = field(default_factory=dict)
    noise_runs: int = 1
    noise: list[NoiseFloor] = field(default_factory=list)

    @property
    def tolerances(self) -> Tolerances:
        return Tolerances(Tolerance(self.atol, self.rtol), dict(self.per_output_tolerance))

    @property
    def first_divergent_stage(self) -> str | None:
        return next((s.stage for s in self.stage_diffs if s.passed is False), None)

    @property
    def passed(self) -> bool:
        return not self.errors and bool(self.diffs) and all(d.passed for d in self.diffs)

    def worst(self) -> OutputDiff | None:
        finite = [d for d in self.diffs if d.max_abs_diff is not None]
        return max(finite, key=lambda d: d.max_abs_diff) if finite else None

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "device": self.device,
            "batch_sizes": self.batch_sizes,
            "runners": self.runners,
            "pairs": [list(p) for p in self.pairs],
            "atol": self.atol,
            "rtol": self.rtol,
            "pass_rule": PASS_RULE,
            "tolerance": self.tolerances.to_json(),
            "noise_floor": {
                "runs": self.noise_runs,
                "max_abs_spread": max((n.max_abs_spread for n in self.noise), default=None),
                "rows": [vars(n) for n in self.noise],
            },
            "errors": self.errors,
            "notes": self.notes,
            "diffs": [d.to_json() for d in self.diffs],
            "stage_diffs": [vars(s) for s in self.stage_diffs],
            "first_divergent_stage": self.first_divergent_stage,
        }

    def render(self) -> str:
        """The terminal's Markdown summary (also ``validation.txt``): one row per comparison
        with its error statistics and the reference's noise floor, the stage diff, the
        tolerance and the verdict."""
        rows = [
            [str(d.batch), d.output, d.runner, d.reference, _num(d.max_abs_diff), _num(d.p99_abs_diff),
             _num(d.median_abs_diff), _num(d.mean_abs_diff), _num(d.max_rel_diff), _cos(d.cosine_similarity),
             _num(d.noise_floor), "ok" if d.passed else f"FAIL: {d.problem}"]
            for d in self.diffs
        ]
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"## bridge validate: {verdict} (device {self.device}, batch {', '.join(map(str, self.batch_sizes))})", ""]
        lines += _markdown_table(
            ["batch", "output", "runner", "reference", "max_abs", "p99_abs", "median_abs", "mean_abs", "max_rel",
             "cosine", "noise", "result"], rows, right=range(4, 11))
        if self.stage_diffs:
            ref = self.stage_diffs[0].reference
            lines += ["", f"stage diff against {ref} (worst over outputs and batches):", ""]
            stage_rows = []
            for sd in self.stage_diffs:
                if sd.passed is None:
                    result = f"not run: {sd.error}"
                else:
                    result = "ok" if sd.passed else "EXCEEDS TOLERANCE"
                stage_rows.append([sd.stage, sd.runner, _num(sd.max_abs_diff), _num(sd.max_rel_diff),
                                   _num(sd.noise_floor), result])
            lines += _markdown_table(["stage", "runner", "max_abs", "max_rel", "noise", "result"], stage_rows,
                                     right=range(2, 5))
            if self.first_divergent_stage:
                lines += ["", f"first stage over tolerance: {self.first_divergent_stage}"]
        lines += ["", f"- tolerance: {self._tolerance_text()}", f"- noise floor: {self.noise_text()}"]
        lines += [f"- error: {e}" for e in self.errors]
        lines += [f"- note: {n}" for n in self.notes]
        lines += ["", self.summary()]
        return "\n".join(lines)

    def _tolerance_text(self) -> str:
        text = f"atol={self.atol:g}, rtol={self.rtol:g}"
        if self.per_output_tolerance:
            text += " (" + "; ".join(f"{k}: atol={v.atol:g}, rtol={v.rtol:g}"
                                     for k, v in self.per_output_tolerance.items()) + ")"
        return (f"{text}; an element fails when |got-ref| > atol and |got-ref| > rtol*|ref|; a NaN/Inf fails "
                f"unless the reference has the same one at that position")

    def noise_text(self) -> str:
        """The noise floor in one line: the worst spread per reference runner."""
        if self.noise_runs < 2 or not self.noise:
            return "not measured (--noise-runs 1)"
        worst: dict[str, float] = {}
        for n in self.noise:
            worst[n.reference] = max(worst.get(n.reference, 0.0), n.max_abs_spread)
        parts = [f"{ref} {'0 (bit-identical)' if w == 0 else f'{w:.2e}'}" for ref, w in worst.items()]
        return f"the reference rerun {self.noise_runs}x on the same inputs, max |run_k - run_1|: " + ", ".join(parts)

    def summary(self) -> str:
        ok = sum(d.passed for d in self.diffs)
        worst = self.worst()
        worst_text = (
            f"; worst max_abs {worst.max_abs_diff:.2e} ({worst.runner} vs {worst.reference}, "
            f"{worst.output}, batch {worst.batch})" if worst else ""
        )
        verdict = "PASSED" if self.passed else "FAILED"
        overrides = (f" ({len(self.per_output_tolerance)} output(s) with their own)"
                     if self.per_output_tolerance else "")
        return (
            f"{verdict}: {ok}/{len(self.diffs)} comparisons within atol={self.atol:g} or rtol={self.rtol:g}"
            f"{overrides}{worst_text}{f'; {len(self.errors)} runner error(s)' if self.errors else ''}"
        )


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def _cos(x: float | None) -> str:
    return "-" if x is None else f"{x:.6f}"


def _markdown_table(header: list[str], rows: list[list[str]], right=()) -> list[str]:
    """A Markdown pipe table padded to line up in a terminal; ``right``: numeric columns."""
    right = set(right)
    cells = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return [line(cells[0]), rule] + [line(row) for row in cells[1:]]


def comparison_pairs(runner_names: list[str], references: list[str]) -> list[tuple[str, str]]:
    """Every runner against the primary reference, then every non-reference runner against
    each other reference: (torch, ort), (paddle_*, ort), (paddle_*, torch)."""
    primary, others = references[0], references[1:]
    pairs = [(r, primary) for r in runner_names if r != primary]
    pairs += [(r, ref) for ref in others for r in runner_names if r not in references]
    return pairs


def _stage_diffs(
    results: dict[int, dict[str, dict[str, np.ndarray]]], stage_errors: dict[str, str],
    reference: str, tolerances: Tolerances, noise: list[NoiseFloor],
) -> list[StageDiff]:
    spread = [n.max_abs_spread for n in noise if n.reference == reference]
    diffs = []
    for stage, runner in STAGE_RUNNERS:
        record = StageDiff(stage, runner, reference)
        if runner in stage_errors:
            record.error = stage_errors[runner]
        else:
            found = [
                compare_arrays(by_runner[runner][out], ref, batch=batch, output=out, runner=runner,
                               reference=reference, atol=tolerances.for_output(out).atol,
                               rtol=tolerances.for_output(out).rtol)
                for batch, by_runner in results.items()
                if runner in by_runner and reference in by_runner
                for out, ref in by_runner[reference].items() if out in by_runner[runner]
            ]
            if not found:
                continue
            record.passed = all(d.passed for d in found)
            record.max_abs_diff = max((d.max_abs_diff for d in found if d.max_abs_diff is not None), default=None)
            record.max_rel_diff = max((d.max_rel_diff for d in found if d.max_rel_diff is not None), default=None)
            record.noise_floor = max(spread, default=None)
        diffs.append(record)
    return diffs


def run(
    runners: dict[str, Runner],
    references: list[str],
    feeds_by_batch: dict[int, dict[str, np.ndarray]],
    *,
    device: str = "cpu",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    stage_runners: dict[str, Runner] | None = None,
    stage_errors: dict[str, str] | None = None,
    tolerances: Tolerances | None = None,
    noise_runs: int = NOISE_RUNS,
) -> ValidationReport:
    """Compare ``runners`` pairwise (this decides ``passed``); ``stage_runners`` (the earlier
    stages' ONNX files under ONNX Runtime) only feed the per-stage diff. ``tolerances``: per-output
    overrides (its default wins over ``atol``/``rtol``). Each reference runner runs ``noise_runs``
    times per batch; the spread is the noise floor beside each diff (1: not measured)."""
    tolerances = tolerances or Tolerances(Tolerance(atol, rtol))
    atol, rtol = tolerances.default.atol, tolerances.default.rtol
    names = list(runners)
    refs = [r for r in references if r in runners]
    pairs = comparison_pairs(names, refs)
    report = ValidationReport(device, list(feeds_by_batch), names, pairs, atol, rtol,
                              per_output_tolerance=dict(tolerances.per_output), noise_runs=max(1, noise_runs))
    stage_errors = dict(stage_errors or {})
    stage_reference = refs[-1] if refs else None  # torch when there is one, else ONNX Runtime
    if stage_reference == "onnxruntime" and stage_runners and "ort_exported" in stage_runners:
        stage_reference = "ort_exported"  # an ONNX source: the user's own file is the reference
    every_runner = {**(stage_runners or {}), **runners}
    all_results: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for batch, feeds in feeds_by_batch.items():
        results: dict[str, dict[str, np.ndarray]] = all_results.setdefault(batch, {})
        for name, runner in runners.items():
            try:
                results[name] = runner.run(feeds)
            except Exception as exc:  # a runtime failing is a finding, reported per runner
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                report.errors.append(f"{name} at batch {batch}: {type(exc).__name__}: {first}")
        for name, runner in (stage_runners or {}).items():
            if name in stage_errors:
                continue
            try:
                results[name] = runner.run(feeds)
            except Exception as exc:  # an earlier stage's artifact may not run: a finding, not an error
                stage_errors[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        for ref_name in dict.fromkeys(refs + ([stage_reference] if stage_reference else [])):
            if ref_name in results:
                report.noise += _noise_floor(every_runner[ref_name], feeds, results[ref_name], batch, ref_name,
                                             report.noise_runs)
        spread = {(n.reference, n.output): n.max_abs_spread for n in report.noise if n.batch == batch}
        for runner_name, ref_name in pairs:
            if runner_name not in results or ref_name not in results:
                continue
            ref_out, got_out = results[ref_name], results[runner_name]
            for output, ref_value in ref_out.items():
                if output not in got_out:
                    report.errors.append(f"{runner_name} at batch {batch}: no output {output!r}")
                    continue
                tol = tolerances.for_output(output)
                diff = compare_arrays(
                    got_out[output], ref_value, batch=batch, output=output,
                    runner=runner_name, reference=ref_name, atol=tol.atol, rtol=tol.rtol,
                )
                diff.noise_floor = spread.get((ref_name, output))
                report.diffs.append(diff)
    if stage_reference is not None and stage_runners is not None:
        report.stage_diffs = _stage_diffs(all_results, stage_errors, stage_reference, tolerances, report.noise)
    for n in report.noise:
        tol = tolerances.for_output(n.output)
        if n.max_abs_spread > tol.atol:
            report.notes.append(
                f"noise floor: {n.reference} varies by {n.max_abs_spread:.2e} on {n.output} between runs on the "
                f"same batch-{n.batch} input, more than atol {tol.atol:g}: differences that small are not the "
                f"conversion's")
            break
    return report


def _noise_floor(runner: Runner, feeds: dict[str, np.ndarray], first: dict[str, np.ndarray], batch: int,
                 name: str, runs: int) -> list[NoiseFloor]:
    """Rerun ``runner`` on the same ``feeds`` ``runs - 1`` more times; per output, how far a run
    strays from the first (ONNX Runtime on CPU is usually bit-identical; threads or a GPU can
    make reductions run in another order)."""
    if runs < 2:
        return []
    again = []
    for _ in range(runs - 1):
        try:
            again.append(runner.run(feeds))
        except Exception:  # it ran once: failing on a rerun is itself a spread, reported as inf
            return [NoiseFloor(batch, name, out, float("inf")) for out in first]
    return [NoiseFloor(batch, name, out, spread) for out, spread in repeat_spread([first, *again]).items()]
