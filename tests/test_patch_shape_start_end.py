"""shape_start_end: X2Paddle 1.6.0 maps Shape to ``paddle.shape(x)`` and drops ``start``/``end``
(opset 15); the patch slices the whole shape instead."""
from __future__ import annotations

import numpy as np
import onnx

from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

# A dynamic batch keeps onnxsim (in convert_and_run_paddle's pipeline) from folding the Shapes.
MODEL = """
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[N, 3, 4, 5] x) => (int64[2] a, int64[3] b, int64[2] c, int64[4] whole) {
        a = Shape <start = 1, end = -1> (x)
        b = Shape <start = -3> (x)
        c = Shape <end = 2> (x)
        [kept] whole = Shape (x)
    }"""
ONE = """
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[N, 3, 4, 5] x) => (int64[2] a) {
        a = Shape <start = 1, end = -1> (x)
    }"""
EMPTY = """
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[N, 3, 4, 5] x) => (int64[0] d) {
        d = Shape <start = 3, end = 1> (x)
    }"""


def only():
    return (PATCHES_BY_NAME["shape_start_end"],)


def test_start_and_end_become_a_slice(tmp_path):
    model = parse_model(MODEL)
    feeds = {"x": np.zeros((2, 3, 4, 5), np.float32)}
    before = run_ort(model, feeds, tmp_path)
    assert before["a"].tolist() == [3, 4] and before["b"].tolist() == [3, 4, 5]
    wrong = convert_and_run_paddle(parse_model(ONE), feeds, tmp_path / "unpatched")
    assert wrong["a"].tolist() == [2, 3, 4, 5]  # X2Paddle alone: the whole shape

    patched, report = apply_patches(model, only())
    assert report.fired_counts() == {"shape_start_end": 3}
    assert ("kept", "no start or end") in {(d.node, d.reason) for d in report.declined}
    onnx.checker.check_model(patched, full_check=True)
    after = run_ort(patched, feeds, tmp_path)
    got = convert_and_run_paddle(patched, feeds, tmp_path / "patched")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        np.testing.assert_array_equal(got[name], before[name], err_msg=name)


def test_start_past_end_is_empty_as_in_onnx(tmp_path):
    model = parse_model(EMPTY)
    feeds = {"x": np.zeros((2, 3, 4, 5), np.float32)}
    patched, _ = apply_patches(model, only())
    assert run_ort(patched, feeds, tmp_path)["d"].shape == run_ort(model, feeds, tmp_path)["d"].shape == (0,)
