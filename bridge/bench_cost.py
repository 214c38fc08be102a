"""What the benchmark's timings are measured against (``scripts/bench.py``): the machine's FP32
peak, a model's FLOPs, and the per-op dispatch cost of each runtime.

- ``fp32_peak()``: the theoretical peak from ``/proc/cpuinfo`` (cores × clock × FLOPs per
  cycle: 2 FMA units × vector lanes × 2), and an achievable one measured with numpy's sgemm.
- ``onnx_flops(path, batch)``: multiply-adds × 2 of the Conv, ConvTranspose, Gemm and MatMul
  nodes, from shapes ONNX shape inference gives at that batch; everything else is ignored
  (it is memory-bound and small next to those).
- ``op_chain_model(n)``: ``n`` Sigmoid nodes on a 1×16 tensor (not Relu: onnxsim folds a chain of
  an idempotent op into one node). The time per call of a chain of
  201 minus that of 1, over 200, is what a runtime spends per op beyond the op's arithmetic:
  the floor under any model made of many small ops.
- ``paddle_op_count(paddle_dir)``: the ops of the saved Paddle inference program, without
  its parameter, data and fetch ops.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

CHAIN_WIDTH = 16
CHAIN_LENGTHS = (1, 201)
_FREE_OPS = {"parameter", "p", "data", "fetch", "feed", "shadow_output"}


def fp32_peak(threads: int, sgemm_size: int = 2048, repeats: int = 10) -> dict:
    """Theoretical and measured FP32 peak for ``threads`` cores, in GFLOP/s."""
    flags: set[str] = set()
    mhz = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
    except OSError:
        pass
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma_units = 2 if "fma" in flags else 1
    flops_per_cycle = fma_units * lanes * (2 if "fma" in flags else 1)
    theoretical = None if mhz is None else threads * mhz / 1000 * flops_per_cycle
    code = (
        "import time, numpy as np\n"
        f"n, r = {sgemm_size}, {repeats}\n"
        "a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32); b = a.copy()\n"
        "a @ b\n"
        "best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(r))\n"
        "print(2 * n ** 3 / best / 1e9)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    measured = None
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        measured = float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        pass
    return {
        "threads": threads, "mhz": mhz, "vector_lanes_fp32": lanes, "fma_units_assumed": fma_units,
        "flops_per_cycle": flops_per_cycle, "theoretical_gflops": theoretical,
        "sgemm_gflops": measured, "sgemm": f"numpy float32 {sgemm_size}³ matmul, best of {repeats}, {threads} threads",
    }


def onnx_flops(onnx_path: Path, batch: int) -> int:
    """2 × multiply-adds of the model's Conv/ConvTranspose/Gemm/MatMul nodes at ``batch``."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    model = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)

    def known(name: str) -> list[int] | None:
        shape = shapes.get(name)
        return shape if shape is not None and all(d is not None for d in shape) else None

    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w, y = known(node.input[1]), known(node.output[0])
            x = known(node.input[0])
            if w is None or y is None or x is None:
                continue
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            kernel = 1
            for d in w[2:]:
                kernel *= d
            if node.op_type == "Conv":  # each output element: Cin/group × kernel multiply-adds
                per_out, outputs = w[1] * kernel, 1
                for d in y:
                    outputs *= d
            else:  # each input element scatters into Cout/group × kernel outputs
                per_out, outputs = (w[1]) * kernel, 1
                for d in x:
                    outputs *= d
            total += 2 * per_out * outputs
        elif node.op_type in ("Gemm", "MatMul"):
            a, y = known(node.input[0]), known(node.output[0])
            if a is None or y is None or not a:
                continue
            trans_a = next((a_.i for a_ in node.attribute if a_.name == "transA"), 0)
            k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
            outputs = 1
            for d in y:
                outputs *= d
            total += 2 * k * outputs
    return total


def op_chain_model(nodes: int):
    """``nodes`` Sigmoid nodes in a chain on ``x: batch × 16`` (dynamic batch), opset 13."""
    from onnx import TensorProto, helper

    names = ["x"] + [f"t{i}" for i in range(1, nodes)] + ["y"]
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", [names[i]], [names[i + 1]], name=f"sigmoid{i}") for i in range(nodes)],
        f"sigmoid_chain_{nodes}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", CHAIN_WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CHAIN_WIDTH])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="bridge-bench")
    model.ir_version = 8
    return model


def paddle_op_count(paddle_dir: Path) -> dict | None:
    """Ops of the saved inference program (before Paddle Inference's own passes run at load),
    by type, without parameter/data/fetch ops; None when there is no readable program."""
    program = paddle_dir / "inference_model" / "model.json"
    try:
        data = json.loads(program.read_text())
        ops = data["program"]["regions"][0]["blocks"][0]["ops"]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    kinds = Counter(re.sub(r"^\d+\.", "", op.get("#", "")).split(".")[-1] for op in ops)
    for free in _FREE_OPS:
        kinds.pop(free, None)
    return {"ops": sum(kinds.values()), "top": kinds.most_common(5)}
