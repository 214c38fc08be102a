"""``bridge validate --layerwise``: every intermediate tensor, and the first node whose own Paddle
code diverges from ONNX Runtime.

The planted fault is a real conversion fault: a variant of the ``pool_default_strides`` patch
that skips one pool leaves that MaxPool without ``strides``, and X2Paddle 1.6.0 then converts it
with stride = kernel (ONNX's default is 1). Only that node's code is wrong; the pools after it get
wrong-shaped inputs in the whole-model run but are right on ONNX Runtime's values.
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import onnx
import pytest

from bridge import cli, pipeline
from bridge.patches import DEFAULT_PATCHES, MatchResult
from bridge.patches.pool_default_strides import PoolDefaultStrides
from bridge.stages import patch as patch_stage
from bridge.stages.convert import x2paddle_name
from tests.helpers import parse_model, rerecord, save

# Three pools without strides (the pool_default_strides patch makes ONNX's stride 1 explicit),
# a Conv with weights between the first two.
POOLS = """
<ir_version: 8, opset_import: ["" : 13]>
pools (float[N, 2, 24, 24] x) => (float[N, 4, ?, ?] y)
<float[4, 2, 3, 3] conv_w = {%s}, float[4] conv_b = {0.1, -0.2, 0.3, -0.4}>
{
    pa = MaxPool <kernel_shape = [2, 2]> (x)
    cv = Conv <kernel_shape = [3, 3], pads = [1, 1, 1, 1]> (pa, conv_w, conv_b)
    rl = Relu (cv)
    pb = MaxPool <kernel_shape = [3, 3]> (rl)
    sg = Sigmoid (pb)
    y = MaxPool <kernel_shape = [2, 2]> (sg)
}
""" % ", ".join(f"{((i * 37) % 17 - 8) / 10:.1f}" for i in range(72))
NODE_NAMES = {"pa": "pool_a", "cv": "conv", "rl": "relu", "pb": "pool_b", "sg": "sigmoid", "y": "pool_c"}


def pools_model() -> onnx.ModelProto:
    model = parse_model(POOLS)
    for node in model.graph.node:
        node.name = NODE_NAMES[node.output[0]]
    return model


class SkipsPoolB(PoolDefaultStrides):
    """pool_default_strides with a planted bug: it leaves ``pool_b`` alone."""

    def check(self, ctx, node):
        if node.name == "pool_b":
            return MatchResult.fail("planted fault: pool_b skipped")
        return super().check(ctx, node)


FAULTY_PATCHES = tuple(SkipsPoolB() if isinstance(p, PoolDefaultStrides) else p for p in DEFAULT_PATCHES)


def _convert(root: Path) -> Path:
    source = save(pools_model(), root / "pools.onnx")
    pipeline.convert(str(source), root / "work", echo=lambda line: None, force=True)
    return root / "work"


@pytest.fixture(scope="module")
def clean_work(tmp_path_factory) -> Path:
    return _convert(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def faulty_work(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:  # the pipeline's patch list, with the faulty variant
        mp.setattr(pipeline.patch_stage, "run", functools.partial(patch_stage.run, patches=FAULTY_PATCHES))
        return _convert(tmp_path_factory.mktemp("faulty"))


def _validate(work: Path, capsys) -> tuple[int, str, dict]:
    code = cli.main(["validate", str(work), "--layerwise", "--batch-sizes", "2"])
    out = capsys.readouterr().out
    return code, out, json.loads((work / "validation.json").read_text())


def _rows(report: dict) -> dict[str, dict]:
    return {r["node"]: r for r in report["layerwise"]["rows"]}


def test_planted_stride_fault_names_the_pool(faulty_work, capsys):
    patched = onnx.load(str(faulty_work / "model.patched.onnx"))
    strides = {n.name: [a.ints for a in n.attribute if a.name == "strides"] for n in patched.graph.node
               if n.op_type == "MaxPool"}
    assert strides["pool_a"] and strides["pool_c"] and not strides["pool_b"]  # the fault is planted

    code, out, report = _validate(faulty_work, capsys)
    assert code == 1  # the outputs differ too (shape), so validation fails as before
    assert "first divergent node: pool_b (MaxPool: kernel_shape=[3, 3])" in out
    first = report["first_divergent"]
    assert first["node"] == "pool_b" and first["op_type"] == "MaxPool"
    assert first["attributes"] == {"kernel_shape": [3, 3]}
    rows = _rows(report)
    assert [r["node"] for r in report["layerwise"]["rows"]] == list(NODE_NAMES.values())  # topological
    for upstream in ("pool_a", "conv", "relu"):
        assert rows[upstream]["passed"] and rows[upstream]["local_pass"], rows[upstream]
    assert rows["pool_b"]["passed"] is False and rows["pool_b"]["local_pass"] is False
    assert "shape" in rows["pool_b"]["local_problem"] and "shape" in first["problem"]
    for downstream in ("sigmoid", "pool_c"):  # inherited: wrong whole-run input, right code
        assert rows[downstream]["passed"] is False and rows[downstream]["local_pass"] is True, rows[downstream]
    assert "DIVERGES HERE" in out and "inherited" in out


def test_clean_model_has_no_divergent_node(clean_work, capsys):
    code, out, report = _validate(clean_work, capsys)
    assert code == 0, out
    assert report["first_divergent"] is None
    assert "first divergent node: none" in out
    rows = report["layerwise"]["rows"]
    assert len(rows) == len(NODE_NAMES) and report["layerwise"]["unmapped"] == []
    source = (clean_work / "paddle" / "x2paddle_code.py").read_text()
    for row in rows:  # the ONNX tensor -> Paddle variable mapping, explicit and real
        assert row["paddle_var"] == x2paddle_name(row["output"]) and f"{row['paddle_var']} = " in source
        assert row["passed"] and row["local_pass"], row


def test_wrong_conv_weights_diverge_at_the_conv(clean_work, tmp_path):
    """A numeric fault (same shapes): the Conv's converted bias is off. Its local error is the
    offset; everything after it inherits a whole-model error but computes right locally."""
    import numpy as np
    import paddle

    work = tmp_path / "w"
    shutil.copytree(clean_work, work)
    params_path = work / "paddle" / "model.pdparams"
    params = paddle.load(str(params_path))
    bias = next(k for k in params if k.endswith("bias"))
    params[bias] = params[bias] + 0.5
    paddle.save(params, str(params_path))
    rerecord(work, "paddle/model.pdparams")  # a converter bug, not a hand edit (integrity check)

    report = pipeline.validate(work, batch_sizes=(2,), layerwise=True)
    layers = report.layerwise
    assert layers.first_divergent.node == "conv" and layers.first_divergent.op_type == "Conv"
    assert layers.first_divergent.local_max_abs == pytest.approx(0.5, rel=1e-3)
    rows = {r.node: r for r in layers.rows}
    assert rows["pool_a"].local_pass and rows["pool_a"].passed
    for downstream in ("relu", "pool_b", "sigmoid", "pool_c"):
        row = rows[downstream]
        assert row.local_pass and row.passed is False and row.max_abs > 1e-3, row
        assert row.local_max_abs < 1e-5
    saved = json.loads((work / "validation.json").read_text())
    assert saved["first_divergent"]["node"] == "conv" and not np.isnan(saved["layerwise"]["rows"][1]["max_abs"])
