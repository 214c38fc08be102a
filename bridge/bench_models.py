"""Synthetic ONNX models for the benchmark (``scripts/bench.py``), built with ``onnx.helper``.

``scaling_model(nodes)``: a chain of a ten-node block (Conv, Relu, Add, Reshape, Gemm, MatMul,
Add, Mul, Reshape, Relu) on small tensors, repeated to about ``nodes`` nodes, every block
with weights of its own. ``write_big_weights_model``: a few wide MatMuls holding more than
2.5 GB of fp32 weights, written with external data block by block, so building it never
holds more than one block of weights in memory.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

OPSET = 13  # inside X2Paddle 1.6.0's mapped opsets 7..15
CHANNELS, SIDE = 4, 4  # activations are batch x 4 x 4 x 4 (64 features)
FEATURES = CHANNELS * SIDE * SIDE
BLOCK_NODES = 10


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return np.einsum("ncijkl,ockl->noij", windows, w) + b[None, :, None, None]


def scaling_model(nodes: int, seed: int = 0):
    """About ``nodes`` nodes (a multiple of ten), input ``x: batch x 4 x 4 x 4``, dynamic batch.

    Each block's ``Mul`` constant is calibrated on a reference batch (numpy, while building)
    so activations stay near unit scale over thousands of nodes instead of overflowing to
    inf or decaying to zero, which would make validating the deep models meaningless.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    blocks = max(1, round(nodes / BLOCK_NODES))
    inits = [
        numpy_helper.from_array(np.array([-1, FEATURES], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([-1, CHANNELS, SIDE, SIDE], np.int64), "image_shape"),
    ]
    graph_nodes = []
    x = "x"
    reference = rng.standard_normal((8, CHANNELS, SIDE, SIDE)).astype(np.float32)
    for b in range(blocks):
        def name(what: str) -> str:
            return f"b{b}_{what}"

        def weight(what: str, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
            values = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
            inits.append(numpy_helper.from_array(values, name(what)))
            return values

        conv_w = weight("conv_w", (CHANNELS, CHANNELS, 3, 3), CHANNELS * 9)
        conv_b = weight("conv_b", (CHANNELS,), 100)
        gemm_w = weight("gemm_w", (FEATURES, FEATURES), FEATURES)
        gemm_b = weight("gemm_b", (FEATURES,), 100)
        matmul_w = weight("matmul_w", (FEATURES, FEATURES), FEATURES)
        flat = (np.maximum(_conv3x3(reference, conv_w, conv_b), 0) + reference).reshape(-1, FEATURES)
        total = (flat @ gemm_w + gemm_b) @ matmul_w + flat
        scale = np.full(FEATURES, 1.0 / max(float(np.abs(total).mean()), 1e-6), np.float32)
        inits.append(numpy_helper.from_array(scale, name("scale")))
        reference = np.maximum(total * scale, 0).reshape(reference.shape).astype(np.float32)
        graph_nodes += [
            helper.make_node("Conv", [x, name("conv_w"), name("conv_b")], [name("conv")], name=name("conv"),
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [name("conv")], [name("relu1")], name=name("relu1")),
            helper.make_node("Add", [name("relu1"), x], [name("res")], name=name("res")),
            helper.make_node("Reshape", [name("res"), "flat_shape"], [name("flat")], name=name("flat")),
            helper.make_node("Gemm", [name("flat"), name("gemm_w"), name("gemm_b")], [name("gemm")], name=name("gemm")),
            helper.make_node("MatMul", [name("gemm"), name("matmul_w")], [name("matmul")], name=name("matmul")),
            helper.make_node("Add", [name("matmul"), name("flat")], [name("sum")], name=name("sum")),
            helper.make_node("Mul", [name("sum"), name("scale")], [name("scaled")], name=name("scaled")),
            helper.make_node("Reshape", [name("scaled"), "image_shape"], [name("image")], name=name("image")),
            helper.make_node("Relu", [name("image")], [name("out")], name=name("out")),
        ]
        x = name("out")
    graph_nodes[-1].output[0] = "y"
    shape = ["batch", CHANNELS, SIDE, SIDE]
    graph = helper.make_graph(
        graph_nodes, f"scaling_{blocks * BLOCK_NODES}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bridge-bench")
    onnx.checker.check_model(model)
    return model


def write_big_weights_model(onnx_path: Path, width: int = 16384, layers: int = 3, seed: int = 0) -> int:
    """``layers`` MatMuls ``width x width`` with Relu between, input ``x: batch x width``,
    written as ``onnx_path`` plus ``onnx_path.name + '.data'`` (external data). Returns the
    weight bytes. Each weight is generated and written in row chunks, never whole in memory."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    data_name = onnx_path.name + ".data"
    data_path = onnx_path.with_name(data_name)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    inits, nodes, offset = [], [], 0
    rows_per_chunk = max(1, (64 << 20) // (width * 4))
    with open(data_path, "wb") as data:
        for i in range(layers):
            start = offset
            for row in range(0, width, rows_per_chunk):
                rows = min(rows_per_chunk, width - row)
                chunk = (rng.standard_normal((rows, width), dtype=np.float32) / np.float32(np.sqrt(width)))
                data.write(chunk.tobytes())
            offset = data.tell()
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[width, width])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(start)), ("length", str(offset - start))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            inits.append(tensor)
            src = "x" if i == 0 else f"relu{i - 1}"
            out = "y" if i == layers - 1 else f"mm{i}"
            nodes.append(helper.make_node("MatMul", [src, f"w{i}"], [out], name=f"matmul{i}"))
            if i < layers - 1:
                nodes.append(helper.make_node("Relu", [out], [f"relu{i}"], name=f"relu{i}"))
    graph = helper.make_graph(
        nodes, "big_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bridge-bench")
    with open(onnx_path, "wb") as f:
        f.write(model.SerializeToString())
    return os.path.getsize(data_path)
