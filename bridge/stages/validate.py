"""Stage 5, validate: the same inputs to every runner, per-output diffs against references.

The validator only sees runners and feeds; how each runtime runs lives in ``bridge.runners``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.compare import DEFAULT_ATOL, DEFAULT_RTOL, PASS_RULE, OutputDiff, compare_arrays
from bridge.runners import Runner


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
            "errors": self.errors,
            "notes": self.notes,
            "diffs": [d.to_json() for d in self.diffs],
            "stage_diffs": [vars(s) for s in self.stage_diffs],
            "first_divergent_stage": self.first_divergent_stage,
        }

    def render(self) -> str:
        def num(x):
            return "-" if x is None else f"{x:.2e}"

        lines = [
            f"{'batch':>5}  {'output':<16} {'runner':<17} {'reference':<12} {'max_abs':>9} {'max_rel':>9} {'mean_abs':>9}  result"
        ]
        for d in self.diffs:
            result = "ok" if d.passed else f"FAIL: {d.problem}"
            lines.append(
                f"{d.batch:>5}  {d.output:<16} {d.runner:<17} {d.reference:<12} "
                f"{num(d.max_abs_diff):>9} {num(d.max_rel_diff):>9} {num(d.mean_abs_diff):>9}  {result}"
            )
        if self.stage_diffs:
            ref = self.stage_diffs[0].reference
            lines.append(f"stage diff against {ref} (worst over outputs and batches):")
            for s in self.stage_diffs:
                if s.passed is None:
                    result = f"not run: {s.error}"
                else:
                    result = "ok" if s.passed else "EXCEEDS TOLERANCE"
                lines.append(f"  {s.stage:<9} {s.runner:<17} {num(s.max_abs_diff):>9} {num(s.max_rel_diff):>9}  {result}")
            if self.first_divergent_stage:
                lines.append(f"first stage over tolerance: {self.first_divergent_stage}")
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        ok = sum(d.passed for d in self.diffs)
        worst = self.worst()
        worst_text = (
            f"; worst max_abs {worst.max_abs_diff:.2e} ({worst.runner} vs {worst.reference}, "
            f"{worst.output}, batch {worst.batch})" if worst else ""
        )
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"{verdict}: {ok}/{len(self.diffs)} comparisons within atol={self.atol:g} or rtol={self.rtol:g}"
            f"{worst_text}{f'; {len(self.errors)} runner error(s)' if self.errors else ''}"
        )


def comparison_pairs(runner_names: list[str], references: list[str]) -> list[tuple[str, str]]:
    """Every runner against the primary reference, then every non-reference runner against
    each other reference: (torch, ort), (paddle_*, ort), (paddle_*, torch)."""
    primary, others = references[0], references[1:]
    pairs = [(r, primary) for r in runner_names if r != primary]
    pairs += [(r, ref) for ref in others for r in runner_names if r not in references]
    return pairs


def _stage_diffs(
    results: dict[int, dict[str, dict[str, np.ndarray]]], stage_errors: dict[str, str],
    reference: str, atol: float, rtol: float,
) -> list[StageDiff]:
    diffs = []
    for stage, runner in STAGE_RUNNERS:
        record = StageDiff(stage, runner, reference)
        if runner in stage_errors:
            record.error = stage_errors[runner]
        else:
            found = [
                compare_arrays(by_runner[runner][out], ref, batch=batch, output=out, runner=runner,
                               reference=reference, atol=atol, rtol=rtol)
                for batch, by_runner in results.items()
                if runner in by_runner and reference in by_runner
                for out, ref in by_runner[reference].items() if out in by_runner[runner]
            ]
            if not found:
                continue
            record.passed = all(d.passed for d in found)
            record.max_abs_diff = max((d.max_abs_diff for d in found if d.max_abs_diff is not None), default=None)
            record.max_rel_diff = max((d.max_rel_diff for d in found if d.max_rel_diff is not None), default=None)
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
) -> ValidationReport:
    """Compare ``runners`` pairwise (this decides ``passed``); ``stage_runners`` (the earlier
    stages' ONNX files under ONNX Runtime) only feed the per-stage diff."""
    names = list(runners)
    refs = [r for r in references if r in runners]
    pairs = comparison_pairs(names, refs)
    report = ValidationReport(device, list(feeds_by_batch), names, pairs, atol, rtol)
    stage_errors = dict(stage_errors or {})
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
        for runner_name, ref_name in pairs:
            if runner_name not in results or ref_name not in results:
                continue
            ref_out, got_out = results[ref_name], results[runner_name]
            for output, ref_value in ref_out.items():
                if output not in got_out:
                    report.errors.append(f"{runner_name} at batch {batch}: no output {output!r}")
                    continue
                report.diffs.append(compare_arrays(
                    got_out[output], ref_value, batch=batch, output=output,
                    runner=runner_name, reference=ref_name, atol=atol, rtol=rtol,
                ))
    stage_reference = refs[-1] if refs else None  # torch when there is one, else ONNX Runtime
    if stage_reference is not None and stage_runners is not None:
        if stage_reference == "onnxruntime" and "ort_exported" in stage_runners:
            stage_reference = "ort_exported"  # an ONNX source: the user's own file is the reference
        report.stage_diffs = _stage_diffs(all_results, stage_errors, stage_reference, atol, rtol)
    return report
