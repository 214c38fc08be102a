"""Scalars and unused graph inputs through convert, the Paddle runners, validate and the
conformance harness.

One graph holds every case: ``s`` is a rank-0 first input of a model whose batch is static
(``w`` is [5]: validate once read ``specs[0].shape[0]``, an IndexError); ``u`` is read by no
node, so X2Paddle's model does not take it (the runner once stopped with "inference model has
no input 'x2paddle_u'"); ``z`` is a rank-0 output of 0-d feeds (``np.ascontiguousarray`` once
made the feed, and so ``z``, shape [1]); ``picked`` is a rank-0 output X2Paddle's Gather really
computes as shape [1].
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.runners import OrtRunner, PaddleInferenceRunner, _rank0_as_declared
from bridge.stages.convert import paddle_input_names
from tests.helpers import parse_model, save

MODEL = """
<ir_version: 8, opset_import: ["" : 13]>
g (float s, float[5] w, float[2, 3] u) => (float[5] y, float z, float picked) <int64 i = {2}> {
    y = Mul (w, s)
    z = Mul (s, s)
    picked = Gather (w, i)
}
"""


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"s": np.asarray(np.float32(1.5)), "w": rng.standard_normal(5).astype(np.float32),
            "u": rng.standard_normal((2, 3)).astype(np.float32)}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("scalars")
    out = tmp / "work"
    pipeline.convert(str(save(parse_model(MODEL), tmp / "model.onnx")), out, echo=lambda line: None)
    return out


@pytest.fixture(scope="module")
def report(work):
    return pipeline.validate(work)


def _convert_record(work: Path) -> dict:
    return json.loads((work / "manifest.json").read_text())["stages"]["convert"]


def test_static_batch_with_a_rank_0_first_input_validates(report):
    assert report.passed, report.render()
    assert "batch axis is static (5); validated at batch 5 only" in report.notes
    assert {(d.output, d.runner) for d in report.diffs if d.passed} == {
        (o, r) for o in ("y", "z", "picked") for r in ("paddle_inference", "paddle_dygraph")}


def test_unused_input_is_recorded_and_not_fed(work, report):
    record = _convert_record(work)
    assert record["paddle_inputs"] == {"s": "x2paddle_s", "w": "x2paddle_w"}
    assert record["unused_inputs"] == ["u"]
    assert any("graph input(s) u unused by the converted model" in n for n in record["notes"])
    runner = PaddleInferenceRunner(work / "paddle", record["paddle_inputs"], record["paddle_outputs"])
    assert runner.predictor.get_input_names() == ["x2paddle_s", "x2paddle_w"]
    got = runner.run(_feeds())  # u given, as to ONNX Runtime, and left out
    expected = OrtRunner(work / "model.patched.onnx").run(_feeds())
    np.testing.assert_allclose(got["y"], expected["y"], rtol=1e-6)


def test_rank_0_feeds_stay_0d_and_a_1_element_rank_0_output_is_reshaped(work, report):
    record = _convert_record(work)
    assert record["rank0_outputs"] == ["z", "picked"]
    plain = PaddleInferenceRunner(work / "paddle", record["paddle_inputs"], record["paddle_outputs"])
    raw = plain.run(_feeds())
    assert raw["z"].shape == () and raw["picked"].shape == (1,)  # Paddle's own shapes
    declared = PaddleInferenceRunner(work / "paddle", record["paddle_inputs"], record["paddle_outputs"],
                                     rank0_outputs=record["rank0_outputs"])
    got = declared.run(_feeds())
    assert got["z"].shape == () and got["picked"].shape == () and declared.reshaped_outputs == {"picked"}
    assert got["picked"] == _feeds()["w"][2]
    for runner in ("paddle_inference", "paddle_dygraph"):  # recorded in the report
        assert (f"{runner} gave rank-0 output(s) picked as shape [1]; compared as rank 0, "
                "as the ONNX graph declares") in report.notes


def test_only_a_1_element_rank_1_output_declared_rank_0_is_reshaped():
    outs = {"a": np.ones(1), "b": np.ones(2), "c": np.ones((1, 1)), "d": np.ones(1)}
    reshaped: set[str] = set()
    got = _rank0_as_declared(outs, frozenset({"a", "b", "c"}), reshaped)
    assert [got[k].shape for k in "abcd"] == [(), (2,), (1, 1), (1,)] and reshaped == {"a"}


def test_paddle_input_names_reads_forward(tmp_path):
    code = tmp_path / "x2paddle_code.py"
    code.write_text("class ONNXModel:\n    def forward(self, x2paddle_a, x2paddle_b):\n        pass\n"
                    "def main(x2paddle_a, x2paddle_b, x2paddle_c):\n    pass\n")
    assert paddle_input_names(code) == ["x2paddle_a", "x2paddle_b"]
    code.write_text("class Other:\n    def forward(self, x):\n        pass\n")
    with pytest.raises(BridgeError, match="X2Paddle wrote no ONNXModel.forward"):
        paddle_input_names(code)


def test_conformance_case_with_numpy_scalar_inputs_and_outputs(tmp_path):
    """ONNX's node cases give rank-0 inputs and expected outputs as numpy scalars
    (np.float32): the harness feeds and compares them as 0-d arrays."""
    from bridge.conformance_case import CasePayload, _as_numpy, compare_outputs, run_case

    assert isinstance(_as_numpy(np.float32(2.0)), np.ndarray) and _as_numpy(np.float32(2.0)).shape == ()
    assert compare_outputs({"z": np.asarray(np.float32(2.0))}, [_as_numpy(np.float32(2.0))], ["z"], 0) == (None, 0.0)
    model = parse_model(MODEL)
    feeds = _feeds()
    expected = OrtRunner(save(model, tmp_path / "ort.onnx")).run(feeds)
    inputs = [np.float32(feeds["s"]), feeds["w"], feeds["u"]]
    outputs = [expected["y"], np.float32(expected["z"]), np.float32(expected["picked"])]
    assert isinstance(inputs[0], np.generic) and isinstance(outputs[2], np.generic)  # as node cases give them
    payload = CasePayload("scalars", onnx.ModelProto.SerializeToString(model), [(inputs, outputs)])
    (tmp_path / "case").mkdir()
    outcome = run_case(payload, tmp_path / "case")
    assert (outcome.status, outcome.error) == ("pass", None)
    assert "rank-0 output(s) picked came back as shape [1]; compared as rank 0" in outcome.notes
