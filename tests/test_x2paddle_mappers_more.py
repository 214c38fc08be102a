"""The mapper fixes in bridge.patches.x2paddle_mappers_more, registered as X2Paddle shims.

Per fix: a tiny graph that X2Paddle 1.6.0 fails on (or converts wrongly) without it (a fresh
interpreter with every other shim applied, X2Paddle called directly) and that, with every shim
(bridge's convert stage), converts and matches ONNX Runtime in Paddle Inference.
"""
from __future__ import annotations

import numpy as np
import pytest

from bridge.runners import PaddleInferenceRunner
from tests.helpers import parse_model, run_ort
from tests.test_x2paddle_mapper_fixes import _assert_matches, _without, _x


def _paddle_without(model, tmp_path, shim: str, inputs: list[str], outputs: list[str], feeds) -> dict:
    """Convert without ``shim`` (it must convert) and run the result in Paddle Inference."""
    proc, out = _without(model, tmp_path, shim)
    assert "CONVERTED" in proc.stdout, out[-3000:]
    runner = PaddleInferenceRunner(tmp_path / "without", {n: f"x2paddle_{n}" for n in inputs}, outputs)
    return runner.run(feeds)


# --------------------------------------------------------------------------- multi_output_graph_outputs, topk_values_readers

# Indices (output 1) and Split's second part are graph outputs; Values is read by a node too.
TOPK_SPLIT = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[3, 5] x, int64[1] k) => (float[3, K] doubled, int64[3, K] indices, float[2, 5] p0, float[1, 5] p1)
  <int64[2] sizes = {2, 1}> {
    values, indices = TopK <axis = 1, largest = 0> (x, k)
    doubled = Abs (values)
    p0, p1 = Split <axis = 0> (x, sizes)
}
"""


def test_second_output_as_graph_output_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[3, 5] x, int64[1] k) => (float[3, K] values, int64[3, K] indices) {
            values, indices = TopK <axis = 1> (x, k)
        }""")
    # topk_stable_ties left out too: X2Paddle's own TopK renames the first output, not the second.
    proc, out = _without(model, tmp_path, "multi_output_graph_outputs", "topk_stable_ties")
    assert "FAILED" in proc.stdout and "name 'x2paddle_indices' is not defined" in out, out[-3000:]


def test_topk_values_read_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[3, 5] x, int64[1] k) => (float[3, K] y) {
            values, indices = TopK <axis = 1> (x, k)
            y = Abs (values)
        }""")
    proc, out = _without(model, tmp_path, "topk_values_readers", "topk_stable_ties")  # both name Values right
    assert "FAILED" in proc.stdout and "Couldn't find x2paddle_values in previous layers" in out, out[-3000:]


def test_topk_and_split_outputs_match_onnx_runtime(tmp_path):
    feeds = {"x": _x(3, 5), "k": np.array([2], np.int64)}
    _assert_matches(parse_model(TOPK_SPLIT), feeds, tmp_path)


# --------------------------------------------------------------------------- argmax_defaults

ARGMAX = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[3, 4] x, float[4] v) => (int64[1, 4] first, int64[3] rows, int64[1, 4] last, int64 last_v) {
    first = ArgMax (x)
    rows = ArgMax <axis = -1, keepdims = 0> (x)
    last = ArgMax <select_last_index = 1> (x)
    last_v = ArgMax <keepdims = 0, select_last_index = 1> (v)
}
"""


def test_argmax_default_axis_is_wrong_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[3, 4] x) => (int64[1, 4] y) { y = ArgMax (x) }""")
    got = _paddle_without(model, tmp_path, "argmax_defaults", ["x"], ["y"], {"x": _x(3, 4)})["y"]
    assert run_ort(model, {"x": _x(3, 4)}, tmp_path)["y"].shape == (1, 4)
    assert got.size == 1  # the argmax of the flattened input


def test_argmax_forms_match_onnx_runtime(tmp_path):
    # Ties, so that select_last_index picks another index than the first.
    x = np.array([[1, 5, 2, 2], [3, 5, 2, 0], [3, 1, 2, 0]], np.float32)
    v = np.array([4, 1, 4, 0], np.float32)
    expected = run_ort(parse_model(ARGMAX), {"x": x, "v": v}, tmp_path)
    assert (expected["last"] != expected["first"]).any()  # the ties are there
    _assert_matches(parse_model(ARGMAX), {"x": x, "v": v}, tmp_path)


# --------------------------------------------------------------------------- gemm_all_forms

GEMM = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[3, 5] a, float[4, 5] b, float[3, 4] c, float[4] d) => (float[3, 4] all, float[3, 4] no_c, float[3, 4] beta) {
    all = Gemm <alpha = 0.25, beta = 0.35, transB = 1> (a, b, c)
    no_c = Gemm <alpha = 2.0, transB = 1> (a, b)
    beta = Gemm <beta = 3.0, transB = 1> (a, b, d)
}
"""


