"""Error paths of `bridge convert` / `bridge validate`, run as real subprocesses.

Every row asserts the CLI contract for bad input and refused conversions: exit code 2,
exactly one stderr line ``error: ...`` naming the thing at fault, no traceback, and no trace
left on disk (no ``--out`` folder, no temporary build folder, nothing else new in the
working directory except a file the message itself points the user to).
"""
from __future__ import annotations

import os
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


def run_bridge(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], cwd=cwd, capture_output=True, text=True,
        timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
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


def setup_unmapped(tmp: Path) -> None:
    # Unique: mapped neither by X2Paddle 1.6.0 nor by bridge's patches and mappers (Einsum was,
    # until patches/x2paddle_mappers_math.py mapped it)
    node = helper.make_node("Unique", ["a"], ["y"], name="my_unique", sorted=1)
    m = model([node], [vi("a", [2, 3])], [vi("y", [6])], 13)
    onnx.checker.check_model(m, full_check=True)
    write_onnx(m, tmp / "unmapped.onnx")


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


def setup_cycle(tmp: Path) -> None:
    # add_a reads relu_b's output and relu_b reads add_a's: a cycle, no topological order.
    nodes = [helper.make_node("Add", ["x", "loop_b"], ["loop_a"], name="add_a"),
             helper.make_node("Relu", ["loop_a"], ["loop_b"], name="relu_b")]
    write_onnx(model(nodes, [vi("x", [2, 3])], [vi("loop_a", [2, 3])], 13), tmp / "cycle.onnx")


def setup_unknown_domain(tmp: Path) -> None:
    node = helper.make_node("Foo", ["x"], ["y"], name="custom_foo", domain="com.example")
    m = model([node], [vi("x", [2, 3])], [vi("y", [2, 3])], 13)
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    write_onnx(m, tmp / "domain.onnx")


def setup_initializer_wrong_size(tmp: Path) -> None:
    # W declares 3x4 floats (48 bytes) but holds 5 (20 bytes).
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 4], raw_data=bytes(20))
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 3])], [vi("y", [2, 4])], 13)
    m.graph.initializer.append(w)
    write_onnx(m, tmp / "badinit.onnx")


