"""Tests for bridge.patches.x2paddle_shims: one group per shim.

Each group shows (a) the failure the shim fixes really happens without it, and (b) that it
is gone with the shim. The shims patch process-global state (sys.modules, module
attributes), so every "without" half runs in a fresh interpreter, where x2paddle and onnx
are pristine; "with" halves run in-process or in a subprocess where that proves more.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridge.errors import BridgeError, X2PaddleExit
from bridge.patches import x2paddle_shims

STATS_API = "http://paddlepaddle.org.cn/paddlehub/stat"


# --------------------------------------------------------------------------- helpers


def child(*parts: str) -> str:
    """Join code fragments, each dedented on its own."""
    return "\n".join(textwrap.dedent(part) for part in parts)


def run_py(code: str, *args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (pristine x2paddle/onnx); argv[1:] are ``args``."""
    full_env = dict(os.environ, GLOG_minloglevel="2", PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env,
    )


def last_json(proc: subprocess.CompletedProcess, tag: str):
    """The JSON the child printed on its last line starting with ``tag``."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(tag + " ")]
    assert lines, f"child printed no {tag!r} line\nrc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len(tag) + 1:])


def make_tiny_model(path: Path) -> Path:
    """Conv (with weight and bias initializers) + Relu, opset 13, input x: [N, 3, 8, 8]."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "tiny_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="bridge-tests")
    model.ir_version = 8  # what onnxruntime and X2Paddle's checker both accept
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return make_tiny_model(tmp_path / "model" / "tiny.onnx")


def sitecustomize_env(folder: Path, source: str, **extra: str) -> dict[str, str]:
    """Env vars that make every Python process started with them (bridge's X2Paddle child
    included) run ``source`` at start-up, as ``sitecustomize``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(textwrap.dedent(source))
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **extra}


# Child-side preamble: apply a chosen subset of the shims, by name.
APPLY_SHIMS = """
    from bridge.patches import x2paddle_shims as shims
    def apply(*names):
        by_name = {s.name: s for s in shims.SHIMS}
        for name in names:
            by_name[name].apply()
"""


# --------------------------------------------------------------------------- require_undeclared_deps


@pytest.mark.parametrize("blocked", ["six", "requests"])
def test_x2paddle_import_fails_without_undeclared_dep(blocked):
    proc = run_py(
        """
        import json, sys
        sys.modules[sys.argv[1]] = None  # as if the package were not installed
        try:
            import x2paddle.convert
        except ImportError as exc:
            print("RESULT", json.dumps([type(exc).__name__, str(exc)]))
        else:
            print("RESULT", json.dumps(None))
        """,
        blocked,
    )
    result = last_json(proc, "RESULT")
    assert result is not None, "import x2paddle.convert worked with the package blocked"
    kind, message = result
    assert kind == "ModuleNotFoundError"
    assert blocked in message


@pytest.mark.parametrize("blocked", ["six", "requests"])
def test_require_undeclared_deps_names_the_missing_package(monkeypatch, blocked):
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(BridgeError, match=rf"'{blocked}'.*pip install {blocked}") as info:
        x2paddle_shims.require_undeclared_deps()
    assert isinstance(info.value.__cause__, ImportError)
    assert info.value.exit_code == 2


def test_require_undeclared_deps_passes_when_both_import():
    x2paddle_shims.require_undeclared_deps()  # no exception
    import requests  # noqa: F401
    import six  # noqa: F401


# --------------------------------------------------------------------------- import_onnx_version


def test_fresh_onnx_has_no_version_attribute():
    proc = run_py(
        """
        import json, onnx
        print("RESULT", json.dumps([hasattr(onnx, "version"), onnx.__version__]))
        """
    )
    has_version, onnx_version = last_json(proc, "RESULT")
    assert has_version is False, f"onnx {onnx_version} has onnx.version at import: shim no longer needed?"


ONNX2PADDLE_CHILD = child(APPLY_SHIMS, """
    import json, sys
    from pathlib import Path
    apply(*[n for n in sys.argv[3].split(",") if n])
    import onnx
    from x2paddle.convert import onnx2paddle
    save_dir = Path(sys.argv[2])
    result = onnx2paddle(sys.argv[1], str(save_dir), disable_feedback=True)
    print("RESULT", json.dumps({
        "has_version": hasattr(onnx, "version"),
        "returned": repr(result),
        "wrote": sorted(p.name for p in save_dir.iterdir()) if save_dir.exists() else None,
    }))
