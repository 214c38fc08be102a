"""Comparing one runner's outputs with a reference's, as records (after torch's verifier), and
the tolerance model, stated once (after Polygraphy's comparator).

The pass rule: an element fails when ``|got - ref| > atol`` **and** ``|got - ref| > rtol * |ref|``.
Non-finite values are outside the tolerance model: a NaN or ±Inf fails whatever atol and rtol
are, unless the reference holds the same value at the same position (NaN where NaN, the same
signed Inf where Inf). Those matched positions are counted in every record
(``nonfinite_matched``), never hidden: a model that masks with -inf (attention) or whose
reference yields NaN would otherwise fail on every conversion, however right. Shapes and dtypes
must be equal. An output passes when no element fails. ``atol``/``rtol`` may differ per output
(``Tolerances``).

Beside each diff, the noise floor: the spread between repeated runs of the reference runtime
on the same input (``repeat_spread``). It is reported, not used in the verdict: a tolerance
below it asks for more than the reference itself can repeat.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from bridge.errors import BridgeError

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
PASS_RULE = (
    "element fails iff |got-ref| > atol and |got-ref| > rtol*|ref|; a NaN/Inf fails whatever the tolerance "
    "unless the reference holds the same NaN/same-signed Inf at that position (counted as nonfinite_matched); "
    "shapes and dtypes must match"
)

# Absolute-error histogram: decade edges (1e-10 ... 10); bins (0, 1e-10), [1e-10, 1e-9), ..., [10, inf),
# plus exact zeros and non-finite mismatches apart. Fixed edges make histograms of different
# outputs, batches and runs comparable and summable.
HIST_EDGES = tuple(float(10.0 ** e) for e in range(-10, 2))


@dataclass(frozen=True)
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    def to_json(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


def check_tolerance_value(value: float, what: str) -> float:
    """``value`` as a tolerance, or one line naming the argument (``--atol -1``)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BridgeError(f"{what} {value}: a tolerance must be a finite number >= 0")
    return float(value)


@dataclass
class Tolerances:
    """The default tolerance and per-output overrides (``--tol OUTPUT=ATOL,RTOL``)."""

    default: Tolerance = field(default_factory=Tolerance)
    per_output: dict[str, Tolerance] = field(default_factory=dict)

    def for_output(self, output: str) -> Tolerance:
        return self.per_output.get(output, self.default)

    def check_outputs(self, outputs: list[str]) -> None:
        """An override naming no output of the model is a typo, not a no-op."""
        for name in self.per_output:
            if name not in outputs:
                raise BridgeError(f"--tol {name}=...: the model has no output {name!r} (outputs: {', '.join(outputs)})")

    def to_json(self) -> dict:
        return {**self.default.to_json(), "per_output": {k: v.to_json() for k, v in self.per_output.items()},
                "rule": PASS_RULE}


def parse_tolerance_override(text: str) -> tuple[str, Tolerance]:
    """``OUTPUT=ATOL,RTOL`` (``logits=1e-4,1e-3``); the last ``=`` splits, so an output name
    may hold one."""
    name, sep, values = text.rpartition("=")
    parts = values.split(",")
    if not sep or not name or len(parts) != 2:
        raise BridgeError(f"--tol {text!r}: expected OUTPUT=ATOL,RTOL, e.g. logits=1e-4,1e-3")
    try:
        atol, rtol = float(parts[0]), float(parts[1])
    except ValueError:
        raise BridgeError(f"--tol {text!r}: ATOL and RTOL must be numbers, e.g. logits=1e-4,1e-3") from None
    return name, Tolerance(check_tolerance_value(atol, f"--tol {name}= atol"),
                           check_tolerance_value(rtol, f"--tol {name}= rtol"))


