"""apply_patches runs each patch until it stops firing: ONNX shape inference stops at the first
invalid node, so a second unbatched pool after a first one has no known rank until the first
is rewritten (signal_pools in the zoo: "Attribute strides has incorrect size" after patching)."""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from bridge.patches import PATCHES_BY_NAME, apply_patches
from bridge.patches._base import PatchContext
from tests.helpers import parse_model, run_ort

RNG = np.random.default_rng(0)


def chained_unbatched_pools() -> onnx.ModelProto:
    """AvgPool2d((1, 4)) then MaxPool2d((2, 3)), both on a rank-3 (unbatched) tensor."""
    return parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 4, 48] x) => (float[N, 2, 4] y) {
            a = AveragePool <kernel_shape = [1, 4], strides = [1, 4]> (x)
            r = Relu (a)
            y = MaxPool <kernel_shape = [2, 3], strides = [2, 3]> (r)
        }""")


def test_second_pool_rank_unknown_until_first_is_rewritten():
    ctx = PatchContext(chained_unbatched_pools())
    assert ctx.rank("x") == 3 and ctx.rank("r") is None


def test_patch_repeats_until_stable(tmp_path):
    model = chained_unbatched_pools()
    patched, report = apply_patches(model, (PATCHES_BY_NAME["maxpool_unbatched"],))
    assert [f.op_type for f in report.fired] == ["AveragePool", "MaxPool"]
    # only the last pass's declines stand: the rewritten pools, not the first pass's "rank unknown"
    assert [d.reason for d in report.declined] == [
        "input rank 3 is the batched form for a 1-D kernel", "input rank 4 is the batched form for a 2-D kernel"]
    onnx.checker.check_model(patched, full_check=True)
    x = RNG.standard_normal((3, 4, 48)).astype(np.float32)
    expected = F.max_pool2d(F.relu(F.avg_pool2d(torch.from_numpy(x), (1, 4))), (2, 3)).numpy()
    np.testing.assert_allclose(run_ort(patched, {"x": x}, tmp_path)["y"], expected, atol=1e-6)


def test_declines_are_reported_once():
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 3, 8, 8] x) => (float y) {
            a = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)
            y = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (a)
        }""")
    _, report = apply_patches(model, (PATCHES_BY_NAME["maxpool_unbatched"],))
    assert report.fired == [] and len(report.declined) == 2