""")


def test_onnx2paddle_silently_does_nothing_without_import_onnx_version(tiny_onnx, tmp_path):
    save_dir = tmp_path / "paddle"
    proc = run_py(ONNX2PADDLE_CHILD, tiny_onnx, save_dir, "provide_onnx_mapping", cwd=tmp_path)
    result = last_json(proc, "RESULT")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert result["has_version"] is False
    assert "onnx is not installed" in proc.stderr
    assert result["returned"] == "None"
    assert result["wrote"] is None and not save_dir.exists()


def test_onnx2paddle_converts_with_import_onnx_version(tiny_onnx, tmp_path):
    save_dir = tmp_path / "paddle"
    proc = run_py(ONNX2PADDLE_CHILD, tiny_onnx, save_dir, "import_onnx_version,provide_onnx_mapping", cwd=tmp_path)
    result = last_json(proc, "RESULT")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert result["has_version"] is True
    assert "onnx is not installed" not in proc.stderr
    assert {"x2paddle_code.py", "model.pdparams", "inference_model"} <= set(result["wrote"])


def test_import_onnx_version_in_process_is_idempotent():
    x2paddle_shims.import_onnx_version()
    x2paddle_shims.import_onnx_version()
    assert hasattr(onnx, "version")
    assert onnx.version.version == onnx.__version__
    v0, v1, v2 = onnx.version.version.split(".")  # exactly X2Paddle's check in onnx2paddle
    assert int(v0) * 100 + int(v1) * 10 + int(v2) >= 160


# --------------------------------------------------------------------------- provide_onnx_mapping


def test_onnx_decoder_import_fails_without_onnx_mapping():
    proc = run_py(
        """
        import json
        out = {}
        for mod in ("onnx.mapping", "x2paddle.decoder.onnx_decoder", "x2paddle.op_mapper.onnx2paddle.opset_legacy"):
            try:
                __import__(mod)
                out[mod] = None
            except ImportError as exc:
                out[mod] = [type(exc).__name__, exc.name, str(exc)]
        print("RESULT", json.dumps(out))
        """
    )
    result = last_json(proc, "RESULT")
    for mod, failure in result.items():
        assert failure is not None, f"import {mod} worked without the shim"
        assert failure[0] == "ModuleNotFoundError"
        assert failure[1] == "onnx.mapping", failure
        assert "No module named 'onnx.mapping'" in failure[2]


def test_onnx_decoder_imports_with_onnx_mapping():
    proc = run_py(
        child(APPLY_SHIMS, """
        apply("provide_onnx_mapping")
        import json, onnx
        import x2paddle.decoder.onnx_decoder as dec
        import x2paddle.op_mapper.onnx2paddle.opset_legacy as legacy
        print("RESULT", json.dumps([
            dec.TENSOR_TYPE_TO_NP_TYPE is onnx.mapping.TENSOR_TYPE_TO_NP_TYPE,
            legacy.TENSOR_TYPE_TO_NP_TYPE is onnx.mapping.TENSOR_TYPE_TO_NP_TYPE,
        ]))
        """)
    )
    assert last_json(proc, "RESULT") == [True, True], proc.stderr[-4000:]


def test_onnx_mapping_tables():
    x2paddle_shims.provide_onnx_mapping()
    import onnx.mapping as mapping

    assert sys.modules["onnx.mapping"] is mapping is onnx.mapping
    to_np, to_tensor = mapping.TENSOR_TYPE_TO_NP_TYPE, mapping.NP_TYPE_TO_TENSOR_TYPE
    assert to_np[TensorProto.FLOAT] == np.float32
    assert to_np[TensorProto.FLOAT] == np.dtype("float32")
    assert to_np[TensorProto.INT64] == np.int64
    expected = {
        TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64", TensorProto.FLOAT16: "float16",
        TensorProto.INT8: "int8", TensorProto.INT16: "int16", TensorProto.INT32: "int32",
        TensorProto.INT64: "int64", TensorProto.UINT8: "uint8", TensorProto.BOOL: "bool",
    }
    for tensor_type, np_name in expected.items():
        assert to_np[tensor_type] == np.dtype(np_name)
        assert to_tensor[np.dtype(np_name)] == tensor_type  # round trip np -> onnx
    for tensor_type, np_dtype in to_np.items():  # round trip over the whole table
        assert to_np[to_tensor[np_dtype]] == np_dtype
    assert TensorProto.UNDEFINED not in to_np
    # As X2Paddle uses it (decoder/onnx_decoder.py): np.dtype(TENSOR_TYPE_TO_NP_TYPE[t]).
    assert np.dtype(to_np[TensorProto.FLOAT]).name == "float32"


def test_provide_onnx_mapping_is_idempotent():
    x2paddle_shims.provide_onnx_mapping()
    first = sys.modules["onnx.mapping"]
    x2paddle_shims.provide_onnx_mapping()
    assert sys.modules["onnx.mapping"] is first


# --------------------------------------------------------------------------- disable_feedback


def test_converter_check_phones_home_without_shim():
    proc = run_py(
        """
        import json
        import requests
        calls = []
        def recorder(url, *args, **kwargs):
            calls.append(url)
        requests.get = recorder
        import x2paddle.convert, x2paddle.utils
        thread = x2paddle.utils.ConverterCheck(task="ONNX", time_info=0, convert_state="Start")
        thread.start()
        thread.join(30)
        print("RESULT", json.dumps({
            "calls": calls,
            "stats_api": x2paddle.utils.stats_api,
            # convert.py holds its own reference: patching x2paddle.utils alone would not do
            "convert_has_same_class": x2paddle.convert.ConverterCheck is x2paddle.utils.ConverterCheck,
        }))
        """
    )
    result = last_json(proc, "RESULT")
    assert result["stats_api"] == STATS_API
    assert result["calls"] == [STATS_API]
    assert result["convert_has_same_class"] is True


# Installed as sitecustomize, so it audits every Python process of a conversion, including
# the X2Paddle child that bridge.stages.convert.run starts. A network event is recorded and
# then refused (the hook raises), so nothing ever leaves the machine.
NETWORK_AUDIT_SITE = """
    import atexit, json, os, sys
    _LOG = os.environ["BRIDGE_TEST_NET_LOG"]
    _NET = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
            "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"}

    def _write(record):
        with open(_LOG, "a") as f:
            f.write(json.dumps(record) + "\\n")

    def _audit(event, args):
        if event in _NET:
            _write({"pid": os.getpid(), "event": event, "args": repr(args)[:300]})
            raise PermissionError("network blocked by bridge's tests")

    sys.addaudithook(_audit)
    atexit.register(lambda: _write({"pid": os.getpid(), "exited": list(sys.argv)}))
