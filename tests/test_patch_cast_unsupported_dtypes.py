"""cast_unsupported_dtypes: Paddle 3.3.1 has no int16/uint16 comparison kernels (and stores an
int16/uint16 feed as int32); the patch compares Cast(int32) copies of both inputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)
OPS = ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")


def compare_model(dtype: str, ops: tuple[str, ...] = OPS) -> onnx.ModelProto:
    outputs = ", ".join(f"bool[N, 5] {op.lower()}" for op in ops)
    body = "\n".join(f"{op.lower()} = {op} (x, y)" for op in ops)
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 16]>
        g ({dtype}[N, 5] x, {dtype}[N, 5] y) => ({outputs}) {{
            {body}
        }}""")


def feeds(dtype: str) -> dict[str, np.ndarray]:
    info = np.iinfo(dtype)
    x = RNG.integers(info.min, info.max, (4, 5), endpoint=True).astype(dtype)
    y = x.copy()
    y[1::2] = RNG.integers(info.min, info.max, (2, 5), endpoint=True).astype(dtype)  # half equal
    x[0, :2], y[0, :2] = info.min, info.max  # the extremes survive the widening
    return {"x": x, "y": y}


def only():
    return (PATCHES_BY_NAME["cast_unsupported_dtypes"],)


@pytest.mark.parametrize("dtype", ["int16", "uint16"])
def test_cast_unsupported_dtypes(tmp_path, dtype):
    model = compare_model(dtype)
    data = feeds(dtype)
    with pytest.raises(ValueError, match=r"The type of data we are trying to retrieve \((int16|bfloat16)\)"):
        convert_and_run_paddle(model, data, tmp_path / "unpatched")

    patched, report = apply_patches(model, only())
    assert sorted(f.op_type for f in report.fired) == sorted(OPS)
    casts = [n for n in patched.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 * len(OPS) and {n.attribute[0].i for n in casts} == {onnx.TensorProto.INT32}
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, data, tmp_path)
    after = run_ort(patched, data, tmp_path)
    for op in OPS:
        np.testing.assert_array_equal(after[op.lower()], before[op.lower()])
    assert before["equal"].any() and not before["equal"].all()

    got = convert_and_run_paddle(patched, data, tmp_path / "patched")
    for op in OPS:
        assert got[op.lower()].dtype == np.bool_
        np.testing.assert_array_equal(got[op.lower()], before[op.lower()], err_msg=op)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "float"])
def test_cast_unsupported_dtypes_declines_types_paddle_has_kernels_for(dtype):
    _, report = apply_patches(compare_model(dtype), only())
    assert report.fired == []
    assert len(report.declined) == len(OPS) and all("has a Paddle kernel" in d.reason for d in report.declined)


def test_cast_unsupported_dtypes_leaves_int8_comparisons_to_paddle(tmp_path):
    """The negative case runs: int8 comparisons convert and run unpatched."""
    model = compare_model("int8", ("Greater",))
    data = feeds("int8")
    got = convert_and_run_paddle(model, data, tmp_path)["greater"]
    np.testing.assert_array_equal(got, data["x"] > data["y"])