def setup_external_data_missing(tmp: Path) -> None:
    import numpy as np
    from onnx import numpy_helper

    m = model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [vi("x", [2, 64])], [vi("y", [2, 64])], 13)
    m.graph.initializer.append(numpy_helper.from_array(np.ones((64, 64), np.float32), "W"))
    onnx.save(m, str(tmp / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    (tmp / "ext.onnx.data").unlink()


def checkpoint(name: str, build: Callable[[], object]) -> Callable[[Path], None]:
    """GOOD_PY's Net (fc: Linear(3, 4)) in good.py, and ``build()`` saved with torch.save."""

    def setup(tmp: Path) -> None:
        import torch

        (tmp / "good.py").write_text(GOOD_PY)
        torch.save(build(), tmp / name)

    return setup


def _tensors(**shapes):
    import torch

    return {k.replace("__", "."): torch.zeros(s) for k, s in shapes.items()}


class Pwn:
    """A pickle that runs a shell command when loaded: weights_only must refuse it unrun."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


PREVIOUS = {"marker.txt": "from an earlier, good conversion\n", "manifest.json": '{"marker": true}\n'}


def write_previous_out(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, text in PREVIOUS.items():
        (folder / name).write_text(text)


def setup_out_is_file(tmp: Path) -> None:
    setup_tiny(tmp)
    (tmp / OUT).write_text("a file where --out should be a folder\n")


@dataclass
class Case:
    """What a row's ``prepare`` may use beyond its folder: the converted seed model, mounts
    (undone after the test) and environment variables for the bridge process."""

    tmp: Path
    request: pytest.FixtureRequest
    env: dict[str, str] = field(default_factory=dict)

    def seqnet(self, name: str = "work") -> Path:
        work = self.tmp / name
        shutil.copytree(self.request.getfixturevalue("seqnet_work"), work)
        return work

    def mount_tmpfs(self, folder: Path, size_kib: int) -> None:
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the simulated row covers it")
        self.request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(folder)], check=False))


def prepare_read_only_out(case: Case) -> None:
    setup_tiny(case.tmp)
    ro = case.tmp / "ro"
    if os.geteuid() == 0:  # root writes through permission bits: only a read-only mount stops it
        case.mount_tmpfs(ro, 64)
        write_previous_out(ro / OUT)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    else:
        write_previous_out(ro / OUT)
        ro.chmod(0o555)
        case.request.addfinalizer(lambda: ro.chmod(0o755))


def prepare_full_disk(case: Case) -> None:
    """--out on a 64 KiB tmpfs that has room for the lock and the export but not the rest."""
    setup_tiny(case.tmp)
    full = case.tmp / "full"
    case.mount_tmpfs(full, 64)
    write_previous_out(full / OUT)
    stat = os.statvfs(full)
    (full / "filler").write_bytes(bytes(stat.f_bavail * stat.f_frsize - 16 * 1024))


ENOSPC_SITE = """
import builtins, errno, io, os

_open, _os_open = builtins.open, os.open

def _refuse(path, writing):
    if writing and ".OUT.tmp-" in os.fspath(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

def open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)):
        _refuse(file, any(c in mode for c in "wax+"))
    return _open(file, mode, *args, **kwargs)

def os_open(path, flags, *args, **kwargs):
    _refuse(path, bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
    return _os_open(path, flags, *args, **kwargs)

builtins.open = io.open = open
os.open = os_open
"""


def prepare_simulated_enospc(case: Case) -> None:
    """Every write into bridge's build folder fails with ENOSPC (for machines that cannot mount)."""
    from tests.test_x2paddle_shims import sitecustomize_env

    setup_tiny(case.tmp)
    case.env.update(sitecustomize_env(case.tmp / "site", ENOSPC_SITE))


def _plant_import_marker(work: Path) -> None:
    with open(work / "paddle" / "x2paddle_code.py", "a") as f:
        f.write("\nimport pathlib as _p\n_p.Path('IMPORTED').write_text('imported')\n")


def prepare_code_changed(case: Case) -> None:
    _plant_import_marker(case.seqnet())  # a new file IMPORTED would fail the no-trace check


def prepare_params_changed(case: Case) -> None:
    params = case.seqnet() / "paddle" / "model.pdparams"
    data = bytearray(params.read_bytes())
    data[-1] ^= 0xFF
    params.write_bytes(bytes(data))


def prepare_wrong_model(case: Case) -> None:
    """A conversion that is wrong but faithfully recorded: validation mismatch, exit 1."""
    import paddle

    from tests.helpers import rerecord

    work = case.seqnet()
    path = work / "paddle" / "model.pdparams"
    params = paddle.load(str(path))
    name = next(k for k in params if k.endswith("fc2_bias"))
    params[name] = params[name] + 0.5
    paddle.save(params, str(path))
    rerecord(work, "paddle/model.pdparams")


def npz_inputs(change: Callable[[dict], dict] | None = None, raw: bytes | None = None) -> Callable[[Case], None]:
    """The seed model's copy plus ``inputs.npz``: its own input at batch 3, then ``change``d."""

    def prepare(case: Case) -> None:
        import json

        import numpy as np

        work = case.seqnet()
        if raw is not None:
            (case.tmp / "inputs.npz").write_bytes(raw)
            return
        spec = json.loads((work / "manifest.json").read_text())["inputs"][0]
        arrays = {spec["name"]: np.random.default_rng(0).standard_normal((3, *spec["shape"][1:])).astype(spec["dtype"])}
        np.savez(case.tmp / "inputs.npz", **(change(arrays) if change else arrays))

    return prepare


def _nan_at(arrays: dict) -> dict:
    arrays["x"][0, 3, 17] = float("nan")
    return arrays


def prepare_lw_checkpoint(build: Callable[[dict], object]) -> Callable[[Case], None]:
    """The seed model's copy and ``ckpt.pt``: ``build(its exported state_dict)``."""

    def prepare(case: Case) -> None:
        import torch

        work = case.seqnet()
        torch.save(build(torch.load(work / "torch_state_dict.pt", weights_only=True)), case.tmp / "ckpt.pt")

    return prepare


def _drop_first_key(state: dict) -> dict:
    state.pop(next(iter(state)))
    return state


# ---------------------------------------------------------------------------------------------
# the table


@dataclass
class Row:
    args: list[str]
    expect: list[str]  # substrings the one error line must contain
    setup: Callable[[Path], None] | None = None
    prepare: Callable[[Case], None] | None = None  # for rows that need more than files
    code: int = 2  # 1: a validation mismatch
    # Convert rows run over a previous --out (which must stay as it was) unless ``fresh``;
    # fresh rows check that no --out appears at all.
    fresh: bool = False
    changes: tuple[str, ...] = ()  # paths a row may change: validate's own reports on exit 1


def convert(*args: str) -> list[str]:
    return ["convert", *args, "--out", OUT]


ROWS = [
    # ---- the SOURCE: ONNX files
    pytest.param(Row(convert("missing.onnx"), ["missing.onnx", "no such file"], fresh=True), id="onnx-missing"),
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
    pytest.param(Row(convert("missing.py:Net"), ["missing.py", "no such file"], fresh=True), id="py-missing"),
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
    pytest.param(Row(convert("unmapped.onnx"), ["'my_unique'", "Unique"], setup_unmapped, fresh=True),
                 id="unsupported-op-unique"),
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
    # ---- ONNX graphs that parse but are not valid models
    pytest.param(Row(convert("cycle.onnx"), ["cycle.onnx", "'loop_b'"], setup_cycle), id="onnx-cycle"),
    pytest.param(Row(convert("domain.onnx"), ["'custom_foo'", "Foo"], setup_unknown_domain), id="onnx-unknown-domain-op"),
    pytest.param(Row(convert("badinit.onnx"), ["badinit.onnx", "W", "48 bytes"], setup_initializer_wrong_size),
                 id="onnx-initializer-wrong-size"),
    pytest.param(Row(convert("ext.onnx"), ["ext.onnx.data", "'W'", "missing"], setup_external_data_missing),
                 id="onnx-external-data-missing"),
    # ---- more bad arguments
    pytest.param(Row(convert("tiny.onnx", "--input", "x:-2x3"), ["--input", "'x:-2x3'", "'-2x3'"], setup_tiny),
                 id="input-negative-dim"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--input", "z:2x3"), ["good.py:Net", "forward", "z:2x3"],
                     py_file("good.py", GOOD_PY)),
                 id="input-more-than-forward-takes"),
    pytest.param(Row(convert("nosuch_pkg.models:Net"), ["nosuch_pkg.models:Net", "No module named 'nosuch_pkg'"]),
                 id="py-module-not-found"),
    # ---- --weights checkpoints (GOOD_PY's Net: fc.weight 4x3, fc.bias 4)
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--weights", "w.pt"), ["--weights w.pt", "missing fc.bias"],
                     checkpoint("w.pt", lambda: _tensors(fc__weight=(4, 3)))),
                 id="weights-missing-key"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--weights", "w.pt"), ["--weights w.pt", "unexpected extra"],
                     checkpoint("w.pt", lambda: _tensors(fc__weight=(4, 3), fc__bias=(4,), extra=(1,)))),
                 id="weights-unexpected-key"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--weights", "w.pt"),
                     ["--weights w.pt", "wrong shape fc.weight [4, 5] vs model [4, 3]"],
                     checkpoint("w.pt", lambda: _tensors(fc__weight=(4, 5), fc__bias=(4,)))),
                 id="weights-wrong-shape"),
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--weights", "w.pt"), ["--weights w.pt", "weights_only=True"],
                     checkpoint("w.pt", lambda: {"fc.weight": Pwn()})),
                 id="weights-pickle-runs-code"),  # PWNED would be a new file: the no-trace check
    pytest.param(Row(convert("good.py:Net", "--input", "x:2x3", "--weights", "w.pt"), ["--weights w.pt", "not a state_dict"],
                     checkpoint("w.pt", lambda: [1, 2, 3])),
                 id="weights-not-a-state-dict"),
    # ---- --out that cannot be written
    pytest.param(Row(["convert", "tiny.onnx", "--out", OUT], [f"--out {OUT}", "not a directory"], setup_out_is_file),
                 id="out-is-a-file"),
    pytest.param(Row(["convert", "tiny.onnx", "--out", f"ro/{OUT}"], [f"--out ro/{OUT}", "not writable"],
                     prepare=prepare_read_only_out),
                 id="out-in-read-only-folder"),
    pytest.param(Row(["convert", "tiny.onnx", "--out", f"full/{OUT}"], [f"--out full/{OUT}", "No space left on device"],
                     prepare=prepare_full_disk),
                 id="out-on-full-tmpfs"),
    pytest.param(Row(convert("tiny.onnx"), [f"--out {OUT}", "No space left on device"], prepare=prepare_simulated_enospc),
                 id="out-enospc-simulated"),
    # ---- validate: integrity, --inputs, a mismatch
    pytest.param(Row(["validate", "work", "--batch-sizes", "1"], ["work/paddle/x2paddle_code.py", "changed since conversion"],
                     prepare=prepare_code_changed),
                 id="validate-code-changed"),  # the planted code would write IMPORTED: no-trace check
    pytest.param(Row(["validate", "work"], ["work/paddle/model.pdparams", "changed since conversion"],
                     prepare=prepare_params_changed),
                 id="validate-params-changed"),
    pytest.param(Row(["validate", "work", "--inputs", "nosuch.npz"], ["--inputs nosuch.npz", "no such file"],
                     prepare=npz_inputs()),
                 id="validate-inputs-missing-file"),
    pytest.param(Row(["validate", "work", "--inputs", "inputs.npz"], ["--inputs inputs.npz", "not a readable .npz"],
                     prepare=npz_inputs(raw=b"not a zip archive\n")),
                 id="validate-inputs-not-npz"),
    pytest.param(Row(["validate", "work", "--inputs", "inputs.npz"], ["--inputs inputs.npz", "missing x", "unexpected signal"],
                     prepare=npz_inputs(lambda a: {"signal": a["x"]})),
                 id="validate-inputs-wrong-name"),
    pytest.param(Row(["validate", "work", "--inputs", "inputs.npz"], ["--inputs inputs.npz", "'x'", "[3, 12, 4999]"],
                     prepare=npz_inputs(lambda a: {"x": a["x"][..., :-1]})),
                 id="validate-inputs-wrong-shape"),
    pytest.param(Row(["validate", "work", "--inputs", "inputs.npz"], ["--inputs inputs.npz", "'x'", "float64"],
                     prepare=npz_inputs(lambda a: {"x": a["x"].astype("float64")})),
                 id="validate-inputs-wrong-dtype"),
    pytest.param(Row(["validate", "work", "--inputs", "inputs.npz"], ["--inputs inputs.npz", "'x'", "nan at [0, 3, 17]"],
                     prepare=npz_inputs(_nan_at)),
                 id="validate-inputs-nan"),
    pytest.param(Row(["validate", "work", "--batch-sizes", "1"], ["work", "FAILED", "paddle_dygraph"],
                     prepare=prepare_wrong_model, code=1,
                     changes=("work/validation.json", "work/validation.txt", "work/report.html", "work/manifest.json",
                              "work/logs/validate.log")),
                 id="validate-mismatch-exit-1"),
    # ---- load-weights
    pytest.param(Row(["load-weights", "work", "work/torch_state_dict.pt"],
                     ["work/paddle/x2paddle_code.py", "changed since conversion"], prepare=prepare_code_changed),
                 id="load-weights-code-changed"),
    pytest.param(Row(["load-weights", "work", "ckpt.pt"], ["--weights ckpt.pt", "missing"],
                     prepare=prepare_lw_checkpoint(_drop_first_key)),
                 id="load-weights-missing-key"),
    pytest.param(Row(["load-weights", "work", "ckpt.pt"], ["--weights ckpt.pt", "weights_only=True"],
                     prepare=prepare_lw_checkpoint(lambda state: {**state, "extra": Pwn()})),
                 id="load-weights-pickle-runs-code"),
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


