"""bridge.bench_cost: FLOP counts against hand-computed ones, the op chain, the Paddle op
count of a real conversion, and the FP32 peak's arithmetic (no timing assertions)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bridge import bench_cost
from bridge.runners import OrtRunner
from tests.helpers import save


def _conv_gemm_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    g = numpy_helper.from_array(np.zeros((8 * 6 * 6, 10), np.float32), "g")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),  # 3x8x8 -> 8x6x6
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("MatMul", ["f", "g"], ["y"]),
        ],
        "conv_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        [w, g],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_onnx_flops_counts_conv_and_matmul(tmp_path):
    path = save(_conv_gemm_model(), tmp_path / "m.onnx")
    conv = 2 * (8 * 6 * 6) * (3 * 3 * 3)  # per sample: outputs x (Cin x kernel) multiply-adds, x 2
    matmul = 2 * (8 * 6 * 6) * 10
    assert bench_cost.onnx_flops(path, 1) == conv + matmul
    assert bench_cost.onnx_flops(path, 4) == 4 * (conv + matmul)


def test_op_chain_runs_and_converts_to_that_many_paddle_ops(tmp_path):
    from bridge.stages import convert as convert_stage

    model = bench_cost.op_chain_model(5)
    path = save(model, tmp_path / "chain.onnx")
    x = np.linspace(-1, 1, 2 * bench_cost.CHAIN_WIDTH, dtype=np.float32).reshape(2, -1)
    expected = x
    for _ in range(5):
        expected = 1 / (1 + np.exp(-expected))
    np.testing.assert_allclose(OrtRunner(path).run({"x": x})["y"], expected, rtol=1e-6)
    convert_stage.run(path, tmp_path / "paddle", tmp_path / "convert.log")
    counted = bench_cost.paddle_op_count(tmp_path / "paddle")
    assert counted["ops"] == 5 and counted["top"] == [("sigmoid", 5)]
    assert bench_cost.paddle_op_count(tmp_path / "missing") is None


def test_fp32_peak_arithmetic():
    peak = bench_cost.fp32_peak(threads=1, sgemm_size=64, repeats=2)
    if peak["mhz"] is not None:
        assert peak["theoretical_gflops"] == peak["mhz"] / 1000 * peak["flops_per_cycle"]
        assert peak["flops_per_cycle"] == peak["fma_units_assumed"] * peak["vector_lanes_fp32"] * (
            2 if peak["fma_units_assumed"] == 2 else 1)
    assert peak["sgemm_gflops"] is None or peak["sgemm_gflops"] > 0
