"""x2paddle_mappers_math: op mappers X2Paddle 1.6.0 lacks (bitwise/shift, Acos/Asin/Atan,
ReduceLogSumExp/ReduceSumSquare/ReduceLogSum, CumProd, Det, EyeLike, Einsum, the windows).

Without the shim bridge's convert stage refuses every one of them ("X2Paddle 1.6.0 has no
mapping for op type ..."; shown in a fresh interpreter, where X2Paddle is pristine); with it
each converts and Paddle Inference matches ONNX Runtime. The ops are grouped into four models
to keep conversions few.
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
from onnx import TensorProto, helper

from bridge.errors import UnsupportedModel
from bridge.patches import x2paddle_mappers_math
from bridge.stages import convert as convert_stage
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
OPS = sorted(x2paddle_mappers_math.MAPPERS)

PRISTINE_CHILD = """
    import json, sys
    import onnx
    from bridge.errors import UnsupportedModel
    from bridge.patches import x2paddle_shims
    from bridge.stages import convert
    for shim in x2paddle_shims.SHIMS:  # every shim but this one
        if shim.name != "mappers_math":
            shim.apply()
    x2paddle_shims._installed = True
    ops = sys.argv[1].split(",")
    mapped = {v: sorted(set(ops) & convert.mapped_op_types(v)) for v in (9, 13, 15, 18)}
    refusals = []
    for op in ops:
        node = onnx.helper.make_node(op, ["x"], ["y"], name="n")
        model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [], []))
        try:
            convert.check_supported(model)
        except UnsupportedModel as exc:
            refusals.append(str(exc))
    print("RESULT " + json.dumps({"mapped": mapped, "refusals": refusals}))
"""


def test_pristine_x2paddle_refuses_every_op_and_the_shim_maps_them():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PRISTINE_CHILD), ",".join(OPS)],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ, GLOG_minloglevel="2"))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["mapped"] == {str(v): [] for v in (9, 13, 15, 18)}
    assert len(result["refusals"]) == len(OPS)
    for op, message in zip(OPS, result["refusals"]):
        assert f"X2Paddle 1.6.0 has no mapping for op type {op} " in message

    for opset in (9, 13, 15, 18):  # this process: bridge's shims installed
        assert set(OPS) <= convert_stage.mapped_op_types(opset)


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp_path, atol: float = 1e-5) -> None:
    onnx.checker.check_model(model, full_check=True)
    expected = run_ort(model, feeds, tmp_path / "ort")
    got = convert_and_run_paddle(model, feeds, tmp_path / "paddle")
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=atol, err_msg=name)


def test_bitwise_shift_and_inverse_trig(tmp_path):
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (int32[2, 5] a, int32[2, 5] b, uint8[2, 5] s, uint8[2, 5] t, float[2, 5] x)
          => (int32[2, 5] band, int32[2, 5] bor, int32[1, 5] bxor, int32[2, 5] bnot,
              uint8[2, 5] left, uint8[2, 5] right, float[2, 5] acos, float[2, 5] asin, float[2, 5] atan) {
            band = BitwiseAnd (a, b)
            bor = BitwiseOr (a, b)
            row = Constant <value = int32[1, 5] {7, -1, 0, 255, -256}> ()
            bxor = BitwiseXor (row, row)
            bnot = BitwiseNot (a)
            left = BitShift <direction = "LEFT"> (s, t)
            right = BitShift <direction = "RIGHT"> (s, t)
            acos = Acos (x)
            asin = Asin (x)
            atan = Atan (x)
        }""")
    feeds = {
        "a": RNG.integers(-2**31, 2**31 - 1, (2, 5), dtype=np.int64).astype(np.int32),
        "b": RNG.integers(-2**31, 2**31 - 1, (2, 5), dtype=np.int64).astype(np.int32),
        "s": RNG.integers(0, 256, (2, 5)).astype(np.uint8),
        "t": np.array([[0, 1, 2, 3, 7], [4, 5, 6, 7, 1]], np.uint8),  # left shifts overflow the byte
        "x": RNG.uniform(-0.99, 0.99, (2, 5)).astype(np.float32),
    }
    _check(model, feeds, tmp_path)


def test_reductions_attributes_det_eyelike_einsum(tmp_path):
    """Opset 13: axes/keepdims as attributes (default axes: every axis, default keepdims 1)."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[2, 3, 4] x, float[2, 3, 3] m, float[3, 4] e, float[2, 3] p, float[3, 4] q)
          => (float[2, 4] lse, float[1, 1, 1] ssq, float[2, 3, 1] lsum, float[2] det,
              int64[3, 4] eye_up, float[3, 4] eye_down, int32[3, 4] eye_int, float[2, 4] mm, float[3, 2] tr) {
            lse = ReduceLogSumExp <axes = [1], keepdims = 0> (x)
            ssq = ReduceSumSquare (x)
            lsum = ReduceLogSum <axes = [-1]> (x)
            det = Det (m)
            eye_up = EyeLike <k = 1, dtype = 7> (e)
            eye_down = EyeLike <k = -2> (e)
            eye_int = EyeLike <dtype = 6> (e)
            mm = Einsum <equation = "ij, jk -> ik"> (p, q)
            tr = Einsum <equation = "ij->ji"> (p)
        }""")
    feeds = {
        "x": RNG.uniform(0.1, 2.0, (2, 3, 4)).astype(np.float32),
        "m": RNG.standard_normal((2, 3, 3)).astype(np.float32),
        "e": RNG.standard_normal((3, 4)).astype(np.float32),
        "p": RNG.standard_normal((2, 3)).astype(np.float32),
        "q": RNG.standard_normal((3, 4)).astype(np.float32),
    }
    _check(model, feeds, tmp_path)


