"""ONNX models below X2Paddle's lowest opset, upgraded with ``onnx.version_converter``.

X2Paddle 1.6.0 maps opsets 7..15 (``op_mapper/onnx2paddle/opset7.py`` .. ``opset15.py``); a
model below 7 is not refused, it runs through the opset-9 mapper, whose handlers read the
attributes of opset 9 (e.g. ``Unsqueeze``/``Squeeze`` with ``axes``, ``BatchNormalization``
without ``spatial``, pooling without ``ceil_mode``), so old models (IR 3 / opset 6, as the
``pytorch-converted`` and ``pytorch-operator`` folders of ONNX's backend test data) mostly
fail or go wrong. ONNX's own version converter rewrites them to opset 7 op by op.
"""
from __future__ import annotations

from bridge.errors import BridgeError
from bridge.stages.export_strategies import X2PADDLE_OPSETS

X2PADDLE_MIN_OPSET = X2PADDLE_OPSETS.start  # 7


def default_opset(model) -> int:
    """The model's opset of the default ONNX domain ("" or "ai.onnx"); 0 when it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_if_below(model, minimum: int = X2PADDLE_MIN_OPSET):
    """``model`` at default-domain opset < ``minimum`` → a copy converted to opset ``minimum``
    by ``onnx.version_converter``; any other model is returned as it is (the same object).

    The input is never modified. Raises ``BridgeError`` naming both opsets and the converter's
    first error line when ONNX has no adapter for one of the model's ops.
    """
    import onnx
    import onnx.version_converter

    opset = default_opset(model)
    if opset == 0 or opset >= minimum:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        upgraded = onnx.version_converter.convert_version(copy, minimum)
    except Exception as exc:  # the converter raises bare RuntimeErrors/ValidationErrors from C++
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BridgeError(f"opset {opset} -> {minimum}: onnx.version_converter failed: {first}") from exc
    return upgraded
