"""Error paths of `bridge convert` / `bridge validate`, run as real subprocesses.

Every row asserts the CLI contract for bad input and refused conversions: exit code 2,
exactly one stderr line ``error: ...`` naming the thing at fault, no traceback, and no trace
left on disk (no ``--out`` folder, no temporary build folder, nothing else new in the
working directory except a file the message itself points the user to).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx
import pytest
from onnx import TensorProto, helper

OUT = "OUT"
TIMEOUT_S = 180


# ---------------------------------------------------------------------------------------------
# helpers


def run_bridge(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True,
        timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
    )


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (files with size and mtime); bytecode caches ignored."""
    state = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        state[str(rel)] = ("file", p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else ("dir",)
    return state


def model(nodes, inputs, outputs, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def tiny_relu() -> onnx.ModelProto:
    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu0")], [vi("x", ["N", 3])], [vi("y", ["N", 3])], 13)
    onnx.checker.check_model(m, full_check=True)
    return m


def write_onnx(m: onnx.ModelProto, path: Path) -> None:
    onnx.save(m, str(path))


# ---- files the rows need, written into the row's tmp_path ---------------------------------------

GOOD_PY = """\
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(x)
"""


def setup_tiny(tmp: Path) -> None:
    write_onnx(tiny_relu(), tmp / "tiny.onnx")


def setup_dir_onnx(tmp: Path) -> None:
    (tmp / "x.onnx").mkdir()


def setup_empty(tmp: Path) -> None:
    (tmp / "empty.onnx").write_bytes(b"")


def setup_garbage(tmp: Path) -> None:
    (tmp / "garbage.onnx").write_bytes(b"this is not an onnx model\n" * 20)


def setup_protobuf_no_graph(tmp: Path) -> None:
    # A well-formed ModelProto (ir_version = 7) with no graph: parses, but is no model.
    (tmp / "nograph.onnx").write_bytes(b"\x08\x07")


def setup_truncated(tmp: Path) -> None:
    data = tiny_relu().SerializeToString()
    (tmp / "truncated.onnx").write_bytes(data[: len(data) // 2])


def py_file(name: str, text: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return setup


def setup_einsum(tmp: Path) -> None:
    node = helper.make_node("Einsum", ["a", "b"], ["y"], name="my_einsum", equation="ij,jk->ik")
    m = model([node], [vi("a", [2, 3]), vi("b", [3, 4])], [vi("y", [2, 4])], 13)
    onnx.checker.check_model(m, full_check=True)
    write_onnx(m, tmp / "einsum.onnx")


def setup_unnamed_trilu(tmp: Path) -> None:
    node = helper.make_node("Trilu", ["x"], ["tri_out"], upper=0)  # no node name
    # a dynamic row count: decompose_trilu needs the last two dims static, so Trilu stays
    m = model([node], [vi("x", ["N", 3])], [vi("tri_out", ["N", 3])], 14)
    onnx.checker.check_model(m, full_check=True)
    write_onnx(m, tmp / "trilu.onnx")


def shrink_setup(node_name: str) -> Callable[[Path], None]:
    """Shrink is mapped by X2Paddle 1.6.0, but its mapper asserts bias == 0: X2Paddle refuses it."""

    def setup(tmp: Path) -> None:
        node = helper.make_node("Shrink", ["x"], ["shrink_out"], name=node_name, bias=0.5, lambd=0.5)
        m = model([node], [vi("x", [2, 3])], [vi("shrink_out", [2, 3])], 13)
        onnx.checker.check_model(m, full_check=True)
        write_onnx(m, tmp / "shrink.onnx")

    return setup


def setup_invalid_graph(tmp: Path) -> None:
    # Parses as a ModelProto, but node 'bad_relu' reads a tensor nothing defines.
    node = helper.make_node("Relu", ["undefined_q"], ["y"], name="bad_relu")
    write_onnx(model([node], [vi("x", [2, 3])], [vi("y", [2, 3])], 13), tmp / "invalid.onnx")


def setup_no_manifest(tmp: Path) -> None:
    (tmp / "work").mkdir()
    (tmp / "work" / "model.onnx").write_bytes(b"")


def setup_bad_json_manifest(tmp: Path) -> None:
    (tmp / "work").mkdir()
    (tmp / "work" / "manifest.json").write_text("{not json")


def setup_foreign_manifest(tmp: Path) -> None:
    # Some other tool's manifest.json (a web app's), not one bridge wrote.
    (tmp / "work").mkdir()
    (tmp / "work" / "manifest.json").write_text('{"name": "my web app", "icons": []}\n')


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Row:
    args: list[str]
    expect: list[str]  # substrings the one error line must contain
    setup: Callable[[Path], None] | None = None
    setups: list[Callable[[Path], None]] = field(default_factory=list)


def convert(*args: str) -> list[str]:
    return ["convert", *args, "--out", OUT]


ROWS = [
    # ---- the SOURCE: ONNX files
    pytest.param(Row(convert("missing.onnx"), ["missing.onnx", "no such file"]), id="onnx-missing"),
    pytest.param(Row(convert("x.onnx"), ["x.onnx", "directory"], setup_dir_onnx), id="onnx-is-a-directory"),
    pytest.param(Row(convert("empty.onnx"), ["empty.onnx", "empty"], setup_empty), id="onnx-empty-file"),
    pytest.param(Row(convert("garbage.onnx"), ["garbage.onnx", "not a valid ONNX model"], setup_garbage),
                 id="onnx-garbage-bytes"),
    pytest.param(Row(convert("nograph.onnx"), ["nograph.onnx", "not a valid ONNX model"], setup_protobuf_no_graph),
                 id="onnx-protobuf-without-graph"),
    pytest.param(Row(convert("truncated.onnx"), ["truncated.onnx", "not a valid ONNX model"], setup_truncated),
                 id="onnx-truncated"),
    pytest.param(Row(convert("invalid.onnx"), ["invalid.onnx"], setup_invalid_graph), id="onnx-invalid-graph"),
    # ---- the SOURCE: torch .py files
    pytest.param(Row(convert("missing.py:Net"), ["missing.py", "no such file"]), id="py-missing"),
    pytest.param(Row(convert("noattr.py:Net"), ["noattr.py:Net", "'Net'"],
                     py_file("noattr.py", "import torch\n\nclass Other(torch.nn.Module):\n    pass\n")),
                 id="py-no-such-attribute"),
    pytest.param(Row(convert("importfail.py:Net"), ["importfail.py:Net", "RuntimeError", "boom at import"],
                     py_file("importfail.py", "raise RuntimeError('boom at import')\n")),
                 id="py-import-raises"),
    pytest.param(Row(convert("factfail.py:make"), ["factfail.py:make", "make()", "ValueError", "factory boom"],
                     py_file("factfail.py", "def make():\n    raise ValueError('factory boom')\n")),
                 id="py-factory-raises"),
    pytest.param(Row(convert("nonmod.py:make"), ["nonmod.py:make", "make()", "int", "nn.Module"],
                     py_file("nonmod.py", "def make():\n    return 42\n")),
                 id="py-factory-returns-non-module"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x5"), ["good.py:Net", "forward", "x:2x5"],
                     py_file("good.py", GOOD_PY)),
                 id="py-forward-raises-on-input"),
    pytest.param(Row(convert("good.py:Net"), ["good.py:Net", "--input"], py_file("good.py", GOOD_PY)),
                 id="py-no-example-inputs"),
    pytest.param(Row(convert("retint.py:Net", "--input", "x:2x3"), ["retint.py:Net", "int"],
                     py_file("retint.py", "import torch\n\nclass Net(torch.nn.Module):\n"
                                          "    def forward(self, x):\n        return 3\n")),
                 id="py-forward-returns-non-tensor"),
    pytest.param(Row(convert("exit0.py:Net"), ["exit0.py:Net"],
                     py_file("exit0.py", "import sys\nsys.exit(0)\n")),
                 id="py-import-calls-sys-exit"),
    pytest.param(Row(convert("factexit.py:make"), ["factexit.py:make", "make()"],
                     py_file("factexit.py", "def make():\n    raise SystemExit(0)\n")),
                 id="py-factory-raises-system-exit"),
    # ---- bad arguments
    pytest.param(Row(convert("tiny.onnx", "--input", "x2x3"), ["--input", "'x2x3'", "NAME:SHAPE"], setup_tiny),
                 id="input-no-colon"),
    pytest.param(Row(convert("tiny.onnx", "--input", "x:2xa"), ["--input", "'x:2xa'", "'2xa'"], setup_tiny),
                 id="input-bad-dims"),
    pytest.param(Row(convert("tiny.onnx", "--input", "x:0x3"), ["--input", "'x:0x3'", ">= 1"], setup_tiny),
                 id="input-zero-dim"),
    pytest.param(Row(convert("tiny.onnx", "--input", "x:2x3:float128"), ["--input", "'float128'"], setup_tiny),
                 id="input-unknown-dtype"),
    pytest.param(Row(convert("tiny.onnx", "--input", "1x:2x3"), ["--input", "'1x'", "name"], setup_tiny),
                 id="input-bad-name"),
    pytest.param(Row(convert("tiny.onnx", "--input", "feat:2x3", "--input", "feat:4x3"),
                     ["--input", "duplicate", "feat"], setup_tiny),
                 id="input-duplicate-names"),
    pytest.param(Row(convert("tiny.onnx", "--input", "nosuch:2x3"), ["--input", "'nosuch'", "tiny.onnx"], setup_tiny),
                 id="input-not-in-onnx-model"),
    pytest.param(Row(convert("tiny.onnx", "--dynamic", "seq"), ["--dynamic", "'seq'", "NAME:AXIS"], setup_tiny),
                 id="dynamic-malformed"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--opset", "99"), ["--opset 99", "7-15"],
                     py_file("good.py", GOOD_PY)),
                 id="opset-out-of-range"),
    pytest.param(Row(convert("model.txt"), ["model.txt", ".onnx"]), id="source-unrecognised"),
    # ---- conversions X2Paddle 1.6.0 refuses
    pytest.param(Row(convert("einsum.onnx"), ["'my_einsum'", "Einsum"], setup_einsum), id="unsupported-op-einsum"),
    pytest.param(Row(convert("trilu.onnx"), ["'tri_out'", "Trilu"], setup_unnamed_trilu),
                 id="unsupported-op-unnamed-node"),
    pytest.param(Row(convert("shrink.onnx"), ["'blk.0/shrink'", "Shrink"], shrink_setup("blk.0/shrink")),
                 id="x2paddle-refuses-node"),
    pytest.param(Row(convert("shrink.onnx"), ["'shrink_out'", "Shrink"], shrink_setup("shrink_out")),
                 id="x2paddle-refusal-log-pointer"),
    # ---- validate
    pytest.param(Row(["validate", "nodir"], ["nodir", "no such work directory"]), id="validate-no-such-folder"),
    pytest.param(Row(["validate", "work"], ["work", "manifest.json"], setup_no_manifest), id="validate-no-manifest"),
    pytest.param(Row(["validate", "work"], ["manifest.json", "not valid JSON"], setup_bad_json_manifest),
                 id="validate-manifest-not-json"),
    pytest.param(Row(["validate", "work"], ["manifest.json"], setup_foreign_manifest),
                 id="validate-foreign-manifest"),
]


def check_one_error_line(proc: subprocess.CompletedProcess, expect: list[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    missing = [e for e in expect if e not in line]
    assert not missing, f"{line!r} does not name {missing}"
    return line


def check_no_trace_on_disk(cwd: Path, before: dict, line: str) -> None:
    assert not (cwd / OUT).exists(), f"--out {OUT} was created"
    after = snapshot(cwd)
    changed = sorted(p for p in before if p in after and after[p] != before[p])
    assert not changed, f"changed by a failing run: {changed}"
    removed = sorted(set(before) - set(after))
    assert not removed, f"removed by a failing run: {removed}"
    # New paths are allowed only where the message points the user to them (a log file).
    new = sorted(p for p in set(after) - set(before) if p not in line)
    assert not new, f"left behind by a failing run: {new}"
    assert ".tmp-" not in line, f"message names bridge's temporary build folder: {line!r}"
    for log in re.findall(r"\(log: ([^)]+)\)", line):
        assert (cwd / log).is_file(), f"message points to log {log}, which does not exist"


@pytest.mark.parametrize("row", ROWS)
def test_error_row(row: Row, tmp_path: Path):
    if row.setup:
        row.setup(tmp_path)
    before = snapshot(tmp_path)
    proc = run_bridge(row.args, tmp_path)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    line = check_one_error_line(proc, row.expect)
    check_no_trace_on_disk(tmp_path, before, line)


def test_debug_shows_traceback(tmp_path: Path):
    setup_empty(tmp_path)
    proc = run_bridge(["convert", "empty.onnx", "--out", OUT, "--debug"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert "BridgeError" in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("error: ") and "empty.onnx" in lines[-1], lines[-1]
    assert not (tmp_path / OUT).exists()


@pytest.mark.parametrize(
    "source, setup",
    [
        pytest.param("empty.onnx", setup_empty, id="fails-in-export"),
        pytest.param("einsum.onnx", setup_einsum, id="fails-in-convert"),
    ],
)
def test_failed_convert_leaves_existing_out_untouched(source: str, setup, tmp_path: Path):
    setup(tmp_path)
    out = tmp_path / OUT
    out.mkdir()
    (out / "marker.txt").write_text("from an earlier, good conversion\n")
    (out / "manifest.json").write_text('{"marker": true}\n')
    before = snapshot(tmp_path)
    proc = run_bridge(["convert", source, "--out", OUT], tmp_path)
    assert proc.returncode == 2, proc.stderr
    check_one_error_line(proc, [source] if source == "empty.onnx" else ["Einsum"])
    assert snapshot(tmp_path) == before  # --out, its files and its siblings as they were
    assert (out / "marker.txt").read_text() == "from an earlier, good conversion\n"
    assert (out / "manifest.json").read_text() == '{"marker": true}\n'


def test_failed_convert_creates_no_parent_folders(tmp_path: Path):
    setup_empty(tmp_path)
    before = snapshot(tmp_path)
    proc = run_bridge(["convert", "empty.onnx", "--out", "a/b/" + OUT], tmp_path)
    assert proc.returncode == 2, proc.stderr
    check_one_error_line(proc, ["empty.onnx"])
    assert not (tmp_path / "a").exists(), "a failing convert created --out's parent folders a/b/"
    assert snapshot(tmp_path) == before


def _gpu_present() -> bool:
    if shutil.which("nvidia-smi"):
        try:
            return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    return Path("/dev/nvidia0").exists()


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: --device gpu may legitimately work")
def test_validate_gpu_without_gpu(tmp_path: Path):
    setup_tiny(tmp_path)
    conv = run_bridge(["convert", "tiny.onnx", "--out", "work"], tmp_path)
    assert conv.returncode == 0, conv.stderr
    work = tmp_path / "work"
    assert (work / "manifest.json").is_file() and (work / "paddle").is_dir()
    manifest = (work / "manifest.json").read_bytes()

    proc = run_bridge(["validate", "work", "--device", "gpu"], tmp_path)
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    line = check_one_error_line(proc, ["--device gpu"])
    assert re.search(r"CUDAExecutionProvider|CPU build|no CUDA device", line), line
    assert not (work / "validation.json").exists()
    assert (work / "manifest.json").read_bytes() == manifest
