"""gru_unroll: X2Paddle has no GRU mapper; the patch unrolls the recurrence over the static
sequence length. ORT agrees before/after (both gate forms, all directions, with and without
initial_h), Paddle matches ORT, and it declines what it cannot unroll."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bridge.errors import BridgeError
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
T, I, H = 4, 3, 5


def gru_model(direction: str = "forward", linear_before_reset: int = 1, initial_h: bool = False,
              seq: str = str(T), extra: str = "") -> onnx.ModelProto:
    dirs = 2 if direction == "bidirectional" else 1
    h0_input = f", float[{dirs}, N, {H}] h0" if initial_h else ""
    args = "x, w, r, b, , h0" if initial_h else "x, w, r, b"
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[{seq}, N, {I}] x{h0_input}, float[{dirs}, {3 * H}, {I}] w, float[{dirs}, {3 * H}, {H}] r, float[{dirs}, {6 * H}] b)
            => (float[{seq}, {dirs}, N, {H}] y, float[{dirs}, N, {H}] y_h) {{
            y, y_h = GRU <hidden_size = {H}, direction = "{direction}", linear_before_reset = {linear_before_reset}{extra}> ({args})
        }}""")
    weights = {"w": (dirs, 3 * H, I), "r": (dirs, 3 * H, H), "b": (dirs, 6 * H)}
    keep = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(
        numpy_helper.from_array(RNG.uniform(-0.7, 0.7, shape).astype(np.float32), name) for name, shape in weights.items())
    return model


def only():
    return (PATCHES_BY_NAME["gru_unroll"],)


def feeds_for(model: onnx.ModelProto, batch: int) -> dict[str, np.ndarray]:
    feeds = {"x": RNG.standard_normal((T, batch, I)).astype(np.float32)}
    if any(i.name == "h0" for i in model.graph.input):
        dirs = model.graph.input[1].type.tensor_type.shape.dim[0].dim_value
        feeds["h0"] = RNG.standard_normal((dirs, batch, H)).astype(np.float32)
    return feeds


@pytest.mark.parametrize(
    "direction, linear_before_reset, initial_h",
    [("forward", 1, False), ("reverse", 0, True), ("bidirectional", 1, True), ("bidirectional", 0, False)],
)
def test_gru_unroll_matches_ort(tmp_path, direction, linear_before_reset, initial_h):
    model = gru_model(direction, linear_before_reset, initial_h)
    patched, report = apply_patches(model, only())
    assert [f.patch for f in report.fired] == ["gru_unroll"]
    assert "GRU" not in {n.op_type for n in patched.graph.node}
    onnx.checker.check_model(patched, full_check=True)
    feeds = feeds_for(model, 3)
    before, after = run_ort(model, feeds, tmp_path), run_ort(patched, feeds, tmp_path)
    for name in ("y", "y_h"):
        assert after[name].shape == before[name].shape
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=1e-6)


def test_gru_unroll_converts(tmp_path):
    # torch's form: bidirectional, linear_before_reset = 1, no initial_h
    model = gru_model("bidirectional", 1)
    feeds = feeds_for(model, 2)
    with pytest.raises(BridgeError, match=r"no mapping for op type GRU"):
        convert_and_run_paddle(model, feeds, tmp_path / "unpatched")
    patched, _ = apply_patches(model)
    expected = run_ort(model, feeds, tmp_path)
    got = convert_and_run_paddle(patched, feeds, tmp_path / "patched")
    for name in ("y", "y_h"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)


def test_gru_unroll_declines_dynamic_sequence_length():
    _, report = apply_patches(gru_model(seq="T"), only())
    assert report.fired == [] and "not static" in report.declined[0].reason


def test_gru_unroll_declines_clip():
    _, report = apply_patches(gru_model(extra=", clip = 1.0"), only())
    assert report.fired == [] and "clip" in report.declined[0].reason
