"""decompose_attention: Attention (opset 23), which X2Paddle 1.6.0 does not map, rewritten into
MatMul/Softmax/elementwise ops. One model holds the variants (4-D and 3-D inputs, GQA, causal
with a kv cache, bool and float masks with a fully masked row, softcap, scale, the
qk_matmul_output modes), so X2Paddle converts once."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_attention import ATTENTION_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

MODEL = """
    <ir_version: 10, opset_import: ["" : 23]>
    g (float[2, 4, 3, 8] q, float[2, 2, 5, 8] k, float[2, 2, 5, 6] v, bool[3, 7] bm, float[2, 2, 2, 8] pk,
       float[2, 2, 2, 6] pv, float[2, 3, 16] q3, float[2, 5, 8] k3, float[2, 5, 8] v3, float[2, 1, 3, 5] fm)
      => (float[2, 4, 3, 6] y, float[2, 2, 7, 8] prk, float[2, 2, 7, 6] prv, float[2, 4, 3, 7] qk,
          float[2, 3, 16] y3, float[2, 4, 3, 5] qk3, float[2, 4, 3, 6] yc, float[2, 4, 3, 5] qk0) {
        y, prk, prv, qk = Attention <is_causal = 1, qk_matmul_output_mode = 2> (q, k, v, bm, pk, pv)
        y3, a, b, qk3 = Attention <q_num_heads = 4, kv_num_heads = 2, softcap = 2.0, scale = 0.3,
                                   qk_matmul_output_mode = 3> (q3, k3, v3, fm)
        yc, c, d, qk0 = Attention <is_causal = 1> (q, k, v)
    }"""


def feeds() -> dict[str, np.ndarray]:
    def f(*shape):
        return RNG.standard_normal(shape).astype(np.float32)

    bm = RNG.random((3, 7)) > 0.4
    bm[1] = False  # a fully masked row: ONNX gives 0 there, a plain softmax NaN
    fm = f(2, 1, 3, 5)
    fm[0, 0, 2] = -np.inf  # fully masked by a float mask
    return dict(q=f(2, 4, 3, 8), k=f(2, 2, 5, 8), v=f(2, 2, 5, 6), bm=bm, pk=f(2, 2, 2, 8), pv=f(2, 2, 2, 6),
                q3=f(2, 3, 16), k3=f(2, 5, 8), v3=f(2, 5, 8), fm=fm)


def test_attention_converts_after_decomposition(tmp_path):
    model, inputs = parse_model(MODEL), feeds()
    with pytest.raises(UnsupportedModel, match=r"no mapping for op type Attention \(3 node"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, ATTENTION_PATCHES)
    assert report.fired_counts() == {"decompose_attention": 3}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(15)
    onnx.checker.check_model(patched, full_check=True)
    names = [o.name for o in model.graph.output]
    reference = dict(zip(names, ReferenceEvaluator(model).run(None, inputs)))
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    for name in names:
        assert after[name].shape == reference[name].shape, name
        np.testing.assert_allclose(after[name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name)
        if name != "qk":  # ORT writes mode 2's masked scores finite, ONNX's reference -inf
            np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert (reference["y"][:, :, 1] == 0).all() and (reference["y3"][0, 2] == 0).all()  # masked rows hit

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in names:
        assert got[name].shape == reference[name].shape, name
        np.testing.assert_allclose(got[name], reference[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_short_mask_padded_as_onnx_reference():
    # ORT refuses an attn_mask shorter than the total kv length; ONNX pads it with "masked"
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 23]>
        g (float[1, 2, 3, 4] q, float[1, 2, 5, 4] k, float[1, 2, 5, 4] v, float[3, 3] m, bool[1, 3] bm)
          => (float[1, 2, 3, 4] y, float[1, 2, 3, 4] yb) {
            y = Attention <is_causal = 1> (q, k, v, m)
            yb = Attention (q, k, v, bm)
        }""")
    inputs = {n: RNG.standard_normal(s).astype(np.float32)
              for n, s in (("q", (1, 2, 3, 4)), ("k", (1, 2, 5, 4)), ("v", (1, 2, 5, 4)), ("m", (3, 3)))}
    inputs["bm"] = np.array([[True, False, True]])
    patched, report = apply_patches(model, ATTENTION_PATCHES)
    assert report.fired_counts() == {"decompose_attention": 2}
    expected = ReferenceEvaluator(model).run(None, inputs)
    got = ReferenceEvaluator(patched).run(None, inputs)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_declines():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 23]>
        g (float[N, 2, 3, 4] q, float[N, 2, 5, 4] k, float[N, 2, 5, 4] v,
           float[1, 3, 4] q3, float[1, 5, 4] k3, float[1, 5, 4] v3,
           float[1, 3, 3, 4] qg, float[1, 2, 5, 4] kg, float[1, 2, 5, 4] vg) => (float[N, 2, 3, 4] y, float[1, 3, 4] y3, float[1, 3, 3, 4] yg) {
            [dynamic] y = Attention (q, k, v)
            [no_heads] y3 = Attention (q3, k3, v3)
            [gqa_uneven] yg = Attention (qg, kg, vg)
        }""")
    _, report = apply_patches(model, (PATCHES_BY_NAME["decompose_attention"],))
    assert report.fired == []
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("dynamic", "input 'q' shape not static (['N', 2, 3, 4])"),
        ("gqa_uneven", "q heads 3 not a multiple of kv heads 2"),
        ("no_heads", "3-D inputs without q_num_heads/kv_num_heads"),
    ]


def test_sliding_window_and_nonpad_kv_seqlen(tmp_path):
    # opset 25: per-batch kv lengths (padding hidden, causal/window frontiers moved to n - q_len,
    # a row left empty by n < q_len) and a sliding window with a kv cache
    model = parse_model("""
        <ir_version: 11, opset_import: ["" : 25]>
        g (float[3, 2, 4, 8] q, float[3, 2, 6, 8] k, float[3, 2, 6, 8] v, int64[3] n,
           float[3, 2, 2, 8] pk, float[3, 2, 2, 8] pv, bool[4, 8] m)
          => (float[3, 2, 4, 8] yn, float[3, 2, 4, 8] yw) {
            yn = Attention <is_causal = 1, left_window_size = 2> (q, k, v, , , , n)
            yw, c, d = Attention <left_window_size = 1, right_window_size = 0> (q, k, v, m, pk, pv)
        }""")
    inputs = {name: RNG.standard_normal(shape).astype(np.float32) for name, shape in (
        ("q", (3, 2, 4, 8)), ("k", (3, 2, 6, 8)), ("v", (3, 2, 6, 8)), ("pk", (3, 2, 2, 8)), ("pv", (3, 2, 2, 8)))}
    inputs["n"] = np.array([6, 3, 2], dtype=np.int64)
    inputs["m"] = RNG.random((4, 8)) > 0.2
    patched, report = apply_patches(model, ATTENTION_PATCHES)
    assert report.fired_counts() == {"decompose_attention": 2}
    expected = dict(zip(["yn", "yw"], ReferenceEvaluator(model).run(None, inputs)))
    assert (expected["yn"][2, :, 0] == 0).all()  # query 0 of batch 2 sits before every key
    after = run_ort(patched, inputs, tmp_path)
    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in expected:
        np.testing.assert_allclose(after[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_rotary_embedding_converts_after_decomposition(tmp_path):
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 23]>
        g (float[2, 3, 4, 8] x, float[10, 4] cos, float[10, 4] sin, int64[2, 4] p,
           float[2, 4, 12] x3, float[2, 4, 2] cb, float[2, 4, 2] sb)
          => (float[2, 3, 4, 8] y, float[2, 3, 4, 8] yi, float[2, 4, 12] y3, float[2, 4, 12] y3i) {
            y = RotaryEmbedding (x, cos, sin, p)
            yi = RotaryEmbedding <interleaved = 1> (x, cos, sin, p)
            y3 = RotaryEmbedding <num_heads = 2, rotary_embedding_dim = 4> (x3, cb, sb)
            y3i = RotaryEmbedding <num_heads = 2, rotary_embedding_dim = 4, interleaved = 1> (x3, cb, sb)
        }""")
    angles = RNG.random((10, 4)) * 6
    inputs = {"x": RNG.standard_normal((2, 3, 4, 8)).astype(np.float32),
              "cos": np.cos(angles).astype(np.float32), "sin": np.sin(angles).astype(np.float32),
              "p": RNG.integers(0, 10, (2, 4)).astype(np.int64),
              "x3": RNG.standard_normal((2, 4, 12)).astype(np.float32),
              "cb": RNG.standard_normal((2, 4, 2)).astype(np.float32),
              "sb": RNG.standard_normal((2, 4, 2)).astype(np.float32)}
    with pytest.raises(UnsupportedModel, match=r"no mapping for op type RotaryEmbedding \(4 node"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")
    patched, report = apply_patches(model, ATTENTION_PATCHES)
    assert report.fired_counts() == {"decompose_rotary_embedding": 4}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(15)
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    after = run_ort(patched, inputs, tmp_path)
    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(got[name], before[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_rotary_embedding_declines_dynamic_and_odd_dims():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 23]>
        g (float[N, 3, 4, 8] x, float[10, 4] c, float[10, 4] s, int64[N, 4] p,
           float[1, 4, 12] x3, float[1, 4, 2] cb, float[1, 4, 2] sb) => (float[N, 3, 4, 8] y, float[1, 4, 12] y3) {
            [dynamic] y = RotaryEmbedding (x, c, s, p)
            [odd] y3 = RotaryEmbedding <num_heads = 2, rotary_embedding_dim = 3> (x3, cb, sb)
        }""")
    _, report = apply_patches(model, (PATCHES_BY_NAME["decompose_rotary_embedding"],))
    assert report.fired == []
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("dynamic", "input 'x' shape not static (['N', 3, 4, 8])"),
        ("odd", "rotary_embedding_dim 3 (even, at most the head size 6)"),
    ]