def test_gemm_alpha_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[3, 5] a, float[5, 4] b, float[3, 4] c) => (float[3, 4] y) { y = Gemm <alpha = 0.5> (a, b, c) }""")
    proc, out = _without(model, tmp_path, "gemm_all_forms")
    assert "FAILED" in proc.stdout and "unhashable type: 'dict'" in out, out[-3000:]


def test_gemm_forms_match_onnx_runtime(tmp_path):
    feeds = {"a": _x(3, 5), "b": _x(4, 5) + 1, "c": _x(3, 4) - 1, "d": _x(4)}
    _assert_matches(parse_model(GEMM), feeds, tmp_path)


# --------------------------------------------------------------------------- split_tensor_sizes

SPLIT = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[2, 6] x, int64[3] sizes) => (float[2, A] p0, float[2, B] p1, float[2, C] p2) {
    p0, p1, p2 = Split <axis = -1> (x, sizes)
}
"""


def test_split_sizes_input_is_wrong_without_the_fix(tmp_path):
    feeds = {"x": _x(2, 6), "sizes": np.array([1, 2, 3], np.int64)}
    # X2Paddle's model has no input ``sizes``: it never reads it.
    got = _paddle_without(parse_model(SPLIT), tmp_path, "split_tensor_sizes", ["x"], ["p0", "p1", "p2"],
                          {"x": feeds["x"]})
    assert [got[p].shape for p in ("p0", "p1", "p2")] == [(2, 2)] * 3  # equal parts


def test_split_sizes_input_matches_onnx_runtime(tmp_path):
    feeds = {"x": _x(2, 6), "sizes": np.array([1, 2, 3], np.int64)}
    _assert_matches(parse_model(SPLIT), feeds, tmp_path)


# --------------------------------------------------------------------------- squeeze_unsqueeze_tensor_axes

AXES = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[1, 3, 1, 5] x, int64[1] sq, int64[3] unsq) => (float[1, 3, 5] squeezed, float[1, 1, 3, 1, 5, 1] unsqueezed,
                                                      float[3, 5] all) {
    squeezed = Squeeze (x, sq)
    unsqueezed = Unsqueeze (squeezed, unsq)
    all = Squeeze (x)
}
"""


def test_squeeze_axes_input_is_wrong_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[1, 3, 1, 5] x, int64[1] axes) => (float[1, 3, 5] y) { y = Squeeze (x, axes) }""")
    feeds = {"x": _x(1, 3, 1, 5), "axes": np.array([-2], np.int64)}
    # X2Paddle's model has no input ``axes``: it never reads it.
    got = _paddle_without(model, tmp_path, "squeeze_unsqueeze_tensor_axes", ["x"], ["y"], {"x": feeds["x"]})["y"]
    assert got.shape == (3, 5)  # every size-1 axis dropped


def test_squeeze_unsqueeze_axes_inputs_match_onnx_runtime(tmp_path):
    feeds = {"x": _x(1, 3, 1, 5), "sq": np.array([-2], np.int64), "unsq": np.array([5, -3, 1], np.int64)}
    _assert_matches(parse_model(AXES), feeds, tmp_path)


# --------------------------------------------------------------------------- dropout

# Each Dropout on its own input: Paddle Inference loses fetch targets when two outputs are copies
# of one feed ("The variable named fetch_name_0 is not found"), which is not what this is about.
DROPOUT = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 4] x, float[N, 4] x2, float[N, 4] x3, float r, bool t)
    => (float[N, 4] y, bool[N, 4] mask, float[N, 4] y2, float[N, 4] y3, bool[N, 4] m3) {
    y, mask = Dropout (x, r)
    y2 = Dropout (x2)
    y3, m3 = Dropout (x3, r, t)
}
"""


def test_dropout_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 4] x) => (float[N, 4] y) { y = Dropout (x) }""")
    proc, out = _without(model, tmp_path, "dropout")
    assert "FAILED" in proc.stdout and "Model is not supported yet" in out, out[-3000:]


