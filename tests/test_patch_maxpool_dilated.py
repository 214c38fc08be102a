"""maxpool_dilated: X2Paddle 1.6.0 refuses MaxPool with dilations ("only dilations = 0 is
supported"); the patch writes padded strided slices and a pairwise Max."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

POOLS = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 2, 11] x1, float[N, 2, 9, 10] x2) => (float[N, 2, a] y1, float[N, 2, b, c] y2) {
        y1 = MaxPool <kernel_shape = [3], strides = [2], pads = [1, 2], dilations = [2]> (x1)
        y2 = MaxPool <kernel_shape = [2, 3], strides = [1, 2], pads = [1, 0, 0, 1], dilations = [3, 2]> (x2)
    }"""


def _feeds():
    return {"x1": RNG.standard_normal((2, 2, 11)).astype(np.float32),
            "x2": RNG.standard_normal((2, 2, 9, 10)).astype(np.float32)}


def test_dilated_maxpool_refused_without_the_patch(tmp_path):
    with pytest.raises(UnsupportedModel, match="only dilations = 0 is supported"):
        convert_and_run_paddle(parse_model(POOLS), _feeds(), tmp_path)


def test_maxpool_dilated_matches_ort_and_paddle(tmp_path):
    model = parse_model(POOLS)
    feeds = _feeds()
    patched, report = apply_patches(model, (PATCHES_BY_NAME["maxpool_dilated"],))
    assert "MaxPool" not in [n.op_type for n in patched.graph.node]
    before, after = run_ort(model, feeds, tmp_path / "before"), run_ort(patched, feeds, tmp_path / "after")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    got = convert_and_run_paddle(patched, feeds, tmp_path / "paddle")
    for name, value in got.items():
        np.testing.assert_array_equal(value, before[name.removeprefix("x2paddle_")])


@pytest.mark.parametrize("attrs,reason", [
    ("kernel_shape = [3], dilations = [1]", "no dilation other than 1"),
    ("kernel_shape = [3], dilations = [2], ceil_mode = 1", "ceil_mode=1"),
    ('kernel_shape = [3], dilations = [2], auto_pad = "SAME_UPPER"', "auto_pad SAME_UPPER"),
])
def test_maxpool_dilated_declines(attrs, reason):
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 2, 11] x) => (float[N, 2, a] y) {{ y = MaxPool <{attrs}> (x) }}""")
    patched, report = apply_patches(model, (PATCHES_BY_NAME["maxpool_dilated"],))
    assert [n.op_type for n in patched.graph.node] == ["MaxPool"]
    assert any(reason in d.reason for d in report.declined)


@pytest.mark.parametrize("dtype, opset", [("float16", 12), ("double", 12), ("int8", 12), ("uint8", 12),
                                          ("float", 10), ("double", 10)])
def test_maxpool_dilated_pads_in_the_input_type(dtype, opset, tmp_path):
    """Found by tests/test_fuzz_patches.py: the padding value was float32 whatever the input,
    which onnx.checker refuses for any other type ("constant_value has inconsistent type"); at
    opset 10 Pad takes pads and value as attributes ("Pad:2 has input size 3")."""
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g ({dtype}[1, 2, 6, 6] x) => ({dtype}[1, 2, 6, 6] y) {{
            y = MaxPool <kernel_shape = [2, 2], dilations = [2, 2], pads = [1, 1, 1, 1]> (x)
        }}""")
    x = {"x": (np.arange(72).reshape(1, 2, 6, 6) % 7 - (0 if dtype == "uint8" else 9)).astype({"float": np.float32, "double": np.float64}.get(dtype, dtype))}
    patched, report = apply_patches(model, (PATCHES_BY_NAME["maxpool_dilated"],))
    assert [f.op_type for f in report.fired] == ["MaxPool"]
    onnx.checker.check_model(patched, full_check=True)
    np.testing.assert_array_equal(run_ort(patched, x, tmp_path)["y"], run_ort(model, x, tmp_path)["y"])
