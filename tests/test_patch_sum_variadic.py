"""sum_variadic: X2Paddle 1.6.0's Sum adds the first input again from the third input on
(silently wrong) and fails on one input; the patch writes Identity / a chain of Adds."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

# Three and four terms, with broadcasting ([N, 3] + [3] + [N, 1] + scalar), and one term.
SUMS = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 3] a, float[3] b, float[N, 1] c, float d) => (float[N, 3] s3, float[N, 3] s4, float[N, 3] s1, float[N, 3] s2) {
        s3 = Sum (a, b, c)
        s4 = Sum (a, b, c, d)
        s1 = Sum (a)
        s2 = Sum (a, b)
    }"""


def _feeds() -> dict[str, np.ndarray]:
    return {"a": RNG.standard_normal((4, 3)).astype(np.float32), "b": RNG.standard_normal(3).astype(np.float32),
            "c": RNG.standard_normal((4, 1)).astype(np.float32), "d": np.array(2.5, np.float32)}


def _patched(model):
    patched, report = apply_patches(model, (PATCHES_BY_NAME["sum_variadic"],))
    return patched, report


def test_sum_without_the_patch_fails_or_is_wrong(tmp_path):
    three = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a, float[N, 3] b, float[N, 3] c) => (float[N, 3] s) { s = Sum (a, b, c) }""")
    feeds = {k: RNG.standard_normal((4, 3)).astype(np.float32) for k in "abc"}
    got = next(iter(convert_and_run_paddle(three, feeds, tmp_path / "three").values()))
    np.testing.assert_allclose(got, feeds["a"] + feeds["b"] + feeds["a"], rtol=1e-6)  # a + b + a
    assert not np.allclose(got, feeds["a"] + feeds["b"] + feeds["c"], atol=1e-3)
    one = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a) => (float[N, 3] s) { s = Sum (a) }""")
    with pytest.raises(Exception, match="IndexError|list index out of range"):
        convert_and_run_paddle(one, {"a": feeds["a"]}, tmp_path / "one")


def test_sum_variadic_rewrites_and_paddle_matches(tmp_path):
    model = parse_model(SUMS)
    feeds = _feeds()
    patched, report = _patched(model)
    ops = [n.op_type for n in patched.graph.node]
    assert ops.count("Sum") == 1 and ops.count("Add") == 2 + 3 and ops.count("Identity") == 1  # the 2-term Sum stays
    before, after = run_ort(model, feeds, tmp_path / "before"), run_ort(patched, feeds, tmp_path / "after")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    got = convert_and_run_paddle(patched, feeds, tmp_path / "paddle")
    for name, value in got.items():
        onnx_name = name.removeprefix("x2paddle_")
        np.testing.assert_allclose(value, before[onnx_name], rtol=1e-6, atol=1e-6)


def test_two_term_sum_is_left_alone():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a, float[N, 3] b) => (float[N, 3] s) { s = Sum (a, b) }""")
    patched, _ = _patched(model)
    assert [n.op_type for n in patched.graph.node] == ["Sum"]


# Max and Min: three terms with broadcasting, and one term (the two-term forms stay). The one-term
# forms take different inputs: two Identity outputs of one graph input is a Paddle Inference limit
# of its own ("fetch_name_2 is not found"), not what this patch is about.
MAX_MIN = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 3] a, float[3] b, float[N, 1] c) => (float[N, 3] x3, float[N, 3] n3, float[3] x1, float[N, 1] n1,
                                                    float[N, 3] x2) {
        x3 = Max (a, b, c)
        n3 = Min (a, b, c)
        x1 = Max (b)
        n1 = Min (c)
        x2 = Max (a, b)
    }"""


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_without_the_patch_fail(tmp_path, op):
    feeds = {k: RNG.standard_normal((4, 3)).astype(np.float32) for k in "abc"}
    three = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a, float[N, 3] b, float[N, 3] c) => (float[N, 3] s) {{ s = {op} (a, b, c) }}""")
    with pytest.raises(Exception, match="has no setter"):
        convert_and_run_paddle(three, feeds, tmp_path / "three")
    one = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a) => (float[N, 3] s) {{ s = {op} (a) }}""")
    with pytest.raises(Exception, match="UnboundLocalError"):
        convert_and_run_paddle(one, {"a": feeds["a"]}, tmp_path / "one")


def test_max_min_rewrite_and_paddle_matches(tmp_path):
    model = parse_model(MAX_MIN)
    feeds = {k: v for k, v in _feeds().items() if k != "d"}
    patched, report = _patched(model)
    ops = [n.op_type for n in patched.graph.node]
    assert ops.count("Max") == 2 + 1 and ops.count("Min") == 2 and ops.count("Identity") == 2
    before, after = run_ort(model, feeds, tmp_path / "before"), run_ort(patched, feeds, tmp_path / "after")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    got = convert_and_run_paddle(patched, feeds, tmp_path / "paddle")
    assert sorted(n.removeprefix("x2paddle_") for n in got) == sorted(before)
    for name, value in got.items():
        np.testing.assert_array_equal(value, before[name.removeprefix("x2paddle_")])


def test_two_term_max_min_are_left_alone():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] a, float[N, 3] b) => (float[N, 3] x, float[N, 3] n) { x = Max (a, b)
                                                                            n = Min (a, b) }""")
    patched, _ = _patched(model)
    assert [n.op_type for n in patched.graph.node] == ["Max", "Min"]
