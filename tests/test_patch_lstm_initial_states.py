"""lstm_initial_states: X2Paddle fails on an LSTM without initial states; the patch makes ONNX's
zero defaults explicit (computed from the dynamic batch), ORT agrees before/after, Paddle matches."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bridge.errors import BridgeError
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
T, I, H = 5, 3, 4


def lstm_model(inputs: str, extra_inputs: str = "", direction: str = "forward") -> onnx.ModelProto:
    """An LSTM as torch exports ``nn.LSTM`` called without ``(h0, c0)``: X, W, R, B only (and
    all three outputs, which X2Paddle requires)."""
    dirs = 2 if direction == "bidirectional" else 1
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[{T}, N, {I}] x{extra_inputs}, float[{dirs}, {4 * H}, {I}] w, float[{dirs}, {4 * H}, {H}] r, float[{dirs}, {8 * H}] b)
            => (float[{T}, {dirs}, N, {H}] y, float[{dirs}, N, {H}] y_h, float[{dirs}, N, {H}] y_c) {{
            y, y_h, y_c = LSTM <hidden_size = {H}, direction = "{direction}"> ({inputs})
        }}""")
    weights = {
        "w": RNG.uniform(-0.5, 0.5, (dirs, 4 * H, I)), "r": RNG.uniform(-0.5, 0.5, (dirs, 4 * H, H)),
        "b": RNG.uniform(-0.5, 0.5, (dirs, 8 * H)),
    }
    keep = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items())
    return model


def only():
    return (PATCHES_BY_NAME["lstm_initial_states"],)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_initial_states(tmp_path, direction):
    model = lstm_model("x, w, r, b", direction=direction)
    x = RNG.standard_normal((T, 3, I)).astype(np.float32)
    with pytest.raises(BridgeError, match=r"LSTM.*init_h"):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")

    patched, report = apply_patches(model, only())
    assert [f.patch for f in report.fired] == ["lstm_initial_states"]
    lstm = next(n for n in patched.graph.node if n.op_type == "LSTM")
    assert len(lstm.input) == 7 and lstm.input[4] == "" and lstm.input[5] and lstm.input[6]
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, {"x": x}, tmp_path)
    after = run_ort(patched, {"x": x}, tmp_path)
    for name in ("y", "y_h", "y_c"):
        np.testing.assert_array_equal(after[name], before[name])

    # batch 3 at conversion time, batch 5 when run: the zero states follow the batch
    converted, _ = apply_patches(model)
    x5 = RNG.standard_normal((T, 5, I)).astype(np.float32)
    expected = run_ort(patched, {"x": x5}, tmp_path)
    got = convert_and_run_paddle(converted, {"x": x5}, tmp_path / "patched")
    for name in ("y", "y_h", "y_c"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)


def test_lstm_initial_states_declines_when_all_given():
    model = lstm_model("x, w, r, b, , h0, c0", extra_inputs=f", float[1, N, {H}] h0, float[1, N, {H}] c0")
    patched, report = apply_patches(model, only())
    assert report.fired == [] and "all given" in report.declined[0].reason
    assert patched.graph.node[0] == model.graph.node[0]


def test_lstm_initial_states_adds_missing_bias_only(tmp_path):
    model = lstm_model("x, w, r, , , h0, c0", extra_inputs=f", float[1, N, {H}] h0, float[1, N, {H}] c0")
    patched, report = apply_patches(model, only())
    assert len(report.fired) == 1
    lstm = next(n for n in patched.graph.node if n.op_type == "LSTM")
    assert list(lstm.input)[5:] == ["h0", "c0"] and lstm.input[3]
    feeds = {"x": RNG.standard_normal((T, 2, I)).astype(np.float32),
             "h0": RNG.standard_normal((1, 2, H)).astype(np.float32),
             "c0": RNG.standard_normal((1, 2, H)).astype(np.float32)}
    np.testing.assert_array_equal(run_ort(patched, feeds, tmp_path)["y"], run_ort(model, feeds, tmp_path)["y"])
