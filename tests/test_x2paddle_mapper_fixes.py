"""The mapper fixes (bridge.patches.x2paddle_mapper_fixes), registered as X2Paddle shims.

Per fix: a tiny graph that X2Paddle 1.6.0 fails on without it (a fresh interpreter with every
other shim applied, X2Paddle called directly) and that, with every shim (bridge's convert
stage), converts and matches ONNX Runtime in Paddle Inference.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import convert_and_run_paddle, parse_model, run_ort, save
from tests.test_x2paddle_shims import APPLY_SHIMS, child, run_py

# Every shim but the named ones (comma-separated argv[3]), then X2Paddle on argv[1].
WITHOUT = child(APPLY_SHIMS, """
    import sys, traceback
    left_out = set(sys.argv[3].split(","))
    apply(*(s.name for s in shims.SHIMS if s.name not in left_out))
    from x2paddle.convert import onnx2paddle
    try:
        onnx2paddle(sys.argv[1], sys.argv[2], disable_feedback=True)
    except BaseException:
        traceback.print_exc()  # the mapper's own error is the chained cause
        print("FAILED")
    else:
        print("CONVERTED")
""")


def _without(model, tmp_path, *shims: str):
    proc = run_py(WITHOUT, save(model, tmp_path / "without.onnx"), tmp_path / "without", ",".join(shims),
                  cwd=tmp_path)
    return proc, proc.stdout + proc.stderr


def _assert_matches(model, feeds, tmp_path) -> None:
    got = convert_and_run_paddle(model, feeds, tmp_path)
    expected = run_ort(model, feeds, tmp_path)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape, (name, got[name].shape, value.shape)
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def _x(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# --------------------------------------------------------------------------- reduce_tensor_axes

REDUCE_18 = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[N, 3, 4] x, int64[1] a, int64[2] b, int64[0] none) =>
  (float[N, 4] mean, float[N, 1, 1] max, float[N] min, float[N, 1, 4] prod, float[N, 3, 4] noop,
   float[N, 3] sum, float[N, 3, 4] sum_noop, float sum_all) {
    mean = ReduceMean <keepdims = 0> (x, a)
    max = ReduceMax (x, b)
    min = ReduceMin <keepdims = 0> (x, b)
    prod = ReduceProd <keepdims = 1> (x, a)
    noop = ReduceMax <noop_with_empty_axes = 1> (x, none)
    a2 = Add (a, a)
    sum = ReduceSum <keepdims = 0> (x, a2)
    neg = Neg (x)
    sum_noop = ReduceSum <noop_with_empty_axes = 1> (neg, none)
    sum_all = ReduceSum <keepdims = 0> (x, none)
}
"""


def _reduce_feeds() -> dict[str, np.ndarray]:
    return {"x": _x(2, 3, 4), "a": np.array([1], np.int64), "b": np.array([-1, 1], np.int64),
            "none": np.zeros(0, np.int64)}


def test_reduce_axes_input_fails_without_the_fix(tmp_path):
    """ReduceMean/Min/Prod go through the same directly_map: one subprocess shows it."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[N, 3, 4] x, int64[1] a) => (float[N, 4] y) { y = ReduceMax <keepdims = 0> (x, a) }
    """)
    proc, out = _without(model, tmp_path, "reduce_tensor_axes")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "AssertionError: directly_map error with multi inputs" in out


