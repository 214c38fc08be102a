"""Tests for bridge.patches.x2paddle_mappers_tensor: the op mappers X2Paddle 1.6.0 lacks.

Pristine X2Paddle (a fresh interpreter with every other shim) maps none of these ops and
bridge refuses the model; with the shim, a few tiny graphs that use every op (several ops per
graph, to keep conversions few) convert and match ONNX Runtime in Paddle Inference, and a form
Paddle cannot compute is refused by node name and reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge.errors import UnsupportedModel
from bridge.patches import x2paddle_mappers_tensor
from bridge.stages import convert as convert_stage
from tests.helpers import convert_and_run_paddle, run_ort

MAPPED = sorted(x2paddle_mappers_tensor.MAPPERS)


def _model(nodes, inputs, outputs, opset: int, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "mappers_tensor", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="bridge-tests")
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _vi(name: str, dtype: int, shape: list[int]):
    return helper.make_tensor_value_info(name, dtype, shape)


def _assert_matches_ort(model, feeds, tmp_path) -> None:
    expected = run_ort(model, feeds, tmp_path / "ort")
    actual = convert_and_run_paddle(model, feeds, tmp_path / "paddle_run")
    assert set(actual) == set(expected)
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_pristine_x2paddle_maps_none_of_them_and_bridge_refuses():
    code = """
        import json
        from bridge.patches import x2paddle_shims
        x2paddle_shims.SHIMS = tuple(s for s in x2paddle_shims.SHIMS if s.name != "mappers_tensor")
        from bridge.errors import UnsupportedModel
        from bridge.stages import convert
        from onnx import helper
        mapped = convert.mapped_op_types(18)
        node = helper.make_node("GridSample", ["x", "g"], ["y"], name="gs")
        graph = helper.make_graph([node], "g", [], [])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        try:
            convert.check_supported(model)
            refused = None
        except UnsupportedModel as exc:
            refused = str(exc)
        print("RESULT", json.dumps({"mapped": sorted(set(%r) & mapped), "refused": refused}))
    """ % (MAPPED,)
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=180, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["mapped"] == []
    assert result["refused"] and "'gs'" in result["refused"] and "GridSample" in result["refused"]


@pytest.mark.parametrize("opset", [11, 15, 18, 20])
def test_shim_makes_every_op_mapped(opset):
    assert set(MAPPED) <= convert_stage.mapped_op_types(opset)


def test_install_is_idempotent_and_keeps_x2paddle_mappers():
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    before = {op: getattr(opset_legacy.OpSet, op) for op in MAPPED}
    x2paddle_mappers_tensor.install()
    assert {op: getattr(opset_legacy.OpSet, op) for op in MAPPED} == before
    assert opset_legacy.OpSet.GridSample.__wrapped__ is x2paddle_mappers_tensor.GridSample


def test_sampling_scatter_pooling_ops_match_ort(tmp_path):
    """GridSample (bilinear/zeros, nearest/border/align_corners, reflection), ScatterElements
    (add with negative indices, max, assign), Compress (axis and flattened), ReverseSequence,
    LpPool (p=3 SAME_UPPER, p=2 explicit pads with strides, p=1 1-D)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("GridSample", ["img", "grid"], ["gs_bilinear"], name="gs_bilinear"),
        helper.make_node("GridSample", ["img", "grid"], ["gs_nearest"], name="gs_nearest", mode="nearest",
                         padding_mode="border", align_corners=1),
        helper.make_node("GridSample", ["img", "grid"], ["gs_reflect"], name="gs_reflect",
                         padding_mode="reflection"),
        helper.make_node("ScatterElements", ["data", "idx", "upd"], ["sc_add"], name="sc_add", axis=1,
                         reduction="add"),
        helper.make_node("ScatterElements", ["data", "idx", "upd"], ["sc_max"], name="sc_max", axis=-1,
                         reduction="max"),
        helper.make_node("ScatterElements", ["data", "idx0", "upd0"], ["sc_set"], name="sc_set"),
        helper.make_node("Compress", ["data", "cond"], ["cp_axis"], name="cp_axis", axis=1),
        helper.make_node("Compress", ["data", "cond"], ["cp_flat"], name="cp_flat"),
        helper.make_node("ReverseSequence", ["seq", "lens"], ["rev"], name="rev", batch_axis=0, time_axis=1),
        helper.make_node("LpPool", ["img"], ["lp_same"], name="lp_same", kernel_shape=[2, 3], p=3,
                         auto_pad="SAME_UPPER"),
        helper.make_node("LpPool", ["img"], ["lp_pads"], name="lp_pads", kernel_shape=[3, 3], strides=[2, 1],
                         pads=[1, 1, 1, 1]),
        helper.make_node("LpPool", ["seq"], ["lp_1d"], name="lp_1d", kernel_shape=[2], p=1),
    ]
    inputs = [
        _vi("img", TensorProto.FLOAT, [2, 3, 5, 6]), _vi("grid", TensorProto.FLOAT, [2, 4, 3, 2]),
        _vi("data", TensorProto.FLOAT, [3, 4]), _vi("idx", TensorProto.INT64, [3, 2]),
        _vi("idx0", TensorProto.INT64, [1, 4]), _vi("upd", TensorProto.FLOAT, [3, 2]),
        _vi("upd0", TensorProto.FLOAT, [1, 4]),
        _vi("cond", TensorProto.BOOL, [3]), _vi("seq", TensorProto.FLOAT, [3, 5, 2]),
        _vi("lens", TensorProto.INT64, [3]),
    ]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes]
    model = _model(nodes, inputs, outputs, opset=18)
    feeds = {
        "img": rng.standard_normal((2, 3, 5, 6)).astype(np.float32),
        "grid": rng.uniform(-1.3, 1.3, (2, 4, 3, 2)).astype(np.float32),
        "data": rng.standard_normal((3, 4)).astype(np.float32),
        "idx": np.array([[0, -1], [2, 1], [-4, 3]], np.int64),  # negative: counted from the end
        "idx0": np.array([[2, 0, 1, -1]], np.int64),
        "upd": rng.standard_normal((3, 2)).astype(np.float32),
        "upd0": rng.standard_normal((1, 4)).astype(np.float32),
        "cond": np.array([True, False, True]),
        "seq": rng.standard_normal((3, 5, 2)).astype(np.float32),
        "lens": np.array([5, 2, 1], np.int64),
    }
    _assert_matches_ort(model, feeds, tmp_path)


