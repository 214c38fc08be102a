"""decompose_losses: NegativeLogLikelihoodLoss, which X2Paddle 1.6.0 does not map, rewritten
into Equal/Where against a class iota and sums. One model holds every reduction, weights and
ignore_index (in and out of the class range), so X2Paddle converts once."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_losses import LOSS_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)


def loss_model(opset: int) -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 10, opset_import: ["" : {opset}]>
        g (float[3, 5, 2] x, int64[3, 2] t, float[5] w)
          => (float[3, 2] none, float total, float mean, float mean_w, float mean_w_ii, float[3, 2] none_ii_out) {{
            none = NegativeLogLikelihoodLoss <reduction = "none"> (x, t)
            total = NegativeLogLikelihoodLoss <reduction = "sum"> (x, t, w)
            mean = NegativeLogLikelihoodLoss (x, t)
            mean_w = NegativeLogLikelihoodLoss (x, t, w)
            mean_w_ii = NegativeLogLikelihoodLoss <ignore_index = 1> (x, t, w)
            none_ii_out = NegativeLogLikelihoodLoss <reduction = "none", ignore_index = -1> (x, t)
        }}""")


def feeds() -> dict[str, np.ndarray]:
    t = RNG.integers(0, 5, (3, 2)).astype(np.int64)
    t[0, 0] = t[2, 1] = 1  # ignore_index 1 occurs
    return {"x": RNG.standard_normal((3, 5, 2)).astype(np.float32), "t": t, "w": RNG.random(5).astype(np.float32)}


@pytest.mark.parametrize("opset", [22, 13])  # sums as MatMul by ones (>= 18), as ReduceMean · count (13..17)
def test_nll_loss_converts_after_decomposition(tmp_path, opset):
    model, inputs = loss_model(opset), feeds()
    with pytest.raises(UnsupportedModel, match="no mapping for op type NegativeLogLikelihoodLoss"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, LOSS_PATCHES)
    assert report.fired_counts() == {"decompose_nll_loss": 6}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(opset)
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    for name in before:
        assert after[name].shape == before[name].shape, name
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in before:
        assert got[name].shape == before[name].shape, name  # scalars stay rank 0
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_declines_dynamic_class_dim_and_dynamic_mean():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 22]>
        g (float[N, C] x, int64[N] t, float[N, 4] z, int64[N] u) => (float[N] a, float b) {
            [dyn_c] a = NegativeLogLikelihoodLoss <reduction = "none"> (x, t)
            [dyn_n] b = NegativeLogLikelihoodLoss (z, u)
        }""")
    _, report = apply_patches(model, (PATCHES_BY_NAME["decompose_nll_loss"],))
    assert report.fired == []
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("dyn_c", "class dim of 'x' not static (shape ['N', 'C'])"),
        ("dyn_n", "reduced dims ['N', 4] not static (needed for a sum at opset 22)"),
    ]


def sce_model(opset: int) -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 10, opset_import: ["" : {opset}]>
        g (float[3, 5, 2] x, int64[3, 2] t, float[5] w, float[4, 5] x2, int64[4] t2)
          => (float[3, 2] none, float[3, 5, 2] log_prob, float mean_w_ii, float total) {{
            none, log_prob = SoftmaxCrossEntropyLoss <reduction = "none"> (x, t)
            mean_w_ii = SoftmaxCrossEntropyLoss <ignore_index = 1> (x, t, w)
            total = SoftmaxCrossEntropyLoss <reduction = "sum"> (x2, t2)
        }}""")


# 13: LogSoftmax over axis 1 directly; 12: C moved last (LogSoftmax flattens after its axis there)
@pytest.mark.parametrize("opset", [13, 12])
def test_softmax_cross_entropy_converts_after_decomposition(tmp_path, opset):
    model, inputs = sce_model(opset), feeds()
    inputs["x2"] = RNG.standard_normal((4, 5)).astype(np.float32)
    inputs["t2"] = RNG.integers(0, 5, 4).astype(np.int64)
    with pytest.raises(UnsupportedModel, match="no mapping for op type SoftmaxCrossEntropyLoss"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, LOSS_PATCHES)
    assert report.fired_counts() == {"decompose_softmax_cross_entropy_loss": 3, "decompose_nll_loss": 3}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(opset)
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    for name in before:
        assert after[name].shape == before[name].shape, name
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in before:
        assert got[name].shape == before[name].shape, name
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_softmax_cross_entropy_declines_what_nll_would():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 22]>
        g (float[N, C] x, int64[N] t) => (float[N] a) {
            [dyn_c] a = SoftmaxCrossEntropyLoss <reduction = "none"> (x, t)
        }""")
    patched, report = apply_patches(model, LOSS_PATCHES)
    assert report.fired == []
    assert [n.op_type for n in patched.graph.node] == ["SoftmaxCrossEntropyLoss"]  # no NLL left behind
    assert [(d.node, d.reason) for d in report.declined] == [("dyn_c", "class dim of 'x' not static (shape ['N', 'C'])")]
