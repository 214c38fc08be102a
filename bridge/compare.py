"""Comparing one runner's outputs with a reference's, as records (after torch's verifier).

The pass rule, stated once: an element fails when ``|got - ref| > atol`` **and**
``|got - ref| > rtol * |ref|`` (Polygraphy's rule); any NaN/Inf mismatch fails; shapes and
dtypes must be equal. An output passes when no element fails.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
PASS_RULE = "element fails iff |got-ref| > atol and |got-ref| > rtol*|ref|; shapes and dtypes must match; NaN/Inf must match"


@dataclass
class OutputDiff:
    batch: int
    output: str
    runner: str
    reference: str
    shape: list[int]
    ref_shape: list[int]
    dtype: str
    ref_dtype: str
    max_abs_diff: float | None
    max_rel_diff: float | None
    mean_abs_diff: float | None
    failed_elements: int
    total_elements: int
    atol: float
    rtol: float
    passed: bool
    problem: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def compare_arrays(
    got: np.ndarray, ref: np.ndarray, *, batch: int, output: str, runner: str, reference: str,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
) -> OutputDiff:
    got, ref = np.asarray(got), np.asarray(ref)
    base = dict(
        batch=batch, output=output, runner=runner, reference=reference,
        shape=list(got.shape), ref_shape=list(ref.shape), dtype=str(got.dtype), ref_dtype=str(ref.dtype),
        total_elements=int(ref.size), atol=atol, rtol=rtol,
    )
    if got.shape != ref.shape:
        return OutputDiff(**base, max_abs_diff=None, max_rel_diff=None, mean_abs_diff=None,
                          failed_elements=int(ref.size), passed=False,
                          problem=f"shape {list(got.shape)} != {list(ref.shape)}")
    integers = got.dtype.kind in "iub" and ref.dtype.kind in "iub"
    with np.errstate(invalid="ignore", over="ignore"):
        if integers:  # exact: float64 cannot tell 2**53 from 2**53 + 1
            abs_diff = np.abs(got.astype(np.int64) - ref.astype(np.int64)).astype(np.float64)
            r = ref.astype(np.float64)
            bad_nonfinite = np.zeros(ref.shape, dtype=bool)
        else:
            g = got.astype(np.float64)
            r = ref.astype(np.float64)
            abs_diff = np.abs(g - r)
            # Non-finite values must agree exactly (NaN where NaN, same-signed Inf where Inf).
            nonfinite = ~np.isfinite(g) | ~np.isfinite(r)
            same_nonfinite = (np.isnan(g) & np.isnan(r)) | (np.isinf(g) & np.isinf(r) & (np.sign(g) == np.sign(r)))
            bad_nonfinite = nonfinite & ~same_nonfinite
            abs_diff = np.where(nonfinite, np.where(same_nonfinite, 0.0, np.inf), abs_diff)
        finite_ref = np.abs(np.where(np.isfinite(r), r, 0.0))
        rel_diff = abs_diff / np.maximum(np.where(np.isfinite(r), np.abs(r), 1.0), np.finfo(np.float64).tiny)
        failed = ((abs_diff > atol) & (abs_diff > rtol * finite_ref)) | bad_nonfinite
    n_failed = int(failed.sum())
    problem = None
    if got.dtype != ref.dtype:
        problem = f"dtype {got.dtype} != {ref.dtype}"
    elif n_failed:
        problem = f"{n_failed} of {ref.size} elements outside tolerance"
    return OutputDiff(
        **base,
        max_abs_diff=float(abs_diff.max()) if abs_diff.size else 0.0,
        max_rel_diff=float(rel_diff.max()) if rel_diff.size else 0.0,
        mean_abs_diff=float(abs_diff.mean()) if abs_diff.size else 0.0,
        failed_elements=n_failed,
        passed=problem is None,
        problem=problem,
    )
