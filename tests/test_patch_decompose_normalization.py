"""decompose_normalization: LayerNormalization, RMSNormalization, GroupNormalization and
LpNormalization, which X2Paddle 1.6.0 does not map, rewritten into reductions and arithmetic.
Two models: opset 23 (means and sums as ``MatMul`` by ones: X2Paddle maps no reduction with
an ``axes`` input) and opset 17 (``ReduceMean`` with an ``axes`` attribute)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_normalization import NORMALIZATION_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


OPSET23 = """
    <ir_version: 10, opset_import: ["" : 23]>
    g (float[N, 4, 3, 5] x, float[3, 5] w, float[3, 5] bias, float[4] s, float[4] t)
      => (float[N, 4, 3, 5] ln, float[N, 4, 1, 1] ln_mean, float[N, 4, 1, 1] ln_inv, float[N, 4, 3, 5] rms,
          float[N, 4, 3, 5] gn, float[N, 4, 3, 5] l2, float[N, 4, 3, 5] l1) {
        ln, ln_mean, ln_inv = LayerNormalization <axis = -2, epsilon = 0.1> (x, w, bias)
        rms = RMSNormalization <axis = 2> (x, w)
        gn = GroupNormalization <num_groups = 2, epsilon = 0.01> (x, s, t)
        l2 = LpNormalization <axis = 1, p = 2> (x)
        l1 = LpNormalization <axis = -1, p = 1> (x)
    }"""

OPSET17 = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, T, 6] x, float[6] w) => (float[N, T, 6] ln, float[N, T, 6] l1) {
        ln = LayerNormalization (x, w)
        l1 = LpNormalization <axis = -1, p = 1> (x)
    }"""


@pytest.mark.parametrize("text, feeds, fired", [
    pytest.param(OPSET23, lambda: {"x": randn(2, 4, 3, 5), "w": randn(3, 5), "bias": randn(3, 5),
                                   "s": randn(4), "t": randn(4)},
                 {"decompose_layer_normalization": 1, "decompose_rms_normalization": 1,
                  "decompose_group_normalization": 1, "decompose_lp_normalization": 2}, id="opset23"),
    pytest.param(OPSET17, lambda: {"x": randn(2, 3, 6), "w": randn(6)},
                 {"decompose_layer_normalization": 1, "decompose_lp_normalization": 1}, id="opset17"),
])
def test_normalizations_convert_after_decomposition(tmp_path, text, feeds, fired):
    model, inputs = parse_model(text), feeds()
    with pytest.raises(UnsupportedModel, match="no mapping for op type"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, NORMALIZATION_PATCHES)
    assert report.fired_counts() == fired
    ops = {n.op_type for n in patched.graph.node}
    opset = patched.opset_import[0].version
    assert ops <= mapped_op_types(opset)
    # the reduction forms X2Paddle maps: ReduceMean with axes attribute below 18, MatMul from 18
    assert ("ReduceMean" in ops) == (opset < 18) and ("MatMul" in ops) == (opset >= 18)
    assert "ReduceSum" not in ops and "Pow" not in ops  # ReduceSum aborts Paddle; Pow invites the LN fuser
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in before:
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_float16_layer_norm_computes_in_the_stash_type(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        g (float16[N, 8] x, float16[8] w, float16[8] b) => (float16[N, 8] y, float[N, 1] mean) {
            y, mean = LayerNormalization (x, w, b)
        }""")
    patched, report = apply_patches(model, NORMALIZATION_PATCHES)
    assert report.fired_counts() == {"decompose_layer_normalization": 1}
    casts = [onnx.helper.get_attribute_value(n.attribute[0]) for n in patched.graph.node if n.op_type == "Cast"]
    assert casts == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16]  # in, and back before the scale
    inputs = {"x": randn(3, 8).astype(np.float16) * 3, "w": randn(8).astype(np.float16),
              "b": randn(8).astype(np.float16)}
    before, after = run_ort(model, inputs, tmp_path), run_ort(patched, inputs, tmp_path)
    np.testing.assert_allclose(after["mean"], before["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after["y"].astype(np.float32), before["y"].astype(np.float32), rtol=1e-3, atol=2e-3)


def test_declines_dynamic_dims_from_opset_18_and_the_opset_18_group_norm():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 18]>
        g (float[N, 4, T] x, float[T] w, float[2] s, float[2] b, float[N, 4, 6] z)
          => (float[N, 4, T] ln, float[N, 4, 6] gn, float[N, 4, T] ln_static) {
            [ln0] ln = LayerNormalization (x, w)
            [gn0] gn = GroupNormalization <num_groups = 2> (z, s, b)
            [ln1] ln_static = LayerNormalization <axis = 1> (x, w)
        }""")
    patches = (PATCHES_BY_NAME["decompose_layer_normalization"], PATCHES_BY_NAME["decompose_group_normalization"])
    _, report = apply_patches(model, patches)
    assert report.fired == []
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("gn0", "opset 18: the opset-18 form scales per group, not per channel"),
        ("ln0", "reduced dims ['T'] not static (needed for a mean at opset 18)"),
        ("ln1", "reduced dims [4, 'T'] not static (needed for a mean at opset 18)"),
    ]


def test_lp_normalization_declines_below_opset_11():
    """Found by tests/test_fuzz_patches.py: the zero-norm test is an Equal on floats, which
    opset 9-10's Equal does not take (invalid ONNX after patching)."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 10]>
        g (float[2, 3] x) => (float[2, 3] y) { y = LpNormalization (x) }""")
    patched, report = apply_patches(model, NORMALIZATION_PATCHES)
    assert not report.fired and [n.op_type for n in patched.graph.node] == ["LpNormalization"]
    assert "Equal takes floats from opset 11" in report.declined[0].reason
