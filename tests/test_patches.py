"""Each patch: the converter fails without it, ORT agrees before/after (or with torch where the
unpatched graph is invalid ONNX), Paddle matches ORT after it, and it declines where it must."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from bridge.errors import BridgeError
from bridge.patches import DEFAULT_PATCHES, PATCHES_BY_NAME, apply_patches
from bridge.runners import OrtRunner
from tests.helpers import convert_and_run_paddle, parse_model, run_ort, save

RNG = np.random.default_rng(0)


def only(name):
    return (PATCHES_BY_NAME[name],)


# --- maxpool_unbatched ----------------------------------------------------------------

def unbatched_pool(op: str, kernel: list[int], strides: list[int], out_shape: str, opset: int = 13) -> onnx.ModelProto:
    """A pool on a rank-3 tensor with a 2-D kernel, as torch's TorchScript exporter writes
    ``nn.MaxPool2d(kernel)`` applied to an unbatched (C, H, W) tensor."""
    dil = ", dilations = [1, 1]" if op == "MaxPool" else ""
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        g (float[N, 4, 600] x) => (float{out_shape} y) {{
            y = {op} <kernel_shape = {kernel}, strides = {strides}{dil}> (x)
        }}""")


def torch_unbatched(op: str, x: np.ndarray, kernel, strides) -> np.ndarray:
    fn = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
    return fn(torch.from_numpy(x), tuple(kernel), tuple(strides)).numpy()


@pytest.mark.parametrize(
    "op, kernel, strides, out_shape, new_ops",
    [
        # the seed's case: kernel (1, 200)-like; exactly a 1-D pool
        ("MaxPool", [1, 4], [1, 4], "[N, 4, 150]", {"MaxPool": 1}),
        ("AveragePool", [1, 3], [1, 3], "[N, 4, 200]", {"AveragePool": 1}),
        # first kernel dim 2: pools over the "channel" axis too; needs the batch axis
        ("MaxPool", [2, 4], [2, 4], "[N, 2, 150]", {"Constant": 1, "Unsqueeze": 1, "MaxPool": 1, "Squeeze": 1}),
        # first stride 1 but kernel 2: overlapping windows over axis 1, also not 1-D
        ("MaxPool", [2, 5], [1, 5], "[N, 3, 120]", {"Constant": 1, "Unsqueeze": 1, "MaxPool": 1, "Squeeze": 1}),
    ],
    ids=["max-1x4-as-1d", "avg-1x3-as-1d", "max-2x4-batched", "max-2x5-stride1"],
)
def test_maxpool_unbatched(tmp_path, op, kernel, strides, out_shape, new_ops):
    model = unbatched_pool(op, kernel, strides, out_shape)
    x = RNG.standard_normal((3, 4, 600)).astype(np.float32)
    expected = torch_unbatched(op, x, kernel, strides)

    # Without the patch: invalid ONNX for ORT, and X2Paddle cannot convert it.
    with pytest.raises(BridgeError):
        OrtRunner(save(model, tmp_path / "unpatched.onnx"))
    with pytest.raises(BridgeError):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")

    patched, report = apply_patches(model, only("maxpool_unbatched"))
    assert [f.patch for f in report.fired] == ["maxpool_unbatched"]
    assert report.op_counts_after == new_ops
    onnx.checker.check_model(patched, full_check=True)
    got = run_ort(patched, {"x": x}, tmp_path)["y"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)

    # the default chain (which also drops the all-ones dilations) converts, Paddle matches ORT
    converted, _ = apply_patches(model)
    paddle_out = convert_and_run_paddle(converted, {"x": x}, tmp_path / "patched")["y"]
    np.testing.assert_allclose(paddle_out, got, rtol=1e-5, atol=1e-5)


def test_maxpool_unbatched_opset11_uses_axes_attribute(tmp_path):
    model = unbatched_pool("MaxPool", [2, 4], [2, 4], "[N, 2, 150]", opset=11)
    patched, report = apply_patches(model, only("maxpool_unbatched"))
    assert len(report.fired) == 1
    unsqueeze = next(n for n in patched.graph.node if n.op_type == "Unsqueeze")
    assert len(unsqueeze.input) == 1 and unsqueeze.attribute[0].name == "axes"
    onnx.checker.check_model(patched, full_check=True)
    x = RNG.standard_normal((2, 4, 600)).astype(np.float32)
    got = run_ort(patched, {"x": x}, tmp_path)["y"]
    np.testing.assert_allclose(got, torch_unbatched("MaxPool", x, [2, 4], [2, 4]), atol=1e-6)


