"""Unit tests of bridge.compare.compare_arrays: the pass rule, shape/dtype checks, NaN/Inf, statistics."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from bridge.compare import (
    DEFAULT_ATOL, DEFAULT_RTOL, HIST_EDGES, ErrorHistogram, OutputDiff, Tolerance, Tolerances, compare_arrays,
    parse_tolerance_override, repeat_spread,
)
from bridge.errors import BridgeError

META = dict(batch=2, output="y", runner="paddle_inference", reference="onnxruntime")


def cmp(got, ref, **kw) -> OutputDiff:
    return compare_arrays(np.asarray(got), np.asarray(ref), **META, **kw)


# ---------------------------------------------------------------------------------------------
# the pass rule: an element fails only if |got-ref| > atol AND |got-ref| > rtol*|ref|


@pytest.mark.parametrize(
    "got, ref, atol, rtol, passed",
    [
        # ref 0: rtol*|ref| = 0, so only atol can pass it
        pytest.param(5e-6, 0.0, 1e-5, 1e-4, True, id="atol-only-passes"),
        pytest.param(2e-5, 0.0, 1e-5, 1e-4, False, id="atol-only-exceeded"),
        # big ref: diff 0.05 is far over atol but under rtol*|ref| = 0.1
        pytest.param(1000.05, 1000.0, 1e-5, 1e-4, True, id="rtol-only-passes"),
        pytest.param(1000.2, 1000.0, 1e-5, 1e-4, False, id="rtol-only-exceeded"),
        # over both
        pytest.param(1.001, 1.0, 1e-5, 1e-4, False, id="fails-both"),
        pytest.param(-1.001, -1.0, 1e-5, 1e-4, False, id="fails-both-negative"),
        # within both
        pytest.param(1.0 + 1e-6, 1.0, 1e-5, 1e-4, True, id="within-both"),
        # the comparisons are strict: exactly at the bound passes (binary-exact values)
        pytest.param(1.5, 1.0, 0.5, 0.0, True, id="diff-equals-atol-passes"),
        pytest.param(1.5, 1.0, 0.25, 0.5, True, id="diff-equals-rtol-ref-passes"),
        pytest.param(1.5, 1.0, 0.25, 0.25, False, id="just-over-both"),
        # rtol scales with |ref|, not |got|: the same |diff| 5, roles swapped
        pytest.param(5.0, 10.0, 0.0, 0.6, True, id="rtol-uses-ref-pass"),
        pytest.param(10.0, 5.0, 0.0, 0.6, False, id="rtol-uses-ref-fail"),
        # zero tolerances: only exact equality passes
        pytest.param(1.0, 1.0, 0.0, 0.0, True, id="exact-zero-tol"),
        pytest.param(np.nextafter(1.0, 2.0), 1.0, 0.0, 0.0, False, id="one-ulp-zero-tol"),
    ],
)
def test_pass_rule_scalar(got, ref, atol, rtol, passed):
    d = cmp(np.float64(got), np.float64(ref), atol=atol, rtol=rtol)
    assert d.passed is passed
    assert d.failed_elements == (0 if passed else 1)
    assert d.total_elements == 1
    assert (d.problem is None) is passed


def test_pass_rule_per_element_counts():
    ref = np.array([0.0, 1000.0, 1.0, 1.0, -3.0, 0.0])
    got = ref + np.array([5e-6, 0.05, 1e-3, 0.0, -1e-2, 2e-5])
    # element:          atol ok, rtol ok, both fail, equal, both fail, atol fail (ref 0)
    expected_fail = np.array([False, False, True, False, True, True])
    d = cmp(got, ref)
    assert (d.atol, d.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert d.failed_elements == int(expected_fail.sum()) == 3
    assert d.total_elements == ref.size
    assert not d.passed
    assert d.problem == f"3 of {ref.size} elements outside tolerance"


def test_loosening_either_tolerance_is_enough():
    ref = np.array([1.0, 2.0, 4.0])
    got = ref * (1 + 1e-3)  # rel diff 1e-3, abs diff up to 4e-3
    assert not cmp(got, ref).passed
    assert cmp(got, ref, atol=5e-3).passed  # atol alone covers all
    assert cmp(got, ref, rtol=2e-3).passed  # rtol alone covers all
    assert not cmp(got, ref, atol=2e-3, rtol=5e-4).passed  # the 4.0 element beats both


def test_identical_arrays_pass_with_zero_stats():
    ref = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    d = cmp(ref.copy(), ref)
    assert d.passed and d.problem is None and d.failed_elements == 0
    assert d.max_abs_diff == d.max_rel_diff == d.mean_abs_diff == 0.0


# ---------------------------------------------------------------------------------------------
# shapes and dtypes


@pytest.mark.parametrize(
    "got_shape, ref_shape",
    [
        pytest.param((2, 3), (3, 2), id="transposed"),
        pytest.param((1, 3), (3,), id="broadcastable-extra-dim"),
        pytest.param((2, 3), (2, 4), id="last-dim"),
        pytest.param((), (1,), id="scalar-vs-1"),
    ],
)
def test_shape_mismatch(got_shape, ref_shape):
    got, ref = np.zeros(got_shape, np.float32), np.zeros(ref_shape, np.float32)
    d = cmp(got, ref)
    assert not d.passed
    assert d.shape == list(got_shape) and d.ref_shape == list(ref_shape)
    assert d.problem == f"shape {list(got_shape)} != {list(ref_shape)}"
    assert d.max_abs_diff is None and d.max_rel_diff is None and d.mean_abs_diff is None
    assert d.failed_elements == d.total_elements == ref.size


@pytest.mark.parametrize(
    "got_dtype, ref_dtype",
    [
        pytest.param(np.float64, np.float32, id="f64-vs-f32"),
        pytest.param(np.float16, np.float32, id="f16-vs-f32"),
        pytest.param(np.int32, np.int64, id="i32-vs-i64"),
        pytest.param(np.float32, np.int64, id="f32-vs-i64"),
    ],
)
def test_dtype_mismatch_fails_even_when_values_equal(got_dtype, ref_dtype):
    values = np.array([[1, 2], [3, 4]])
    d = cmp(values.astype(got_dtype), values.astype(ref_dtype))
    assert not d.passed
    assert d.failed_elements == 0  # values agree; the dtype alone fails it
    assert d.max_abs_diff == 0.0
    assert d.dtype == np.dtype(got_dtype).name and d.ref_dtype == np.dtype(ref_dtype).name
    assert d.problem == f"dtype {np.dtype(got_dtype)} != {np.dtype(ref_dtype)}"


def test_same_dtype_ints_and_bools():
    assert cmp(np.array([1, 2, 3], np.int64), np.array([1, 2, 3], np.int64)).passed
    d = cmp(np.array([1, 2, 4], np.int64), np.array([1, 2, 3], np.int64))
    assert not d.passed and d.failed_elements == 1 and d.max_abs_diff == 1.0
    d = cmp(np.array([True, False]), np.array([True, True]))
    assert not d.passed and d.failed_elements == 1


def test_unsigned_difference_does_not_wrap():
    d = cmp(np.array([0], np.uint8), np.array([255], np.uint8))
    assert not d.passed
    assert d.max_abs_diff == 255.0  # not (0 - 255) % 256 == 1


def test_large_int64_difference_detected():
    ref = np.array([2**53], np.int64)
    got = np.array([2**53 + 1], np.int64)
    d = cmp(got, ref, atol=0.0, rtol=0.0)
    assert not d.passed and d.failed_elements == 1


# ---------------------------------------------------------------------------------------------
# NaN and Inf


def test_nan_vs_nan_equal():
    ref = np.array([np.nan, 1.0, np.nan], np.float32)
    d = cmp(ref.copy(), ref, atol=0.0, rtol=0.0)
    assert d.passed and d.failed_elements == 0
    assert d.max_abs_diff == 0.0 and d.mean_abs_diff == 0.0 and d.max_rel_diff == 0.0


@pytest.mark.parametrize(
    "got, ref",
    [
        pytest.param(np.nan, 1.0, id="nan-vs-number"),
        pytest.param(1.0, np.nan, id="number-vs-nan"),
        pytest.param(np.nan, 0.0, id="nan-vs-zero"),
        pytest.param(np.inf, -np.inf, id="+inf-vs--inf"),
        pytest.param(-np.inf, np.inf, id="-inf-vs-+inf"),
        pytest.param(np.inf, 1e30, id="inf-vs-large-finite"),
        pytest.param(np.inf, np.nan, id="inf-vs-nan"),
    ],
)
def test_nonfinite_mismatch_fails_at_loose_tolerance(got, ref):
    d = cmp(np.array([got, 2.0]), np.array([ref, 2.0]), atol=1e6, rtol=10.0)
    assert not d.passed
    assert d.failed_elements == 1
    assert d.max_abs_diff == np.inf


@pytest.mark.parametrize("value", [np.inf, -np.inf], ids=["+inf", "-inf"])
def test_same_signed_inf_equal(value):
    d = cmp(np.array([value, 1.0]), np.array([value, 1.0]), atol=0.0, rtol=0.0)
    assert d.passed and d.max_abs_diff == 0.0


# ---------------------------------------------------------------------------------------------
# statistics


def test_statistics_match_numpy():
    rng = np.random.default_rng(42)
    ref = rng.standard_normal((4, 5, 6)).astype(np.float32)
    got = (ref + rng.normal(scale=1e-3, size=ref.shape)).astype(np.float32)
    d = cmp(got, ref)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    rel = diff / np.abs(ref.astype(np.float64))
    assert d.max_abs_diff == pytest.approx(diff.max(), rel=1e-12)
    assert d.mean_abs_diff == pytest.approx(diff.mean(), rel=1e-12)
    assert d.max_rel_diff == pytest.approx(rel.max(), rel=1e-12)
    failed = (diff > DEFAULT_ATOL) & (diff > DEFAULT_RTOL * np.abs(ref.astype(np.float64)))
    assert d.failed_elements == int(failed.sum()) > 0
    assert d.total_elements == ref.size == 120
    assert d.passed is False
    assert d.shape == d.ref_shape == [4, 5, 6] and d.dtype == d.ref_dtype == "float32"


def test_statistics_known_values():
    ref = np.array([1.0, -2.0, 4.0, 0.5])
    delta = np.array([0.5, -1.0, 0.0, 0.25])
    d = cmp(ref + delta, ref, atol=0.0, rtol=0.0)
    assert d.max_abs_diff == np.abs(delta).max() == 1.0
    assert d.mean_abs_diff == np.abs(delta).mean()
    assert d.max_rel_diff == (np.abs(delta) / np.abs(ref)).max() == 0.5
    assert d.failed_elements == int(np.count_nonzero(delta)) == 3


def test_statistics_with_nan_mismatch_are_inf_but_nan_free():
    ref = np.array([1.0, 2.0, 3.0])
    got = np.array([1.0, np.nan, 3.5])
    d = cmp(got, ref)
    assert d.max_abs_diff == np.inf and d.mean_abs_diff == np.inf
    assert not np.isnan(d.max_rel_diff)
    assert d.failed_elements == 2


def test_empty_arrays_pass():
    d = cmp(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))
    assert d.passed and d.total_elements == 0
    assert d.max_abs_diff == d.mean_abs_diff == d.max_rel_diff == 0.0


def test_record_fields_and_json():
    d = cmp(np.array([1.0, 2.0]), np.array([1.0, 2.5]), atol=1e-3, rtol=1e-2)
    j = d.to_json()
    assert j["batch"] == 2 and j["output"] == "y"
    assert j["runner"] == "paddle_inference" and j["reference"] == "onnxruntime"
    assert j["atol"] == 1e-3 and j["rtol"] == 1e-2
    assert j["passed"] is False and j["failed_elements"] == 1
    assert j["max_abs_diff"] == 0.5
    assert all(isinstance(j[k], float) for k in ("max_abs_diff", "max_rel_diff", "mean_abs_diff"))
    import json

    json.dumps(j)  # plain types only


def test_accepts_lists_and_does_not_modify_inputs():
    ref = np.array([1.0, np.nan, np.inf])
    got = np.array([1.0, np.nan, np.inf])
    ref_copy, got_copy = ref.copy(), got.copy()
    assert cmp(got, ref).passed
    np.testing.assert_array_equal(ref, ref_copy)
    np.testing.assert_array_equal(got, got_copy)
    assert cmp([1.0, 2.0], [1.0, 2.0]).passed


# ---------------------------------------------------------------------------------------------
# NaN/Inf are outside the tolerance model


@pytest.mark.parametrize("got", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
def test_nonfinite_where_reference_is_finite_fails_even_at_infinite_tolerance(got):
    d = cmp(np.array([got, 1.0]), np.array([0.5, 1.0]), atol=np.inf, rtol=np.inf)
    assert not d.passed and d.failed_elements == 1
    assert d.nonfinite_mismatched == 1 and d.nonfinite_matched == 0
    assert "NaN/Inf" in d.problem


def test_matched_nonfinite_is_counted_not_hidden():
    ref = np.array([np.nan, -np.inf, 1.0, np.inf], np.float32)
    d = cmp(ref.copy(), ref, atol=0.0, rtol=0.0)
    assert d.passed and d.nonfinite_matched == 3 and d.nonfinite_mismatched == 0
    assert d.histogram.zero == 4 and d.histogram.nonfinite == 0


# ---------------------------------------------------------------------------------------------
# statistics: median, p99, cosine, histogram


def test_quantiles_and_cosine_match_numpy():
    rng = np.random.default_rng(7)
    ref = rng.standard_normal(1000)
    got = ref + rng.normal(scale=1e-3, size=ref.shape)
    d = cmp(got, ref)
    diff = np.abs(got - ref)
    assert d.median_abs_diff == pytest.approx(np.median(diff), rel=1e-12)
    assert d.p99_abs_diff == pytest.approx(np.percentile(diff, 99), rel=1e-12)
    assert d.cosine_similarity == pytest.approx(np.dot(got, ref) / np.linalg.norm(got) / np.linalg.norm(ref), rel=1e-12)
    assert d.median_abs_diff <= d.p99_abs_diff <= d.max_abs_diff


def test_p99_with_nonfinite_mismatches_is_inf_and_median_finite():
    ref = np.arange(100, dtype=np.float64)
    got = ref.copy()
    got[:2] = np.nan  # 2% of the elements: past the 99th percentile
    d = cmp(got, ref)
    assert d.p99_abs_diff == np.inf and d.median_abs_diff == 0.0
    assert d.cosine_similarity == pytest.approx(1.0)  # over the 98 elements finite on both sides


def test_quantile_on_a_finite_element_next_to_inf_is_that_element():
    # 101 elements: the 99th percentile lands exactly on index 99, a finite 0, with one inf above.
    got = np.zeros(101)
    got[-1] = np.inf
    d = cmp(got, np.zeros(101))
    assert d.p99_abs_diff == 0.0 and d.max_abs_diff == np.inf


@pytest.mark.parametrize(
    "got, ref, cosine",
    [
        pytest.param([0.0, 0.0], [0.0, 0.0], 1.0, id="both-zero"),
        pytest.param([0.0, 0.0], [1.0, 0.0], 0.0, id="one-zero"),
        pytest.param([-1.0, -2.0], [1.0, 2.0], -1.0, id="opposite"),
        pytest.param([1e300, 1e300], [1e300, 1e300], 1.0, id="no-overflow"),
    ],
)
def test_cosine_edge_cases(got, ref, cosine):
    assert cmp(np.array(got), np.array(ref), atol=np.inf).cosine_similarity == pytest.approx(cosine)


def test_histogram_bins_by_decade():
    ref = np.zeros(7)
    got = np.array([0.0, 1e-12, 5e-10, 1e-9, 3e-6, 20.0, np.nan])
    h = cmp(got, ref).histogram
    assert h.edges == list(HIST_EDGES) and len(h.counts) == len(HIST_EDGES) + 1
    assert h.zero == 1 and h.nonfinite == 1 and h.total == 7
    assert h.counts[0] == 1  # below 1e-10
    assert h.counts[1] == 1  # [1e-10, 1e-9)
    assert h.counts[2] == 1  # [1e-9, 1e-8): the edge itself goes up
    assert h.counts[HIST_EDGES.index(1e-6) + 1] == 1  # 3e-6 in [1e-6, 1e-5)
    assert h.counts[-1] == 1  # >= 10
    assert ErrorHistogram.from_json(asdict(h)).add(h).total == 14


# ---------------------------------------------------------------------------------------------
# tolerances: defaults, per-output overrides, parsing


def test_per_output_override_and_default():
    tols = Tolerances(Tolerance(1e-5, 1e-4), {"logits": Tolerance(1e-3, 0.0)})
    assert tols.for_output("logits") == Tolerance(1e-3, 0.0)
    assert tols.for_output("other") == Tolerance(1e-5, 1e-4)
    tols.check_outputs(["logits", "other"])
    with pytest.raises(BridgeError, match="no output 'logits'"):
        tols.check_outputs(["other"])
    assert tols.to_json()["per_output"] == {"logits": {"atol": 1e-3, "rtol": 0.0}}
    assert "atol and" in tols.to_json()["rule"]


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("logits=1e-4,1e-3", ("logits", Tolerance(1e-4, 1e-3))),
        ("a=b=0,0.5", ("a=b", Tolerance(0.0, 0.5))),  # the last '=' splits
    ],
)
def test_parse_override(text, parsed):
    assert parse_tolerance_override(text) == parsed


@pytest.mark.parametrize(
    "text, message",
    [
        ("logits", "expected OUTPUT=ATOL,RTOL"),
        ("logits=1e-4", "expected OUTPUT=ATOL,RTOL"),
        ("=1e-4,1e-3", "expected OUTPUT=ATOL,RTOL"),
        ("logits=x,1e-3", "must be numbers"),
        ("logits=-1,0", "finite number >= 0"),
        ("logits=nan,0", "finite number >= 0"),
    ],
)
def test_parse_override_refuses(text, message):
    with pytest.raises(BridgeError, match=message):
        parse_tolerance_override(text)


# ---------------------------------------------------------------------------------------------
# the noise floor


def test_repeat_spread():
    first = {"y": np.array([1.0, np.nan, 3.0]), "i": np.array([1, 2])}
    same = {"y": np.array([1.0, np.nan, 3.0]), "i": np.array([1, 2])}
    jitter = {"y": np.array([1.0, np.nan, 3.0 + 2e-6]), "i": np.array([1, 2])}
    assert repeat_spread([first, same]) == {"y": 0.0, "i": 0.0}
    assert repeat_spread([first, same, jitter])["y"] == pytest.approx(2e-6)
    assert repeat_spread([first, {"y": np.array([1.0, 2.0, 3.0]), "i": np.array([1, 2])}])["y"] == np.inf
    assert repeat_spread([first, {"y": np.zeros(2), "i": np.array([1, 2])}])["y"] == np.inf


class _Jittery:
    """A reference whose every run differs from the last by ``step`` (a GPU reduction order)."""

    def __init__(self, value: np.ndarray, step: float):
        self.value, self.step, self.calls = value, step, 0

    def run(self, feeds):
        self.calls += 1
        return {"y": self.value + self.step * self.calls}


class _Fixed:
    def __init__(self, value):
        self.value = value

    def run(self, feeds):
        return {"y": self.value.copy()}


def test_validate_reports_the_noise_floor_beside_every_diff():
    from bridge.stages import validate as validate_stage

    value = np.linspace(-1, 1, 12).reshape(3, 4)
    ref = _Jittery(value, 3e-5)
    report = validate_stage.run({"onnxruntime": ref, "paddle_inference": _Fixed(value)}, ["onnxruntime"],
                                {1: {"x": np.zeros(1)}, 2: {"x": np.zeros(2)}}, noise_runs=3)
    assert ref.calls == 6  # 3 runs per batch
    assert [n.max_abs_spread for n in report.noise] == [pytest.approx(6e-5)] * 2
    assert all(d.noise_floor == pytest.approx(6e-5) for d in report.diffs)
    assert any("noise floor" in n and "more than atol" in n for n in report.notes)
    j = report.to_json()
    assert j["noise_floor"]["runs"] == 3 and j["noise_floor"]["max_abs_spread"] == pytest.approx(6e-5)
    assert "noise" in report.render() and "6.00e-05" in report.render()

    quiet = validate_stage.run({"onnxruntime": _Fixed(value), "paddle_inference": _Fixed(value)}, ["onnxruntime"],
                               {1: {"x": np.zeros(1)}}, noise_runs=1)
    assert quiet.noise == [] and quiet.diffs[0].noise_floor is None and "not measured" in quiet.render()


def test_validate_applies_per_output_tolerances():
    from bridge.stages import validate as validate_stage

    class Two:
        def __init__(self, offset):
            self.offset = offset

        def run(self, feeds):
            return {"a": np.ones(4) + self.offset, "b": np.ones(4) + self.offset}

    tols = Tolerances(Tolerance(1e-5, 0.0), {"b": Tolerance(1e-2, 0.0)})
    report = validate_stage.run({"onnxruntime": Two(0.0), "paddle_inference": Two(1e-3)}, ["onnxruntime"],
                                {1: {}}, tolerances=tols, noise_runs=1)
    by_output = {d.output: d for d in report.diffs}
    assert not by_output["a"].passed and by_output["b"].passed
    assert (by_output["b"].atol, by_output["a"].atol) == (1e-2, 1e-5)
    assert report.to_json()["tolerance"]["per_output"] == {"b": {"atol": 1e-2, "rtol": 0.0}}
    assert "1 output(s) with their own" in report.summary()
