"""Ways to export a torch module to ONNX that X2Paddle can read, tried in order
(after torch's own ``_capture_strategies.py``). Each returns a ``StrategyResult``.

X2Paddle 1.6.0 maps opsets 7-15 (``X2PADDLE_OPSETS``), so every strategy ends inside it.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

X2PADDLE_OPSETS = range(7, 16)


@dataclass
class StrategyResult:
    strategy: str
    opset: int | None
    success: bool
    error: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportCall:
    """What every strategy needs: the module, positional example args, names, dynamic axes."""

    module: Any
    args: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] | None


def _math_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """``F.scaled_dot_product_attention`` in plain ops (MatMul, Softmax, masks): what the
    TorchScript exporter at opset 13 can write (it refuses ``aten::scaled_dot_product_attention``
    below opset 14). Dropout is ignored: export happens in eval mode."""
    import torch

    if enable_gqa and key.size(-3) != query.size(-3):
        repeat = query.size(-3) // key.size(-3)
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        causal = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), value)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Swap ``torch.nn.functional.scaled_dot_product_attention`` (used by nn.MultiheadAttention
    and Hugging Face's sdpa attention) for its plain-op form while exporting."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _math_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@contextlib.contextmanager
def distinct_initializers() -> Iterator[None]:
    """Keep one initializer per torch tensor while exporting.

    In eval mode the TorchScript exporter merges initializers of equal *value*
    (``_jit_pass_onnx_deduplicate_initializers(graph, params, is_train=False)``): every
    LayerNorm's default ones and zeros, every fresh BatchNorm's running stats, become one
    tensor under one torch name. Inference does not care; training does: the other torch
    parameters then have no counterpart in the weights map (``bridge train-check`` refuses
    them, ``bridge load-weights`` cannot place their values). Called with ``is_train=True`` the
    pass merges only tensors that share storage, i.e. weights torch itself ties."""
    import torch

    original = torch._C._jit_pass_onnx_deduplicate_initializers

    def by_storage_only(graph, params, is_train):
        return original(graph, params, True)

    torch._C._jit_pass_onnx_deduplicate_initializers = by_storage_only
    try:
        yield
    finally:
        torch._C._jit_pass_onnx_deduplicate_initializers = original


class TorchScriptStrategy:
    """``torch.onnx.export(dynamo=False)`` at an opset X2Paddle maps."""

    def __init__(self, opset: int, plain_attention: bool = False):
        assert opset in X2PADDLE_OPSETS
        self.opset = opset
        self.plain_attention = plain_attention
        self.name = f"torchscript{'+plain-attention' if plain_attention else ''}@{opset}"

    def export(self, call: ExportCall, path: Path) -> int:
        import torch

        context = math_attention() if self.plain_attention else contextlib.nullcontext()
        with context, distinct_initializers():
            # PRESERVE (the module is in eval mode) skips the exporter's eval peephole, which
            # folds BatchNorm into Conv under fresh names: initializers keep their state_dict
            # names, which the weights map relies on. Paddle Inference fuses Conv+BN itself.
            torch.onnx.export(
                call.module, call.args, str(path), dynamo=False, opset_version=self.opset,
                input_names=call.input_names, output_names=call.output_names,
                dynamic_axes=call.dynamic_axes, do_constant_folding=True,
                training=torch.onnx.TrainingMode.PRESERVE,
            )
        return self.opset


class DynamoStrategy:
    """``torch.onnx.export(dynamo=True)`` (opset 18, above X2Paddle's range), then
    ``onnx.version_converter`` down to ``target``. Weights stay inside the file."""

    def __init__(self, opset: int = 18, target: int = 15):
        assert target in X2PADDLE_OPSETS
        self.opset = opset
        self.target = target
        self.name = f"dynamo@{opset}->{target}"

    def export(self, call: ExportCall, path: Path) -> int:
        import onnx
        import torch
        from onnx import version_converter

        program = torch.onnx.export(
            call.module, call.args, dynamo=True, opset_version=self.opset,
            input_names=call.input_names, output_names=call.output_names,
            dynamic_axes=call.dynamic_axes, verbose=False,
        )
        model = version_converter.convert_version(program.model_proto, self.target)
        onnx.save(model, str(path))
        return self.target


# Tried in this order; the first that exports wins. Opset 13 first: X2Paddle's opset13 mappers
# are its best-tested. Plain attention before a higher opset, so transformer models stay at 13.
DEFAULT_STRATEGIES = (
    TorchScriptStrategy(13),
    TorchScriptStrategy(13, plain_attention=True),
    TorchScriptStrategy(15),
    DynamoStrategy(18, 15),
)


def strategies_for_opset(opset: int | None):
    """``--opset N`` keeps the TorchScript strategies at N and the dynamo one down to N."""
    if opset is None:
        return DEFAULT_STRATEGIES
    return (TorchScriptStrategy(opset), TorchScriptStrategy(opset, plain_attention=True), DynamoStrategy(18, opset))


def strategy_by_name(name: str):
    """The strategy a manifest names (``torchscript+plain-attention@13``, ``dynamo@18->15``)."""
    import re

    found = re.fullmatch(r"torchscript(\+plain-attention)?@(\d+)", name)
    if found:
        return TorchScriptStrategy(int(found.group(2)), plain_attention=bool(found.group(1)))
    found = re.fullmatch(r"dynamo@(\d+)->(\d+)", name)
    if found:
        return DynamoStrategy(int(found.group(1)), int(found.group(2)))
    raise ValueError(f"unknown export strategy {name!r}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def try_strategies(call: ExportCall, path: Path, strategies) -> list[StrategyResult]:
    """Run ``strategies`` in order until one writes ``path``; returns every attempt's record."""
    results = []
    for strategy in strategies:
        start = time.perf_counter()
        try:
            opset = strategy.export(call, path)
        except Exception as exc:  # each strategy's failure is a finding for the manifest
            path.unlink(missing_ok=True)
            results.append(StrategyResult(strategy.name, None, False, first_line(exc), time.perf_counter() - start))
            continue
        results.append(StrategyResult(strategy.name, opset, True, None, time.perf_counter() - start))
        break
    return results
