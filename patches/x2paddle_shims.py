"""Compatibility shims that let X2Paddle 1.6.0 (the last release, unmaintained) run on
today's onnx and paddle, without telemetry and without killing the process.

Every shim is registered in this one file, applied in ``SHIMS`` order by ``install()`` (two
long ones, which replace X2Paddle and Paddle functions that are quadratic in the model size,
live in ``x2paddle_linear_time.py``); each is idempotent and has a test in ``tests/test_x2paddle_shims.py``. The generated-code fix-up
(``relocate_params_path``) runs after conversion, on the files X2Paddle wrote.
"""
from __future__ import annotations

import importlib
import re
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bridge.errors import BridgeError, X2PaddleExit


def require_undeclared_deps() -> None:
    """x2paddle 1.6.0 imports ``six`` (core/program.py) and ``requests`` (utils.py) but its
    wheel declares neither; without them ``import x2paddle.convert`` dies with
    ``ModuleNotFoundError``. bridge declares both; this turns a broken env into one clear line."""
    for name in ("six", "requests"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise BridgeError(
                f"x2paddle needs the package {name!r}, which it does not declare: pip install {name}"
            ) from exc


def import_onnx_version() -> None:
    """``onnx2paddle`` reads ``onnx.version.version`` without ``import onnx.version``; on
    onnx >= 1.19 that attribute is absent, its bare ``except`` logs "onnx is not installed"
    and it *returns* without converting anything."""
    import onnx

    if not hasattr(onnx, "version"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            importlib.import_module("onnx.version")


def provide_onnx_mapping() -> None:
    """``from onnx.mapping import TENSOR_TYPE_TO_NP_TYPE`` (decoder/onnx_decoder.py,
    op_mapper/onnx2paddle/opset_legacy.py) fails with ``ModuleNotFoundError: No module named
    'onnx.mapping'`` on onnx >= 1.19. Provide the two tables from ``onnx.helper``."""
    import onnx
    import onnx.helper

    try:
        importlib.import_module("onnx.mapping")
        return
    except ImportError:
        pass
    tensor_to_np = {}
    for dtype in onnx.TensorProto.DataType.values():
        try:
            tensor_to_np[dtype] = onnx.helper.tensor_dtype_to_np_dtype(dtype)
        except (KeyError, ValueError, TypeError):
            continue  # UNDEFINED and types numpy cannot hold
    mapping = types.ModuleType("onnx.mapping")
    mapping.__doc__ = "Provided by bridge.patches.x2paddle_shims for x2paddle 1.6.0."
    mapping.TENSOR_TYPE_TO_NP_TYPE = tensor_to_np
    mapping.NP_TYPE_TO_TENSOR_TYPE = {v: k for k, v in reversed(tensor_to_np.items())}
    sys.modules["onnx.mapping"] = mapping
    onnx.mapping = mapping


class _NoFeedback(threading.Thread):
    """Stands in for ``x2paddle.utils.ConverterCheck``: never starts, never sends."""

    def __init__(self, *args, **kwargs):
        super().__init__(daemon=True)

    def start(self) -> None:  # noqa: D401 - deliberately does nothing
        return None


def disable_feedback() -> None:
    """Unless ``disable_feedback=True``, every conversion starts ``ConverterCheck``, a thread
    that sends an HTTP GET to paddlepaddle.org.cn/paddlehub/stat. bridge passes
    ``disable_feedback=True`` and also replaces the class, so no code path can phone home."""
    import x2paddle.convert
    import x2paddle.utils

    x2paddle.utils.ConverterCheck = _NoFeedback
    x2paddle.convert.ConverterCheck = _NoFeedback


def _exit_raises(code: int | None = None) -> None:
    raise X2PaddleExit(
        "X2Paddle gave up while saving the inference model (it called exit); see logs/convert.log"
    )


def exit_raises() -> None:
    """``PaddleGraph.dygraph2static`` (core/program.py) prints a ``ValueError`` from
    ``paddle.jit.save`` and calls ``exit(0)``: the process ends with status 0 and no model.
    Shadow ``exit`` in that module with a function that raises ``X2PaddleExit``."""
    import x2paddle.core.program

    x2paddle.core.program.exit = _exit_raises


def _linear_time():
    from bridge.patches import x2paddle_linear_time

    return x2paddle_linear_time


@dataclass(frozen=True)
class Shim:
    name: str
    apply: Callable[[], None]


# Order matters: the import shims must run before anything imports x2paddle.convert.
SHIMS: tuple[Shim, ...] = (
    Shim("require_undeclared_deps", require_undeclared_deps),
    Shim("import_onnx_version", import_onnx_version),
    Shim("provide_onnx_mapping", provide_onnx_mapping),
    Shim("disable_feedback", disable_feedback),
    Shim("exit_raises", exit_raises),
    # Quadratic steps made linear (patches/x2paddle_linear_time.py).
    Shim("pattern_matcher_linear", lambda: _linear_time().pattern_matcher_linear()),
    Shim("name_struct_linear", lambda: _linear_time().name_struct_linear()),
)

_installed = False


def install() -> None:
    """Apply every shim once per process."""
    global _installed
    if _installed:
        return
    for shim in SHIMS:
        shim.apply()
    _installed = True


_PARAMS_LOAD = re.compile(r"paddle\.load\(r?(['\"])(?P<path>[^'\"]*model\.pdparams)\1\)")
_RELOCATED = (
    "paddle.load(__import__('os').path.join("
    "__import__('os').path.dirname(__import__('os').path.abspath(__file__)), 'model.pdparams'))"
)


def relocate_params_path(code_path: Path) -> int:
    """X2Paddle's generated ``main()`` loads ``paddle.load(r'/abs/save_dir/model.pdparams')``,
    so the output folder breaks when moved. Rewrite it relative to the code file; returns the
    number of paths rewritten."""
    text = code_path.read_text()
    new_text, count = _PARAMS_LOAD.subn(_RELOCATED, text)
    if count:
        code_path.write_text(new_text)
    return count