def test_reduce_sum_computed_axes_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3, 4] x, int64[1] a) => (float[N, 4] y) { y = ReduceSum <keepdims = 0> (x, a) }
    """)
    proc, out = _without(model, tmp_path, "reduce_sum_tensor_axes")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "ValueError: ReduceSum axes 'x2paddle_a' is computed: X2Paddle needs it constant" in out


def test_reduce_tensor_axes_match_onnx_runtime(tmp_path):
    """Axes as graph inputs and computed (Add), keepdims 0/1/default, empty axes with and
    without noop_with_empty_axes: one conversion. (Two noops of the same x fail in Paddle
    Inference, "fetch_name_N is not found in the scope", with or without this fix.)"""
    _assert_matches(parse_model(REDUCE_18), _reduce_feeds(), tmp_path)


def test_reduce_constant_axes_and_default_keepdims(tmp_path):
    """The forms directly_map handled keep working; without ``keepdims`` (ONNX: 1) ReduceMax
    failed in directly_map (its defaults table says ``keepdim``)."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3, 4] x) => (float[N, 1, 4] max, float[N, 4] mean, float[1, 1, 1] prod) {
            max = ReduceMax <axes = [1]> (x)
            mean = ReduceMean <axes = [-2], keepdims = 0> (x)
            prod = ReduceProd (x)
        }
    """)
    _assert_matches(model, {"x": _x(2, 3, 4)}, tmp_path)


def test_noop_with_axes_of_unknown_length_is_refused_naming_the_node(tmp_path):
    from bridge.errors import UnsupportedModel
    from bridge.stages import convert as convert_stage

    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[N, 3] x, int64[K] a) => (float[N, 3] y) { y = ReduceMax <noop_with_empty_axes = 1> (x, a) }
    """)
    with pytest.raises(UnsupportedModel, match=r"ReduceMax.*unknown length.*noop_with_empty_axes"):
        convert_stage.run(save(model, tmp_path / "m.onnx"), tmp_path / "paddle", tmp_path / "convert.log")


def test_shims_are_idempotent():
    from bridge.patches import x2paddle_mapper_fixes as fixes
    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()  # before importing X2Paddle's mappers (onnx.mapping)
    from x2paddle.op_mapper.onnx2paddle import opset_legacy
    from x2paddle.op_mapper.onnx2paddle.opset7 import OpSet7

    from x2paddle.decoder.onnx_decoder import ONNXGraphNode

    applies = (fixes.reduce_tensor_axes, fixes.reduce_sum_tensor_axes, fixes.reduce_lp_axes,
               fixes.constant_value_forms, fixes.tensor_attrs_typed_fields, fixes.clip_bounds,
               fixes.conv_kernel_shape, fixes.gather_input_table)
    for apply in applies:
        apply()
    ops = ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceL1", "Constant", "ConstantOfShape", "Clip", "Conv",
           "ConvTranspose", "Gather")
    before = {op: getattr(opset_legacy.OpSet, op) for op in ops}
    before_7, before_attr = OpSet7.ReduceL2, ONNXGraphNode.get_attribute_value
    for apply in applies:
        apply()
    assert {op: getattr(opset_legacy.OpSet, op) for op in before} == before and OpSet7.ReduceL2 is before_7
    assert ONNXGraphNode.get_attribute_value is before_attr is fixes._attribute_value
    assert fixes._constant_before is not None and fixes._attribute_value_before is not fixes._attribute_value
    assert OpSet7.ReduceL2.__wrapped__ is fixes._map_reduce_lp
    assert opset_legacy.OpSet.ReduceSum.__wrapped__ is fixes._map_reduce_sum_tensor_axes


# --------------------------------------------------------------------------- reduce_lp_axes