def check_no_trace_on_disk(cwd: Path, before: dict, line: str, changes: tuple[str, ...] = ()) -> None:
    after = snapshot(cwd)
    changed = sorted(p for p in before if p in after and after[p] != before[p] and p not in changes)
    assert not changed, f"changed by a failing run: {changed}"
    removed = sorted(set(before) - set(after))
    assert not removed, f"removed by a failing run: {removed}"
    # New paths are allowed only where the message points the user to them (a log file).
    new = sorted(p for p in set(after) - set(before) if p not in line and p not in changes)
    assert not new, f"left behind by a failing run: {new}"
    assert ".tmp-" not in line, f"message names bridge's temporary build folder: {line!r}"
    for log in re.findall(r"\(log: ([^)]+)\)", line):
        assert (cwd / log).is_file(), f"message points to log {log}, which does not exist"


@pytest.mark.parametrize("row", ROWS)
def test_error_row(row: Row, tmp_path: Path, request: pytest.FixtureRequest):
    case = Case(tmp_path, request)
    if row.setup:
        row.setup(tmp_path)
    if row.prepare:
        row.prepare(case)
    if OUT in row.args and not row.fresh and not (tmp_path / OUT).exists():
        write_previous_out(tmp_path / OUT)
    before = snapshot(tmp_path)
    proc = run_bridge(row.args, tmp_path, env=case.env)
    assert proc.returncode == row.code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    line = check_one_error_line(proc, row.expect)
    check_no_trace_on_disk(tmp_path, before, line, row.changes)
    if row.fresh:
        assert not (tmp_path / OUT).exists(), f"--out {OUT} was created"
    elif (tmp_path / OUT).is_dir():  # the previous --out, byte for byte (the snapshot saw sizes and mtimes)
        assert {p.name: p.read_text() for p in (tmp_path / OUT).iterdir()} == PREVIOUS


def test_table_has_the_rows_the_issue_asks_for():
    assert len(ROWS) >= 30


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
        pytest.param("unmapped.onnx", setup_unmapped, id="fails-in-convert"),
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
    check_one_error_line(proc, [source] if source == "empty.onnx" else ["Unique"])
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
