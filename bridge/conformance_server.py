"""The conformance harness's fork server: imports ONNX, ONNX Runtime, onnxsim (torch), Paddle
and X2Paddle once, then forks one throwaway process per case.

A fresh Python per case paid ~8 s of imports before its first node, and X2Paddle's own child
as much again; a forked case starts with all of it loaded. The case's process is still a
process of its own: a native abort or a hang costs that case only (the server kills a case
past its timeout), and a server that dies is started again for the next case.

    python -m bridge.conformance_server [MODULE[:FUNCTION]]...   (started by CaseServer)

It imports (and, for ``module:function``, calls) each argument, then serves one request per
JSON line on stdin, ``{"work": DIR, "target": "module:function", "timeout": S}``, and
answers on stdout: ``{"pid": N}`` once the case's process runs ``function(Path(DIR),
bridge_code)`` (its exit status is the process's), then ``{"exit": CODE}`` (negative: killed
by that signal) or ``{"timeout": true}``. When the code of the checkout changed since the
server imported it, it answers ``{"stale": true}`` and exits instead (unless the request says
``"stale_ok": true``): the harness starts a fresh server, so each case runs the code in the
tree when it starts, as a fresh process would.

Fork safety: the server only imports; no ONNX Runtime session, Paddle predictor or tensor
exists before a fork. Native thread pools are held to one thread per process (THREAD_ENV):
``--jobs 2`` runs two cases on a 2-core machine.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
# Everything a case's pipeline would import, in the order convert_in_process has it (bridge's
# X2Paddle shims before X2Paddle's modules; onnx_decoder imports sympy, ~1 s).
PRELOAD = (
    "onnx", "onnx.version_converter", "onnx.numpy_helper", "onnxruntime", "onnxsim", "paddle",
    "bridge.patches.x2paddle_shims:install", "x2paddle.convert", "x2paddle.decoder.onnx_decoder",
    "x2paddle.op_mapper.onnx2paddle.onnx_op_mapper", "bridge.pipeline", "bridge.runners",
    "bridge.opset_upgrade", "bridge.compare", "bridge.inference_settings", "bridge.conformance_case",
)
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
START_TIMEOUT = 300.0  # seconds for the imports, on a loaded machine
STALE_RESTARTS = 2  # fresh servers per case when the checkout changed under the running one
REPLY_GRACE = 30.0  # past a case's timeout, the server's answer is late: the server is stuck
_PR_SET_PDEATHSIG = 1


# --- the server ------------------------------------------------------------------------------

def _own_code_files() -> list[Path]:
    """The files of the loaded modules that are not Python's or an installed package's
    (bridge, its patches, a test's targets): what the server would run stale once edited."""
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    files = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and not any(Path(path).resolve().is_relative_to(p) for p in installed):
            files.append(Path(path))
    return sorted(set(files))


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _load(entry: str) -> None:
    module, _, function = entry.partition(":")
    loaded = importlib.import_module(module)
    if function:
        getattr(loaded, function)()


class _Requests:
    """Lines from fd 0, read unbuffered so that a wait can also watch for the harness going
    away (EOF) while a case runs."""

    def __init__(self):
        self._buffer = b""
        self.closed = False

    def _fill(self) -> None:
        chunk = os.read(0, 65536)
        self._buffer += chunk
        self.closed = self.closed or not chunk

    def next(self) -> dict | None:
        while b"\n" not in self._buffer and not self.closed:
            self._fill()
        if b"\n" not in self._buffer:
            return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def harness_gone(self, wait: float) -> bool:
        if not self.closed and select.select([0], [], [], wait)[0]:
            self._fill()
        return self.closed


def _kill_case(pid: int) -> None:
    # Its own session (setsid) holds whatever it started; right after fork it may not have
    # one yet, so the process itself too.
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


def _wait_case(pid: int, timeout: float, requests: _Requests) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"exit": os.waitstatus_to_exitcode(status)}
        left = deadline - time.monotonic()
        if left <= 0:
            _kill_case(pid)
            os.waitpid(pid, 0)
            return {"timeout": True}
        if requests.harness_gone(min(0.02, left)):  # nobody reads the result: stop the case too
            _kill_case(pid)
            os.waitpid(pid, 0)
            raise SystemExit(0)


def _case_process(request: dict, bridge_code: str, reply_fd: int, server_pid: int) -> NoReturn:
    """In the forked child: become a session of its own that dies with the server, log to
    WORK/child.log, run the target in WORK; never returns into the server's loop."""
    status = 70
    try:
        os.close(reply_fd)
        os.setsid()
        with contextlib.suppress(OSError, AttributeError):  # Linux: die when the server dies
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:  # the server died before prctl took effect
            os._exit(status)
        work = Path(request["work"])
        log = os.open(work / "child.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the server's requests are not the case's to read
        os.close(null)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(work)
        module, _, function = request["target"].partition(":")
        status = getattr(importlib.import_module(module), function)(work, bridge_code) or 0
    except BaseException:  # noqa: BLE001 - whatever it is, it goes to child.log and the status
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)  # no atexit handlers, no unwinding into the server's loop


