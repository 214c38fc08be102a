"""bridge reduce: planted faults in otherwise fine models shrink to a few-node repro that still
fails the same way, fed with ONNX Runtime's intermediate values, and its command shows it.

Faults: (a) a MaxPool without ``strides`` among pools that give them, converted with the
pool_default_strides patch left out (X2Paddle passes ``stride=None``; Paddle strides by the
kernel: a real numerical divergence); (b) a ``Round`` node, which X2Paddle has no mapping for,
among nodes it converts.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bridge import cli, pipeline
from bridge.patches import DEFAULT_PATCHES
from bridge.runners import OrtRunner
from bridge.spec import InputSpec, parse_source
from bridge.stages import patch as patch_stage
from bridge.stages.export import random_inputs
from bridge.workdir import PATCHED_ONNX, SIMPLIFIED_ONNX, Manifest
from tests.helpers import parse_model

ROOT = Path(__file__).resolve().parent.parent
MAX_NODES = 5


def pools_model() -> onnx.ModelProto:
    """Three Conv → Relu → MaxPool blocks and a GlobalAveragePool; the second pool has no strides."""
    rng = np.random.default_rng(0)
    nodes, weights, prev, channels = [], [], "x", 2
    for k, strides in enumerate(([2, 2], None, [1, 1])):
        weights.append(numpy_helper.from_array(
            (rng.standard_normal((4, channels, 3, 3)) * 0.3).astype(np.float32), f"w{k}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"conv{k}"], name=f"conv{k}",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{k}"], [f"relu{k}"], name=f"relu{k}"))
        nodes.append(helper.make_node("MaxPool", [f"relu{k}"], [f"pool{k}"], name=f"pool{k}", kernel_shape=[2, 2],
                                      **({"strides": strides} if strides else {})))
        prev, channels = f"pool{k}", 4
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["y"], name="gap"))
    graph = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 16, 16])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 1, 1])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


ROUND_MODEL = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 3, 8] x) => (float[N, 3, 8] y) {
        two = Constant <value = float {2.0}> ()
        a = Mul (x, two)
        b = Relu (a)
        c = Add (b, two)
        r = Round (c)
        d = Sub (r, x)
        e = Sigmoid (d)
        y = Mul (e, two)
    }"""


def work_dir(tmp_path: Path, model: onnx.ModelProto, skip_patch: str | None = None) -> Path:
    """export → simplify → patch (without ``skip_patch``), as `bridge stage` runs them."""
    source = tmp_path / "model.onnx"
    onnx.save(model, str(source))
    work = tmp_path / "work"
    pipeline.step_export(work, parse_source(str(source)), [])
    pipeline.step_simplify(work)
    patches = tuple(p for p in DEFAULT_PATCHES if p.name != skip_patch)
    patch_stage.run(work / SIMPLIFIED_ONNX, work / PATCHED_ONNX, patches)
    return work


def reduce_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["reduce", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_command_txt(repro: Path) -> subprocess.CompletedProcess:
    """The command the repro folder names, run as a user would."""
    argv = shlex.split((repro / "command.txt").read_text().strip())
    assert argv[:2] == ["bridge", "reduce"]
    return subprocess.run([sys.executable, "-m", "bridge", *argv[1:]], cwd=ROOT, capture_output=True, text=True)


def ort_values(onnx_path: Path, feeds: dict[str, np.ndarray], names: list[str], tmp: Path) -> dict[str, np.ndarray]:
    """``names`` computed by ONNX Runtime on the whole model (exposed as extra outputs)."""
    model = onnx.load(str(onnx_path))
    model.graph.output.extend(helper.ValueInfoProto(name=n) for n in names)
    onnx.save(model, str(tmp / "exposed.onnx"))
    return OrtRunner(tmp / "exposed.onnx").run(feeds)


def test_reduce_numerical_fault_to_the_pool(tmp_path, capsys):
    work = work_dir(tmp_path, pools_model(), skip_patch="pool_default_strides")
    planted = [n for n in onnx.load(str(work / PATCHED_ONNX)).graph.node if n.op_type == "MaxPool"
               and not any(a.name == "strides" for a in n.attribute)]
    assert [n.name for n in planted] == ["pool1"]  # the fault survived simplify and patch

    code, out = reduce_cli(capsys, work, "--max-trials", 12)
    assert code == 0, out
    assert "FAILS: mismatch" in out.splitlines()[1]
    repro = work / "repro"
    model = onnx.load(str(repro / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert 1 <= len(model.graph.node) <= MAX_NODES
    assert "pool1" in [n.name for n in model.graph.node]
    assert "node 'pool1' (MaxPool)" in out
    record = json.loads((repro / "failure.json").read_text())
    assert record["failure"]["kind"] == "mismatch" and record["trials"] <= 12

    # The inputs are what ONNX Runtime computed at the cut from validate's batch-1 feed.
    specs = [InputSpec.from_json(s) for s in Manifest.load(work).data["inputs"]]
    feeds = random_inputs(specs, batch=1, seed=1)
    with np.load(repro / "inputs.npz") as data:
        repro_inputs = {k: data[k] for k in data.files}
    assert set(repro_inputs) == {i.name for i in model.graph.input} and "x" not in repro_inputs
    expected = ort_values(work / PATCHED_ONNX, feeds, sorted(repro_inputs), tmp_path)
    for name, value in repro_inputs.items():
        np.testing.assert_array_equal(value, expected[name])

    proc = run_command_txt(repro)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILS: mismatch" in proc.stdout and "(as recorded)" in proc.stdout
    assert "pool1" in proc.stdout  # the pool's own output is where the repro diverges


def test_reduce_conversion_failure_to_the_refused_node(tmp_path, capsys):
    # An ONNX file (a refused conversion leaves no work directory) is reduced as it is.
    source = tmp_path / "round.onnx"
    onnx.save(parse_model(ROUND_MODEL), str(source))
    code, out = reduce_cli(capsys, source)
    assert code == 0, out
    repro = tmp_path / "round.repro"
    model = onnx.load(str(repro / "model.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Round"]
    record = json.loads((repro / "failure.json").read_text())
    assert record["failure"]["kind"] == "conversion" and "Round" in record["failure"]["detail"]
    with np.load(repro / "inputs.npz") as data:  # Round's input, as ONNX Runtime computed it
        assert list(data.files) == ["c"]
        feeds = random_inputs([InputSpec("x", (1, 3, 8))], batch=1, seed=1)
        np.testing.assert_array_equal(data["c"], ort_values(source, feeds, ["c"], tmp_path)["c"])

    proc = run_command_txt(repro)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILS: conversion" in proc.stdout and "no mapping for op type Round" in proc.stdout
    assert "(as recorded)" in proc.stdout


def test_reduce_a_model_that_does_not_fail(tmp_path, capsys):
    work = work_dir(tmp_path, pools_model())  # every patch: the pool gets its explicit stride
    code, out = reduce_cli(capsys, work)
    assert code == 1, out
    assert "nothing to reduce" in out
    assert not (work / "repro").exists()


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing"], "no such work directory"),
    (["{tmp}"], "not a bridge work directory"),
    (["--check", "{tmp}"], "not a repro folder"),
    (["{tmp}", "--max-trials", "0"], "--max-trials 0"),
    (["{tmp}/bad.onnx"], "not a valid ONNX model"),
])
def test_reduce_bad_input(tmp_path, capsys, args, message):
    (tmp_path / "bad.onnx").write_bytes(b"not protobuf")
    code, out = reduce_cli(capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2, out
    assert message in out and len(out.strip().splitlines()) == 1
