"""The work directory: atomic writes, the manifest, and log capture.

A conversion is built in a temporary sibling folder and moved into place only when every
stage succeeded, so a failed or interrupted run never leaves a half-written ``--out``.
Single files (a stage rerun from ``scripts/``) are written to a temp name and renamed.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from bridge.errors import BridgeError

MANIFEST = "manifest.json"
STAGE_ORDER = ("export", "simplify", "patch", "convert", "validate")

# Artifact names inside a work directory, in stage order.
EXPORTED_ONNX = "model.onnx"
SIMPLIFIED_ONNX = "model.simplified.onnx"
PATCHED_ONNX = "model.patched.onnx"
TORCH_STATE = "torch_state_dict.pt"
PADDLE_DIR = "paddle"
VALIDATION_JSON = "validation.json"
VALIDATION_TXT = "validation.txt"
LOGS_DIR = "logs"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder (relative names). Bytecode caches are
    left out: importing the generated code writes ``paddle/__pycache__`` (unless
    PYTHONDONTWRITEBYTECODE), which must neither stop a rerun reusing the convert stage nor
    count as a changed artifact."""
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {str(p.relative_to(path.parent)): sha256_file(p) for p in sorted(path.rglob("*"))
            if p.is_file() and "__pycache__" not in p.relative_to(path).parts}


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path`` (file or folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        replace_path(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst``; an existing folder at ``dst`` is removed only after the move."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def check_out_dir(out: Path) -> list[Path]:
    """Check ``--out`` can be written; returns its missing parent folders (outermost last),
    which the caller creates and removes again if the run fails."""
    if out.exists() and not out.is_dir():
        raise BridgeError(f"--out {out}: exists and is not a directory")
    missing = []
    ancestor = out.resolve().parent
    while not ancestor.exists():
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BridgeError(f"--out {out}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK):
        raise BridgeError(f"--out {out}: folder {ancestor} is not writable")
    return missing


def _lock_path(work: Path) -> Path:
    # Beside the folder, not in it: the folder itself is replaced by a rename.
    return work.resolve().parent / f".{work.name}.lock"


@contextlib.contextmanager
def work_lock(work: Path) -> Iterator[None]:
    """Hold ``work`` for this process; another bridge process gets one line naming our pid.

    An ``flock`` is released by the kernel when its process dies, so a killed run never
    holds a folder. Holding the lock also means no one else is writing there, so leftover
    temporary folders of killed runs are removed now. The lock file is removed on release
    (a waiter that opened the unlinked file notices by its inode and retries).
    """
    path = _lock_path(work)
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BridgeError(f"{work}: in use by pid {holder} (lock {path}); wait for it or stop it") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed this file while we waited: take the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temps(work)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                path.parent.rmdir()


def remove_stale_temps(work: Path) -> list[Path]:
    """Temporary siblings (``.NAME.tmp-*``, ``.NAME.old-*``) and temporaries inside ``work``
    left by a killed run. Call only while holding ``work_lock(work)``."""
    found = list(work.resolve().parent.glob(f".{work.name}.tmp-*")) + list(work.resolve().parent.glob(f".{work.name}.old-*"))
    if work.is_dir():
        found += [p for p in work.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name or p.name.startswith(".load-weights-")]
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return found


def require_artifact(work: Path, name: str, made_by: str) -> Path:
    path = work / name
    if not path.exists():
        raise BridgeError(f"{path}: missing; run the {made_by} stage first")
    return path


class Manifest:
    """``<work>/manifest.json``: source, inputs, tool versions and one record per stage run."""

    def __init__(self, work: Path, data: dict[str, Any] | None = None):
        self.work = work
        self.data = data if data is not None else {"stages": {}}

    @classmethod
    def load(cls, work: Path) -> "Manifest":
        path = work / MANIFEST
        if not work.is_dir():
            raise BridgeError(f"{work}: no such work directory (run `bridge convert` first)")
        if not path.exists():
            raise BridgeError(f"{path}: missing; {work} is not a bridge work directory")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise BridgeError(f"{path}: not valid JSON: {exc}") from exc
        required = ("source", "inputs", "output_names", "stages")
        if not isinstance(data, dict) or any(k not in data for k in required):
            raise BridgeError(f"{path}: not a bridge manifest (needs {', '.join(required)})")
        return cls(work, data)

    def save(self) -> None:
        write_json_atomic(self.work / MANIFEST, self.data)

    def record_stage(
        self, name: str, *, seconds: float, inputs: list[str], outputs: list[str], **details: Any
    ) -> dict[str, Any]:
        record = {
            "seconds": round(seconds, 3),
            "inputs": {k: v for n in inputs for k, v in sha256_tree(self.work / n).items()},
            "outputs": {k: v for n in outputs for k, v in sha256_tree(self.work / n).items()},
            **details,
        }
        stages = self.data.setdefault("stages", {})
        # A rerun stage makes every later stage's record stale: drop them, so a later step
        # asks for its input to be rebuilt instead of trusting an old artifact.
        for later in STAGE_ORDER[STAGE_ORDER.index(name) + 1:]:
            stages.pop(later, None)
        stages[name] = record
        return record


@contextlib.contextmanager
def capture_fds(log_path: Path) -> Iterator[None]:
    """Send everything written to fds 1 and 2 (Python prints and C++ glog alike) to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