"""


def read_audit(log: Path) -> tuple[list[dict], list[list[str]]]:
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [r for r in records if "event" in r], [r["exited"] for r in records if "exited" in r]


ONNX2PADDLE_WITH_FEEDBACK_CHILD = """
    import sys, threading
    from bridge.patches import x2paddle_shims as shims
    if sys.argv[3] == "without":
        shims.SHIMS = tuple(s for s in shims.SHIMS if s.name != "disable_feedback")
    shims.install()
    from x2paddle.convert import onnx2paddle
    # X2Paddle's own default, disable_feedback=False: the class swap must cover it too.
    onnx2paddle(sys.argv[1], sys.argv[2], disable_feedback=False)
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(30)
    print("DONE")
"""


@pytest.mark.parametrize("mode", ["without", "with"])
def test_onnx2paddle_feedback_under_socket_audit(tiny_onnx, tmp_path, mode):
    """Without the shim the audit sees X2Paddle's stats request (so the audit works); with
    every shim installed, even ``disable_feedback=False`` opens nothing."""
    log = tmp_path / "net.jsonl"
    env = sitecustomize_env(tmp_path / "site", NETWORK_AUDIT_SITE, BRIDGE_TEST_NET_LOG=str(log))
    proc = run_py(ONNX2PADDLE_WITH_FEEDBACK_CHILD, tiny_onnx, tmp_path / "paddle", mode, cwd=tmp_path, env=env)
    assert "DONE" in proc.stdout, proc.stderr[-4000:]
    events, processes = read_audit(log)
    assert processes, "the audit hook never ran"
    if mode == "without":
        assert any("paddlepaddle.org.cn" in e["args"] for e in events), events
    else:
        assert events == []
        assert (tmp_path / "paddle" / "x2paddle_code.py").exists()


def test_convert_run_opens_no_network_connection(tiny_onnx, tmp_path, monkeypatch):
    import socket

    from bridge.stages import convert

    log = tmp_path / "net.jsonl"
    for key, value in sitecustomize_env(tmp_path / "site", NETWORK_AUDIT_SITE, BRIDGE_TEST_NET_LOG=str(log)).items():
        monkeypatch.setenv(key, value)
    here: list[tuple] = []  # this (parent) process, which is not audited by the hook

    def refuse(name):
        def record(*args, **kwargs):
            here.append((name, args))
            raise PermissionError("network blocked by bridge's tests")
        return record

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    x2paddle_shims.install()
    paddle_dir = tmp_path / "out" / "paddle"
    convert.run(tiny_onnx, paddle_dir, tmp_path / "out" / "logs" / "convert.log")
    assert (paddle_dir / "x2paddle_code.py").exists()
    events, processes = read_audit(log)
    # The conversion really ran in an audited child...
    assert any(str(tiny_onnx) in argv for argv in processes), processes
    # ...and nobody opened (or even resolved) anything.
    assert events == []
    assert here == []


def test_disable_feedback_replaces_converter_check_in_process(monkeypatch):
    x2paddle_shims.install()
    import requests
    import x2paddle.convert
    import x2paddle.utils

    assert x2paddle.utils.ConverterCheck is x2paddle_shims._NoFeedback
    assert x2paddle.convert.ConverterCheck is x2paddle_shims._NoFeedback
    calls = []
    monkeypatch.setattr(requests, "get", lambda *a, **k: calls.append(a))
    thread = x2paddle.convert.ConverterCheck(task="ONNX", time_info=0, convert_state="Start")
    thread.start()
    assert not thread.is_alive()
    assert calls == []


# --------------------------------------------------------------------------- exit_raises


FAILING_JIT_SAVE = """
    import paddle

    def _failing_save(*args, **kwargs):
        raise ValueError("boom")

    paddle.jit.save = _failing_save
