"""``Attention`` and ``RotaryEmbedding`` (opset 23+), which X2Paddle 1.6.0 has no mapping for,
rewritten into ``MatMul``, ``Softmax`` and elementwise ops.

Without this X2Paddle's op checker lists the op and raises ``Exception: Model is not supported
yet.``; bridge's convert stage refuses the model first with ``UnsupportedModel: node '...'
(Attention): X2Paddle 1.6.0 has no mapping for op type Attention``. float16 attention still
fails in Paddle on CPU (``multiply`` has no float16 kernel), bfloat16 is declined.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper

from bridge.patches._base import MATCH, MatchResult, Patch, PatchContext, get_attr
from bridge.patches._decompose import FLOAT_TYPES, Builder, elem_type, require_float, static_shape, type_name

_Q, _K, _V, _MASK, _PAST_K, _PAST_V, _NONPAD = range(7)


def _input(node: onnx.NodeProto, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _output(node: onnx.NodeProto, i: int) -> str | None:
    return node.output[i] if len(node.output) > i and node.output[i] else None


class DecomposeAttention(Patch):
    """``Attention(Q, K, V, attn_mask?, past_key?, past_value?)`` → (3-D inputs: ``Reshape`` to
    [B, S, heads, D] and ``Transpose`` to [B, heads, S, D]); present = ``Concat(past, K|V)``;
    GQA: each kv head repeated (``Reshape``/``Tile``/``Reshape``, interleaved as ONNX's
    reference does); scores = ``MatMul(Q·√scale, Transpose(K·√scale))``, softcap c > 0:
    ``Tanh(scores / c) · c``; bias = attn_mask (bool: ``Where(mask, 0, -inf)``; padded with
    -inf/False up to the total kv length by ``Concat``) + the causal constant (key j visible
    to query i iff j ≤ i + past length); probs = ``Softmax(scores + bias, axis=-1)`` (in
    softmax_precision by ``Cast`` when given), rows whose bias is all -inf set to 0 by
    ``Where`` (count of -inf in the bias by ``Equal`` and a sum); Y = ``MatMul(probs, V)``
    (3-D: back to [B, S, heads·Dv]); qk_matmul_output per qk_matmul_output_mode as ONNX's
    reference computes it. Sliding windows (left/right_window_size) as constants like the
    causal part; nonpad_kv_seqlen n: key j hidden where j ≥ n[b] and the causal/window
    frontiers moved to n[b] − q_len, by ``Less``/``LessOrEqual`` against constants. Every
    shape must be static; bfloat16 is declined.

    X2Paddle 1.6.0 has no mapping for Attention (``Exception: Model is not supported yet.``,
    bridge: ``X2Paddle 1.6.0 has no mapping for op type Attention``)."""

    name = "decompose_attention"
    op_types = ("Attention",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        reason = _reason(ctx, node)
        return MatchResult.fail(reason) if reason else MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        return _Rewrite(ctx, node).run()


def _reason(ctx: PatchContext, node: onnx.NodeProto) -> str | None:
    if node.domain not in ("", "ai.onnx"):
        return f"domain {node.domain!r}"
    q, k, v = node.input[_Q], node.input[_K], node.input[_V]
    for name in (q, k, v):
        reason = require_float(ctx, name)
        if reason:
            return reason
    nonpad = _input(node, _NONPAD)
    if nonpad and _input(node, _PAST_K):
        return "nonpad_kv_seqlen together with past_key (ONNX forbids it)"
    if nonpad and elem_type(ctx, nonpad) not in (TensorProto.INT32, TensorProto.INT64):
        return f"nonpad_kv_seqlen '{nonpad}' has element type {type_name(elem_type(ctx, nonpad))}"
    if bool(_input(node, _PAST_K)) != bool(_input(node, _PAST_V)):
        return "past_key and past_value must come together"
    shapes = {}
    for i in (_Q, _K, _V, _MASK, _PAST_K, _PAST_V):
        name = _input(node, i)
        if name is None:
            continue
        shapes[i] = static_shape(ctx, name)
        if shapes[i] is None:
            return f"input '{name}' shape not static ({ctx.shapes.get(name)})"
    rank = len(shapes[_Q])
    if rank not in (3, 4) or len(shapes[_K]) != rank or len(shapes[_V]) != rank:
        return f"Q/K/V ranks {len(shapes[_Q])}/{len(shapes[_K])}/{len(shapes[_V])} (3 or 4, all equal)"
    if rank == 3:
        hq, hkv = get_attr(node, "q_num_heads"), get_attr(node, "kv_num_heads")
        if not hq or not hkv:
            return "3-D inputs without q_num_heads/kv_num_heads"
        if shapes[_Q][2] % hq or shapes[_K][2] % hkv or shapes[_V][2] % hkv:
            return f"hidden sizes {shapes[_Q][2]}/{shapes[_K][2]}/{shapes[_V][2]} not divisible by heads {hq}/{hkv}"
    else:
        hq, hkv = shapes[_Q][1], shapes[_K][1]
        if shapes[_V][1] != hkv:
            return f"K has {hkv} heads, V {shapes[_V][1]}"
    if hq % hkv:
        return f"q heads {hq} not a multiple of kv heads {hkv}"
    mode = get_attr(node, "qk_matmul_output_mode", 0)
    if mode not in (0, 1, 2, 3):
        return f"qk_matmul_output_mode={mode}"
    precision = get_attr(node, "softmax_precision")
    if precision is not None and precision not in FLOAT_TYPES:
        return f"softmax_precision {type_name(precision)} (float16, float32, float64 only)"
    mask = _input(node, _MASK)
    if mask is not None:
        t = elem_type(ctx, mask)
        if t != TensorProto.BOOL and t != elem_type(ctx, q):
            return f"attn_mask '{mask}' has element type {type_name(t)} (bool or Q's)"
        past = shapes[_PAST_K][2] if _PAST_K in shapes else 0
        total = past + (shapes[_K][1] if rank == 3 else shapes[_K][2])
        if len(shapes[_MASK]) > 4 or not shapes[_MASK] or shapes[_MASK][-1] > total:
            return f"attn_mask shape {shapes[_MASK]} (rank 1..4, last dim at most {total})"
    return None


class _Rewrite:
    """One Attention node's rewrite (the attributes and static shapes read once)."""

    def __init__(self, ctx: PatchContext, node: onnx.NodeProto):
        self.ctx, self.node = ctx, node
        self.b = Builder(ctx, node)
        self.dtype = elem_type(ctx, node.input[_Q])
        self.np_dtype = helper.tensor_dtype_to_np_dtype(self.dtype)
        self.rank = ctx.rank(node.input[_Q])

    def to_heads(self, x: str, heads: int) -> str:
        """[B, S, heads·D] → [B, heads, S, D]."""
        b, s, hidden = static_shape(self.ctx, x)
        split = self.b.op("Reshape", [x, self.b.ints([b, s, heads, hidden // heads])])
        return self.b.op("Transpose", [split], perm=[0, 2, 1, 3])

    def run(self) -> list[onnx.NodeProto]:
        b, node, ctx = self.b, self.node, self.ctx
        q, k, v = node.input[_Q], node.input[_K], node.input[_V]
        if self.rank == 3:
            hq, hkv = get_attr(node, "q_num_heads"), get_attr(node, "kv_num_heads")
            q, k, v = self.to_heads(q, hq), self.to_heads(k, hkv), self.to_heads(v, hkv)
            batch, sq, q_hidden = static_shape(ctx, node.input[_Q])
            _, skv, k_hidden = static_shape(ctx, node.input[_K])
            head, dk, dv = q_hidden // hq, k_hidden // hkv, static_shape(ctx, node.input[_V])[2] // hkv
        else:
            batch, hq, sq, head = static_shape(ctx, q)
            hkv, skv, dk = static_shape(ctx, k)[1:]
            dv = static_shape(ctx, v)[3]
        past_k, past_v = _input(node, _PAST_K), _input(node, _PAST_V)
        past = static_shape(ctx, past_k)[2] if past_k else 0
        total = past + skv
        present_k, present_v = _output(node, 1), _output(node, 2)
        if past_k:
            k = b.op("Concat", [past_k, k], present_k, axis=2)
            v = b.op("Concat", [past_v, v], present_v, axis=2)
        else:
            for src, out in ((k, present_k), (v, present_v)):
                if out:
                    b.op("Identity", [src], out)
        if hq != hkv:  # each kv head repeated hq/hkv times, next to itself: [h0, h0, h1, h1, ...]
            reps = hq // hkv
            k = self.repeat_heads(k, [batch, hkv, total, dk], reps)
            v = self.repeat_heads(v, [batch, hkv, total, dv], reps)

        scale = get_attr(node, "scale")
        scale = 1 / math.sqrt(head) if scale is None else scale
        root = b.const(np.sqrt(np.float64(scale)), self.dtype)  # Q and K each scaled by √scale
        kt = b.op("Transpose", [b.op("Mul", [k, root])], perm=[0, 1, 3, 2])
        scores = b.op("MatMul", [b.op("Mul", [q, root]), kt])
        softcap = get_attr(node, "softcap", 0.0)
        if softcap and softcap > 0:
            cap = b.const(softcap, self.dtype)
            scores = b.op("Mul", [b.op("Tanh", [b.op("Div", [scores, cap])]), cap])

        bias, bias_shape, may_mask_rows = self.bias(batch, sq, total, past)
        biased = scores if bias is None else b.op("Add", [scores, bias])
        mode = get_attr(node, "qk_matmul_output_mode", 0)
        qk_out = _output(node, 3)
        if qk_out and mode in (0, 1):
            b.op("Identity", [scores], qk_out)  # ONNX's reference: softcap included in mode 0 too
        elif qk_out and mode == 2:
            b.op("Identity", [biased], qk_out)

        precision = get_attr(node, "softmax_precision")
        soft_type = self.dtype if precision is None else precision
        if soft_type != self.dtype:
            biased = b.op("Cast", [biased], to=soft_type)
        probs = b.op("Softmax", [biased], axis=-1)
        # Paddle's softmax of an all -inf row is NaN, ONNX's output row 0.
        if bias is not None and may_mask_rows:
            # Equal to -inf, not IsInf(detect_positive=0): X2Paddle maps IsInf only without attributes
            minus_inf = b.const(np.full([1] * len(bias_shape), -np.inf), self.dtype)
            masked = b.op("Cast", [b.op("Equal", [bias, minus_inf])], to=self.dtype)
            count = b.reduce("sum", masked, [len(bias_shape) - 1], bias_shape, self.dtype)
            all_masked = b.op("Equal", [count, b.const(float(total), self.dtype)])
            probs = b.op("Where", [all_masked, b.const(0.0, soft_type), probs])
        if soft_type != self.dtype:
            probs = b.op("Cast", [probs], to=self.dtype)
        if qk_out and mode == 3:
            b.op("Identity", [probs], qk_out)

        y = node.output[0]
        if self.rank == 4:
            b.op("MatMul", [probs, v], y)
        else:
            heads_out = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
            b.op("Reshape", [heads_out, b.ints([batch, sq, hq * dv])], y)
        return b.nodes

    def repeat_heads(self, x: str, shape: list[int], reps: int) -> str:
        batch, heads, s, d = shape
        x = self.b.op("Reshape", [x, self.b.ints([batch, heads, 1, s, d])])
        x = self.b.op("Tile", [x, self.b.ints([1, 1, reps, 1, 1])])
        return self.b.op("Reshape", [x, self.b.ints([batch, heads * reps, s, d])])

    def bias(self, batch: int, sq: int, total: int, past: int) -> tuple[str | None, list[int], bool]:
        """The additive bias: attn_mask made additive and padded, plus -inf where the causal
        frontier, the sliding window or nonpad_kv_seqlen hide a key; its shape; whether a whole
        row may be -inf."""
        b, node = self.b, self.node
        terms: list[tuple[str, tuple[int, ...]]] = []
        may_mask_rows = False
        mask = _input(node, _MASK)
        if mask is not None:
            shape = static_shape(self.ctx, mask)
            is_bool = elem_type(self.ctx, mask) == TensorProto.BOOL
            if shape[-1] < total:  # ONNX pads a short mask with "masked"
                fill = np.zeros(shape[:-1] + [total - shape[-1]], dtype=bool) if is_bool else \
                    np.full(shape[:-1] + [total - shape[-1]], -np.inf, dtype=self.np_dtype)
                mask = b.op("Concat", [mask, b.const(fill, TensorProto.BOOL if is_bool else self.dtype)], axis=-1)
                shape = shape[:-1] + [total]
            if is_bool:
                mask = self.additive(mask, len(shape))
            terms.append((mask, tuple(shape)))
            may_mask_rows = True
        causal = bool(get_attr(node, "is_causal", 0))
        left, right = get_attr(node, "left_window_size", -1), get_attr(node, "right_window_size", -1)
        nonpad = _input(node, _NONPAD)
        i, j = np.arange(sq)[:, None], np.arange(total)[None, :]
        if nonpad is None:  # one frontier for every batch: a constant
            diff = i + past - j  # how far key j lies before query i
            allowed = np.ones((sq, total), dtype=bool)
            if causal:
                allowed &= diff >= 0
            if left >= 0:
                allowed &= diff <= left
            if right >= 0:
                allowed &= -diff <= right
            if not allowed.all():
                terms.append((b.const(np.where(allowed, 0, -np.inf), self.dtype), (sq, total)))
                may_mask_rows = may_mask_rows or not allowed.any(axis=1).all()
        else:
            # per batch n = nonpad_kv_seqlen[b]: query i sits at n - sq + i; keys j >= n are padding
            n = b.op("Reshape", [b.op("Cast", [nonpad], to=TensorProto.INT64), b.ints([batch, 1, 1, 1])])
            base = (j - i + sq)[None, None]  # j - i + sq <= n  <=>  diff >= 0
            conds = [b.op("Less", [b.ints(np.broadcast_to(j, (1, 1, 1, total)).tolist()), n])]
            if causal:
                conds.append(b.op("LessOrEqual", [b.ints(base.tolist()), n]))
            if left >= 0:
                conds.append(b.op("LessOrEqual", [n, b.ints((base + left).tolist())]))
            if right >= 0:
                conds.append(b.op("LessOrEqual", [b.ints((base - right).tolist()), n]))
            allowed = conds[0]
            for cond in conds[1:]:
                allowed = b.op("And", [allowed, cond])
            terms.append((self.additive(allowed, 4), (batch, 1, sq if len(conds) > 1 else 1, total)))
            may_mask_rows = True
        if not terms:
            return None, [], False
        bias = terms[0][0]
        for term, _ in terms[1:]:
            bias = b.op("Add", [bias, term])
        return bias, list(np.broadcast_shapes(*(shape for _, shape in terms))), may_mask_rows

    def additive(self, allowed: str, rank: int) -> str:
        """``Where(allowed, 0, -inf)`` for a bool tensor of ``rank``."""
        zero = self.b.const(np.zeros([1] * rank), self.dtype)
        return self.b.op("Where", [allowed, zero, self.b.const(np.full([1] * rank, -np.inf), self.dtype)])


class DecomposeRotaryEmbedding(Patch):
    """``RotaryEmbedding(x, cos_cache, sin_cache, position_ids?)`` → per token cos/sin
    (``Gather`` of the caches at the flattened position ids, or the [B, S, R/2] caches as
    given), spread over the head dim by ``MatMul`` with a 0/1 matrix (1 for cos on the
    dims not rotated); y = x·cos + ``MatMul(x, M)``·sin, M the signed permutation that pairs
    each rotated dim with its partner (halves, or neighbours when interleaved): exactly
    ONNX's cos·x1 − sin·x2, sin·x1 + cos·x2. 3-D x is reshaped to [B, S, heads, D] and back.
    Shapes must be static.

    X2Paddle 1.6.0 has no mapping for RotaryEmbedding (``Exception: Model is not supported
    yet.``, bridge: ``X2Paddle 1.6.0 has no mapping for op type RotaryEmbedding``); its
    function body (the ``_expanded`` cases) gathers with [B, S] position ids and converts to
    wrong numbers."""

    name = "decompose_rotary_embedding"
    op_types = ("RotaryEmbedding",)

    def check(self, ctx: PatchContext, node: onnx.NodeProto) -> MatchResult:
        if node.domain not in ("", "ai.onnx"):
            return MatchResult.fail(f"domain {node.domain!r}")
        x, cos, sin = node.input[:3]
        reason = require_float(ctx, x)
        if reason:
            return MatchResult.fail(reason)
        shapes = {}
        for name in (x, cos, sin, _input(node, 3)):
            if name is None:
                continue
            shapes[name] = static_shape(ctx, name)
            if shapes[name] is None:
                return MatchResult.fail(f"input '{name}' shape not static ({ctx.shapes.get(name)})")
        xs = shapes[x]
        if len(xs) == 3:
            heads = get_attr(node, "num_heads", 0)
            if not heads or xs[2] % heads:
                return MatchResult.fail(f"3-D input of hidden size {xs[2]} with num_heads={heads}")
            head = xs[2] // heads
        elif len(xs) == 4:
            head = xs[3]
        else:
            return MatchResult.fail(f"input rank {len(xs)} (3 or 4)")
        rot = get_attr(node, "rotary_embedding_dim", 0) or head
        if rot % 2 or rot > head:
            return MatchResult.fail(f"rotary_embedding_dim {rot} (even, at most the head size {head})")
        if shapes[cos] != shapes[sin] or shapes[cos][-1] != rot // 2:
            return MatchResult.fail(f"cos/sin caches {shapes[cos]}/{shapes[sin]} (last dim {rot // 2})")
        pos = _input(node, 3)
        want = [xs[0], xs[2] if len(xs) == 4 else xs[1]]
        if (shapes[pos] if pos else shapes[cos][:-1]) != want or (pos and len(shapes[cos]) != 2):
            return MatchResult.fail(f"position_ids/caches {shapes.get(pos)}/{shapes[cos]} for [batch, seq] {want}")
        if elem_type(ctx, cos) != elem_type(ctx, x) or elem_type(ctx, sin) != elem_type(ctx, x):
            return MatchResult.fail("cos/sin caches not of the input's element type")
        return MATCH

    def rewrite(self, ctx: PatchContext, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        b = Builder(ctx, node)
        x, cos, sin = node.input[:3]
        pos = _input(node, 3)
        shape = static_shape(ctx, x)
        dtype = elem_type(ctx, x)
        if len(shape) == 3:
            heads = get_attr(node, "num_heads")
            batch, seq, head = shape[0], shape[1], shape[2] // heads
            x = b.op("Reshape", [x, b.ints([batch, seq, heads, head])])
            token_shape = [batch, seq, 1, head]
        else:
            batch, _, seq, head = shape
            token_shape = [batch, 1, seq, head]
        rot = get_attr(node, "rotary_embedding_dim", 0) or head
        half = rot // 2
        if get_attr(node, "interleaved", 0):
            first, second = np.arange(half) * 2, np.arange(half) * 2 + 1
        else:
            first, second = np.arange(half), np.arange(half) + half
        spread = np.zeros((half, head))  # cos/sin of pair k onto both its dims
        spread[np.arange(half), first] = spread[np.arange(half), second] = 1
        partner = np.zeros((head, head))  # (x @ partner)[first] = -x[second], [second] = x[first]
        partner[second, first] = -1
        partner[first, second] = 1
        kept = np.ones(head)
        kept[:rot] = 0  # cos is 1 on the dims not rotated

        def per_token(cache: str, offset: np.ndarray | None) -> str:
            if pos is not None:
                flat = b.op("Reshape", [pos, b.ints([-1])])
                cache = b.op("Gather", [cache, flat], axis=0)
            full = b.op("MatMul", [cache, b.const(spread, dtype)])
            if offset is not None:
                full = b.op("Add", [full, b.const(offset, dtype)])
            return b.op("Reshape", [full, b.ints(token_shape)])

        rotated = b.op("Mul", [b.op("MatMul", [x, b.const(partner, dtype)]), per_token(sin, None)])
        y = node.output[0]
        out = b.op("Add", [b.op("Mul", [x, per_token(cos, kept if rot < head else None)]), rotated],
                   None if len(shape) == 3 else y)
        if len(shape) == 3:
            b.op("Reshape", [out, b.ints(shape)], y)
        return b.nodes


ATTENTION_PATCHES: tuple[Patch, ...] = (DecomposeAttention(), DecomposeRotaryEmbedding())
