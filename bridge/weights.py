"""Loading a user's checkpoint into the torch module before export (``--weights FILE``).

``.pt``/``.pth``/``.bin`` are read with ``torch.load(weights_only=True)``: a pickle holding
anything but tensors and plain containers is refused, never executed. ``.safetensors`` is read
with safetensors. Keys must match the module exactly; a mismatch is reported in one line.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError

# Keys under which training scripts commonly nest the state_dict in a checkpoint dict.
NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def _preview(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    if not path.exists():
        raise BridgeError(f"--weights {path}: no such file")
    if path.is_dir():
        raise BridgeError(f"--weights {path}: is a directory, expected a checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise BridgeError(f"--weights {path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BridgeError(
            f"--weights {path}: refused by torch.load(weights_only=True): the pickle holds objects "
            "other than tensors and plain containers (not loaded, not executed)"
        ) from exc
    except Exception as exc:  # RuntimeError/EOFError for truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BridgeError(f"--weights {path}: refused by torch.load(weights_only=True): {first}") from exc
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        nested = next((state[k] for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if nested is not None:
            state = nested
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BridgeError(f"--weights {path}: not a state_dict (a dict of tensors); got {type(state).__name__}")
    return state


def check_state_matches(state: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Raise one line naming missing, unexpected and mis-shaped keys of ``state``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{k} {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected {_preview(unexpected)}")
    if mis_shaped:
        problems.append(f"wrong shape {_preview(mis_shaped)}")
    if problems:
        raise BridgeError(f"--weights {path}: does not match the model: {'; '.join(problems)}")


def load_weights(module, path: Path) -> None:
    """Load ``path`` into ``module`` strictly."""
    state = read_state_dict(path)
    check_state_matches(state, module.state_dict(), path)
    module.load_state_dict(state, strict=True)