"""

EXIT_CHILD = child("""
    import json, sys
    from pathlib import Path
    model, out_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    from bridge.patches import x2paddle_shims as shims
    if mode == "without":
        shims.SHIMS = tuple(s for s in shims.SHIMS if s.name != "exit_raises")
""", FAILING_JIT_SAVE, """
    from bridge.stages import convert
    try:
        convert.convert_in_process(model, out_dir)
    except SystemExit as exc:
        print("EXIT", json.dumps(exc.code), flush=True)
        raise
    except BaseException as exc:
        print("RAISED", json.dumps([type(exc).__name__, str(exc)]), flush=True)
        sys.exit(3)
    print("RETURNED", json.dumps(None), flush=True)
""")


def test_x2paddle_exits_zero_without_exit_raises(tiny_onnx, tmp_path):
    out_dir = tmp_path / "paddle"
    proc = run_py(EXIT_CHILD, tiny_onnx, out_dir, "without", cwd=tmp_path)
    assert "RETURNED" not in proc.stdout and "RAISED" not in proc.stdout, proc.stdout + proc.stderr[-4000:]
    assert last_json(proc, "EXIT") == 0  # X2Paddle's exit(0)...
    assert proc.returncode == 0  # ...a success status...
    assert not (out_dir / "inference_model" / "model.json").exists()  # ...and no model
    assert "boom" in proc.stdout


def test_exit_raises_turns_exit_into_x2paddle_exit(tiny_onnx, tmp_path):
    out_dir = tmp_path / "paddle"
    proc = run_py(EXIT_CHILD, tiny_onnx, out_dir, "with", cwd=tmp_path)
    kind, message = last_json(proc, "RAISED")
    assert kind == "X2PaddleExit", message
    assert proc.returncode == 3
    assert "boom" in proc.stdout


def test_convert_run_reports_x2paddle_exit_and_leaves_nothing(tiny_onnx, tmp_path, monkeypatch):
    """The whole stage: X2Paddle's child gets a failing ``paddle.jit.save`` (via
    sitecustomize); ``run`` raises X2PaddleExit and leaves no paddle_dir behind."""
    from bridge.stages import convert

    for key, value in sitecustomize_env(tmp_path / "site", FAILING_JIT_SAVE).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    paddle_dir = out / "paddle"
    log_path = out / "logs" / "convert.log"
    with pytest.raises(X2PaddleExit) as info:
        convert.run(tiny_onnx, paddle_dir, log_path)
    assert isinstance(info.value, BridgeError) and info.value.exit_code != 0
    assert not paddle_dir.exists()
    assert sorted(p.name for p in out.iterdir()) == ["logs"]  # no temp folder left behind either
    assert "boom" in log_path.read_text()


def test_exit_shim_shadows_builtin_exit():
    x2paddle_shims.install()
    import x2paddle.core.program as program

    with pytest.raises(X2PaddleExit):
        program.exit(0)
    with pytest.raises(X2PaddleExit):
        program.exit()


# --------------------------------------------------------------------------- relocate_params_path


def _ort_output(model_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_generated_code_breaks_without_relocation(tiny_onnx, tmp_path, monkeypatch):
    """Without the rewrite, main() loads from the absolute temp folder X2Paddle wrote into,
    which convert.run has already renamed away: the output is broken even before a move."""
    import paddle
    from bridge.runners import load_generated_module
    from bridge.stages import convert

    monkeypatch.setattr(x2paddle_shims, "relocate_params_path", lambda code_path: 0)
    paddle_dir = tmp_path / "out" / "paddle"
    convert.run(tiny_onnx, paddle_dir, tmp_path / "out" / "logs" / "convert.log")
    code = (paddle_dir / "x2paddle_code.py").read_text()
    assert str(tmp_path) in code  # the absolute path is baked in
    module = load_generated_module(paddle_dir / "x2paddle_code.py")
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(Exception, match="model.pdparams|No such file|not exist"):
        module.main(paddle.to_tensor(x))


def test_converted_folder_is_relocatable(tiny_onnx, tmp_path):
    import paddle
    from bridge.runners import load_generated_module
    from bridge.stages import convert

    work = tmp_path / "work"
    result = convert.run(tiny_onnx, work / "paddle", work / "logs" / "convert.log")
    assert result.relocated_paths == 1
    code = (work / "paddle" / "x2paddle_code.py").read_text()
    assert str(tmp_path) not in code
    assert ".tmp-" not in code
    assert "paddle.load(r'" not in code and 'paddle.load(r"' not in code

    moved = tmp_path / "elsewhere" / "moved_paddle"
    shutil.copytree(work / "paddle", moved)
    shutil.rmtree(work)
    assert not work.exists()

    module = load_generated_module(moved / "x2paddle_code.py")
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = module.main(paddle.to_tensor(x))
    got = (out[0] if isinstance(out, (list, tuple)) else out).numpy()
    expected = _ort_output(tiny_onnx, x)
    assert got.shape == expected.shape == (2, 4, 8, 8)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _eval_relocated_load(code: str, file: str) -> list[str]:
    """Run the rewritten code with a fake ``paddle.load`` that records the path it got."""
    import types

    loaded: list[str] = []
    fake_paddle = types.SimpleNamespace(load=lambda path: loaded.append(path))
    exec(compile(code, file, "exec"), {"paddle": fake_paddle, "__file__": file})
    return loaded


@pytest.mark.parametrize(
    "line",
    [
        r"params = paddle.load(r'C:\Users\me\out\paddle\model.pdparams')",
        'params = paddle.load(r"C:\\Users\\me\\out\\paddle\\model.pdparams")',
        'params = paddle.load("/home/me/out/paddle/model.pdparams")',
        "params = paddle.load('/home/me/out/paddle/model.pdparams')",
    ],
    ids=["windows-raw-single", "windows-raw-double", "posix-double", "posix-single"],
)
def test_relocate_params_path_rewrites(tmp_path, line):
    code_path = tmp_path / "x2paddle_code.py"
    code_path.write_text(f"def main(x):\n    {line}\n    return params\n")
    assert x2paddle_shims.relocate_params_path(code_path) == 1
    text = code_path.read_text()
    assert "C:" not in text and "/home/me" not in text
    assert "def main(x):" in text
    # The rewritten call loads model.pdparams beside wherever the code file now lives.
    file = str(tmp_path / "anywhere" / "x2paddle_code.py")
    assert _eval_relocated_load(text + "\nmain(None)\n", file) == [str(tmp_path / "anywhere" / "model.pdparams")]
    # Idempotent: the rewritten code has no literal path left to rewrite.
    assert x2paddle_shims.relocate_params_path(code_path) == 0
    assert code_path.read_text() == text


def test_relocate_params_path_counts_every_occurrence(tmp_path):
    code_path = tmp_path / "x2paddle_code.py"
    code_path.write_text(
        "a = paddle.load(r'/x/model.pdparams')\nb = paddle.load(\"/y/z/model.pdparams\")\n"
    )
    assert x2paddle_shims.relocate_params_path(code_path) == 2
    assert "/x/" not in code_path.read_text() and "/y/z/" not in code_path.read_text()


@pytest.mark.parametrize(
    "text",
    [
        "import paddle\n\nclass ONNXModel(paddle.nn.Layer):\n    pass\n",
        "params = paddle.load(params_path)\n",
        "params = paddle.load(r'/abs/out/model.pdiparams')\n",
    ],
    ids=["no-load", "variable-path", "other-file"],
)
def test_relocate_params_path_leaves_other_code_alone(tmp_path, text):
    code_path = tmp_path / "x2paddle_code.py"
    code_path.write_text(text)
    os.utime(code_path, ns=(1_000_000_000, 1_000_000_000))
    assert x2paddle_shims.relocate_params_path(code_path) == 0
    assert code_path.read_text() == text
    assert code_path.stat().st_mtime_ns == 1_000_000_000  # not rewritten at all


# --------------------------------------------------------------------------- decoder_streams_weights


def make_external_model(path: Path) -> Path:
    """The tiny Conv model with its weights in an external data file (``tiny.onnx.data``)."""
    make_tiny_model(path)
    model = onnx.load(str(path))
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
    return path


DECODER_CHILD = child(APPLY_SHIMS, """
    import json, sys
    import numpy as np
    import onnx
    from onnx import numpy_helper
    mode = sys.argv[2]
    names = ["require_undeclared_deps", "import_onnx_version", "provide_onnx_mapping"]
    apply(*(names + (["decoder_streams_weights"] if mode == "with" else [])))
    from x2paddle.decoder import onnx_decoder
    checked = []
    real_check = onnx.checker.check_model
    onnx.checker.check_model = onnx_decoder.check_model = lambda m, *a, **k: (checked.append(type(m).__name__), real_check(m, *a, **k))
    decoder = onnx_decoder.ONNXDecoder(sys.argv[1], True)
    source = {t.name: numpy_helper.to_array(t) for t in onnx.load(sys.argv[1]).graph.initializer}
    weights = dict(decoder.graph.graph_weights())
    print("RESULT", json.dumps({
        "checked": checked,
        "bytes_in_proto": sum(len(t.raw_data) for t in decoder.graph.graph.initializer),
        # X2Paddle renames tensors (x2paddle_W): compare the arrays themselves.
        "weights_equal": sorted(a.tobytes() for a in weights.values()) == sorted(a.tobytes() for a in source.values()),
        "node_weights_equal": sorted(n.weight.tobytes() for n in decoder.graph.node_map.values()
                                     if getattr(n, "weight", None) is not None) == sorted(a.tobytes() for a in source.values()),
    }))