def _maxpool_indices(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool(kernel k, stride k) values and ONNX indices (flattened over N, C, H, W)."""
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // k, w // k, k * k)
    arg = windows.argmax(-1)
    rows = np.arange(h // k)[None, None, :, None] * k + arg // k
    cols = np.arange(w // k)[None, None, None, :] * k + arg % k
    plane = (np.arange(n)[:, None, None, None] * c + np.arange(c)[None, :, None, None]) * h * w
    return windows.max(-1), (plane + rows * w + cols).astype(np.int64)


def test_geometry_ops_match_ort(tmp_path):
    """AffineGrid (constant size) into GridSample 'linear' (opset 20 spelling), CenterCropPad
    (crop one axis, pad another), Col2Im with pads/strides, MaxUnpool (N, C > 1), DeformConv
    with bias and mask."""
    rng = np.random.default_rng(1)
    size = numpy_helper.from_array(np.array([2, 3, 4, 5], np.int64), "size")
    crop = numpy_helper.from_array(np.array([3, 8], np.int64), "crop")
    image_shape = numpy_helper.from_array(np.array([5, 6], np.int64), "image_shape")
    block_shape = numpy_helper.from_array(np.array([2, 3], np.int64), "block_shape")
    nodes = [
        helper.make_node("AffineGrid", ["theta", "size"], ["grid"], name="affine"),
        helper.make_node("GridSample", ["img", "grid"], ["sampled"], name="gs_linear", mode="linear"),
        helper.make_node("CenterCropPad", ["img", "crop"], ["ccp"], name="ccp", axes=[2, -1]),
        helper.make_node("Col2Im", ["cols", "image_shape", "block_shape"], ["im"], name="col2im",
                         pads=[1, 0, 1, 0], strides=[2, 1]),
        helper.make_node("MaxUnpool", ["pooled", "pool_idx"], ["unpooled"], name="unpool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("DeformConv", ["dimg", "dw", "offset", "db", "mask"], ["deform"], name="deform",
                         kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
    ]
    # Col2Im: 5x6 image, pads (h 1+1, w 0), block 2x3, strides (2, 1): L = 3 * 4 blocks
    inputs = [
        _vi("theta", TensorProto.FLOAT, [2, 2, 3]), _vi("img", TensorProto.FLOAT, [2, 3, 6, 7]),
        _vi("cols", TensorProto.FLOAT, [1, 2 * 6, 12]), _vi("pooled", TensorProto.FLOAT, [2, 2, 2, 3]),
        _vi("pool_idx", TensorProto.INT64, [2, 2, 2, 3]), _vi("dimg", TensorProto.FLOAT, [1, 2, 3, 3]),
        _vi("dw", TensorProto.FLOAT, [3, 2, 2, 2]), _vi("offset", TensorProto.FLOAT, [1, 8, 4, 4]),
        _vi("db", TensorProto.FLOAT, [3]), _vi("mask", TensorProto.FLOAT, [1, 4, 4, 4]),
    ]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes[1:]]
    model = _model(nodes, inputs, outputs, opset=20, initializers=[size, crop, image_shape, block_shape])
    pooled, pool_idx = _maxpool_indices(rng.standard_normal((2, 2, 4, 6)).astype(np.float32), 2)
    feeds = {
        "theta": (np.array([[1, 0, 0], [0, 1, 0]], np.float32) + rng.normal(0, 0.2, (2, 2, 3))).astype(np.float32),
        "img": rng.standard_normal((2, 3, 6, 7)).astype(np.float32),
        "cols": rng.standard_normal((1, 12, 12)).astype(np.float32),
        "pooled": pooled.astype(np.float32), "pool_idx": pool_idx,
        "dimg": rng.standard_normal((1, 2, 3, 3)).astype(np.float32),
        "dw": rng.standard_normal((3, 2, 2, 2)).astype(np.float32),
        "offset": rng.uniform(-1, 1, (1, 8, 4, 4)).astype(np.float32),
        "db": rng.standard_normal(3).astype(np.float32),
        "mask": rng.uniform(0, 1, (1, 4, 4, 4)).astype(np.float32),
    }
    _assert_matches_ort(model, feeds, tmp_path)


def test_scatter_opset10_is_scatter_elements(tmp_path):
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Scatter", ["data", "idx", "upd"], ["y"], name="scatter", axis=1)]
    inputs = [_vi("data", TensorProto.FLOAT, [3, 4]), _vi("idx", TensorProto.INT64, [3, 2]),
              _vi("upd", TensorProto.FLOAT, [3, 2])]
    model = _model(nodes, inputs, [_vi("y", TensorProto.FLOAT, [3, 4])], opset=10)
    feeds = {"data": rng.standard_normal((3, 4)).astype(np.float32),
             "idx": np.array([[0, 3], [2, 1], [1, 0]], np.int64),
             "upd": rng.standard_normal((3, 2)).astype(np.float32)}
    _assert_matches_ort(model, feeds, tmp_path)


def test_cubic_grid_sample_is_refused_by_node_and_reason(tmp_path):
    nodes = [helper.make_node("GridSample", ["img", "grid"], ["y"], name="gs_cubic", mode="cubic")]
    inputs = [_vi("img", TensorProto.FLOAT, [1, 1, 4, 4]), _vi("grid", TensorProto.FLOAT, [1, 2, 2, 2])]
    model = _model(nodes, inputs, [_vi("y", TensorProto.FLOAT, [1, 1, 2, 2])], opset=20)
    feeds = {"img": np.zeros((1, 1, 4, 4), np.float32), "grid": np.zeros((1, 2, 2, 2), np.float32)}
    with pytest.raises(UnsupportedModel, match=r"'y'.*GridSample.*mode 'cubic'.*bilinear and nearest"):
        convert_and_run_paddle(model, feeds, tmp_path)
