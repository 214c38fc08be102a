"""Stage 5, validate: the same inputs to every runner, per-output diffs against references.

The validator only sees runners and feeds; how each runtime runs lives in ``bridge.runners``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.compare import DEFAULT_ATOL, DEFAULT_RTOL, PASS_RULE, OutputDiff, compare_arrays
from bridge.runners import Runner


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


def run(
    runners: dict[str, Runner],
    references: list[str],
    feeds_by_batch: dict[int, dict[str, np.ndarray]],
    *,
    device: str = "cpu",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ValidationReport:
    names = list(runners)
    refs = [r for r in references if r in runners]
    pairs = comparison_pairs(names, refs)
    report = ValidationReport(device, list(feeds_by_batch), names, pairs, atol, rtol)
    for batch, feeds in feeds_by_batch.items():
        results: dict[str, dict[str, np.ndarray]] = {}
        for name, runner in runners.items():
            try:
                results[name] = runner.run(feeds)
            except Exception as exc:  # a runtime failing is a finding, reported per runner
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                report.errors.append(f"{name} at batch {batch}: {type(exc).__name__}: {first}")
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
    return report