""")


def test_decoder_holds_external_weights_in_the_proto_without_shim(tmp_path):
    """X2Paddle loads every weight into the proto it checks and copies (check_model(proto):
    over 2 GB, ``EncodeError: Failed to serialize proto``)."""
    model = make_external_model(tmp_path / "model" / "tiny.onnx")
    result = last_json(run_py(DECODER_CHILD, model, "without", cwd=tmp_path), "RESULT")
    assert result["checked"] == ["ModelProto"]
    assert result["bytes_in_proto"] == (4 * 3 * 3 * 3 + 4) * 4  # every weight, in memory


def test_decoder_streams_weights_checks_by_path_and_reads_weights_from_disk(tmp_path):
    model = make_external_model(tmp_path / "model" / "tiny.onnx")
    # Run from another folder: the weights are found beside the model, not in the cwd.
    (tmp_path / "elsewhere").mkdir()
    result = last_json(run_py(DECODER_CHILD, model, "with", cwd=tmp_path / "elsewhere"), "RESULT")
    assert result["checked"] == ["str"]
    assert result["bytes_in_proto"] == 0
    assert result["weights_equal"] and result["node_weights_equal"]


def test_decoder_streams_weights_converts_an_external_model(tmp_path):
    from bridge.runners import OrtRunner, PaddleInferenceRunner
    from bridge.stages import convert

    model = make_external_model(tmp_path / "model" / "tiny.onnx")
    result = convert.run(model, tmp_path / "paddle", tmp_path / "convert.log")
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    got = PaddleInferenceRunner(tmp_path / "paddle", result.inputs, result.outputs).run(feeds)["y"]
    np.testing.assert_allclose(got, OrtRunner(model).run(feeds)["y"], atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- release_weights_after_dump

RELEASE_CHILD = child(APPLY_SHIMS, """
    import json, sys
    mode = sys.argv[3]
    names = [s.name for s in shims.SHIMS if mode == "with" or s.name != "release_weights_after_dump"]
    apply(*names)
    from x2paddle.core import program
    graphs = []
    real_d2s = program.PaddleGraph.dygraph2static
    def d2s(self, *args, **kwargs):
        graphs.append(len(self.parameters))  # what is still held when Paddle loads its own copy
        return real_d2s(self, *args, **kwargs)
    program.PaddleGraph.dygraph2static = d2s
    from x2paddle.convert import onnx2paddle
    onnx2paddle(sys.argv[1], sys.argv[2], disable_feedback=True)
    import os
    print("RESULT", json.dumps({"held": graphs, "wrote": sorted(os.listdir(sys.argv[2]))}))
