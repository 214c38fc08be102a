"""flatten_dynamic_dims: X2Paddle multiplies -1 into Flatten's target shape ([-4, 3] for
[N, 4, 3] at axis 2); the patch writes the Reshape with a real -1."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import BridgeError
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)


def flatten_model(in_shape: str, axis: int, out_shape: str = "") -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[{in_shape}] x) => (float{out_shape} y) {{
            f = Flatten <axis = {axis}> (x)
            y = Relu (f)
        }}""")


def only():
    return (PATCHES_BY_NAME["flatten_dynamic_dims"],)


def test_flatten_dynamic_dims(tmp_path):
    model = flatten_model("N, 4, 3", 2, "[M, 3]")
    x = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    with pytest.raises(BridgeError, match="X2Paddle failed"):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")
    assert "shape=[-4, 3]" in (tmp_path / "unpatched" / "convert.log").read_text()

    patched, report = apply_patches(model, only())
    assert [f.patch for f in report.fired] == ["flatten_dynamic_dims"]
    assert report.op_diff() == {"Constant": "+1 (0->1)", "Flatten": "-1 (1->0)", "Reshape": "+1 (0->1)"}
    onnx.checker.check_model(patched, full_check=True)
    x5 = RNG.standard_normal((5, 4, 3)).astype(np.float32)
    before, after = run_ort(model, {"x": x5}, tmp_path)["y"], run_ort(patched, {"x": x5}, tmp_path)["y"]
    assert after.shape == (20, 3)
    np.testing.assert_array_equal(after, before)
    got = convert_and_run_paddle(patched, {"x": x5}, tmp_path / "patched")["y"]
    np.testing.assert_array_equal(got, after)


def test_flatten_dynamic_dims_dynamic_dim_after_axis(tmp_path):
    model = flatten_model("2, 3, L", 1)
    patched, report = apply_patches(model, only())
    assert len(report.fired) == 1
    shape = next(n for n in patched.graph.node if n.op_type == "Constant").attribute[0].t
    assert list(onnx.numpy_helper.to_array(shape)) == [2, -1]
    x = RNG.standard_normal((2, 3, 7)).astype(np.float32)
    np.testing.assert_array_equal(run_ort(patched, {"x": x}, tmp_path)["y"], run_ort(model, {"x": x}, tmp_path)["y"])


@pytest.mark.parametrize("in_shape, axis, reason", [
    ("2, 4, 3", 2, "every dim is static"),
    ("N, 4, 3", 0, "axis 0"),
    ("N, L, 3", 2, "2 dynamic dims"),
    ("N, 4, 3", 1, "alone in its group"),  # torch.flatten(x, 1): X2Paddle already writes [-1, 12]
])
def test_flatten_dynamic_dims_declines(in_shape, axis, reason):
    _, report = apply_patches(flatten_model(in_shape, axis), only())
    assert report.fired == [] and reason in report.declined[0].reason
