"""The ``reduce_sum_keepdims`` shim (bridge.patches.x2paddle_shims): X2Paddle 1.6.0's ReduceSum
mapper hands ONNX's int ``keepdims`` to ``paddle.sum``, and Paddle 3 aborts the process on
``keepdim=1`` ("Cannot interpret '1' as a data type"); from opset 13 it also drops ONNX's
default ``keepdims=1``. Without the shim (a fresh interpreter, every other shim applied) the
conversion dies or comes out one dim short; with it, every ReduceSum form matches ONNX Runtime.
"""
from __future__ import annotations

import numpy as np
import pytest

from bridge.runners import PaddleInferenceRunner
from bridge.stages import convert as convert_stage
from tests.helpers import parse_model, run_ort, save
from tests.test_x2paddle_shims import APPLY_SHIMS, child, run_py

# Every ReduceSum form of its opset in one graph, so that one conversion covers them all.
OPSET_11 = """
<ir_version: 8, opset_import: ["" : 11]>
g (float[N, 3, 4] x) => (float[N, 1, 4] keep, float[N, 4] drop, float[1, 1, 1] every) {
    keep = ReduceSum <axes = [1], keepdims = 1> (x)
    drop = ReduceSum <axes = [-2], keepdims = 0> (x)
    every = ReduceSum (x)
}
"""
OPSET_13 = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3, 4] x) => (float[N, 1, 4] keep, float[N, 1, 1] default_keep, float[N] drop,
                         float[1, 1, 1] every, float[N, 3, 4] noop) <int64[1] a1 = {1}, int64[2] a12 = {1, -1}> {
    keep = ReduceSum <keepdims = 1> (x, a1)
    default_keep = ReduceSum (x, a12)
    drop = ReduceSum <keepdims = 0> (x, a12)
    every = ReduceSum (x)
    noop = ReduceSum <noop_with_empty_axes = 1> (x)
}
"""
ONE_FORM = """
<ir_version: 8, opset_import: ["" : 13]>
g (float[N, 3, 4] x) => (float[N, 1, 4] y) <int64[1] a = {{1}}> {{
    y = ReduceSum {attrs} (x, a)
}}
"""

WITHOUT_SHIM = child(APPLY_SHIMS, """
    import sys
    apply(*(s.name for s in shims.SHIMS if s.name != "reduce_sum_keepdims"))
    from x2paddle.convert import onnx2paddle
    onnx2paddle(sys.argv[1], sys.argv[2], disable_feedback=True)
    print("CONVERTED")
""")


def _x() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}


def test_keepdims_1_aborts_the_process_without_the_shim(tmp_path):
    model = save(parse_model(ONE_FORM.format(attrs="<keepdims = 1>")), tmp_path / "m.onnx")
    proc = run_py(WITHOUT_SHIM, model, tmp_path / "paddle", cwd=tmp_path)
    assert proc.returncode == -6, (proc.returncode, proc.stderr[-2000:])  # SIGABRT
    assert "Cannot interpret '1' as a data type" in proc.stdout + proc.stderr
    assert "CONVERTED" not in proc.stdout


def test_default_keepdims_is_dropped_without_the_shim(tmp_path):
    """No ``keepdims`` attribute (ONNX: 1) at opset 13: X2Paddle leaves Paddle's default, False."""
    model = parse_model(ONE_FORM.format(attrs=""))
    path = save(model, tmp_path / "m.onnx")
    proc = run_py(WITHOUT_SHIM, path, tmp_path / "paddle", cwd=tmp_path)
    assert "CONVERTED" in proc.stdout, proc.stderr[-2000:]
    got = PaddleInferenceRunner(tmp_path / "paddle", {"x": "x2paddle_x"}, ["y"]).run(_x())["y"]
    expected = run_ort(model, _x(), tmp_path)["y"]
    assert expected.shape == (2, 1, 4) and got.shape == (2, 4)


@pytest.mark.parametrize("text", [OPSET_11, OPSET_13], ids=["opset11", "opset13"])
def test_every_form_matches_onnx_runtime_with_the_shim(tmp_path, text):
    model = parse_model(text)
    result = convert_stage.run(save(model, tmp_path / "m.onnx"), tmp_path / "paddle", tmp_path / "convert.log")
    got = PaddleInferenceRunner(tmp_path / "paddle", result.inputs, result.outputs).run(_x())
    expected = run_ort(model, _x(), tmp_path)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


# A computed axes input: refused by this shim's mapper, mapped by the reduce_sum_tensor_axes shim
# that wraps it (tests/test_x2paddle_mapper_fixes.py shows both).


def test_shim_is_idempotent():
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    from bridge.patches import x2paddle_shims

    x2paddle_shims.install()
    x2paddle_shims.reduce_sum_keepdims()
    mapped = opset_legacy.OpSet.ReduceSum
    x2paddle_shims.reduce_sum_keepdims()
    assert opset_legacy.OpSet.ReduceSum is mapped and mapped.__wrapped__ is x2paddle_shims._map_reduce_sum