@pytest.mark.parametrize("ratio, training", [(0.5, False), (0.0, True)], ids=["inference", "training-ratio-0"])
def test_dropout_matches_onnx_runtime(tmp_path, ratio, training):
    feeds = {"x": _x(3, 4), "x2": _x(3, 4) + 1, "x3": _x(3, 4) - 1, "r": np.array(ratio, np.float32),
             "t": np.array(training)}
    _assert_matches(parse_model(DROPOUT), feeds, tmp_path)


def test_dropout_training_drops_and_scales(tmp_path):
    from tests.helpers import convert_and_run_paddle

    x = np.abs(_x(64, 4)) + 1  # no zeros of its own
    feeds = {"x": _x(64, 4), "x2": _x(64, 4), "x3": x, "r": np.array(0.5, np.float32), "t": np.array(True)}
    got = convert_and_run_paddle(parse_model(DROPOUT), feeds, tmp_path)
    y3, m3 = got["y3"], got["m3"]
    assert m3.dtype == np.bool_ and 0 < m3.sum() < m3.size  # some dropped, some kept
    np.testing.assert_allclose(y3[m3], x[m3] * 2, rtol=1e-6)  # kept / (1 - 0.5)
    assert (y3[~m3] == 0).all()


# --------------------------------------------------------------------------- expand_tensor_shape, div_integers, topk_stable_ties


def test_expand_shape_input_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[3, 1] x, int64[3] s) => (float[A, 3, B] y) { y = Expand (x, s) }""")
    proc, out = _without(model, tmp_path, "expand_tensor_shape")
    assert "FAILED" in proc.stdout and "name 'x2paddle_s' is not defined" in out, out[-3000:]


def test_div_integers_are_floats_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (int32[6] a, int32[6] b) => (int32[6] q) { q = Div (a, b) }""")
    feeds = {"a": np.array([-7, 7, -7, 7, 6, -6], np.int32), "b": np.array([2, 2, -2, -2, 3, 4], np.int32)}
    got = _paddle_without(model, tmp_path, "div_integers", ["a", "b"], ["q"], feeds)["q"]
    assert got.dtype == np.float32


def test_topk_ties_are_reordered_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[1, 6] x) => (float[1, 3] v, int64[1, 3] i) <int64[1] k = {3}> { v, i = TopK (x, k) }""")
    feeds = {"x": np.array([[0, 1, 1, 1, 0, 2]], np.float32)}
    got = _paddle_without(model, tmp_path, "topk_stable_ties", ["x"], ["v", "i"], feeds)["i"]
    assert got.tolist() != run_ort(model, feeds, tmp_path)["i"].tolist()


MORE = """
<ir_version: 8, opset_import: ["" : 14]>
g (float[3, 1] x, int64[3] s, int32[6] a, int32[6] b, int8[6] a8, int8[6] b8, float[6] f, float[2, 6] t, int64[1] k)
    => (float[A, 3, B] expanded, int32[6] q, int8[6] q8, float[6] fq, float[2, K] top, int64[2, K] top_i,
        float[K2, 6] low, int64[K2, 6] low_i) {
    expanded = Expand (x, s)
    q = Div (a, b)
    q8 = Div (a8, b8)
    fq = Div (f, f)
    top, top_i = TopK <axis = -1> (t, k)
    low, low_i = TopK <axis = 0, largest = 0> (t, k)
}
"""


def test_expand_div_topk_match_onnx_runtime(tmp_path):
    t = np.array([[0, 1, 1, 1, 0, 2], [3, 3, -1, 3, 3, 3]], np.float32)
    feeds = {"x": _x(3, 1), "s": np.array([2, 1, 6], np.int64),
             "a": np.array([-7, 7, -7, 7, 6, -6], np.int32), "b": np.array([2, 2, -2, -2, 3, 4], np.int32),
             "a8": np.array([-128, 127, -5, 5, 0, -1], np.int8), "b8": np.array([3, -4, 2, -2, 5, 1], np.int8),
             "f": _x(6) + 3, "t": t, "k": np.array([2], np.int64)}
    _assert_matches(parse_model(MORE), feeds, tmp_path)


# --------------------------------------------------------------------------- scatter_nd_reduction

SCATTER = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[4, 3, 2] x, int64[3, 1] rows, float[3, 3, 2] u, int64[2, 3] cells, float[2] v)
    => (float[4, 3, 2] sum, float[4, 3, 2] prod, float[4, 3, 2] hi, float[4, 3, 2] lo) {
    sum = ScatterND <reduction = "add"> (x, rows, u)
    prod = ScatterND <reduction = "mul"> (x, rows, u)
    hi = ScatterND <reduction = "max"> (x, cells, v)
    lo = ScatterND <reduction = "min"> (x, cells, v)
}
"""


