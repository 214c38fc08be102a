"""`bridge validate`, `bridge load-weights` and `bridge train-check` check the manifest's sha256 of every artifact
before importing the generated code or loading params, and refuse a folder whose files changed.

"Nothing imported" is proven, not assumed: the edited ``x2paddle_code.py`` writes a marker file
when imported, and a control case (the same edit, re-recorded in the manifest) shows the marker
does appear once the code really is imported.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.integrity import find_mismatches, verify_work
from bridge.workdir import Manifest
from tests.helpers import rerecord

CODE = "paddle/x2paddle_code.py"
PARAMS = "paddle/model.pdparams"


def bridge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, stdin=subprocess.DEVNULL)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def work(seqnet_work, tmp_path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(seqnet_work, copy)
    return copy


def plant_import_marker(work: Path, marker: Path) -> None:
    """Append a line that creates ``marker`` when the generated code is imported."""
    with open(work / CODE, "a") as f:
        f.write(f"\nimport pathlib as _p\n_p.Path({str(marker)!r}).write_text('imported')\n")


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_untouched_folder_has_no_mismatch(work):
    assert find_mismatches(work, Manifest.load(work)) == []
    verify_work(work)  # no error


def test_validate_refuses_edited_code_before_importing_it(work, tmp_path):
    marker = tmp_path / "IMPORTED"
    plant_import_marker(work, marker)
    before = tree(work)
    proc = bridge("validate", "work", "--batch-sizes", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert f"work/{CODE}: changed since conversion" in line and "manifest says" in line
    assert "rerun `bridge convert bridge.models.seqnet:seqnet --out work`" in line
    assert not marker.exists(), "the edited code was imported"
    assert tree(work) == before  # no validation.json, no manifest record, no log


def test_the_marker_proves_an_import(work, tmp_path):
    """Control: with the edit recorded as the conversion's own, validate imports the code, so
    the marker's absence above means the refusal came first."""
    marker = tmp_path / "IMPORTED"
    plant_import_marker(work, marker)
    rerecord(work, CODE)
    report = pipeline.validate(work, batch_sizes=(1,))
    assert marker.read_text() == "imported"
    assert report.passed, report.render()


@pytest.mark.parametrize("name, offset", [
    pytest.param(PARAMS, -1, id="dygraph-params"),
    pytest.param("paddle/inference_model/model.pdiparams", -1, id="inference-params"),
    pytest.param("model.patched.onnx", -1, id="patched-onnx"),
    pytest.param("torch_state_dict.pt", -1, id="torch-state"),
])
def test_validate_refuses_changed_artifact(work, name, offset):
    flip_byte(work / name, offset)
    before = tree(work)
    with pytest.raises(BridgeError, match=rf"{work / name}: changed since conversion"):
        pipeline.validate(work, batch_sizes=(1,))
    assert tree(work) == before  # refused before any report, record or log was written


def test_validate_refuses_missing_artifact_and_counts_the_rest(work):
    (work / PARAMS).unlink()
    flip_byte(work / CODE, 0)
    with pytest.raises(BridgeError) as info:
        pipeline.validate(work, batch_sizes=(1,))
    message = str(info.value)
    assert f"{work / PARAMS}: missing (manifest records sha256 " in message
    assert "(and 1 more file)" in message


def test_manifest_without_code_hash_is_refused(work):
    manifest = Manifest.load(work)
    del manifest.data["stages"]["convert"]["outputs"][CODE]
    manifest.save()
    with pytest.raises(BridgeError, match=rf"{work / CODE}: no sha256 recorded"):
        pipeline.validate(work, batch_sizes=(1,))


def test_pycache_is_not_an_artifact(work):
    """Importing the generated code may write paddle/__pycache__ (without
    PYTHONDONTWRITEBYTECODE); that is Python's, not a changed artifact."""
    cache = work / "paddle" / "__pycache__"
    cache.mkdir()
    (cache / "x2paddle_code.cpython-311.pyc").write_bytes(b"stale")
    manifest = Manifest.load(work)
    manifest.data["stages"]["convert"]["outputs"]["paddle/__pycache__/x2paddle_code.cpython-311.pyc"] = "0" * 64
    manifest.save()
    verify_work(work)


def test_load_weights_refuses_edited_code_and_leaves_folder(work, tmp_path):
    marker = tmp_path / "IMPORTED"
    plant_import_marker(work, marker)
    before = tree(work)
    proc = bridge("load-weights", "work", "work/torch_state_dict.pt", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"work/{CODE}: changed since conversion" in one_error_line(proc)
    assert not marker.exists(), "the edited code was imported"
    assert tree(work) == before


def test_load_weights_refuses_changed_params(work):
    flip_byte(work / PARAMS, -1)
    before = tree(work)
    with pytest.raises(BridgeError, match=rf"{work / PARAMS}: changed since conversion"):
        pipeline_load_weights(work, work / "torch_state_dict.pt")
    assert tree(work) == before


def test_load_weights_on_untouched_folder_passes_and_rerecords(work, tmp_path):
    line = pipeline_load_weights(work, work / "torch_state_dict.pt")
    assert line.startswith("load-weights:") and "validated at batch 2" in line
    # the rewritten folder vouches for itself again: validate accepts it
    assert find_mismatches(work, Manifest.load(work)) == []
    assert json.loads((work / "manifest.json").read_text())["stages"]["convert"]["loaded_weights"]


def test_train_check_refuses_edited_code_before_importing_it(work, tmp_path):
    """train-check imports the generated code (Paddle dygraph) and loads the params: refused
    first, exit 2, one line, nothing written into the folder (no lock, log or report)."""
    marker = tmp_path / "IMPORTED"
    plant_import_marker(work, marker)
    before = tree(work)
    proc = bridge("train-check", "work", "--steps", "1", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert f"work/{CODE}: changed since conversion" in line and "refusing to load it" in line
    assert not marker.exists(), "the edited code was imported"
    assert tree(work) == before


def pipeline_load_weights(work: Path, file: Path) -> str:
    from bridge.load_weights import load_weights

    return load_weights(work, file)
