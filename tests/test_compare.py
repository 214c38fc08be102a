"""Unit tests of bridge.compare.compare_arrays: the pass rule, shape/dtype checks, NaN/Inf, statistics."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.compare import DEFAULT_ATOL, DEFAULT_RTOL, OutputDiff, compare_arrays

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
