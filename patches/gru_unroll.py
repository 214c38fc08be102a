"""``GRU(X: [T, N, I] with T static, W, R[, B][, , initial_h])`` → the recurrence unrolled over
the T time steps in MatMul, Add, Mul, Sub, Sigmoid, Tanh, Slice and Concat; ``Y`` and ``Y_h``
keep their names and shapes.

X2Paddle 1.6.0 has no mapper for GRU at any opset (``opset_legacy.py`` maps LSTM only), so
every ``nn.GRU`` export stops with "Model is not supported yet" (bridge reports "X2Paddle
1.6.0 has no mapping for op type GRU"). Unrolling needs the sequence length to be static
(bridge makes only the batch axis dynamic) and W, R, B to be initializers; it handles both
``linear_before_reset`` forms, forward, reverse and bidirectional GRUs, and declines
``sequence_lens``, ``clip``, non-default activations and ``layout = 1``.

Per direction, with ONNX's gate order z, r, h (``f`` = Sigmoid, ``g`` = Tanh)::

    z = f(x Wz' + h Rz' + Wbz + Rbz)    r = f(x Wr' + h Rr' + Wbr + Rbr)
    n = g(x Wh' + Wbh + r * (h Rh' + Rbh))       linear_before_reset != 0
    n = g(x Wh' + Wbh + (r * h) Rh' + Rbh)       linear_before_reset == 0
    h = (1 - z) * n + z * h

The input projections ``x W'`` are one MatMul over all time steps per gate; a missing
``initial_h`` is zeros, so the first step drops the ``h R'`` terms.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr

SEQUENCE_LENS, INITIAL_H = 4, 5
MAX_STEPS = 512  # an unrolled graph grows by ~16 nodes per step and direction


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if len(node.input) > index else ""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GruUnroll(Patch):
    name = "gru_unroll"
    op_types = ("GRU",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if ctx.opset < 13:
            return MatchResult.fail(f"opset {ctx.opset}: written for opset 13+ (Slice, Unsqueeze with input axes)")
        if _input(node, SEQUENCE_LENS):
            return MatchResult.fail("sequence_lens is given (variable-length batches)")
        if get_attr(node, "layout", 0) != 0:
            return MatchResult.fail("layout 1 (batch-major)")
        if get_attr(node, "clip") is not None:
            return MatchResult.fail("clip is set")
        activations = [_text(a) for a in get_attr(node, "activations", [])]
        if any(a != ("Sigmoid", "Tanh")[i % 2] for i, a in enumerate(activations)):
            return MatchResult.fail(f"activations {activations} are not the default Sigmoid, Tanh")
        if not get_attr(node, "hidden_size"):
            return MatchResult.fail("no hidden_size attribute")
        for index, what in ((1, "W"), (2, "R"), (3, "B")):
            name = _input(node, index)
            if name and name not in ctx.initializers:
                return MatchResult.fail(f"{what} {name!r} is not an initializer")
        shape = ctx.shapes.get(node.input[0])
        if shape is None or len(shape) != 3:
            return MatchResult.fail(f"shape of X {node.input[0]!r} is unknown or not rank 3")
        if not isinstance(shape[0], int) or shape[0] < 1:
            return MatchResult.fail(f"sequence length {shape[0]!r} is not static")
        if shape[0] > MAX_STEPS:
            return MatchResult.fail(f"sequence length {shape[0]} > {MAX_STEPS} steps")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        return _Unroller(ctx, node).build()


class _Unroller:
    def __init__(self, ctx: PatchContext, node: onnx.NodeProto):
        self.ctx = ctx
        self.node = node
        self.base = node.name or node.output[0]
        self.nodes: list[onnx.NodeProto] = []
        self.hidden = get_attr(node, "hidden_size")
        self.linear_before_reset = get_attr(node, "linear_before_reset", 0) != 0
        direction = _text(get_attr(node, "direction", b"forward"))
        self.directions = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        self.steps = ctx.shapes[node.input[0]][0]
        w = ctx.initializers[node.input[1]]
        self.dtype = helper.tensor_dtype_to_np_dtype(w.data_type)
        self.w = numpy_helper.to_array(w)
        self.r = numpy_helper.to_array(ctx.initializers[node.input[2]])
        b_name = _input(node, 3)
        self.b = (numpy_helper.to_array(ctx.initializers[b_name]) if b_name
                  else np.zeros((len(self.directions), 6 * self.hidden), self.dtype))
        self._ints: dict[tuple, str] = {}

    # --- graph building helpers ----------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], label: str, **attrs) -> str:
        out = self.ctx.fresh_name(f"{self.base}_{label}")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.ctx.fresh_name(f"{self.base}_{label}_{op_type.lower()}"), **attrs))
        return out

    def weight(self, array: np.ndarray, label: str) -> str:
        tensor = numpy_helper.from_array(np.ascontiguousarray(array, dtype=self.dtype), self.ctx.fresh_name(f"{self.base}_{label}"))
        self.ctx.model.graph.initializer.append(tensor)
        self.ctx.initializers[tensor.name] = tensor
        return tensor.name

    def ints(self, values: list[int]) -> str:
        key = tuple(values)
        if key not in self._ints:
            name, const = self.ctx.int64_constant(f"{self.base}_i{'_'.join(map(str, values))}", list(values))
            self.nodes.append(const)
            self._ints[key] = name
        return self._ints[key]

    def take(self, x: str, index: int, label: str) -> str:
        """x[index:index+1] along axis 0: keeps the rank, so every step works on [1, N, H]."""
        return self.op("Slice", [x, self.ints([index]), self.ints([index + 1]), self.ints([0])], label)

    # --- the recurrence ----------------------------------------------------------------
    def build(self) -> list[onnx.NodeProto]:
        x = self.node.input[0]
        initial_h = _input(self.node, INITIAL_H)
        outputs, finals = [], []
        for d, direction in enumerate(self.directions):
            H = self.hidden
            w, r, b = self.w[d], self.r[d], self.b[d]
            tag = f"d{d}"
            # input projections for all steps at once: [T, N, H] per gate, biases folded in
            xz = self.op("Add", [self.op("MatMul", [x, self.weight(w[0:H].T, f"{tag}_Wz_t")], f"{tag}_xWz"),
                                 self.weight(b[0:H] + b[3 * H:4 * H], f"{tag}_bz")], f"{tag}_xz")
            xr = self.op("Add", [self.op("MatMul", [x, self.weight(w[H:2 * H].T, f"{tag}_Wr_t")], f"{tag}_xWr"),
                                 self.weight(b[H:2 * H] + b[4 * H:5 * H], f"{tag}_br")], f"{tag}_xr")
            xh = self.op("Add", [self.op("MatMul", [x, self.weight(w[2 * H:3 * H].T, f"{tag}_Wh_t")], f"{tag}_xWh"),
                                 self.weight(b[2 * H:3 * H], f"{tag}_Wbh")], f"{tag}_xh")
            rz_t = self.weight(r[0:H].T, f"{tag}_Rz_t")
            rr_t = self.weight(r[H:2 * H].T, f"{tag}_Rr_t")
            rh_t = self.weight(r[2 * H:3 * H].T, f"{tag}_Rh_t")
            rbh = self.weight(b[5 * H:6 * H], f"{tag}_Rbh")

            h = self.take(initial_h, d, f"{tag}_h0") if initial_h else None
            order = range(self.steps) if direction == "forward" else range(self.steps - 1, -1, -1)
            per_step: dict[int, str] = {}
            for t in order:
                s = f"{tag}_t{t}"
                xz_t, xr_t, xh_t = (self.take(v, t, f"{s}_{g}") for v, g in ((xz, "xz"), (xr, "xr"), (xh, "xh")))
                if h is None:  # h = 0: the recurrent terms vanish
                    z = self.op("Sigmoid", [xz_t], f"{s}_z")
                    rg = self.op("Sigmoid", [xr_t], f"{s}_r")
                    recur = self.op("Mul", [rg, rbh], f"{s}_r_hh") if self.linear_before_reset else rbh
                    n = self.op("Tanh", [self.op("Add", [xh_t, recur], f"{s}_n_in")], f"{s}_n")
                    h = self.op("Sub", [n, self.op("Mul", [z, n], f"{s}_zn")], f"{s}_h")
                else:
                    z = self.op("Sigmoid", [self.op("Add", [xz_t, self.op("MatMul", [h, rz_t], f"{s}_hRz")], f"{s}_z_in")], f"{s}_z")
                    rg = self.op("Sigmoid", [self.op("Add", [xr_t, self.op("MatMul", [h, rr_t], f"{s}_hRr")], f"{s}_r_in")], f"{s}_r")
                    if self.linear_before_reset:
                        hh = self.op("Add", [self.op("MatMul", [h, rh_t], f"{s}_hRh"), rbh], f"{s}_hh")
                        recur = self.op("Mul", [rg, hh], f"{s}_r_hh")
                    else:
                        rh = self.op("Mul", [rg, h], f"{s}_rh")
                        recur = self.op("Add", [self.op("MatMul", [rh, rh_t], f"{s}_rhRh"), rbh], f"{s}_rhh")
                    n = self.op("Tanh", [self.op("Add", [xh_t, recur], f"{s}_n_in")], f"{s}_n")
                    # (1 - z) * n + z * h, written n + z * (h - n)
                    h = self.op("Add", [n, self.op("Mul", [z, self.op("Sub", [h, n], f"{s}_h_n")], f"{s}_z_h_n")], f"{s}_h")
                per_step[t] = h
            finals.append(h)
            if len(self.node.output) > 0 and self.node.output[0]:
                y_d = self.op("Concat", [per_step[t] for t in range(self.steps)], f"{tag}_y", axis=0)
                outputs.append(self.op("Unsqueeze", [y_d, self.ints([1])], f"{tag}_y4"))

        def emit(op_type: str, inputs: list[str], out: str, **attrs) -> None:
            self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.ctx.fresh_name(f"{self.base}_{op_type.lower()}"), **attrs))

        if outputs:  # Y: [T, num_directions, N, H]
            if len(outputs) > 1:
                emit("Concat", outputs, self.node.output[0], axis=1)
            else:
                emit("Identity", outputs, self.node.output[0])
        if len(self.node.output) > 1 and self.node.output[1]:  # Y_h: [num_directions, N, H]
            if len(finals) > 1:
                emit("Concat", finals, self.node.output[1], axis=0)
            else:
                emit("Identity", finals, self.node.output[1])
        return self.nodes