def test_maxpool_unbatched_declines_batched_input():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3, 8, 8] x) => (float[N, 3, 4, 4] y) {
            y = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)
        }""")
    patched, report = apply_patches(model, only("maxpool_unbatched"))
    assert report.fired == []
    assert "batched form" in report.declined[0].reason
    assert patched.graph.node[0] == model.graph.node[0]


def test_maxpool_unbatched_declines_unknown_rank():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float x) => (float y) {
            y = MaxPool <kernel_shape = [2, 2]> (x)
        }""")
    model.graph.input[0].type.tensor_type.ClearField("shape")  # the parser writes rank 0
    _, report = apply_patches(model, only("maxpool_unbatched"))
    assert report.fired == [] and "unknown" in report.declined[0].reason


# --- drop_unit_dilations --------------------------------------------------------------

def dilated_pool(dilations: list[int]) -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3, 8, 8] x) => (float y) {{
            y = MaxPool <kernel_shape = [2, 2], strides = [2, 2], dilations = {dilations}> (x)
        }}""")


def test_drop_unit_dilations(tmp_path):
    model = dilated_pool([1, 1])
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(BridgeError, match=r"MaxPool.*only dilations = 0 is supported"):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")
    patched, report = apply_patches(model, only("drop_unit_dilations"))
    assert [f.patch for f in report.fired] == ["drop_unit_dilations"]
    assert all(a.name != "dilations" for a in patched.graph.node[0].attribute)
    before = run_ort(model, {"x": x}, tmp_path)["y"]
    after = run_ort(patched, {"x": x}, tmp_path)["y"]
    np.testing.assert_array_equal(after, before)
    paddle_out = convert_and_run_paddle(patched, {"x": x}, tmp_path / "patched")["y"]
    np.testing.assert_allclose(paddle_out, after, rtol=1e-5, atol=1e-5)


def test_drop_unit_dilations_declines_real_dilation():
    _, report = apply_patches(dilated_pool([2, 2]), only("drop_unit_dilations"))
    assert report.fired == [] and "not all ones" in report.declined[0].reason


# --- pool_default_strides -------------------------------------------------------------

def strideless_pool(extra: str = "") -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 2, 9, 9] x) => (float y) {{
            y = AveragePool <kernel_shape = [3, 3]{extra}> (x)
        }}""")


def test_pool_default_strides(tmp_path):
    model = strideless_pool()
    x = RNG.standard_normal((2, 2, 9, 9)).astype(np.float32)
    before = run_ort(model, {"x": x}, tmp_path)["y"]
    assert before.shape == (2, 2, 7, 7)  # ONNX default stride 1
    # Without the patch X2Paddle converts "successfully" but strides by the kernel.
    wrong = convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")["y"]
    assert wrong.shape != before.shape
    patched, report = apply_patches(model, only("pool_default_strides"))
    assert [f.patch for f in report.fired] == ["pool_default_strides"]
    after = run_ort(patched, {"x": x}, tmp_path)["y"]
    np.testing.assert_array_equal(after, before)
    paddle_out = convert_and_run_paddle(patched, {"x": x}, tmp_path / "patched")["y"]
    np.testing.assert_allclose(paddle_out, after, rtol=1e-5, atol=1e-5)


def test_pool_default_strides_declines_explicit_strides():
    _, report = apply_patches(strideless_pool(", strides = [2, 2]"), only("pool_default_strides"))
    assert report.fired == [] and "already" in report.declined[0].reason


# --- the chain ------------------------------------------------------------------------

def test_apply_patches_leaves_input_untouched_and_reports_op_diff():
    model = unbatched_pool("MaxPool", [2, 4], [2, 4], "[N, 2, 150]")
    original = model.SerializeToString()
    _, report = apply_patches(model)
    assert model.SerializeToString() == original
    assert report.fired_counts() == {"maxpool_unbatched": 1, "drop_unit_dilations": 1}
    assert report.op_diff() == {"Constant": "+1 (0->1)", "Squeeze": "+1 (0->1)", "Unsqueeze": "+1 (0->1)"}


def test_default_patch_order():
    # maxpool_unbatched must run before drop_unit_dilations (see patches/__init__.py)
    names = [p.name for p in DEFAULT_PATCHES]
    assert names.index("maxpool_unbatched") < names.index("drop_unit_dilations")
