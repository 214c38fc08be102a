"""Op mappers X2Paddle 1.6.0 lacks for ONNX ops Paddle 3 has directly: bitwise and shift ops,
inverse trigonometry, the log/square reductions, CumProd, Det, EyeLike, Einsum and the three
window functions.

X2Paddle refuses a model holding any of them before converting (``ONNXOpMapper.op_checker``:
"Model is not supported yet."), and bridge's convert stage names the op first
(``check_supported``: "X2Paddle 1.6.0 has no mapping for op type BitShift"). Both look an op
up the same way: a method of that name on the opset class (``hasattr(self.opset, op)``),
else the ``directly_map_ops``/``elementwise_ops`` tables ``OpSet.__init__`` fills. So
``install()`` adds one method per op to ``opset_legacy.OpSet``, the base of ``OpSet7`` to
``OpSet15``: every opset X2Paddle maps (7–15; a newer model runs as 15) sees it, and
``bridge.stages.convert.x2paddle_op_tables`` (``dir`` of the opset class) counts it as mapped.
A method is only added where X2Paddle has none of that name. Each one emits Paddle layers
with ``self.paddle_graph.add_layer(kernel, inputs={arg: tensor}, outputs=[name], **attrs)``,
attrs written into the generated code as Python literals (strings quoted with ``repr``).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# Methods of OpSet: each takes (opset, node) where opset is X2Paddle's OpSet instance and node
# its ONNXGraphNode. Untyped: X2Paddle's classes are imported only when installed.


def _input(opset, node, idx: int):
    return opset.graph.get_input_node(node, idx=idx, copy=True)


def _const_input(opset, node, idx: int, what: str) -> np.ndarray:
    """Input ``idx`` of ``node`` as an array: an initializer or a Constant output."""
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    source = _input(opset, node, idx)
    value = _const_weight_or_none(source)
    if value is None:
        raise ValueError(f"{node.layer_type} {what} {source.name!r} is computed: the mapper needs it constant")
    return np.asarray(value)


def _onnx_np_dtype(tensor_type: int) -> np.dtype:
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type))


def _out_dtype(opset, node) -> np.dtype | None:
    dtype = opset.graph.get_node(node.layer.output[0], copy=True).dtype
    return None if dtype is None else np.dtype(dtype)


def _add(opset, kernel: str, inputs: dict, output: str, **attrs) -> str:
    opset.paddle_graph.add_layer(kernel, inputs=inputs, outputs=[output], **attrs)
    return output


# --------------------------------------------------------------------------- elementwise


def _unary(kernel: str) -> Callable:
    def mapper(self, node) -> None:
        _add(self, kernel, {"x": _input(self, node, 0).name}, node.name)

    mapper.__doc__ = f"y = {kernel}(x)"
    return mapper


def _binary(kernel: str) -> Callable:
    def mapper(self, node) -> None:
        _add(self, kernel, {"x": _input(self, node, 0).name, "y": _input(self, node, 1).name}, node.name)

    mapper.__doc__ = f"z = {kernel}(x, y), broadcasting as ONNX does"
    return mapper


def bit_shift(self, node) -> None:
    """BitShift(x, y, direction) -> paddle.bitwise_{left,right}_shift(x, y, is_arithmetic=True).

    Paddle's arithmetic shifts give ONNX's answers for out-of-range shifts (y < 0 or y >= the
    bit width: 0, or -1 for a negative signed x shifted right) and shift an unsigned x
    logically anyway (its sign test is false), so one flag fits every integer type."""
    direction = node.get_attr("direction")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"BitShift direction {direction!r}: ONNX allows LEFT or RIGHT")
    kernel = "paddle.bitwise_left_shift" if direction == "LEFT" else "paddle.bitwise_right_shift"
    _add(self, kernel, {"x": _input(self, node, 0).name, "y": _input(self, node, 1).name}, node.name,
         is_arithmetic=True)


# --------------------------------------------------------------------------- reductions


def _reduce_axes(self, node) -> list[int] | str | None:
    """ONNX's axes: the attribute (opsets < 18) or the second input (>= 18), as a list when
    constant, else the name of the tensor (Paddle 3's reductions read a tensor ``axis`` at
    run time, as an IntArray)."""
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    axes = node.get_attr("axes")
    if len(node.inputs) > 1:
        source = _input(self, node, 1)
        axes = _const_weight_or_none(source)
        if axes is None:
            if node.get_attr("noop_with_empty_axes", 0):
                raise ValueError(f"{node.layer_type} axes {source.name!r} is computed, with "
                                 "noop_with_empty_axes=1: whether it reduces is only known at run time")
            return source.name
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _reduce(head: str | None, kernel: str, tail: str | None) -> Callable:
    """``tail(kernel(head(x), axis, keepdim))``; no axes reduce every axis unless
    ``noop_with_empty_axes=1``, which leaves the reduction out (``tail(head(x))``), as ONNX's
    reference does."""

    def mapper(self, node) -> None:
        val = _input(self, node, 0).name
        if head is not None:
            val = _add(self, head, {"x": val}, node.name + "_head")
        axes = _reduce_axes(self, node)
        keepdim = bool(node.get_attr("keepdims", 1))
        out = node.name + ("_reduced" if tail else "")
        if isinstance(axes, str):
            if kernel != "paddle.sum":  # paddle.logsumexp with a tensor axis aborts the process (SIGABRT)
                raise ValueError(f"{node.layer_type} axes {axes!r} is computed: {kernel} needs it constant")
            reduced = _add(self, kernel, {"x": val, "axis": axes}, out, keepdim=keepdim)
        elif not axes and node.get_attr("noop_with_empty_axes", 0):
            reduced = val
        else:
            reduced = _add(self, kernel, {"x": val}, out, axis=axes or None, keepdim=keepdim)
        if tail is not None or reduced != node.name:
            _add(self, tail or "paddle.assign", {"x": reduced}, node.name)

    mapper.__doc__ = f"{tail or ''}({kernel}({head or ''}(x), axes, keepdims))"
    return mapper


# --------------------------------------------------------------------------- scans and linear algebra


def cum_prod(self, node) -> None:
    """CumProd(x, axis, exclusive, reverse) -> paddle.cumprod, with ``reverse`` as a flip
    before and after and ``exclusive`` as the inclusive product shifted one step along the
    axis behind a slice of ones (exact: no division)."""
    x = _input(self, node, 0).name
    axis = int(_const_input(self, node, 1, "axis").reshape(-1)[0])
    reverse = bool(node.get_attr("reverse", 0))
    exclusive = bool(node.get_attr("exclusive", 0))
    name = node.name
    if reverse:
        x = _add(self, "paddle.flip", {"x": x}, name + "_flipped", axis=[axis])
    product = _add(self, "paddle.cumprod", {"x": x}, name + "_cumprod" if (reverse or exclusive) else name,
                   dim=axis)
    if exclusive:
        first = _add(self, "paddle.slice", {"input": x}, name + "_first", axes=[axis], starts=[0], ends=[1])
        ones = _add(self, "paddle.ones_like", {"x": first}, name + "_ones")
        head = _add(self, "paddle.slice", {"input": product}, name + "_head", axes=[axis], starts=[0], ends=[-1])
        self.paddle_graph.add_layer("paddle.concat", inputs={"x": [ones, head]},
                                    outputs=[name + "_exclusive" if reverse else name], axis=axis)
        product = name + "_exclusive" if reverse else name
    if reverse:
        _add(self, "paddle.flip", {"x": product}, name, axis=[axis])


def det(self, node) -> None:
    """Det(x: [..., M, M]) -> paddle.linalg.det(x)."""
    _add(self, "paddle.linalg.det", {"x": _input(self, node, 0).name}, node.name)


def eye_like(self, node) -> None:
    """EyeLike(x: [R, C], k, dtype) -> cast(triu(ones, k) - triu(ones, k + 1), dtype): ones on
    the k-th diagonal, for any R, C (static or not), computed in int32 so every dtype is exact."""
    x = _input(self, node, 0)
    k = int(node.get_attr("k", 0))
    dtype_attr = node.get_attr("dtype")
    # Without the attribute the output takes the input's dtype (which the output carries too).
    dtype = _onnx_np_dtype(dtype_attr) if dtype_attr is not None else (_out_dtype(self, node) or np.dtype(x.dtype))
    name = node.name
    ones = _add(self, "paddle.ones_like", {"x": x.name}, name + "_ones", dtype=repr("int32"))
    upper = _add(self, "paddle.triu", {"x": ones}, name + "_upper", diagonal=k)
    above = _add(self, "paddle.triu", {"x": ones}, name + "_above", diagonal=k + 1)
    band = _add(self, "paddle.subtract", {"x": upper, "y": above}, name + "_band")
    _add(self, "paddle.cast", {"x": band}, name, dtype=repr(str(np.dtype(dtype))))


def einsum(self, node) -> None:
    """Einsum(inputs..., equation) -> paddle.einsum(equation, *inputs). paddle.einsum takes the
    equation first and the operands as ``*operands`` (no keyword), which X2Paddle's code writer
    can only produce from a positional input list, so the equation comes in as a ``prim.constant``
    the generated code binds to a name first."""
    equation = node.get_attr("equation")
    equation = equation.decode() if isinstance(equation, bytes) else equation
    operands = [_input(self, node, i).name for i in range(len(node.inputs))]
    eq_name = node.name + "_equation"
    self.paddle_graph.add_layer("prim.constant", inputs={}, outputs=[eq_name], value=repr(equation.replace(" ", "")))
    self.paddle_graph.add_layer("paddle.einsum", inputs=[eq_name, *operands], outputs=[node.name])


# --------------------------------------------------------------------------- windows


def _window(terms: tuple[float, ...]) -> Callable:
    """sum_j terms[j] * cos(2 pi j n / N), n = 0..size-1, N = size (periodic=1) or size - 1,
    computed in float32 from the (possibly computed) size tensor, then cast to
    ``output_datatype`` (default float32). Not float64: Paddle Inference 3.3.1 drops the
    ``paddle.scale`` factor on float64 here (HannWindow(8) came out as cos(n/8), not
    cos(2 pi n/8))."""

    def mapper(self, node) -> None:
        size = _input(self, node, 0).name
        name = node.name
        dtype = _onnx_np_dtype(node.get_attr("output_datatype", 1))
        periodic = int(node.get_attr("periodic", 1))
        size_f = _add(self, "paddle.cast", {"x": size}, name + "_size", dtype=repr("float32"))
        n = _add(self, "paddle.arange", {"end": size_f}, name + "_n", dtype=repr("float32"))
        # A rank-0 divisor broadcast against n gives wrong values in Paddle Inference: rank 1.
        size_f = _add(self, "paddle.reshape", {"x": size_f}, name + "_size1", shape=[1])
        period = size_f if periodic else _add(self, "paddle.scale", {"x": size_f}, name + "_period", bias=-1.0)
        phase = _add(self, "paddle.divide", {"x": n, "y": period}, name + "_phase")
        total = None
        for j, coef in enumerate(terms[1:], start=1):
            angle = _add(self, "paddle.scale", {"x": phase}, f"{name}_angle{j}", scale=2 * math.pi * j)
            cos = _add(self, "paddle.cos", {"x": angle}, f"{name}_cos{j}")
            term = _add(self, "paddle.scale", {"x": cos}, f"{name}_term{j}", scale=coef,
                        bias=terms[0] if total is None else 0.0)
            total = term if total is None else _add(self, "paddle.add", {"x": total, "y": term}, f"{name}_sum{j}")
        _add(self, "paddle.cast", {"x": total}, name, dtype=repr(str(dtype)))

    return mapper


_HAMMING_ALPHA = 25.0 / 46.0  # ONNX's (and torch's) alpha, not the textbook 0.54

# ONNX op type -> mapper. Acos/Asin/Atan, the bitwise ops and the windows go through
# one-line factories; the rest are functions above.
MAPPERS: dict[str, Callable] = {
    "Acos": _unary("paddle.acos"),
    "Asin": _unary("paddle.asin"),
    "Atan": _unary("paddle.atan"),
    "BitwiseNot": _unary("paddle.bitwise_not"),
    "BitwiseAnd": _binary("paddle.bitwise_and"),
    "BitwiseOr": _binary("paddle.bitwise_or"),
    "BitwiseXor": _binary("paddle.bitwise_xor"),
    "BitShift": bit_shift,
    "ReduceLogSumExp": _reduce(None, "paddle.logsumexp", None),
    "ReduceSumSquare": _reduce("paddle.square", "paddle.sum", None),
    "ReduceLogSum": _reduce(None, "paddle.sum", "paddle.log"),
    "CumProd": cum_prod,
    "Det": det,
    "EyeLike": eye_like,
    "Einsum": einsum,
    "HannWindow": _window((0.5, -0.5)),
    "HammingWindow": _window((_HAMMING_ALPHA, -(1.0 - _HAMMING_ALPHA))),
    "BlackmanWindow": _window((0.42, -0.5, 0.08)),
}


def install() -> None:
    """Add each mapper to X2Paddle's ``OpSet`` where it has none of that name, wrapped in its
    ``print_mapping_info`` so a failure reads as X2Paddle's own ("convert failed node:...",
    the cause kept as ``__context__``). Idempotent."""
    from x2paddle.op_mapper.onnx2paddle import onnx_op_mapper, opset_legacy

    opsets = [getattr(onnx_op_mapper, f"OpSet{v}") for v in range(7, 16)]
    for op_type, mapper in MAPPERS.items():
        present = getattr(opset_legacy.OpSet, op_type, None)
        if getattr(present, "__wrapped__", None) is mapper:
            continue
        if any(hasattr(cls, op_type) for cls in opsets):
            continue  # X2Paddle maps it itself (a later release): leave its mapper
        wrapped = opset_legacy.print_mapping_info(mapper)
        wrapped.__wrapped__ = mapper
        wrapped.__name__ = op_type
        setattr(opset_legacy.OpSet, op_type, wrapped)
