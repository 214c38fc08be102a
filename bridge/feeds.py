"""``bridge validate --inputs FILE.npz``: the user's own input arrays instead of seeded random ones.

The file must hold exactly the model's inputs (by name, as in ``manifest.json``), each with the
recorded dtype and rank, the recorded example dims except the batch axis (and axes made dynamic
with ``--dynamic``), one batch size for all, and finite values: a NaN or Inf input makes every
runner's output non-finite, and equal NaNs prove nothing about a conversion.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from bridge.errors import BridgeError
from bridge.spec import InputSpec


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise BridgeError(f"--inputs {path}: no such file")
    if path.is_dir():
        raise BridgeError(f"--inputs {path}: is a directory, expected an .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:  # object arrays are pickles: never unpickled
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise BridgeError(f"--inputs {path}: a single .npy array, expected an .npz of named arrays")
            return {name: data[name] for name in data.files}
    except BridgeError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BridgeError(f"--inputs {path}: not a readable .npz file ({first})") from exc


def read_feeds(
    path: Path, specs: list[InputSpec], dynamic_batch: bool = True,
    dynamic_axes: dict[str, list[int]] | None = None,
) -> tuple[int, dict[str, np.ndarray]]:
    """``(batch, {input name: array})`` from ``path``, checked against the model's inputs."""
    arrays = _load_npz(path)
    expected = [s.name for s in specs]
    missing = [n for n in expected if n not in arrays]
    unexpected = sorted(set(arrays) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        raise BridgeError(f"--inputs {path}: {'; '.join(parts)} (the model's inputs: {', '.join(expected)})")
    batches = set()
    for spec in specs:
        array = arrays[spec.name]
        where = f"--inputs {path}: array {spec.name!r}"
        if str(array.dtype) != spec.dtype:
            raise BridgeError(f"{where} has dtype {array.dtype}, the model's input is {spec.dtype}")
        if array.ndim != len(spec.shape):
            raise BridgeError(f"{where} has shape {list(array.shape)}, the model's input is rank "
                              f"{len(spec.shape)} ({'x'.join(map(str, spec.shape))})")
        free = set((dynamic_axes or {}).get(spec.name, [])) | ({0} if dynamic_batch else set())
        free |= {a + array.ndim for a in free if a < 0}
        fixed = [i for i in range(array.ndim) if i not in free and array.shape[i] != spec.shape[i]]
        if fixed or 0 in array.shape:
            raise BridgeError(f"{where} has shape {list(array.shape)}, the model's input is "
                              f"{'x'.join(map(str, spec.shape))}"
                              f"{' (only the batch axis may differ)' if dynamic_batch else ' (static shape)'}")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise BridgeError(f"{where} holds {array[index]} at {list(index)}; validation needs finite inputs")
        batches.add(array.shape[0] if array.ndim else 1)
    if len(batches) > 1:
        raise BridgeError(f"--inputs {path}: the arrays disagree on the batch size ({sorted(batches)})")
    return batches.pop() if batches else 1, {s.name: arrays[s.name] for s in specs}
