"""The train check's records and report: per-step loss and learning rate, step-1 gradients,
parameters, and the first divergence. Relative differences are ``max |paddle - torch| /
max |torch|`` per tensor (per scalar for loss and learning rate), so near-zero elements of a
gradient do not dominate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class TensorDiff:
    name: str  # the Paddle parameter
    torch_key: str
    transform: str
    rel_diff: float
    max_abs_diff: float


@dataclass
class StepRecord:
    step: int
    loss_torch: float
    loss_paddle: float
    loss_rel_diff: float
    lr_torch: float
    lr_paddle: float
    lr_rel_diff: float
    worst_param: str | None  # after this step
    param_rel_diff: float


@dataclass
class Failure:
    step: int  # 0: before training
    what: str  # "learning rate", "loss", "gradient of", "parameter"
    name: str | None
    torch: float | None
    paddle: float | None
    rel_diff: float
    tolerance: float

    def message(self) -> str:
        if self.step == 0:
            return f"before training: torch parameter {self.name} has no Paddle counterpart in weights_map.json"
        subject = self.what if self.name is None else f"{self.what} {self.name}"
        values = "" if self.torch is None else f": torch {self.torch:.6g}, paddle {self.paddle:.6g}"
        return f"step {self.step}: {subject} diverged{values} (rel diff {self.rel_diff:.2e} > {self.tolerance:g})"


@dataclass
class TrainCheckReport:
    passed: bool
    failure: Failure | None
    steps: list[StepRecord]
    gradients: list[TensorDiff]  # after step 1's backward, before clipping
    parameters: list[TensorDiff]  # after the last step
    skipped: list[dict[str, str]]  # Paddle parameters not compared, with the reason
    train_mode_layers: dict[str, list[str]]
    mapping: dict[str, str]  # torch call -> Paddle call, per piece
    notes: list[str]
    config: dict[str, Any]
    seconds: float = 0.0

    def worst(self) -> dict[str, float]:
        """The measured maxima the tolerances are checked against."""
        return {
            "loss_rel_diff": max(s.loss_rel_diff for s in self.steps),
            "lr_rel_diff": max(s.lr_rel_diff for s in self.steps),
            "grad_rel_diff": max((g.rel_diff for g in self.gradients), default=0.0),
            "param_rel_diff": max((p.rel_diff for p in self.parameters), default=0.0),
        }

    def summary(self) -> str:
        worst = self.worst()
        numbers = (f"loss {worst['loss_rel_diff']:.1e}, lr {worst['lr_rel_diff']:.1e}, step-1 gradients "
                   f"{worst['grad_rel_diff']:.1e}, parameters after step {len(self.steps)} {worst['param_rel_diff']:.1e}")
        if self.passed:
            return f"PASSED: {len(self.steps)} steps, worst rel diffs: {numbers}"
        return f"FAILED at {self.failure.message()}; worst rel diffs: {numbers}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "worst": self.worst(), "summary": self.summary()}

    def render(self) -> str:
        lines = [f"train check: {self.config['steps']} steps, batch {self.config['batch_size']}, seed {self.config['seed']}"]
        lines += [f"  {piece:9s} {text}" for piece, text in self.mapping.items()]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"{'step':>4}  {'loss_torch':>12} {'loss_paddle':>12} {'loss_rel':>8}  {'lr_torch':>11} "
                     f"{'lr_paddle':>11} {'lr_rel':>8}  {'param_rel':>9}  worst_param")
        for s in self.steps:
            lines.append(f"{s.step:>4}  {s.loss_torch:>12.6g} {s.loss_paddle:>12.6g} {s.loss_rel_diff:>8.1e}  "
                         f"{s.lr_torch:>11.5g} {s.lr_paddle:>11.5g} {s.lr_rel_diff:>8.1e}  {s.param_rel_diff:>9.1e}  "
                         f"{s.worst_param or '-'}")
        for title, diffs in (("gradients after step 1", self.gradients),
                             (f"parameters after step {len(self.steps)}", self.parameters)):
            lines.append(f"{title}:")
            lines += [f"  {d.name:28s} <- {d.torch_key:24s} {d.transform:9s} rel {d.rel_diff:.2e}  "
                      f"max_abs {d.max_abs_diff:.2e}" for d in sorted(diffs, key=lambda d: -d.rel_diff)]
        lines += [f"not compared: {s['name']} ({s['reason']})" for s in self.skipped]
        lines.append(self.summary())
        return "\n".join(lines)


def rel_diff(got: Any, ref: Any) -> tuple[float, float]:
    """(max |got - ref| / max |ref|, max |got - ref|); 0 when both are 0, inf when only got is not."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf"), float("inf")
    abs_diff = float(np.abs(got - ref).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    if scale == 0.0:
        return (0.0 if abs_diff == 0.0 else float("inf")), abs_diff
    return abs_diff / scale, abs_diff