LP_18 = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[N, 3, 4] x, int64[2] b) => (float[N, 1, 4] l1, float[N] l2, float[N, 1, 1] l2_in, float l1_all)
  <int64[1] a = {1}> {
    l1 = ReduceL1 (x, a)
    l2 = ReduceL2 <keepdims = 0> (x, b)
    l2_in = ReduceL2 <keepdims = 1> (x, b)
    l1_all = ReduceL1 <keepdims = 0> (x)
}
"""


def test_reduce_lp_axes_input_is_ignored_without_the_fix(tmp_path):
    """X2Paddle's ReduceL1 reads only the axes attribute: at opset 18 it reduces every axis."""
    from bridge.runners import PaddleInferenceRunner

    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[N, 3, 4] x) => (float[N, 1, 4] y) <int64[1] a = {1}> { y = ReduceL1 (x, a) }
    """)
    proc, out = _without(model, tmp_path, "reduce_lp_axes")
    assert "CONVERTED" in proc.stdout, out[-3000:]
    got = PaddleInferenceRunner(tmp_path / "without", {"x": "x2paddle_x"}, ["y"]).run({"x": _x(2, 3, 4)})["y"]
    assert run_ort(model, {"x": _x(2, 3, 4)}, tmp_path)["y"].shape == (2, 1, 4)
    assert got.shape == (1, 1, 1)


def test_reduce_lp_matches_onnx_runtime(tmp_path):
    feeds = {"x": _x(2, 3, 4), "b": np.array([2, -2], np.int64)}
    _assert_matches(parse_model(LP_18), feeds, tmp_path)


# --------------------------------------------------------------------------- constant_value_forms, tensor_attrs_typed_fields

CONSTANTS = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3] x) => (float[N, 3] y, float[N, 3] z, float[2, 3] filled, float[2, 3] zeros) {
    two = Constant <value_float = 2.0> ()
    y = Mul (x, two)
    half = Constant <value = float {0.5}> ()
    half_cast = Cast <to = 1> (half)
    z = Add (x, half_cast)
    shape = Constant <value_ints = [2, 3]> ()
    filled = ConstantOfShape <value = float[1] {7}> (shape)
    zeros = ConstantOfShape (shape)
}
"""


def test_constant_value_float_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3] x) => (float[N, 3] y) { two = Constant <value_float = 2.0> () y = Mul (x, two) }
    """)
    proc, out = _without(model, tmp_path, "constant_value_forms")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "AttributeError: 'NoneType' object has no attribute 'dtype'" in out


def test_tensor_attr_in_typed_fields_fails_without_the_fix(tmp_path):
    """As in the ``*_expanded`` cases: a ``value_float`` Constant beside it makes X2Paddle's own
    shape inference give up for ONNX's, which declares the scalar's shape [], and X2Paddle
    reshapes the empty array it read. (Without the declared shape it silently makes a weight of
    shape [0].)"""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 4] x) => (float[N, 4] z) {
            two = Constant <value_float = 2.0> ()
            half = Constant <value = float {0.5}> ()
            half_cast = Cast <to = 1> (half)
            y = Add (x, half_cast)
            z = Mul (y, two)
        }
    """)
    tensor = model.graph.node[1].attribute[0].t
    assert tensor.float_data and not tensor.raw_data
    proc, out = _without(model, tmp_path, "tensor_attrs_typed_fields")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "ValueError: cannot reshape array of size 0 into shape ()" in out


def test_constants_match_onnx_runtime(tmp_path):
    _assert_matches(parse_model(CONSTANTS), {"x": _x(2, 3)}, tmp_path)


# --------------------------------------------------------------------------- clip_bounds

CLIPS = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 4] x, float lo, float hi, int8[N, 4] q, int8 qhi) =>
  (float[N, 4] only_max, float[N, 4] only_min, float[N, 4] both, float[N, 4] const_min, int8[N, 4] narrow) {
    only_max = Clip (x, , hi)
    only_min = Clip (x, lo)
    both = Clip (x, lo, hi)
    c = Constant <value = float {-0.25}> ()
    const_min = Clip (x, c, hi)
    narrow = Clip (q, , qhi)
}
"""


def test_clip_bound_input_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 4] x, float hi) => (float[N, 4] y) { y = Clip (x, , hi) }
    """)
    proc, out = _without(model, tmp_path, "clip_bounds")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "AttributeError: 'NoneType' object has no attribute 'shape'" in out


def test_clip_bounds_match_onnx_runtime(tmp_path):
    rng = np.random.default_rng(1)
    feeds = {"x": _x(3, 4), "lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32),
             "q": rng.integers(-128, 128, (3, 4)).astype(np.int8), "qhi": np.array(20, np.int8)}
    _assert_matches(parse_model(CLIPS), feeds, tmp_path)


