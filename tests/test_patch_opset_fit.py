"""opset_fit: X2Paddle 1.6.0 maps opsets up to 15 and reads the opset-13 forms; a model at 18+
with Reduce* axes inputs, Split num_outputs or Pad axes is rewritten to the opset-15 forms and
declared opset 15, when every node fits opset 15."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

REDUCE_AND_SPLIT = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[N, 6, 5] x) => (float[N, 5] m, float[N, 1, 1] mx, float[N, 3, 5] s0, float[N, 3, 5] s1, float[N, 6, 5] same) {
        ax = Constant <value = int64[1] {1}> ()
        m = ReduceMean <keepdims = 0> (x, ax)
        ax2 = Constant <value = int64[2] {-1, 1}> ()
        mx = ReduceMax (x, ax2)
        s0, s1 = Split <axis = 1, num_outputs = 2> (x)
        none = Constant <value = int64[0] {}> ()
        same = ReduceMin <noop_with_empty_axes = 1> (x, none)
    }"""


def only():
    return (PATCHES_BY_NAME["opset_fit"],)


def opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_opset_fit_reduce_and_split(tmp_path):
    model = parse_model(REDUCE_AND_SPLIT)
    onnx.checker.check_model(model, full_check=True)
    feeds = {"x": RNG.standard_normal((3, 6, 5)).astype(np.float32)}
    # X2Paddle's directly_map refuses ReduceMean/Max/Min's axes input ("directly_map error with
    # multi inputs"); bridge's reduce_tensor_axes shim now maps it, so the unpatched model converts
    # too (tests/test_x2paddle_mapper_fixes.py shows the failure without that shim).
    unpatched = convert_and_run_paddle(model, feeds, tmp_path / "unpatched")
    np.testing.assert_allclose(unpatched["m"], run_ort(model, feeds, tmp_path)["m"], rtol=1e-5, atol=1e-5)

    patched, report = apply_patches(model, only())
    assert [f.op_type for f in report.fired] == ["ReduceMean", "ReduceMax", "Split", "ReduceMin"]
    assert opset(patched) == 15 and opset(model) == 18  # the input model is not modified
    ops = {n.output[0]: n for n in patched.graph.node}
    assert list(ops["m"].input) == ["x"] and onnx.helper.get_attribute_value(ops["m"].attribute[1]) == [1]
    assert ops["same"].op_type == "Identity" and len(ops["s0"].input) == 1
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, feeds, tmp_path)
    after = run_ort(patched, feeds, tmp_path)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])

    got = convert_and_run_paddle(patched, feeds, tmp_path / "patched")
    for name in before:
        assert got[name].shape == before[name].shape
        np.testing.assert_allclose(got[name], before[name], rtol=1e-5, atol=1e-6)


def test_opset_fit_uneven_split_and_pad_axes_keep_onnx_runtime_outputs(tmp_path):
    """Checked with ONNX Runtime only: X2Paddle's Pad output crashes Paddle Inference whatever
    the opset (heap corruption), a problem of its own."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 7, 4] x) => (float[2, 3, 4] a, float[2, 3, 4] b, float[2, 1, 4] c, float[2, 7, 7] p) {
            a, b, c = Split <axis = 1, num_outputs = 3> (x)
            pads = Constant <value = int64[2] {1, 2}> ()
            axes = Constant <value = int64[1] {-1}> ()
            value = Constant <value = float {0.5}> ()
            p = Pad (x, pads, value, axes)
        }""")
    feeds = {"x": RNG.standard_normal((2, 7, 4)).astype(np.float32)}
    patched, report = apply_patches(model, only())
    assert [f.op_type for f in report.fired] == ["Split", "Pad"] and opset(patched) == 15
    sizes = [n for n in patched.graph.node if n.output[0] == "a"][0].input[1]
    const = [n for n in patched.graph.node if n.output[0] == sizes][0]
    assert onnx.numpy_helper.to_array(const.attribute[0].t).tolist() == [3, 3, 1]
    onnx.checker.check_model(patched, full_check=True)
    before, after = run_ort(model, feeds, tmp_path), run_ort(patched, feeds, tmp_path)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


@pytest.mark.parametrize("text, reason", [
    pytest.param("""<ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 3] x, int64[1] axes) => (float[2] y) { y = ReduceMax <keepdims = 0> (x, axes) }""",
                 "model cannot go to opset 15: node '' (ReduceMax): axes 'axes' is not a constant: "
                 "opset 15 needs the values as an attribute", id="axes-from-a-graph-input"),
    pytest.param("""<ir_version: 8, opset_import: ["" : 20]>
        g (float[2, 3] x) => (float[2] y) {
            g = Gelu (x)
            ax = Constant <value = int64[1] {1}> ()
            y = ReduceMax <keepdims = 0> (g, ax)
        }""", "model cannot go to opset 15: not valid at opset 15: No Op registered for Gelu with domain_version of 15",
                 id="an-op-newer-than-15"),
    pytest.param("""<ir_version: 8, opset_import: ["" : 13]>
        g (float[2, 3] x) => (float[2] y) { y = ReduceMax <keepdims = 0, axes = [1]> (x) }""",
                 "already in its opset-15 form", id="opset-13-form"),
])
def test_opset_fit_declines(text, reason):
    model = parse_model(text)
    patched, report = apply_patches(model, only())
    assert report.fired == [] and opset(patched) == opset(model)
    assert [d.reason for d in report.declined][-1].startswith(reason)


@pytest.mark.parametrize("op, first", [
    ("ReduceLogSum", "Log"), ("ReduceL1", "Abs"), ("ReduceL2", "Mul"), ("ReduceSumSquare", "Mul"),
    ("ReduceLogSumExp", "Identity"), ("ReduceProd", "Identity"),
])
def test_opset_fit_reduce_over_no_axes_keeps_the_elementwise_part(op, first, tmp_path):
    """Found by tests/test_fuzz_patches.py: with noop_with_empty_axes=1 and no axes, ReduceLogSum
    is log(x), not x (an Identity for every Reduce* gave x); ORT's outputs are kept."""
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 3] x) => (float[2, 3] y) {{
            y = {op} <noop_with_empty_axes = 1> (x)
        }}""")
    feeds = {"x": RNG.uniform(0.5, 2.0, (2, 3)).astype(np.float32)}
    patched, report = apply_patches(model, only())
    assert [f.op_type for f in report.fired] == [op] and opset(patched) == 15
    assert patched.graph.node[0].op_type == first
    onnx.checker.check_model(patched, full_check=True)
    np.testing.assert_allclose(run_ort(patched, feeds, tmp_path)["y"], run_ort(model, feeds, tmp_path)["y"], rtol=1e-6)