def test_reductions_axes_input_noop_and_windows(tmp_path):
    """Opset 18: axes as a constant input; no axes with noop_with_empty_axes=1 leaves the
    reduction out (ReduceSumSquare still squares, ReduceLogSum still takes the log). The
    windows take their size from a graph input."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [0, -1])
    none = helper.make_tensor("none", TensorProto.INT64, [0], [])
    nodes = [
        helper.make_node("ReduceLogSumExp", ["x", "axes"], ["lse"], keepdims=0),
        helper.make_node("ReduceSumSquare", ["x", "none"], ["ssq"], noop_with_empty_axes=1),
        helper.make_node("ReduceLogSum", ["x"], ["lsum"], noop_with_empty_axes=1),
        helper.make_node("ReduceLogSum", ["x", "axes"], ["lsum_keep"]),
        helper.make_node("ReduceSumSquare", ["x", "a"], ["ssq_in"], keepdims=0),  # axes fed at run time
        helper.make_node("ReduceLogSum", ["x", "a"], ["lsum_in"]),
        helper.make_node("HannWindow", ["n"], ["hann"]),
        helper.make_node("HammingWindow", ["n"], ["hamming"], periodic=0),
        helper.make_node("BlackmanWindow", ["n"], ["blackman"], output_datatype=TensorProto.DOUBLE),
    ]
    shape = [2, 3, 4]
    outputs = [
        helper.make_tensor_value_info("lse", TensorProto.FLOAT, [3]),
        helper.make_tensor_value_info("ssq", TensorProto.FLOAT, shape),
        helper.make_tensor_value_info("lsum", TensorProto.FLOAT, shape),
        helper.make_tensor_value_info("lsum_keep", TensorProto.FLOAT, [1, 3, 1]),
        helper.make_tensor_value_info("lsum_in", TensorProto.FLOAT, [2, 1, 4]),
        helper.make_tensor_value_info("ssq_in", TensorProto.FLOAT, [2, 4]),
        helper.make_tensor_value_info("hann", TensorProto.FLOAT, ["W"]),
        helper.make_tensor_value_info("hamming", TensorProto.FLOAT, ["W"]),
        helper.make_tensor_value_info("blackman", TensorProto.DOUBLE, ["W"]),
    ]
    graph = helper.make_graph(nodes, "reduce18", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
                                                  helper.make_tensor_value_info("n", TensorProto.INT32, []),
                                                  helper.make_tensor_value_info("a", TensorProto.INT64, [1])],
                              outputs, [axes, none])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    feeds = {"x": RNG.uniform(0.1, 2.0, shape).astype(np.float32), "n": np.array(10, np.int32),
             "a": np.array([-2])}
    _check(model, feeds, tmp_path)


def test_cumprod_exclusive_reverse(tmp_path):
    """Every exclusive/reverse combination, on an axis given as a negative constant; the input
    holds a zero and negatives (no division anywhere)."""
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [-1])
    combos = [(0, 0), (1, 0), (0, 1), (1, 1)]
    nodes = [helper.make_node("CumProd", ["x", "axis"], [f"y{e}{r}"], exclusive=e, reverse=r) for e, r in combos]
    graph = helper.make_graph(nodes, "cumprod", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                              [helper.make_tensor_value_info(f"y{e}{r}", TensorProto.FLOAT, [2, 5]) for e, r in combos],
                              [axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26)])
    model.ir_version = 12
    x = np.array([[1.5, 2, -3, 0.5, 4], [0, 5, -1, 2, 3]], np.float32)
    _check(model, {"x": x}, tmp_path)


def test_computed_axes_with_noop_named(tmp_path):
    """Computed axes with noop_with_empty_axes=1: whether the op reduces at all is only known
    at run time; the conversion fails naming the node and the cause, not with X2Paddle's bare
    "convert failed"."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 3] x, int64[1] a) => (float[2] y) {
            y = ReduceSumSquare <keepdims = 0, noop_with_empty_axes = 1> (x, a)
        }""")
    with pytest.raises(UnsupportedModel, match=r"ReduceSumSquare.*X2Paddle failed to map it: ValueError: "
                                                r"ReduceSumSquare axes .* is computed, with noop_with_empty_axes=1"):
        convert_and_run_paddle(model, {"x": np.ones((2, 3), np.float32), "a": np.array([1])}, tmp_path)
