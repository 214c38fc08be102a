"""castlike_to_cast: X2Paddle 1.6.0 has no mapper for CastLike; the patch writes the Cast it
means, its ``to`` read from the second input's element type."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)

# As ONNX's Elu/LeakyRelu function bodies write it: a float constant made to follow x's type,
# here once to a graph input's type (double) and once to a computed tensor's (int64, by shape
# inference).
CASTLIKE = """
    <ir_version: 8, opset_import: ["" : 15]>
    g (float[N, 3] x, double[N, 3] d) => (double[N, 3] y, int64[N, 3] k) {
        half = Constant <value = float {0.5}> ()
        h = CastLike (half, d)
        xd = CastLike (x, d)
        s = Mul (xd, h)
        y = Add (s, d)
        r = Cast <to = 7> (x)
        k = CastLike (x, r)
    }"""


def only():
    return (PATCHES_BY_NAME["castlike_to_cast"],)


def test_castlike_to_cast(tmp_path):
    model = parse_model(CASTLIKE)
    feeds = {"x": RNG.standard_normal((4, 3)).astype(np.float32) * 5,
             "d": RNG.standard_normal((4, 3)).astype(np.float64)}
    with pytest.raises(UnsupportedModel, match=r"no mapping for op type CastLike \(3 node"):
        convert_and_run_paddle(model, feeds, tmp_path / "unpatched")

    patched, report = apply_patches(model, only())
    assert [f.node for f in report.fired] == [n.name for n in model.graph.node if n.op_type == "CastLike"]
    casts = {n.output[0]: n for n in patched.graph.node if n.op_type == "Cast"}
    to = {name: onnx.helper.get_attribute_value(casts[name].attribute[0]) for name in ("h", "xd", "k")}
    assert to == {"h": onnx.TensorProto.DOUBLE, "xd": onnx.TensorProto.DOUBLE, "k": onnx.TensorProto.INT64}
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, feeds, tmp_path)
    after = run_ort(patched, feeds, tmp_path)
    for name in ("y", "k"):
        np.testing.assert_array_equal(after[name], before[name])

    got = convert_and_run_paddle(patched, feeds, tmp_path / "patched")
    for name in ("y", "k"):
        assert got[name].dtype == before[name].dtype
        np.testing.assert_allclose(got[name], before[name], rtol=1e-12, atol=0)


def test_castlike_saturate_is_kept_at_opset_19():
    model = parse_model("""
        <ir_version: 9, opset_import: ["" : 19]>
        g (float[2] x, float16[2] t) => (float16[2] y) { y = CastLike <saturate = 0> (x, t) }""")
    patched, _ = apply_patches(model, only())
    cast = patched.graph.node[0]
    assert cast.op_type == "Cast" and {a.name for a in cast.attribute} == {"to", "saturate"}
    onnx.checker.check_model(patched, full_check=True)


def test_castlike_declines_when_the_target_type_is_unknown():
    # the second input comes from an op of a domain ONNX cannot infer: no element type
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 15, "com.example" : 1]>
        g (float[2] x) => (float[2] y) {
            t = com.example.Mystery (x)
            y = CastLike (x, t)
        }""")
    patched, report = apply_patches(model, only())
    assert report.fired == [] and patched.graph.node[1].op_type == "CastLike"
    assert [d.reason for d in report.declined] == ["element type of 't' unknown (shape inference gives none)"]