""")


@pytest.mark.parametrize("mode", ["without", "with"])
def test_release_weights_after_dump(tiny_onnx, tmp_path, mode):
    """Without the shim X2Paddle still holds its weights while dygraph2static loads
    model.pdparams into Paddle; with it, none, and the conversion is the same."""
    result = last_json(run_py(RELEASE_CHILD, tiny_onnx, tmp_path / "paddle", mode, cwd=tmp_path), "RESULT")
    assert len(result["held"]) == 1
    assert result["held"][0] > 0 if mode == "without" else result["held"][0] == 0
    assert {"x2paddle_code.py", "model.pdparams", "inference_model"} <= set(result["wrote"])


# --------------------------------------------------------------------------- install()


def test_install_applies_every_shim_in_order():
    assert [s.name for s in x2paddle_shims.SHIMS] == [
        "require_undeclared_deps", "import_onnx_version", "provide_onnx_mapping", "disable_feedback", "exit_raises",
        "pattern_matcher_linear", "name_struct_linear",
        "decoder_streams_weights", "release_weights_after_dump", "reduce_sum_keepdims", "pad_constant",
        "reduce_tensor_axes", "reduce_sum_tensor_axes", "reduce_lp_axes", "constant_value_forms",
        "tensor_attrs_typed_fields", "clip_bounds", "conv_kernel_shape",
        "gather_input_table", "mappers_math", "mappers_tensor",
        "multi_output_graph_outputs", "topk_values_readers", "argmax_defaults", "gemm_all_forms",
        "split_tensor_sizes", "squeeze_unsqueeze_tensor_axes", "dropout",
        "expand_tensor_shape", "div_integers", "topk_stable_ties", "scatter_nd_reduction",
        "narrow_max_min_mod", "maxpool_indices", "gather_nd_batch_dims",
    ]
    x2paddle_shims.install()
    x2paddle_shims.install()  # once per process; a second call is a no-op
    import x2paddle.convert
    import x2paddle.core.program

    assert hasattr(onnx, "version") and "onnx.mapping" in sys.modules
    assert x2paddle.convert.ConverterCheck is x2paddle_shims._NoFeedback
    assert x2paddle.core.program.exit is x2paddle_shims._exit_raises