def serve(preload: list[str]) -> int:
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print at import must not land in the replies

    def reply(message: dict) -> None:
        os.write(reply_fd, (json.dumps(message) + "\n").encode())

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness decides when the server goes
    start = time.perf_counter()
    for entry in preload:
        _load(entry)
    from bridge.conformance_case import loaded_bridge_code

    bridge_code = loaded_bridge_code()
    files = _own_code_files()
    checkout = _digest(files)
    reply({"ready": True, "seconds": round(time.perf_counter() - start, 2)})
    requests = _Requests()
    while (request := requests.next()) is not None:
        if not request.get("stale_ok") and _digest(files) != checkout:
            reply({"stale": True})
            return 0
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the server's buffered text again
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _case_process(request, bridge_code, reply_fd, server_pid)
        reply({"pid": pid})
        reply(_wait_case(pid, float(request["timeout"]), requests))
    return 0


# --- the harness's end -----------------------------------------------------------------------

class ServerError(RuntimeError):
    """The fork server could not start (its imports failed or took too long)."""


@dataclass
class CaseRun:
    """How a case's forked process ended: ``exit`` (``code``: its exit status, negative for
    a signal), ``timeout`` (killed by the server) or ``lost`` (the server died or hung)."""

    how: str
    code: int | None = None
    detail: str = ""


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


class CaseServer:
    """One fork server, used by one thread at a time; started on first use and again after
    it died or went stale."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD):
        self.preload = preload
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._log: Path | None = None
        self._case_pid: int | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.starts = 0  # how often it was started: once, plus once per death or code change
        self.stale = 0

    def _start(self) -> None:
        env = {**os.environ, **{k: os.environ.get(k, v) for k, v in THREAD_ENV.items()}}
        if self._log is not None:  # the previous server's: what mattered is in its records
            self._log.unlink(missing_ok=True)
        fd, log = tempfile.mkstemp(prefix="bridge-conformance-server-", suffix=".log")
        self._log, self._buffer = Path(log), b""
        with self._lock:
            if self._closed:
                os.close(fd)
                raise KeyboardInterrupt
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bridge.conformance_server", *self.preload],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=fd, cwd=ROOT, env=env,
                start_new_session=True,  # Ctrl-C reaches the harness only, which stops the rest
            )
        os.close(fd)
        self.starts += 1
        ready = self._read(time.monotonic() + START_TIMEOUT)
        if not ready or not ready.get("ready"):
            self._stop()
            log, self._log = self._log, None  # kept: the error names it
            raise ServerError(f"conformance server did not start: {self._log_tail(log)} (log: {log})")

    def _read(self, deadline: float) -> dict | None:
        """The next reply; None when the server closed its end or stayed silent past deadline."""
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _log_tail(self, log: Path | None = None) -> str:
        log = log or self._log
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "(no output)"

    def ensure_started(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start()

    def run(self, work: Path, target: str, timeout: float) -> CaseRun:
        """Run ``target`` on ``work`` in a process forked for it; how that process ended."""
        for attempt in range(STALE_RESTARTS + 1):
            self.ensure_started()
            # The last fresh server runs the case even if the checkout changed again meanwhile
            # (its record names the code it imported).
            request = {"work": str(work), "target": target, "timeout": timeout,
                       "stale_ok": attempt == STALE_RESTARTS}
            try:
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
            except OSError:
                return self._lost("died before the case started")
            started = self._read(time.monotonic() + REPLY_GRACE)
            if started is not None and started.get("stale"):
                self.stale += 1
                self._stop()
                continue
            if started is None:
                return self._lost("died before the case started")
            with self._lock:
                self._case_pid = started["pid"]
            ended = self._read(time.monotonic() + timeout + REPLY_GRACE)
            if ended is None:
                return self._lost("died while the case ran")
            with self._lock:
                self._case_pid = None
            if ended.get("timeout"):
                return CaseRun("timeout")
            return CaseRun("exit", ended["exit"])
        raise AssertionError("unreachable: the last attempt accepts a stale server")

    def _lost(self, when: str) -> CaseRun:
        hung = False
        if self._proc is not None:
            try:  # its replies pipe closes a moment before its exit status is there
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                hung = True
        self._stop()
        code = self._proc.returncode if self._proc is not None else None
        how = "stopped answering, killed" if hung else _exit_text(code)
        return CaseRun("lost", detail=f"conformance server {when} ({how}): {self._log_tail()}")

    def _stop(self) -> None:
        """Kill the case in flight (its session) and the server (its own)."""
        with self._lock:
            if self._case_pid is not None:
                _kill_case(self._case_pid)
                self._case_pid = None
            if self._proc is not None and self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            proc = self._proc
        if proc is not None:
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self, kill: bool = False) -> None:
        """Stop the server: at once with ``kill`` (Ctrl-C), else by closing its stdin."""
        with self._lock:
            self._closed = self._closed or kill
            proc = self._proc
        if proc is not None and not kill and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self._stop()
        if self._log is not None:
            self._log.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
