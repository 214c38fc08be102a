"""``LSTM(X, W, R[, B])`` without ``initial_h``/``initial_c`` → ``LSTM(X, W, R, B, '', h0, c0)``
with ``B`` = zeros and ``h0 = c0 = ConstantOfShape([num_directions, batch(X), hidden_size], 0)``
(ONNX's defaults made explicit).

torch's TorchScript exporter (torch 2.13, ``dynamo=False``) writes ``nn.LSTM`` called without
``(h0, c0)`` as an LSTM node with only ``X, W, R, B``. X2Paddle 1.6.0
``opset_legacy.py::LSTM`` reads ``init_h``/``init_c`` (and ``bias``) whether or not the inputs
exist: "convert failed node:..., op_type is LSTM" caused by ``UnboundLocalError: cannot access
local variable 'init_h' where it is not associated with a value``. The batch axis is usually
dynamic, so the zero states are computed from ``Shape(X)``, not stored (a static batch gets
stored zeros, see ``rewrite``).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr

INITIAL_H, INITIAL_C, BIAS = 5, 6, 3


def _has_input(node: onnx.NodeProto, index: int) -> bool:
    return len(node.input) > index and node.input[index] != ""


class LstmInitialStates(Patch):
    name = "lstm_initial_states"
    op_types = ("LSTM",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if _has_input(node, INITIAL_H) and _has_input(node, INITIAL_C) and _has_input(node, BIAS):
            return MatchResult.fail("bias, initial_h and initial_c are all given")
        if ctx.opset < 9:
            return MatchResult.fail(f"opset {ctx.opset} has no ConstantOfShape")
        if get_attr(node, "layout", 0) != 0:
            return MatchResult.fail("layout 1 (batch-major): X2Paddle reads time-major LSTMs only")
        if not get_attr(node, "hidden_size"):
            return MatchResult.fail("no hidden_size attribute")
        if node.input[1] not in ctx.initializers:
            return MatchResult.fail(f"W {node.input[1]!r} is not an initializer")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        hidden = get_attr(node, "hidden_size")
        direction = get_attr(node, "direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        num_directions = 2 if direction == "bidirectional" else 1
        w = ctx.initializers[node.input[1]]
        np_dtype = helper.tensor_dtype_to_np_dtype(w.data_type)
        base = node.name or node.output[0]
        inputs = list(node.input) + [""] * (7 - len(node.input))
        nodes: list[onnx.NodeProto] = []

        if not inputs[BIAS]:
            bias = numpy_helper.from_array(
                np.zeros((num_directions, 8 * hidden), dtype=np_dtype), ctx.fresh_name(f"{base}_zero_bias"))
            ctx.model.graph.initializer.append(bias)
            ctx.initializers[bias.name] = bias
            inputs[BIAS] = bias.name

        x_shape = ctx.shapes.get(inputs[0]) or []
        batch_dim = x_shape[1] if len(x_shape) == 3 else None
        if isinstance(batch_dim, int) and batch_dim > 0:
            # A static batch gets stored zeros. X2Paddle gives a ConstantOfShape's output the
            # dims -1 and skips its reshape of a one-element state (num_directions * batch *
            # hidden_size == 1), so Paddle's rnn then refuses X's static batch against it: "The
            # second dimension size (representing for batch size) of Input and PreState should be
            # equal. But received 1 and -1" (found by tests/test_fuzz_patches.py).
            for slot, label in ((INITIAL_H, "initial_h"), (INITIAL_C, "initial_c")):
                if not inputs[slot]:
                    state = numpy_helper.from_array(np.zeros((num_directions, batch_dim, hidden), dtype=np_dtype),
                                                    ctx.fresh_name(f"{base}_{label}"))
                    ctx.model.graph.initializer.append(state)
                    ctx.initializers[state.name] = state
                    inputs[slot] = state.name
        elif not inputs[INITIAL_H] or not inputs[INITIAL_C]:
            # [num_directions, batch, hidden]; X is [seq, batch, input] (layout 0)
            shape_x = ctx.fresh_name(f"{base}_x_shape")
            batch = ctx.fresh_name(f"{base}_batch")
            state_shape = ctx.fresh_name(f"{base}_state_shape")
            index, index_node = ctx.int64_constant(f"{base}_batch_axis", [1])
            dirs, dirs_node = ctx.int64_constant(f"{base}_num_directions", [num_directions])
            size, size_node = ctx.int64_constant(f"{base}_hidden_size", [hidden])
            nodes += [
                index_node, dirs_node, size_node,
                helper.make_node("Shape", [inputs[0]], [shape_x], name=ctx.fresh_name(f"{base}_shape")),
                helper.make_node("Gather", [shape_x, index], [batch], axis=0, name=ctx.fresh_name(f"{base}_gather")),
                helper.make_node("Concat", [dirs, batch, size], [state_shape], axis=0, name=ctx.fresh_name(f"{base}_concat")),
            ]
            zero = numpy_helper.from_array(np.zeros(1, dtype=np_dtype), "value")  # raw_data: X2Paddle reads only that
            for slot, label in ((INITIAL_H, "initial_h"), (INITIAL_C, "initial_c")):
                if not inputs[slot]:
                    inputs[slot] = ctx.fresh_name(f"{base}_{label}")
                    nodes.append(helper.make_node("ConstantOfShape", [state_shape], [inputs[slot]], value=zero,
                                                  name=ctx.fresh_name(f"{base}_{label}_zeros")))

        lstm = onnx.NodeProto()
        lstm.CopyFrom(node)
        del lstm.input[:]
        lstm.input.extend(inputs[:max(7, len(node.input))])
        return nodes + [lstm]
