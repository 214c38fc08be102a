"""X2Paddle 1.6.0's constant-mode ``Pad`` mapper, fixed (registered as shim ``pad_constant``
in ``patches/x2paddle_shims.py``).

``OpSet.Pad`` (``x2paddle/op_mapper/onnx2paddle/opset_legacy.py``, every opset) has two bugs
in ``mode="constant"``:

1. Rank-4 input (8 pads, e.g. torch's ``ZeroPad2d``/``ConstantPad2d``): it writes
   ``paddle.nn.Pad2D(mode='constant', padding=[n0, n1, c0, c1, h0, h1, w0, w1])``, eight
   values where ``Pad2D`` takes four. Paddle 3.3.1 then reads past the list: the conversion
   dies in ``paddle.jit.save`` with ``malloc(): unaligned tcache chunk detected`` (SIGABRT) or
   hangs (onnx's pytorch-converted ``test_ZeroPad2d`` / ``test_ConstantPad2d``).
2. From opset 11 the pad value is the third input (``constant_value``); X2Paddle reads only
   the opset-2 ``value`` attribute, so any other value silently pads with 0.

The replacement maps a constant-mode Pad whose pads are known (attribute, or a constant input)
and not negative to ``paddle.nn.functional.pad``: with batch and channels unpadded on a rank
3-5 tensor, the spatial form (``pad=[w_begin, w_end, h_begin, ...]``, ``data_format``), else
the full-rank form (``pad=[d0_begin, d0_end, d1_begin, ...]``), with the value. Anything else (other modes,
pads computed at run time, negative pads, a non-constant value, the internal call from pooling
with ``op_independent=False``) goes to X2Paddle's own mapper as before.
"""
from __future__ import annotations

import numpy as np

_ORIGINAL = "__bridge_original_pad__"
# Ranks whose spatial-only form Paddle maps to its pad3d op. The full-rank form is Paddle's
# generic pad op, whose oneDNN kernel corrupts the heap in Paddle Inference 3.3.1 ("corrupted
# double-linked list", "malloc(): invalid size"), so bridge.inference_settings keeps oneDNN off
# for a program holding one; pad3d runs under oneDNN.
SPATIAL_FORMATS = {3: "NCL", 4: "NCHW", 5: "NCDHW"}


def _constant_input(mapper, node, idx: int):
    """The constant value of ``node``'s input ``idx``; None when absent or not constant."""
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    if len(node.layer.input) <= idx or not node.layer.input[idx]:
        return None
    return _const_weight_or_none(mapper.graph.get_input_node(node, idx=idx, copy=True))


def _fixed_pad(original):
    def Pad(self, node, op_independent=True):
        from x2paddle.core.util import string

        mode = node.get_attr("mode", "constant")
        if isinstance(mode, bytes):
            mode = mode.decode()
        pads = node.get_attr("pads")
        if pads is None:
            pads = _constant_input(self, node, 1)
        value = node.get_attr("value", 0.0)
        if len(node.layer.input) > 2 and node.layer.input[2]:
            value = _constant_input(self, node, 2)
        if (not op_independent or mode != "constant" or pads is None or value is None
                or len(pads) % 2 or min(int(p) for p in np.ravel(pads)) < 0):
            return original(self, node, op_independent)
        pads = [int(p) for p in np.ravel(pads)]
        rank = len(pads) // 2
        attrs = {"mode": string("constant"), "value": float(np.ravel(value)[0]) if np.size(value) else 0.0}
        if rank in SPATIAL_FORMATS and not any(pads[d] or pads[rank + d] for d in (0, 1)):
            # Batch and channels unpadded: the spatial form (Paddle's pad3d op), last dim first.
            attrs["pad"] = [p for dim in reversed(range(2, rank)) for p in (pads[dim], pads[rank + dim])]
            attrs["data_format"] = string(SPATIAL_FORMATS[rank])
        else:  # Paddle's full-rank form (its generic pad op), first dim first
            attrs["pad"] = [p for dim in range(rank) for p in (pads[dim], pads[rank + dim])]
        val_x = self.graph.get_input_node(node, idx=0, copy=True)
        self.paddle_graph.add_layer("paddle.nn.functional.pad", inputs={"x": val_x.name}, outputs=[node.name], **attrs)

    from x2paddle.op_mapper.onnx2paddle.opset_legacy import print_mapping_info

    wrapped = print_mapping_info(Pad)  # as X2Paddle's own: "convert failed node:..., op_type is Pad"
    setattr(wrapped, _ORIGINAL, original)
    return wrapped


def pad_constant() -> None:
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    current = opset_legacy.OpSet.Pad
    if getattr(current, _ORIGINAL, None) is not None:
        return
    opset_legacy.OpSet.Pad = _fixed_pad(current)