def _scatter_feeds() -> dict[str, np.ndarray]:
    # Row 2 twice and cell (1, 2, 0) twice: duplicates are reduced one after another.
    return {"x": _x(4, 3, 2), "rows": np.array([[2], [0], [2]], np.int64), "u": _x(3, 3, 2) + 1,
            "cells": np.array([[1, 2, 0], [1, 2, 0]], np.int64), "v": np.array([5.0, -5.0], np.float32)}


def test_scatter_nd_reduction_is_ignored_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[4, 3, 2] x, int64[3, 1] rows, float[3, 3, 2] u) => (float[4, 3, 2] y) {
            y = ScatterND <reduction = "add"> (x, rows, u)
        }""")
    feeds = {k: v for k, v in _scatter_feeds().items() if k in ("x", "rows", "u")}
    got = _paddle_without(model, tmp_path, "scatter_nd_reduction", ["x", "rows", "u"], ["y"], feeds)["y"]
    assert not np.allclose(got, run_ort(model, feeds, tmp_path)["y"], atol=1e-3)


def test_scatter_nd_reductions_match_onnx_runtime(tmp_path):
    _assert_matches(parse_model(SCATTER), _scatter_feeds(), tmp_path)


# --------------------------------------------------------------------------- narrow_max_min_mod

NARROW = """
<ir_version: 8, opset_import: ["" : 13]>
g (int8[6] a, int8[6] b, float16[6] h, float16[6] h2, uint8[6] u, uint8[6] u2, int32[6] i, int32[6] j)
    => (int8[6] max8, float16[6] min16, uint8[6] mod_u8, int8[6] fmod8, int32[6] fmod32, float16[6] fmod16) {
    max8 = Max (a, b)
    min16 = Min (h, h2)
    mod_u8 = Mod (u, u2)
    fmod8 = Mod <fmod = 1> (a, b)
    fmod32 = Mod <fmod = 1> (i, j)
    fmod16 = Mod <fmod = 1> (h, h2)
}
"""


def test_max_int8_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (int8[6] a, int8[6] b) => (int8[6] y) { y = Max (a, b) }""")
    proc, out = _without(model, tmp_path, "narrow_max_min_mod")
    assert "FAILED" in proc.stdout and "y.dtype: int8" in out, out[-3000:]


def test_integer_fmod_is_floor_mod_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (int32[4] a, int32[4] b) => (int32[4] y) { y = Mod <fmod = 1> (a, b) }""")
    feeds = {"a": np.array([-7, 7, -7, 7], np.int32), "b": np.array([3, -3, -3, 3], np.int32)}
    got = _paddle_without(model, tmp_path, "narrow_max_min_mod", ["a", "b"], ["y"], feeds)["y"]
    assert got.tolist() != run_ort(model, feeds, tmp_path)["y"].tolist()


def test_narrow_max_min_mod_match_onnx_runtime(tmp_path):
    signed = np.array([-7, 7, -7, 7, 6, -128], np.int8), np.array([3, -3, -3, 3, 4, 5], np.int8)
    feeds = {"a": signed[0], "b": signed[1],
             "h": np.array([-7.5, 7, -7, 7.25, 6, 1], np.float16), "h2": np.array([3, -3, -2.5, 3, 4, 5], np.float16),
             "u": np.array([7, 200, 0, 9, 255, 1], np.uint8), "u2": np.array([3, 7, 5, 9, 16, 1], np.uint8),
             "i": signed[0].astype(np.int32), "j": signed[1].astype(np.int32)}
    _assert_matches(parse_model(NARROW), feeds, tmp_path)


# --------------------------------------------------------------------------- maxpool_indices

POOL = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[2, 3, 5, 6] x) => (float[2, 3, 3, 3] y, int64[2, 3, 3, 3] i, float[2, 3, 5, 6] y2, int64[2, 3, 5, 6] i2) {
    y, i = MaxPool <kernel_shape = [3, 2], strides = [2, 2], pads = [1, 0, 1, 0]> (x)
    y2, i2 = MaxPool <kernel_shape = [3, 3], strides = [1, 1], pads = [1, 1, 1, 1], storage_order = 1> (x)
}
"""


