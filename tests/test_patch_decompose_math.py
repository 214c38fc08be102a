"""decompose_math: Sinh, Cosh, Tan, Asinh, Acosh, Atanh, Round, IsNaN and Mean, which X2Paddle
1.6.0 does not map, rewritten into Exp, Log, Sqrt, Sin/Cos, Floor, Where, Equal/Not and Add.
One model holds every rewrite, so X2Paddle converts once."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_math import MATH_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
FLOAT_OUTPUTS = ["sinh", "cosh", "tan", "asinh", "acosh", "atanh", "rounded", "mean3", "mean1"]


def math_model() -> onnx.ModelProto:
    return parse_model("""
        <ir_version: 10, opset_import: ["" : 22]>
        g (float[N, 12] x, float[N, 12] halves, float[N, 12] u, float[N, 12] w, float[12] v)
          => (float[N, 12] sinh, float[N, 12] cosh, float[N, 12] tan, float[N, 12] asinh, float[N, 12] acosh,
              float[N, 12] atanh, float[N, 12] rounded, bool[N, 12] nan, float[N, 12] mean3, float[N, 12] mean1) {
            sinh = Sinh (x)
            cosh = Cosh (x)
            tan = Tan (x)
            asinh = Asinh (x)
            acosh = Acosh (u)
            atanh = Atanh (w)
            rounded = Round (halves)
            nan = IsNaN (halves)
            mean3 = Mean (x, v, w)
            mean1 = Mean (u)
        }""")


def feeds() -> dict[str, np.ndarray]:
    x = (RNG.standard_normal((3, 12)) * 3).astype(np.float32)
    # ties round to even either way of zero; NaN and ±inf pass through Round, IsNaN sees NaN only
    halves = (RNG.integers(-8, 8, (3, 12)) / 2).astype(np.float32)
    halves[0, :8] = [0.5, 1.5, 2.5, -0.5, -2.5, np.nan, np.inf, -np.inf]
    return {
        "x": x, "halves": halves,
        "u": (1 + RNG.random((3, 12)) * 5).astype(np.float32),  # Acosh: x >= 1
        "w": (RNG.random((3, 12)) * 1.8 - 0.9).astype(np.float32),  # Atanh: |x| < 1
        "v": RNG.standard_normal(12).astype(np.float32),  # Mean broadcasts
    }


def test_math_converts_after_decomposition(tmp_path):
    model, inputs = math_model(), feeds()
    with pytest.raises(UnsupportedModel, match="no mapping for op types Acosh, Asinh, Atanh, Cosh, IsNaN, Mean, Round, Sinh, Tan"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, MATH_PATCHES)
    assert report.fired_counts() == {"decompose_hyperbolic": 3, "decompose_inverse_hyperbolic": 3,
                                     "decompose_round": 1, "decompose_isnan": 1, "decompose_mean": 2}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(22)
    assert "Sum" not in {n.op_type for n in patched.graph.node}  # X2Paddle's Sum re-adds input 0
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    np.testing.assert_array_equal(after["rounded"], before["rounded"])  # exact, NaN and inf included
    assert before["rounded"][0, :5].tolist() == [0.0, 2.0, 2.0, -0.0, -2.0]
    np.testing.assert_array_equal(after["nan"], before["nan"])
    for name in FLOAT_OUTPUTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    np.testing.assert_array_equal(got["rounded"], before["rounded"])
    np.testing.assert_array_equal(got["nan"], before["nan"])
    for name in FLOAT_OUTPUTS:
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_declines_integer_mean():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 13]>
        g (float[N, 3] a, float[N, 3] b) => (float[N, 3] y) { [m0] y = Mean (a, b) }""")
    model.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.INT32  # as an exporter bug would
    _, report = apply_patches(model, (PATCHES_BY_NAME["decompose_mean"],))
    assert report.fired == []
    assert [(d.node, d.reason) for d in report.declined] == [
        ("m0", "input 'b' has element type int32 (float16, float32, float64 only)")]


@pytest.mark.parametrize("op, opset, reason", [
    ("IsNaN", 10, "Equal takes floats from opset 11"),
    ("Mean", 6, "Add/Div broadcast from opset 7"),
])
def test_declines_below_the_opset_its_ops_need(op, opset, reason):
    """Found by tests/test_fuzz_patches.py: Not(Equal(x, x)) at opset 9-10 and Div by a scalar
    at opset 6 are invalid ONNX (Equal-7 has no floats, Div-6 broadcasts only with broadcast=1)."""
    out = "bool" if op == "IsNaN" else "float"
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[2, 3] x) => ({out}[2, 3] y) {{ y = {op} (x) }}""")
    patched, report = apply_patches(model, MATH_PATCHES)
    assert not report.fired and [n.op_type for n in patched.graph.node] == [op]
    assert reason in report.declined[0].reason
