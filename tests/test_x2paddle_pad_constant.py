"""Shim pad_constant (patches/x2paddle_pad_constant.py): X2Paddle's constant-mode Pad on a
rank-4 tensor kills or hangs the conversion, and from opset 11 it ignores the pad value. The
"without" halves run in a fresh process with the shim left out of SHIMS."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge.patches import x2paddle_pad_constant, x2paddle_shims
from tests.helpers import run_ort


def _pad_model(rank: int, opset: int, value: float, mode: str = "constant",
               batch_channel_pads: bool = True) -> onnx.ModelProto:
    shape = [2, 3, 4, 5, 2][:rank]
    pads = ([0, 1, 2, 0, 1][:rank]) + ([1, 0, 3, 2, 0][:rank])
    if not batch_channel_pads:
        pads[0] = pads[1] = pads[rank] = pads[rank + 1] = 0
    out_shape = [d + b + e for d, b, e in zip(shape, pads[:rank], pads[rank:])]
    inits, inputs, attrs = [], ["x"], {"mode": mode}
    if opset >= 11:
        inits.append(numpy_helper.from_array(np.array(pads, np.int64), "pads"))
        inputs.append("pads")
        if mode == "constant":
            inits.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
            inputs.append("value")
    else:
        attrs.update(pads=pads, value=value)
    graph = helper.make_graph(
        [helper.make_node("Pad", inputs, ["y"], name="pad", **attrs)], "pad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"x": np.random.default_rng(0).standard_normal(dims).astype(np.float32)}


WITHOUT_SHIM = """
    import sys
    from pathlib import Path
    from bridge.patches import x2paddle_shims as shims
    shims.SHIMS = tuple(s for s in shims.SHIMS if s.name != "pad_constant")
    shims.install()
    from bridge.stages.convert import convert_in_process
    convert_in_process(Path(sys.argv[1]), Path(sys.argv[2]))
    print("CONVERTED")
"""


RUN_PADDLE = """
    import sys
    import numpy as np
    from pathlib import Path
    from bridge.runners import PaddleInferenceRunner
    from bridge.stages.convert import x2paddle_name
    x = np.load(sys.argv[2])
    runner = PaddleInferenceRunner(Path(sys.argv[1]), {"x": x2paddle_name("x")}, [x2paddle_name("y")])
    np.save(sys.argv[3], next(iter(runner.run({"x": x}).values())))
    print("RAN")
