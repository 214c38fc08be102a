"""resize_half_pixel: X2Paddle maps a linear Resize in half_pixel mode to align_corners=True
(silently wrong); pytorch_half_pixel, the same formula where no resized dim is 1, maps right."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.runners import PaddleDygraphRunner
from bridge.stages import convert as convert_stage
from tests.helpers import parse_model, run_ort, save

RNG = np.random.default_rng(0)


def resize_model(scales: str, out_shape: str, mode: str = "linear", coords: str = "half_pixel") -> onnx.ModelProto:
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 2, 4, 6] x) => (float{out_shape} y) {{
            roi = Constant <value = float[0] {{}}> ()
            scales = Constant <value = float[4] {scales}> ()
            y = Resize <mode = "{mode}", coordinate_transformation_mode = "{coords}"> (x, roi, scales)
        }}""")


def convert_and_run_dygraph(model: onnx.ModelProto, feeds: dict[str, np.ndarray], tmp) -> dict[str, np.ndarray]:
    """Paddle dygraph, not Paddle Inference: Paddle 3.3.1's oneDNN bilinear_interp kernel
    cannot run at all under bridge's inference config ("ConvertPirAttribute2RuntimeAttribute
    not support [pir::ArrayAttribute<pir::DoubleAttribute>]"), patched or not."""
    onnx_path = save(model, tmp / "model.onnx")
    result = convert_stage.run(onnx_path, tmp / "paddle", tmp / "convert.log")
    return PaddleDygraphRunner(tmp / "paddle", result.inputs, result.outputs).run(feeds)


def only():
    return (PATCHES_BY_NAME["resize_half_pixel"],)


def test_resize_half_pixel(tmp_path):
    model = resize_model("{1.0, 1.0, 2.0, 2.0}", "[N, 2, 8, 12]")
    x = RNG.standard_normal((3, 2, 4, 6)).astype(np.float32)
    before = run_ort(model, {"x": x}, tmp_path)["y"]
    expected = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(before, expected, atol=1e-6)
    # Without the patch X2Paddle converts, but interpolates with align_corners=True.
    wrong = convert_and_run_dygraph(model, {"x": x}, tmp_path / "unpatched")["y"]
    assert np.abs(wrong - before).max() > 1e-2

    patched, report = apply_patches(model, only())
    assert [f.patch for f in report.fired] == ["resize_half_pixel"]
    onnx.checker.check_model(patched, full_check=True)
    after = run_ort(patched, {"x": x}, tmp_path)["y"]
    np.testing.assert_array_equal(after, before)
    got = convert_and_run_dygraph(patched, {"x": x}, tmp_path / "patched")["y"]
    np.testing.assert_allclose(got, after, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scales, out_shape, mode, coords, reason", [
    # a resized dim of length 1: half_pixel samples -0.5 + ..., pytorch_half_pixel samples 0
    ("{1.0, 1.0, 0.25, 1.0}", "[N, 2, 1, 6]", "linear", "half_pixel", "output length 1"),
    ("{1.0, 1.0, 2.0, 2.0}", "[N, 2, 8, 12]", "nearest", "half_pixel", "mode 'nearest'"),
    ("{1.0, 1.0, 2.0, 2.0}", "[N, 2, 8, 12]", "linear", "align_corners", "is 'align_corners'"),
])
def test_resize_half_pixel_declines(scales, out_shape, mode, coords, reason):
    _, report = apply_patches(resize_model(scales, out_shape, mode, coords), only())
    assert report.fired == [] and reason in report.declined[0].reason
