"""Integrity of a work directory: the files a command is about to load are the ones conversion
wrote.

Every stage records the sha256 of what it wrote in ``manifest.json`` (``stages.<name>.outputs``).
``validate`` and ``load-weights`` import the generated ``paddle/x2paddle_code.py`` (arbitrary
Python) and load parameter files, so before either touches them the recorded hashes are
checked against the files on disk: an edited, truncated or swapped file is refused with one line
naming it, and nothing from the folder has been imported or loaded yet.

The manifest itself is not signed: this catches accidents and stale copies (a file replaced by
hand, a half-synced folder, a params file from another run), not an attacker who can also
rewrite ``manifest.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError
from bridge.workdir import PADDLE_DIR, PATCHED_ONNX, Manifest, sha256_file

# Stages whose outputs a converted folder is made of (validate's own outputs are reports).
ARTIFACT_STAGES = ("export", "simplify", "patch", "convert")

# Files that must have a recorded hash before they are loaded: the generated code is imported,
# the params are unpickled by Paddle. A manifest without them (hand-made, or from a bridge that
# did not record them) cannot vouch for the folder.
REQUIRED = (f"{PADDLE_DIR}/x2paddle_code.py", f"{PADDLE_DIR}/model.pdparams", PATCHED_ONNX)


@dataclass(frozen=True)
class Mismatch:
    """One recorded artifact that is not on disk as recorded."""

    path: str  # relative to the work directory
    recorded: str | None  # sha256 in the manifest; None: not recorded at all
    actual: str | None  # sha256 on disk; None: the file is missing

    def describe(self, work: Path) -> str:
        where = work / self.path
        if self.recorded is None:
            return f"{where}: no sha256 recorded in {work / 'manifest.json'}"
        if self.actual is None:
            return f"{where}: missing (manifest records sha256 {self.recorded[:12]}…)"
        return f"{where}: changed since conversion (sha256 {self.actual[:12]}…, manifest says {self.recorded[:12]}…)"


def recorded_hashes(manifest: Manifest) -> dict[str, str]:
    """Relative path -> sha256 of every artifact the conversion stages wrote; a later stage's
    record wins (``load-weights`` rewrites the convert record with the new params)."""
    stages = manifest.data.get("stages", {})
    hashes: dict[str, str] = {}
    for name in ARTIFACT_STAGES:
        outputs = stages.get(name, {}).get("outputs", {})
        if isinstance(outputs, dict):
            hashes.update({str(k): str(v) for k, v in outputs.items()})
    # Bytecode caches are Python's, not conversion's: importing the generated code writes one
    # (unless PYTHONDONTWRITEBYTECODE), and a folder copied with new mtimes gets it rewritten.
    return {k: v for k, v in hashes.items() if "__pycache__" not in Path(k).parts}


def find_mismatches(work: Path, manifest: Manifest, required: tuple[str, ...] = REQUIRED) -> list[Mismatch]:
    """Every recorded artifact whose file is missing or differs, plus every ``required`` one with
    no record. Hashes are streamed in 1 MiB blocks, so a large params file costs one read."""
    recorded = recorded_hashes(manifest)
    found = [Mismatch(path, None, None) for path in required if path not in recorded]
    for path, expected in recorded.items():
        file = work / path
        if not file.is_file():
            found.append(Mismatch(path, expected, None))
            continue
        actual = sha256_file(file)
        if actual != expected:
            found.append(Mismatch(path, expected, actual))
    return found


def verify_work(work: Path, manifest: Manifest | None = None, command: str = "bridge convert") -> None:
    """Raise one line naming the first artifact that is not as conversion wrote it (and how many
    others), before anything in ``work`` is imported or loaded."""
    manifest = manifest if manifest is not None else Manifest.load(work)
    mismatches = find_mismatches(work, manifest)
    if not mismatches:
        return
    first = mismatches[0]
    more = f" (and {len(mismatches) - 1} more file{'s' if len(mismatches) > 2 else ''})" if len(mismatches) > 1 else ""
    source = manifest.data.get("source", {}).get("text", "SOURCE")
    raise BridgeError(f"{first.describe(work)}{more}; refusing to load it: rerun `{command} {source} --out {work}`")
