"""bridge.bench_profile: a real conversion profiled under Paddle Inference (bridge config) and
ONNX Runtime, each in its own process; the "where the time goes" rows and their README table.
No timing values are asserted: only that the op types are the model's and the times add up."""
from __future__ import annotations

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

from bridge import bench_profile, pipeline
from bridge.bench_profile import OpTime, RuntimeProfile, ort_trace_ops, paddle_kind, paddle_trace_ops
from bridge.bench_report import _profile


def _model() -> onnx.ModelProto:
    """y = tanh(sigmoid(x)) @ w + b on x: batch × 16 (the activations first: ORT fuses one
    after a Gemm into FusedGemm)."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
         helper.make_node("MatMul", ["t", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        "profiled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_profile_of_a_converted_model_has_its_op_types_and_times_within_the_call(tmp_path):
    onnx.save(_model(), str(tmp_path / "model.onnx"))
    work = tmp_path / "work"
    pipeline.convert(str(tmp_path / "model.onnx"), work, echo=lambda line: None)

    result = bench_profile.profile_model(work, "profiled", threads=1, runs=10, warmup=1, log=tmp_path / "log")
    assert result["errors"] == {}, (tmp_path / "log").read_text()[-2000:]
    paddle = RuntimeProfile.from_json(result["profiles"]["paddle_inference"])
    ort = RuntimeProfile.from_json(result["profiles"]["onnxruntime"])

    kinds = {paddle_kind(o.op_type)[0] for o in paddle.ops}
    assert {"sigmoid", "tanh"} <= kinds, kinds  # after Paddle's passes; matmul and add may be fused
    assert kinds <= {"matmul", "add", "sigmoid", "tanh", "fc", "onednn_to_paddle_layout"}, kinds
    ort_calls = {o.op_type: o.calls for o in ort.ops}
    assert ort_calls.get("Sigmoid") == 1 and ort_calls.get("Tanh") == 1, (ort_calls, paddle.ops)  # one kernel per call each
    assert set(ort_calls) <= {"MatMul", "Add", "Gemm", "FusedMatMul", "FusedGemm", "Sigmoid", "Tanh"}, ort_calls
    for profile in (paddle, ort):
        assert profile.runs == 10 and profile.unprofiled_s > 0
        assert all(o.seconds >= 0 and o.calls > 0 for o in profile.ops)
        assert profile.op_s <= profile.wall_s  # kernels run inside run(feeds)
        assert sum(o.seconds for o in profile.scaled()) <= profile.unprofiled_s * (1 + 1e-9)

    table = bench_profile.where_time_goes(result, per_op_s=None)
    assert table["paddle"]["in_kernels_seconds"] + table["paddle"]["outside_seconds"] == pytest.approx(
        table["paddle"]["seconds"])
    by_kind = {paddle_kind(r["op_type"])[0]: r for r in table["rows"]}
    assert by_kind["sigmoid"]["ort_kinds"] == ["Sigmoid"] and by_kind["tanh"]["ort_kinds"] == ["Tanh"]
    assert by_kind["sigmoid"]["why"].startswith("sigmoid")
    assert all(0 <= r["share"] <= 1 for r in table["rows"])

    section = {"rows": [result], "runs": 10, "warmup": 1, "threads": 1,
               "methods": {"paddle_inference": bench_profile.PADDLE_METHOD, "onnxruntime": bench_profile.ORT_METHOD}}
    text = "\n".join(_profile(section, {}))
    assert f"| profiled | {result['bridge_settings']['chosen']} " in text  # the config profiled
    assert "`" + by_kind["sigmoid"]["op_type"] + "`" in text


def test_trace_parsers_count_kernels_per_call_and_skip_ort_warmup():
    trace = {"traceEvents": [
        {"cat": "Operator", "ph": "X", "name": "onednn_op.fused_conv2d[12.000 us]", "ts": 0, "dur": 12.0},
        {"cat": "Operator", "ph": "X", "name": "pd_op.add[1.500 us]", "ts": 12, "dur": 1.5},
        {"cat": "Operator", "ph": "X", "name": "pd_op.add[2.500 us]", "ts": 30, "dur": 2.5},
        {"cat": "ProfileStep", "ph": "X", "name": "ProfileStep#0", "ts": 0, "dur": 40.0},
    ]}
    ops = paddle_trace_ops(trace, runs=2)
    assert [(o.op_type, o.calls) for o in ops] == [("onednn_op.fused_conv2d", 0.5), ("pd_op.add", 1.0)]
    assert ops[1].seconds == pytest.approx(2e-6)  # (1.5 + 2.5) µs over 2 calls

    def node(op: str, ts: int, dur: int) -> dict:
        return {"cat": "Node", "name": f"n_{op}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 10}, node("Conv", 1, 9),  # warm-up
              {"cat": "Session", "name": "model_run", "ts": 20, "dur": 10}, node("Conv", 21, 4), node("Relu", 25, 1)]
    assert [(o.op_type, o.calls, o.seconds) for o in ort_trace_ops(events, runs=1)] == [("Conv", 1, 4e-6), ("Relu", 1, 1e-6)]
    assert paddle_kind("pd_op.batch_norm_") == ("batch_norm", None)
    assert bench_profile.ort_kinds("onednn_op.fused_matmul", ["Gemm", "Relu", "MatMul"]) == ["Gemm", "MatMul"]
    assert "no ORT kernel" in bench_profile.why(OpTime("pd_op.slice", 3, 3e-6), [], [], None)
