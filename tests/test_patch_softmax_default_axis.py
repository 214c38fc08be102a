"""softmax_default_axis: X2Paddle 1.6.0 maps a Softmax/LogSoftmax without ``axis`` to
``axis=1`` at every opset; from opset 13 ONNX means -1. The patch writes -1 out."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

MODEL = """
    <ir_version: 8, opset_import: ["" : {opset}]>
    g (float[2, 3, 4] x) => (float[2, 3, 4] s, float[2, 3, 4] l, float[2, 3, 4] k) {{
        s = Softmax (x)
        l = LogSoftmax (x)
        [kept] k = Softmax <axis = 0> (x)
    }}"""


def only():
    return (PATCHES_BY_NAME["softmax_default_axis"],)


def test_default_axis_written_out(tmp_path):
    model = parse_model(MODEL.format(opset=13))
    feeds = {"x": RNG.standard_normal((2, 3, 4)).astype(np.float32) * 3}
    before = run_ort(model, feeds, tmp_path)
    wrong = convert_and_run_paddle(model, feeds, tmp_path / "unpatched")
    assert not np.allclose(wrong["s"], before["s"], atol=1e-3)  # X2Paddle alone: over axis 1
    assert not np.allclose(wrong["l"], before["l"], atol=1e-3)

    patched, report = apply_patches(model, only())
    assert report.fired_counts() == {"softmax_default_axis": 2}
    # the last pass sees the two rewritten nodes (unnamed) and the one that had an axis
    assert sorted((d.node, d.reason) for d in report.declined) == [("", "axis given")] * 2 + [("kept", "axis given")]
    onnx.checker.check_model(patched, full_check=True)
    after = run_ort(patched, feeds, tmp_path)
    got = convert_and_run_paddle(patched, feeds, tmp_path / "patched")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("opset", [11, 12])
def test_declines_below_opset_13(opset):
    _, report = apply_patches(parse_model(MODEL.format(opset=opset)), only())
    assert report.fired == []
    assert {d.reason for d in report.declined} >= {f"opset {opset}: the default axis 1 is X2Paddle's"}