# --------------------------------------------------------------------------- conv_kernel_shape

CONVS = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 2, 6, 6] x, float[3, 2, 3, 3] w_in) => (float[N, 3, 4, 4] fixed, float[N, 3, 6, 6] given, float[N, 3, 8, 8] up)
  <float[3, 2, 3, 3] w = {WEIGHTS}, float[2, 3, 3, 3] wt = {WEIGHTS}> {
    fixed = Conv (x, w)
    given = Conv <pads = [1, 1, 1, 1]> (x, w_in)
    up = ConvTranspose (x, wt)
}
"""


def _convs():
    weights = ", ".join(str(v) for v in np.round(_x(54) * 0.5, 3))
    return parse_model(CONVS.replace("{WEIGHTS}", "{" + weights + "}"))


def test_conv_without_kernel_shape_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 1, 5] x) => (float[N, 1, 3] y) <float[1, 1, 3] w = {1, 2, 3}> { y = Conv (x, w) }
    """)
    proc, out = _without(model, tmp_path, "conv_kernel_shape")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "TypeError: object of type 'NoneType' has no len()" in out


def test_convs_without_kernel_shape_match_onnx_runtime(tmp_path):
    feeds = {"x": _x(2, 2, 6, 6), "w_in": np.random.default_rng(2).standard_normal((3, 2, 3, 3)).astype(np.float32)}
    _assert_matches(_convs(), feeds, tmp_path)


# --------------------------------------------------------------------------- gather_input_table

GATHERS = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[5] w, float[5, 3] table, int64[N, 2] idx) => (float[N, 2] picked, float[N, 2, 3] rows) {
    picked = Gather (w, idx)
    rows = Gather <axis = 0> (table, idx)
}
"""


def _gather_feeds() -> dict[str, np.ndarray]:
    return {"w": _x(5), "table": _x(5, 3), "idx": np.array([[0, 4], [2, 2], [3, 1]], np.int64)}


def test_gather_on_input_table_fails_without_the_fix(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[5] w, int64[N, 2] idx) => (float[N, 2] y) { y = Gather (w, idx) }
    """)
    proc, out = _without(model, tmp_path, "gather_input_table")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "IndexError: list index out of range" in out


def test_gathers_match_onnx_runtime(tmp_path):
    _assert_matches(parse_model(GATHERS), _gather_feeds(), tmp_path)


# Constant indices of shape [1, 3] over a weight: BERT's position embeddings once the
# embedding table stays a parameter (X2Paddle's len(indices) == 1 test takes them for one index).
ONE_ROW = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3, 4] x) => (float[N, 3, 4] y)
  <float[10, 4] table = {0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3, 2.0, 2.1, 2.2, 2.3, 3.0, 3.1, 3.2, 3.3,
                         4.0, 4.1, 4.2, 4.3, 5.0, 5.1, 5.2, 5.3, 6.0, 6.1, 6.2, 6.3, 7.0, 7.1, 7.2, 7.3,
                         8.0, 8.1, 8.2, 8.3, 9.0, 9.1, 9.2, 9.3},
   int64[1, 3] positions = {7, 0, 3}> {
    rows = Gather <axis = 0> (table, positions)
    y = Add (x, rows)
}
"""


def test_gather_one_row_constant_indices_fails_without_the_fix(tmp_path):
    proc, out = _without(parse_model(ONE_ROW), tmp_path, "gather_input_table")
    assert "FAILED" in proc.stdout, out[-3000:]
    assert "The last dim of index should be 0 or 1 when it is 2D" in out


def test_gather_one_row_constant_indices_match_onnx_runtime(tmp_path):
    _assert_matches(parse_model(ONE_ROW), {"x": _x(2, 3, 4)}, tmp_path)