@dataclass
class ErrorHistogram:
    """Counts of |got - ref| per element: ``zero``, then ``counts[i]`` for [edges[i-1], edges[i])
    (``counts[0]``: below edges[0], ``counts[-1]``: edges[-1] and above), ``nonfinite``: NaN/Inf
    mismatches. Matched NaN/Inf count as zero."""

    edges: list[float] = field(default_factory=lambda: list(HIST_EDGES))
    zero: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * (len(HIST_EDGES) + 1))
    nonfinite: int = 0

    @classmethod
    def of(cls, abs_diff: np.ndarray) -> "ErrorHistogram":
        finite = abs_diff[np.isfinite(abs_diff)]
        positive = finite[finite > 0]
        bins = np.searchsorted(np.asarray(HIST_EDGES), positive, side="right")
        return cls(zero=int(finite.size - positive.size),
                   counts=[int(c) for c in np.bincount(bins, minlength=len(HIST_EDGES) + 1)],
                   nonfinite=int(abs_diff.size - finite.size))

    @classmethod
    def from_json(cls, data: dict) -> "ErrorHistogram":
        return cls(list(data["edges"]), int(data["zero"]), [int(c) for c in data["counts"]], int(data["nonfinite"]))

    def add(self, other: "ErrorHistogram") -> "ErrorHistogram":
        return ErrorHistogram(self.edges, self.zero + other.zero,
                              [a + b for a, b in zip(self.counts, other.counts)], self.nonfinite + other.nonfinite)

    @property
    def total(self) -> int:
        return self.zero + sum(self.counts) + self.nonfinite


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
    median_abs_diff: float | None = None
    p99_abs_diff: float | None = None
    cosine_similarity: float | None = None  # over the elements finite on both sides
    nonfinite_matched: int = 0  # positions where both hold the same NaN/Inf (pass, but counted)
    nonfinite_mismatched: int = 0  # positions with a NaN/Inf on one side only, or different ones (fail)
    # The reference's own spread over repeated runs on the same input (None: not measured).
    noise_floor: float | None = None
    histogram: ErrorHistogram | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """numpy's linear quantiles, exact when the top values are inf (np.quantile gives NaN for
    inf * 0 when a quantile falls exactly on a finite element next to an inf)."""
    flat = values.ravel()
    n = flat.size
    picks = sorted({int(math.floor(q * (n - 1))) for q in qs} | {int(math.ceil(q * (n - 1))) for q in qs})
    part = np.partition(flat, picks)
    found = []
    for q in qs:
        pos = q * (n - 1)
        lo, hi = int(math.floor(pos)), int(math.ceil(pos))
        a, b, t = float(part[lo]), float(part[hi]), pos - lo
        found.append(a if t == 0 or a == b else a + (b - a) * t)
    return found


def _cosine(g: np.ndarray, r: np.ndarray) -> float:
    both = np.isfinite(g) & np.isfinite(r)
    g, r = g[both], r[both]
    # Scaled to max |x| = 1 first: the norms of large float64 values would overflow to inf.
    g = g / (float(np.abs(g).max()) or 1.0) if g.size else g
    r = r / (float(np.abs(r).max()) or 1.0) if r.size else r
    ng, nr = float(np.linalg.norm(g)), float(np.linalg.norm(r))
    if ng == 0.0 and nr == 0.0:
        return 1.0  # both all-zero: the same vector
    if ng == 0.0 or nr == 0.0:
        return 0.0
    return float(np.clip(np.dot(g / ng, r / nr), -1.0, 1.0))  # normalised first: no overflow


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
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if integers:  # exact: float64 cannot tell 2**53 from 2**53 + 1
            abs_diff = np.abs(got.astype(np.int64) - ref.astype(np.int64)).astype(np.float64)
            g = got.astype(np.float64)
            r = ref.astype(np.float64)
            bad_nonfinite = same_nonfinite = np.zeros(ref.shape, dtype=bool)
        else:
            g = got.astype(np.float64)
            r = ref.astype(np.float64)
            abs_diff = np.abs(g - r)
            # Outside the tolerance model: NaN/Inf pass only where the reference holds the same value.
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
        if int(bad_nonfinite.sum()):
            problem += f" ({int(bad_nonfinite.sum())} NaN/Inf where the reference differs)"
    median, p99 = _quantiles(abs_diff, (0.5, 0.99)) if abs_diff.size else (0.0, 0.0)
    return OutputDiff(
        **base,
        max_abs_diff=float(abs_diff.max()) if abs_diff.size else 0.0,
        max_rel_diff=float(rel_diff.max()) if rel_diff.size else 0.0,
        mean_abs_diff=float(abs_diff.mean()) if abs_diff.size else 0.0,
        failed_elements=n_failed,
        passed=problem is None,
        problem=problem,
        median_abs_diff=median,
        p99_abs_diff=p99,
        cosine_similarity=_cosine(g, r) if abs_diff.size else 1.0,
        nonfinite_matched=int(same_nonfinite.sum()),
        nonfinite_mismatched=int(bad_nonfinite.sum()),
        histogram=ErrorHistogram.of(abs_diff),
    )


def repeat_spread(runs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """The noise floor: per output, the largest |run_k - run_0| over repeated runs of one runner
    on the same input (0.0: bit-identical; the same NaN/Inf at the same position counts as equal;
    inf: a NaN/Inf in one run only, or a shape that changed between runs)."""
    spread: dict[str, float] = {}
    first = runs[0]
    for name, value in first.items():
        worst = 0.0
        for again in runs[1:]:
            other = again.get(name)
            if other is None or np.shape(other) != np.shape(value):
                worst = math.inf
                break
            d = compare_arrays(other, value, batch=0, output=name, runner="repeat", reference="first",
                               atol=0.0, rtol=0.0)
            worst = max(worst, d.max_abs_diff or 0.0)
        spread[name] = worst
    return spread
