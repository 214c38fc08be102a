"""decompose_activations: Selu, Celu, Mish, HardSwish, Swish and Gelu, which X2Paddle 1.6.0
does not map, rewritten into Elu, Softplus, Tanh, HardSigmoid, Sigmoid, Erf and arithmetic.
One model holds every rewrite, so X2Paddle converts once."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.doctor import diagnose
from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_activations import ACTIVATION_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
OUTPUTS = ["selu", "selu_default", "celu", "celu_default", "mish", "hardswish", "swish", "swish_default",
           "gelu", "gelu_tanh"]


def activations_model() -> onnx.ModelProto:
    outs = ", ".join(f"float[N, 9] {name}" for name in OUTPUTS)
    return parse_model(f"""
        <ir_version: 10, opset_import: ["" : 24]>
        g (float[N, 9] x) => ({outs}) {{
            selu = Selu <alpha = 2.0, gamma = 3.0> (x)
            selu_default = Selu (x)
            celu = Celu <alpha = 2.0> (x)
            celu_default = Celu (x)
            mish = Mish (x)
            hardswish = HardSwish (x)
            swish = Swish <alpha = 0.5> (x)
            swish_default = Swish (x)
            gelu = Gelu (x)
            gelu_tanh = Gelu <approximate = "tanh"> (x)
        }}""")


def sample() -> np.ndarray:
    x = RNG.standard_normal((4, 9)).astype(np.float32) * 4
    x[0, :5] = [0.0, -3.0, 3.0, 30.0, -30.0]  # HardSwish's kinks, saturated tails
    return x


def test_activations_convert_after_decomposition(tmp_path):
    model, x = activations_model(), sample()
    with pytest.raises(UnsupportedModel, match="no mapping for op types Celu, Gelu, HardSwish, Mish, Selu, Swish"):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")

    patched, report = apply_patches(model, ACTIVATION_PATCHES)
    assert report.fired_counts() == {"decompose_selu": 2, "decompose_celu": 2, "decompose_mish": 1,
                                     "decompose_hardswish": 1, "decompose_swish": 2, "decompose_gelu": 2}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(24)
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, {"x": x}, tmp_path)
    after = run_ort(patched, {"x": x}, tmp_path)
    for name in OUTPUTS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)

    got = convert_and_run_paddle(patched, {"x": x}, tmp_path / "patched")
    for name in OUTPUTS:
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_declines_unknown_gelu_approximation_and_untyped_input():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 20]>
        g (float[N, 3] x) => (float[N, 3] y, float[N, 3] z) {
            [g_erf] y = Gelu <approximate = "erf"> (x)
            [g_none] z = Gelu (x)
        }""")
    patched, report = apply_patches(model, (PATCHES_BY_NAME["decompose_gelu"],))
    assert [f.node for f in report.fired] == ["g_none"]
    assert [(d.node, d.reason) for d in report.declined] == [("g_erf", "approximate='erf' (none and tanh only)")]
    assert [n.name for n in patched.graph.node if n.op_type == "Gelu"] == ["g_erf"]

    # no element type: no constant of the input's type can be written
    selu = parse_model("""
        <ir_version: 10, opset_import: ["" : 22]>
        g (float[N, 3] x) => (float[N, 3] y) { [s0] y = Selu (x) }""")
    selu.graph.input[0].type.tensor_type.elem_type = 0
    _, report = apply_patches(selu, (PATCHES_BY_NAME["decompose_selu"],))
    assert report.fired == []
    assert [(d.node, d.reason) for d in report.declined] == [
        ("s0", "input 'x' has element type unknown (float16, float32, float64 only)")]


def test_doctor_credits_the_decomposition():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 20]>
        g (float[N, 3] x) => (float[N, 3] y) { [g0] y = Gelu <approximate = "tanh"> (x) }""")
    report = diagnose(model)
    [finding] = [f for f in report.findings if f.code == "op_not_mapped"]
    assert (finding.node, finding.op_type, finding.fixed_by, finding.blocking) == ("g0", "Gelu", "decompose_gelu", False)
