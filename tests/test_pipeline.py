"""The seed model end to end: each stage's artifact and manifest record, validation numbers,
a relocated output folder, stage reruns."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.workdir import Manifest
from tests.helpers import rerecord


def test_export_stage(seqnet_work):
    export = Manifest.load(seqnet_work).data["stages"]["export"]
    assert export["exporter"] == "torchscript@13" and export["opset"] == 13
    assert export["torch_version"].startswith("2.13.0")
    model = onnx.load(str(seqnet_work / "model.onnx"))
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param  # dynamic batch axis
    # What the TorchScript exporter writes for the seed's pool: invalid ONNX (rank-3 input, 2-D kernel).
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 4
    with pytest.raises((onnx.checker.ValidationError, onnx.shape_inference.InferenceError)):
        onnx.checker.check_model(model, full_check=True)


def test_simplify_and_patch_stages(seqnet_work):
    stages = Manifest.load(seqnet_work).data["stages"]
    assert stages["simplify"]["simplified"] is True
    assert stages["simplify"]["nodes_after"] <= stages["simplify"]["nodes_before"]
    fired = [f["patch"] for f in stages["patch"]["fired"]]
    assert fired.count("maxpool_unbatched") == 4 and fired.count("drop_unit_dilations") == 4
    patched = onnx.load(str(seqnet_work / "model.patched.onnx"))
    onnx.checker.check_model(patched, full_check=True)
    for node in patched.graph.node:
        if node.op_type == "MaxPool":
            assert [a.name for a in node.attribute if a.name == "dilations"] == []


def test_convert_stage(seqnet_work):
    paddle_dir = seqnet_work / "paddle"
    assert (paddle_dir / "model.pdparams").is_file()
    assert (paddle_dir / "inference_model" / "model.json").is_file()
    code = (paddle_dir / "x2paddle_code.py").read_text()
    assert str(seqnet_work) not in code and "paddle.nn.MaxPool1D" in code
    convert = Manifest.load(seqnet_work).data["stages"]["convert"]
    assert convert["paddle_inputs"] == {"x": "x2paddle_x"}
    assert (seqnet_work / "logs" / "convert.log").read_text()  # X2Paddle's chatter landed here


def test_validate_seed(seqnet_work):
    report = pipeline.validate(seqnet_work)
    assert report.passed, report.render()
    assert report.batch_sizes == [1, 2, 8]
    seen = {(d.runner, d.reference, d.batch) for d in report.diffs}
    for batch in (1, 2, 8):
        for runner in ("paddle_inference", "paddle_dygraph"):
            for reference in ("onnxruntime", "torch"):
                assert (runner, reference, batch) in seen
    for d in report.diffs:
        assert d.max_abs_diff <= 1e-5, d
        assert d.shape == [d.batch, 1]
    saved = json.loads((seqnet_work / "validation.json").read_text())
    assert saved["passed"] is True and len(saved["diffs"]) == len(report.diffs)
    assert "PASSED" in (seqnet_work / "validation.txt").read_text()


def test_relocated_output_folder_validates(seqnet_work, tmp_path):
    moved = tmp_path / "elsewhere" / "seqnet"
    shutil.copytree(seqnet_work, moved)
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(moved), "--batch-sizes", "2"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PASSED" in proc.stdout


def test_validate_detects_a_wrong_model(seqnet_work, tmp_path):
    """A converted model that disagrees with the references fails validation (exit code 1)."""
    import paddle

    broken = tmp_path / "broken"
    shutil.copytree(seqnet_work, broken)
    params_path = broken / "paddle" / "model.pdparams"
    params = paddle.load(str(params_path))
    name = next(k for k in params if k.endswith("fc2_bias"))
    params[name] = params[name] + 0.5
    paddle.save(params, str(params_path))
    rerecord(broken, "paddle/model.pdparams")  # a converter bug, not a hand edit (integrity check)
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "validate", str(broken), "--batch-sizes", "1"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "paddle_dygraph" in proc.stdout and "FAIL" in proc.stdout
    assert json.loads((broken / "validation.json").read_text())["passed"] is False


def test_rerunning_a_stage_drops_later_records(seqnet_work, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(seqnet_work, work)
    pipeline.step_patch(work)
    stages = Manifest.load(work).data["stages"]
    assert "patch" in stages and "convert" not in stages
    with pytest.raises(BridgeError, match="convert stage has not run"):
        pipeline.validate(work)


def test_simplify_failure_keeps_unsimplified_model(seqnet_work, tmp_path, monkeypatch):
    import onnxsim

    def fail(*args, **kwargs):
        raise RuntimeError("simulated onnxsim failure")

    monkeypatch.setattr(onnxsim, "simplify", fail)
    work = tmp_path / "w"
    shutil.copytree(seqnet_work, work)
    line = pipeline.step_simplify(work)
    assert "FAILED" in line
    record = Manifest.load(work).data["stages"]["simplify"]
    assert record["simplified"] is False and "simulated onnxsim failure" in record["error"]
    assert (work / "model.simplified.onnx").read_bytes() == onnx.load(str(work / "model.onnx")).SerializeToString()


@pytest.mark.parametrize("script", ["01_export.py", "02_simplify.py", "03_patch.py", "04_convert.py", "05_validate.py"])
def test_stage_scripts_show_help(script):
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "scripts" / script), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage:" in proc.stdout


def test_stage_scripts_run_in_order(tmp_path):
    root = Path(__file__).resolve().parent.parent
    work = tmp_path / "w"

    def run(script, *args):
        proc = subprocess.run([sys.executable, str(root / "scripts" / script), *args],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run("01_export.py", "bridge.models.seqnet:seqnet", "--out", str(work)).startswith("export:")
    assert run("02_simplify.py", str(work)).startswith("simplify:")
    assert "maxpool_unbatched ×4" in run("03_patch.py", str(work))
    assert run("04_convert.py", str(work)).startswith("convert:")
    assert "PASSED" in run("05_validate.py", str(work), "--batch-sizes", "1")


def test_stage_diff_names_the_first_divergent_stage(seqnet_work, tmp_path):
    """The seed's raw export cannot run in ORT (reported, not failed); a fault planted in the
    patched ONNX is named as the first stage over tolerance."""
    from onnx import numpy_helper

    report = pipeline.validate(seqnet_work, batch_sizes=(1,))
    by_stage = {s.stage: s for s in report.stage_diffs}
    assert by_stage["export"].passed is None and "dilations" in by_stage["export"].error
    assert by_stage["patch"].passed and by_stage["convert"].passed
    assert report.first_divergent_stage is None

    work = tmp_path / "w"
    shutil.copytree(seqnet_work, work)
    model = onnx.load(str(work / "model.patched.onnx"))
    bias = next(i for i in model.graph.initializer if i.name == "fc2.bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.25, "fc2.bias"))
    onnx.save(model, str(work / "model.patched.onnx"))
    rerecord(work, "model.patched.onnx")  # a patch bug, not a hand edit (integrity check)
    report = pipeline.validate(work, batch_sizes=(1,))
    assert not report.passed
    assert report.first_divergent_stage == "patch"
    assert {s.stage: s.passed for s in report.stage_diffs}["convert"] is True
    assert "first stage over tolerance: patch" in report.render()


def test_inference_settings_saved_and_used(seqnet_work):
    from bridge.runners import inference_config

    settings = json.loads((seqnet_work / "paddle" / "inference_config.json").read_text())
    assert settings["chosen"] == "onednn" and settings["cpu"]["mkldnn"] is True
    assert settings["tried"][0]["ok"] and settings["tried"][0]["max_abs_diff_vs_dygraph"] < 1e-5
    assert (settings["tried"][-1]["settings"], settings["tried"][-1]["faster"]) == ("plain-cpu", False)
    assert "inplace_pass" in settings["delete_passes"]
    config = inference_config(seqnet_work / "paddle" / "inference_model", threads=2)
    assert config.mkldnn_enabled() and config.cpu_math_library_num_threads() == 2


def test_plain_cpu_is_chosen_where_onednn_is_clearly_slower(tmp_path, monkeypatch):
    """200 Sigmoids on a 1x16 input: oneDNN's per-op cost (about 48 µs against 7 µs) makes the
    plain CPU program several times faster, and bridge chooses it (SeqNet, FLOP-bound, keeps
    oneDNN: test_inference_settings_saved_and_used)."""
    import onnx

    from bridge.bench_cost import op_chain_model
    from bridge.runners import inference_config

    onnx.save(op_chain_model(200), str(tmp_path / "chain.onnx"))
    pipeline.convert(str(tmp_path / "chain.onnx"), tmp_path / "work", echo=lambda line: None)
    settings = json.loads((tmp_path / "work" / "paddle" / "inference_config.json").read_text())
    assert settings["chosen"] == "plain-cpu" and settings["cpu"]["mkldnn"] is False
    onednn, plain = settings["tried"][0], settings["tried"][-1]
    assert (onednn["settings"], onednn["ok"]) == ("onednn", True)
    assert (plain["settings"], plain["faster"], plain["ok"]) == ("plain-cpu", True, True)
    assert plain["max_abs_diff_vs_dygraph"] < 1e-5
    assert not inference_config(tmp_path / "work" / "paddle" / "inference_model").mkldnn_enabled()
    assert pipeline.validate(tmp_path / "work", batch_sizes=(1, 3)).passed

    # A program over SPEED_CHECK_MAX_OPS keeps oneDNN untimed (one more predictor is costly there).
    from bridge import inference_settings
    from bridge.stages.export import random_inputs
    from bridge.spec import InputSpec

    manifest = json.loads((tmp_path / "work" / "manifest.json").read_text())
    conv = manifest["stages"]["convert"]
    feeds = [random_inputs([InputSpec.from_json(s) for s in manifest["inputs"]], batch=1, seed=0)]
    monkeypatch.setattr(inference_settings, "SPEED_CHECK_MAX_OPS", 100)
    again = inference_settings.choose(tmp_path / "work" / "paddle", feeds, conv["paddle_inputs"], conv["paddle_outputs"])
    assert again["chosen"] == "onednn"
    assert again["tried"][-1] == {"settings": "plain-cpu", "skipped": "not timed: over 100 ops"}


def test_cli_help_imports_neither_torch_nor_paddle():
    code = "import sys; from bridge.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'paddle', 'onnx', 'onnxruntime') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
