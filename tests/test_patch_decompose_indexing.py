"""decompose_indexing: ArgMin, Hardmax and Trilu, which X2Paddle 1.6.0 does not map, rewritten
into ArgMax, ReduceMin/ReduceMax, Equal, Where and constant masks. One model holds every
rewrite, so X2Paddle converts once; inputs have ties, so first/last index matters."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.errors import UnsupportedModel
from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches.decompose_indexing import INDEXING_PATCHES
from bridge.stages.convert import mapped_op_types
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)


def indexing_model() -> onnx.ModelProto:
    return parse_model("""
        <ir_version: 8, opset_import: ["" : 14]>
        g (float[N, 4, 5] x, int64[N, 4, 5] i, int64 shift)
          => (int64[N, 1, 5] first, int64[N, 5] first_int, int64[N, 4, 1] last, int64[N, 4] last_int,
              float[N, 4, 5] hard, float[N, 4, 5] hard_axis1, int64[N, 4, 5] upper, float[N, 4, 5] lower,
              float[N, 4, 5] upper_shifted) <int64 k = {-1}> {
            first = ArgMin <axis = 1> (x)
            first_int = ArgMin <axis = -2, keepdims = 0> (i)
            last = ArgMin <axis = 2, select_last_index = 1> (x)
            last_int = ArgMin <axis = 2, keepdims = 0, select_last_index = 1> (i)
            hard = Hardmax (x)
            hard_axis1 = Hardmax <axis = 1> (x)
            upper = Trilu (i)
            lower = Trilu <upper = 0> (x, k)
            upper_shifted = Trilu (x, shift)
        }""")


def feeds() -> dict[str, np.ndarray]:
    i = RNG.integers(-3, 3, (3, 4, 5)).astype(np.int64)
    i[0, 0, 0] = np.iinfo(np.int64).min  # Neg would overflow here; -1 - x does not
    return {"x": np.round(RNG.standard_normal((3, 4, 5))).astype(np.float32), "i": i, "shift": np.array(2)}


def test_indexing_converts_after_decomposition(tmp_path):
    model, inputs = indexing_model(), feeds()
    with pytest.raises(UnsupportedModel, match="no mapping for op types ArgMin, Hardmax, Trilu"):
        convert_and_run_paddle(model, inputs, tmp_path / "unpatched")

    patched, report = apply_patches(model, INDEXING_PATCHES)
    assert report.fired_counts() == {"decompose_argmin": 4, "decompose_hardmax": 2, "decompose_trilu": 3}
    assert {n.op_type for n in patched.graph.node} <= mapped_op_types(14)
    assert all(any(a.name == "axis" for a in n.attribute) for n in patched.graph.node if n.op_type == "ArgMax")
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, inputs, tmp_path)
    # ties: the last minimum is not the first one somewhere, so select_last_index is exercised
    assert not np.array_equal(before["last"], np.argmin(inputs["x"], axis=2, keepdims=True))
    after = run_ort(patched, inputs, tmp_path)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    got = convert_and_run_paddle(patched, inputs, tmp_path / "patched")
    for name in before:
        assert got[name].dtype == before[name].dtype, name
        np.testing.assert_array_equal(got[name], before[name], err_msg=name)


def test_declines_what_cannot_be_exact():
    model = parse_model("""
        <ir_version: 10, opset_import: ["" : 18]>
        g (float[N, 4] x, int64 k, uint8[N, 4] u) => (float[N, 4] t, float[N, 4] h, int64[N, 1] a, int64[1, 4] b) {
            [tri] t = Trilu (x, k)
            [hm] h = Hardmax <axis = 0> (x)
            [am_u8] a = ArgMin <axis = 1> (u)
            [am_last] b = ArgMin <select_last_index = 1> (x)
        }""")
    patches = tuple(PATCHES_BY_NAME[n] for n in ("decompose_trilu", "decompose_hardmax", "decompose_argmin"))
    _, report = apply_patches(model, patches)
    assert report.fired == []
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("am_last", "select_last_index=1 with a dynamic dim along axis 0"),
        ("am_u8", "input 'u' has element type uint8 (floats and signed ints only)"),
        ("hm", "dim along axis 0 of 'x' is not static"),
        ("tri", "last two dims of 'x' not static (shape ['N', 4])"),
    ]
    static = parse_model("""
        <ir_version: 10, opset_import: ["" : 18]>
        g (float[3, 4] x, int64 k) => (float[3, 4] t, int64[1, 4] b) {
            [tri] t = Trilu (x, k)
            [am_last] b = ArgMin <select_last_index = 1> (x)
        }""")
    _, report = apply_patches(static, patches)
    assert [f.node for f in report.fired] == ["tri"]  # a k computed at run time is compared at run time
    assert sorted((d.node, d.reason) for d in report.declined) == [
        ("am_last", "select_last_index=1: no max reduction X2Paddle maps at opset 18"),
    ]


@pytest.mark.parametrize("upper", [0, 1])
def test_bool_trilu_is_an_and(upper, tmp_path):
    """Found by tests/test_fuzz_patches.py: Where(mask, x, false) on bool x is what ONNX Runtime
    has no kernel for ("Could not find an implementation for Where(9)"); And is the same mask."""
    model = parse_model(f"""
        <ir_version: 8, opset_import: ["" : 14]>
        g (bool[2, 3, 4] x) => (bool[2, 3, 4] y) {{
            y = Trilu <upper = {upper}> (x)
        }}""")
    x = {"x": RNG.integers(0, 2, (2, 3, 4)).astype(bool)}
    patched, report = apply_patches(model, (PATCHES_BY_NAME["decompose_trilu"],))
    assert [f.op_type for f in report.fired] == ["Trilu"]
    assert [n.op_type for n in patched.graph.node][-1] == "And"
    np.testing.assert_array_equal(run_ort(patched, x, tmp_path)["y"], run_ort(model, x, tmp_path)["y"])