def test_maxpool_indices_fail_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[1, 1, 4, 4] x) => (float[1, 1, 2, 2] y, int64[1, 1, 2, 2] z) {
            y, z = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)
        }""")
    proc, out = _without(model, tmp_path, "maxpool_indices")
    assert "FAILED" in proc.stdout and "name 'x2paddle_z' is not defined" in out, out[-3000:]


def test_maxpool_indices_match_onnx_runtime(tmp_path):
    _assert_matches(parse_model(POOL), {"x": _x(2, 3, 5, 6)}, tmp_path)


# --------------------------------------------------------------------------- gather_nd_batch_dims

GATHER_ND = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[2, 3, 4] x, int64[2, 2, 1] i1, int64[2, 3, 1] i2) => (float[2, 2, 4] b1, float[2, 3] b2) {
    b1 = GatherND <batch_dims = 1> (x, i1)
    b2 = GatherND <batch_dims = 2> (x, i2)
}
"""


def test_gather_nd_batch_dims_is_ignored_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[2, 3, 4] x, int64[2, 1] i) => (float[2, 4] y) { y = GatherND <batch_dims = 1> (x, i) }""")
    feeds = {"x": _x(2, 3, 4), "i": np.array([[1], [0]], np.int64)}  # in range for dim 0 too
    got = _paddle_without(model, tmp_path, "gather_nd_batch_dims", ["x", "i"], ["y"], feeds)["y"]
    assert got.shape != run_ort(model, feeds, tmp_path)["y"].shape


def test_gather_nd_batch_dims_match_onnx_runtime(tmp_path):
    feeds = {"x": _x(2, 3, 4), "i1": np.array([[[2], [0]], [[1], [1]]], np.int64),
             "i2": np.array([[[3], [0], [1]], [[2], [2], [0]]], np.int64)}
    _assert_matches(parse_model(GATHER_ND), feeds, tmp_path)


# --------------------------------------------------------------------------- idempotence


def test_shims_are_idempotent():
    from bridge.patches import x2paddle_mappers_more as more
    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()
    from x2paddle.op_mapper.onnx2paddle import onnx_op_mapper, opset13, opset_legacy

    applies = (more.multi_output_graph_outputs, more.topk_values_readers, more.argmax_defaults, more.gemm_all_forms, more.split_tensor_sizes,
               more.squeeze_unsqueeze_tensor_axes, more.dropout, more.expand_tensor_shape, more.div_integers,
               more.topk_stable_ties, more.scatter_nd_reduction,
               more.narrow_max_min_mod, more.maxpool_indices, more.gather_nd_batch_dims)
    for apply in applies:
        apply()
    ops = ("TopK", "ArgMax", "Gemm", "Split", "Squeeze", "Dropout", "Expand", "Div", "ScatterND", "Max", "Min",
           "MaxPool", "GatherND")
    before = {op: getattr(opset_legacy.OpSet, op) for op in ops}
    before_init, before_unsqueeze = onnx_op_mapper.ONNXOpMapper.__init__, opset13.OpSet13.Unsqueeze
    for apply in applies:
        apply()
    assert {op: getattr(opset_legacy.OpSet, op) for op in ops} == before
    assert onnx_op_mapper.ONNXOpMapper.__init__ is before_init is more._mapper_init
    assert opset13.OpSet13.Unsqueeze is before_unsqueeze and before_unsqueeze.__wrapped__ is more._map_unsqueeze
    assert more._split_before is not more._map_split and more._squeeze_before is not more._map_squeeze
    assert more._topk_before is not more._map_topk and more._expand_before is not more._map_expand
    assert opset_legacy.OpSet.TopK.__wrapped__ is more._map_topk_stable
    assert more._mod_before is not more._map_mod and more._max_min_before["Max"] is not more._map_max_min
