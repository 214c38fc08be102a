"""Interruptions, concurrent runs, determinism and the network: what a build script relies on."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import pipeline
from bridge.workdir import work_lock
from tests.test_x2paddle_shims import NETWORK_AUDIT_SITE, read_audit, sitecustomize_env

SEED = "bridge.models.seqnet:seqnet"


def bridge(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT back to its default. pytest-xdist's workers ignore
    SIGINT, children inherit that, and a Python started with SIGINT ignored installs no
    KeyboardInterrupt handler: a user's Ctrl-C would not be what the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_out_in_use_names_the_pid(tmp_path):
    out = tmp_path / "out"
    with work_lock(out):
        proc = bridge("convert", SEED, "--out", str(out))
    assert proc.returncode == 2
    assert f"in use by pid {os.getpid()}" in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists()


def test_two_conversions_into_different_folders_both_succeed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "bridge", "convert", SEED, "--out", str(tmp_path / name)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert (tmp_path / "a" / "paddle" / "model.pdparams").is_file()
    assert (tmp_path / "b" / "paddle" / "model.pdparams").is_file()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_conversion_leaves_previous_output(seqnet_work, tmp_path, sig):
    """Kill a real conversion during its convert stage (X2Paddle running): the previous
    output is untouched; the next run cleans up what the killed one left and succeeds."""
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(seqnet_work), str(out)], check=True)
    (out / "marker.txt").write_text("previous run")
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "bridge", "convert", SEED, "--out", str(out), "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until X2Paddle writes its log in the build folder
        if any((p / "out" / "logs" / "convert.log").exists() for p in tmp_path.glob(".out.tmp-*")):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the conversion never reached its convert stage")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err
        assert temporaries(out) == []  # cleaned up on the way out
    else:
        assert proc.returncode == -signal.SIGKILL
    assert snapshot(out) == before
    rerun = bridge("convert", SEED, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(out) == []
    assert not (out / "marker.txt").exists()  # replaced by the fresh conversion


def test_fresh_conversions_are_byte_identical(seqnet_work, tmp_path):
    other = tmp_path / "again"
    pipeline.convert(SEED, other, echo=lambda line: None)
    first = json.loads((seqnet_work / "manifest.json").read_text())["stages"]
    second = json.loads((other / "manifest.json").read_text())["stages"]
    for stage in ("export", "simplify", "patch", "convert"):
        assert first[stage]["outputs"] == second[stage]["outputs"], stage
        assert first[stage]["outputs"]  # hashes were recorded


def test_convert_and_validate_open_no_network_connection(tmp_path):
    log = tmp_path / "net.jsonl"
    env = sitecustomize_env(tmp_path / "site", NETWORK_AUDIT_SITE, BRIDGE_TEST_NET_LOG=str(log))
    out = tmp_path / "out"
    assert bridge("convert", SEED, "--out", str(out), env=env).returncode == 0
    assert bridge("validate", str(out), "--batch-sizes", "1", env=env).returncode == 0
    events, exited = read_audit(log)
    assert events == []
    # the audit really ran in every process: the CLI runs and X2Paddle's children
    assert any(argv and argv[0].endswith("bridge/stages/convert.py") for argv in exited)
    assert len(exited) >= 4


def test_rerun_reuses_unchanged_stages_and_force_reruns(seqnet_work, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(seqnet_work), str(out)], check=True)
    again = bridge("convert", SEED, "--out", str(out))
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].startswith("export:")
    for stage in ("simplify", "patch", "convert"):
        assert f"{stage}: reused from the previous run" in again.stdout
    assert "unchanged, no stage rerun" in lines[-1]
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert all(stages[s].get("cached") for s in ("simplify", "patch", "convert"))
    assert snapshot(out / "paddle") == snapshot(seqnet_work / "paddle")
    # a different export (another opset) changes every later input: all stages rerun
    changed = bridge("convert", SEED, "--out", str(out), "--opset", "15")
    assert changed.returncode == 0 and "reused" not in changed.stdout
    forced = bridge("convert", SEED, "--out", str(out), "--opset", "15", "--force")
    assert forced.returncode == 0 and "reused" not in forced.stdout
    assert "convert: " in forced.stdout and "X2Paddle" in forced.stdout


def test_bytecode_cache_from_validate_does_not_stop_reuse(seqnet_work, tmp_path):
    """Without PYTHONDONTWRITEBYTECODE (a user's shell), validate's import of the generated code
    writes paddle/__pycache__: the next convert still reuses every stage, and the integrity
    check still accepts the folder."""
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(seqnet_work), str(out)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    checked = subprocess.run([sys.executable, "-m", "bridge", "validate", str(out), "--batch-sizes", "1"],
                             capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    assert list((out / "paddle" / "__pycache__").glob("x2paddle_code.*.pyc"))
    again = bridge("convert", SEED, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "unchanged, no stage rerun" in again.stdout.splitlines()[-1], again.stdout
    rechecked = subprocess.run([sys.executable, "-m", "bridge", "validate", str(out), "--batch-sizes", "1"],
                               capture_output=True, text=True, env=env)
    assert rechecked.returncode == 0, rechecked.stderr


# Stall the child's pipeline inside one stage (the stage function replaced by a wait), then
# signal it there: every stage, both signals, deterministically (a real X2Paddle run is killed
# above). The source is a one-node ONNX file, so the stages before the stalled one take
# milliseconds and the rerun a few seconds.
_STALLED_CHILD = """
import sys, time
from pathlib import Path
from bridge import pipeline
stage, marker = sys.argv[1], Path(sys.argv[2])
module = {"export": pipeline.export_stage, "simplify": pipeline.simplify_stage,
          "patch": pipeline.patch_stage, "convert": pipeline.convert_stage}[stage]
name = "copy_onnx" if stage == "export" else "run"
def stalled(*args, **kwargs):
    marker.write_text("in " + stage)
    time.sleep(120)
    raise SystemExit("not signalled")
setattr(module, name, stalled)
from bridge.cli import main
sys.exit(main(sys.argv[3:]))
"""

TINY = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[N, 4] x) => (float[N, 4] y) {
        y = Relu (x)
    }"""


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory) -> tuple[Path, Path]:
    from tests.helpers import parse_model, save

    folder = tmp_path_factory.mktemp("tiny")
    model = save(parse_model(TINY), folder / "tiny.onnx")
    work = folder / "work"
    pipeline.convert(str(model), work, echo=lambda line: None)
    return model, work


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("stage", ["export", "simplify", "patch", "convert"])
def test_a_signal_in_any_stage_leaves_previous_output(tiny_work, tmp_path, stage, sig):
    model, work = tiny_work
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(work), str(out)], check=True)
    (out / "marker.txt").write_text("previous run")
    before = snapshot(out)
    marker = tmp_path / "in-stage"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLED_CHILD, stage, str(marker), "convert", str(model), "--out", str(out), "--force"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert snapshot(out) == before
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err, err
        assert temporaries(out) == []  # cleaned up on the way out
        return
    assert proc.returncode == -signal.SIGKILL
    assert temporaries(out)  # the killed run left its build folder behind...
    rerun = bridge("convert", str(model), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert temporaries(out) == []  # ...which the next run removed
    assert not (out / "marker.txt").exists()