"""


def _child(code: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess | None:
    """``code`` in a fresh interpreter; None when it hangs past ``timeout``."""
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONDONTWRITEBYTECODE="1")
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None


def test_rank4_constant_pad_is_broken_without_the_shim(tmp_path):
    model = _pad_model(4, 13, 0.0)
    path = tmp_path / "pad.onnx"
    onnx.save(model, str(path))
    converted = _child(WITHOUT_SHIM, path, tmp_path / "out")
    assert converted is not None and "CONVERTED" in converted.stdout, converted and converted.stderr[-2000:]
    # Eight values where Pad2D takes four ([left, right, top, bottom]):
    assert "Pad2D(mode='constant', padding=[0, 1, 1, 0, 2, 3, 0, 2])" in (tmp_path / "out" / "x2paddle_code.py").read_text()
    feeds = _feeds(model)
    np.save(tmp_path / "x.npy", feeds["x"])
    ran = _child(RUN_PADDLE, tmp_path / "out", tmp_path / "x.npy", tmp_path / "y.npy", timeout=20)
    if ran is None or ran.returncode != 0:
        return  # a hang or a heap-corruption abort: what onnx's test_ZeroPad2d / test_ConstantPad2d saw
    got, expected = np.load(tmp_path / "y.npy"), run_ort(model, feeds, tmp_path)["y"]
    assert got.shape != expected.shape or not np.array_equal(got, expected)


def _convert_choose_run(model: onnx.ModelProto, feeds: dict, tmp: Path) -> tuple[np.ndarray, dict]:
    """As the pipeline does: X2Paddle, then the checked Paddle Inference settings, then a run."""
    from bridge import inference_settings
    from bridge.runners import PaddleInferenceRunner
    from bridge.stages import convert as convert_stage

    onnx.save(model, str(tmp / "model.onnx"))
    result = convert_stage.run(tmp / "model.onnx", tmp / "paddle", tmp / "convert.log")
    settings = inference_settings.choose(tmp / "paddle", [feeds], result.inputs, result.outputs)
    runner = PaddleInferenceRunner(tmp / "paddle", result.inputs, result.outputs, settings=settings)
    return runner.run(feeds)[result.outputs[0]], settings


# (rank, opset, value, padded batch/channels): the spatial form (pad3d) where batch and
# channels are not padded, else the full-rank form (generic pad op, oneDNN kept off).
CASES = [(4, 13, 0.0, False), (4, 7, 0.0, False), (4, 13, 1.5, False), (3, 13, -2.0, False),
         (4, 13, 0.5, True), (5, 11, 0.25, True)]


@pytest.mark.parametrize("rank,opset,value,full_rank", CASES)
def test_constant_pad_converts_and_matches_ort(tmp_path, rank, opset, value, full_rank):
    model = _pad_model(rank, opset, value, batch_channel_pads=full_rank)
    feeds = _feeds(model)
    expected = run_ort(model, feeds, tmp_path)["y"]
    got, settings = _convert_choose_run(model, feeds, tmp_path)
    np.testing.assert_array_equal(got, expected)
    ops = inference_settings_ops(tmp_path / "paddle")
    if full_rank:
        assert "pad" in ops and settings["chosen"] == "plain-cpu"
        assert any("skipped" in t and "'pad'" in t["skipped"] for t in settings["tried"])
    else:
        assert "pad3d" in ops and "pad" not in ops
        # oneDNN is tried and agrees (the speed check may still prefer plain CPU on a tiny model)
        assert (settings["tried"][0]["settings"], settings["tried"][0]["ok"]) == ("onednn", True)
        assert not any("skipped" in t for t in settings["tried"])


def inference_settings_ops(paddle_dir: Path) -> set[str]:
    from bridge.inference_settings import program_ops

    return program_ops(paddle_dir)


def test_pad_value_input_is_ignored_without_the_shim(tmp_path):
    """Opset 11+ ``constant_value`` (rank 3: X2Paddle's Pad converts there): without the shim
    the converted model pads with 0 instead of the value."""
    from bridge.runners import PaddleInferenceRunner
    from bridge.stages.convert import x2paddle_name

    model = _pad_model(3, 13, 1.5)
    path = tmp_path / "pad.onnx"
    onnx.save(model, str(path))
    proc = _child(WITHOUT_SHIM, path, tmp_path / "out")
    assert proc is not None and "CONVERTED" in proc.stdout, proc and proc.stderr[-2000:]
    feeds = _feeds(model)
    expected = run_ort(model, feeds, tmp_path)["y"]
    from bridge.inference_settings import COMMON, CANDIDATES

    plain = {**COMMON, **dict(CANDIDATES)["plain-cpu"]}  # X2Paddle writes the generic pad op: no oneDNN
    runner = PaddleInferenceRunner(tmp_path / "out", {"x": x2paddle_name("x")}, [x2paddle_name("y")], settings=plain)
    got = next(iter(runner.run(feeds).values()))
    padded = expected == np.float32(1.5)
    assert padded.any() and (got[padded] == 0).all()  # the value input was dropped
    np.testing.assert_array_equal(got[~padded], expected[~padded])


def test_other_modes_and_computed_pads_go_to_x2paddle(tmp_path):
    """Reflect mode is X2Paddle's own path (which handles rank 4 right); still converts."""
    model = _pad_model(4, 13, 0.0, mode="reflect", batch_channel_pads=False)
    feeds = _feeds(model)
    expected = run_ort(model, feeds, tmp_path)["y"]
    got, _ = _convert_choose_run(model, feeds, tmp_path)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_pad_constant_is_idempotent():
    shim = {s.name: s for s in x2paddle_shims.SHIMS}["pad_constant"]
    shim.apply()
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    first = opset_legacy.OpSet.Pad
    shim.apply()
    assert opset_legacy.OpSet.Pad is first
    assert getattr(first, "__bridge_original_pad__", None) is not None
    assert x2paddle_pad_constant.pad_constant is not None
