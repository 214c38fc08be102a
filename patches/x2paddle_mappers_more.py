"""More fixes to X2Paddle 1.6.0's ONNX op mappers (op_mapper/onnx2paddle/opset_legacy.py, which
every ``OpSet7``..``OpSet15`` inherits, and onnx_op_mapper.py), and a Dropout mapper (it has
none), applied as shims like
``x2paddle_mapper_fixes.py``'s: each function below replaces or wraps one method, is idempotent,
and is registered in ``x2paddle_shims.SHIMS`` after ``mappers_tensor``. Tests:
tests/test_x2paddle_mappers_more.py.

A mapper writes Paddle layers with ``self.paddle_graph.add_layer(kernel, inputs=..., **attrs)``;
a name in ``inputs`` is a tensor of the generated code, an attribute is a literal (a string one
quoted, as X2Paddle's ``string()`` does).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bridge.patches.x2paddle_mapper_fixes import _install, _unwrapped, _wrap_mapper


def _q(text: str) -> str:
    """A string attribute as X2Paddle's code generator writes it."""
    return f"'{text}'"


def _rank(val) -> int | None:
    """The rank X2Paddle's shape inference gives a node's (first) output; None when unknown
    (it gives ``[]`` then too, so an empty shape counts as unknown: none of the ops below takes a
    rank-0 input)."""
    shape = (getattr(val, "out_shapes", None) or [None])[0]
    return len(shape) if shape else None


def _const(val) -> np.ndarray | None:
    from x2paddle.op_mapper.onnx2paddle.opset_legacy import _const_weight_or_none

    value = _const_weight_or_none(val)
    return None if value is None else np.asarray(value)


# --------------------------------------------------------------------------- graph outputs


_mapper_init_before: Callable | None = None


def _fix_graph_outputs(mapper) -> None:
    """Point each graph output no layer defines at the ``<node>_p<i>`` name its producer wrote."""
    graph = mapper.paddle_graph
    defined = {out for layer in graph.layers.values() for out in layer.outputs}
    producer = {}
    for onnx_node in mapper.graph.graph.node:
        for i, out in enumerate(onnx_node.output):
            producer.setdefault(out, (onnx_node.name, i))
    fixed = []
    for out in graph.outputs:
        if out not in defined and out in producer:
            candidate = "{}_p{}".format(*producer[out])
            if candidate in defined:
                out = candidate
        fixed.append(out)
    graph.outputs = fixed


def _mapper_init(self, decoder) -> None:
    _mapper_init_before(self, decoder)
    _fix_graph_outputs(self)


def multi_output_graph_outputs() -> None:
    """A graph output that is output i > 0 of a multi-output node (TopK's Indices, Split's
    second part): the decoder renames a multi-output node's outputs to ``<node>_p<i>`` when a
    node reads one of them (``build_connection``, decoder/onnx_decoder.py) or, for TopK, always;
    ``OpSet.TopK`` renames only the graph output equal to its first output, and nothing renames
    the others, so the generated ``forward`` returns an undefined name: "NameError: In
    transformed code: ... name 'x2paddle_indices' is not defined" (onnx's ``test_top_k*``;
    ``test_operator_chunk``: Split, "name 'x2paddle_1' is not defined"). Wraps
    ``ONNXOpMapper.__init__`` (onnx_op_mapper.py, which maps every node) to point such outputs
    at the name the producer's layer wrote (``_fix_graph_outputs``)."""
    global _mapper_init_before
    from x2paddle.op_mapper.onnx2paddle import onnx_op_mapper

    current = onnx_op_mapper.ONNXOpMapper.__init__
    if getattr(current, "__wrapped__", None) is _fix_graph_outputs:
        return
    _mapper_init_before = current
    _mapper_init.__wrapped__ = _fix_graph_outputs
    onnx_op_mapper.ONNXOpMapper.__init__ = _mapper_init


_topk_before: Callable | None = None


def _map_topk(self, node) -> None:
    """TopK as X2Paddle maps it, its graph node first given the ``index`` its readers need to
    read Values as ``<name>_p0`` (what ``build_connection`` sets when a node reads Indices)."""
    _give_topk_index(self, node)
    _topk_before(self, node)


def _give_topk_index(self, node) -> None:
    graph_node = self.graph.get_node(node.layer_name)
    if graph_node is not None and not hasattr(graph_node, "index"):
        graph_node.index = 0


def _map_topk_stable(self, node) -> None:
    """TopK as ``indices = argsort(x, axis, descending=largest, stable=True)[:k]``,
    ``values = take_along_axis(x, indices, axis)``: equal values keep the lower index first, as
    ONNX requires; outputs named as X2Paddle's TopK names them (``<name>_p0``/``_p1``), graph
    outputs among them pointed there by ``multi_output_graph_outputs``."""
    _give_topk_index(self, node)
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    val_k = self.graph.get_input_node(node, idx=1, copy=True)
    axis = int(node.get_attr("axis", -1))
    largest = node.get_attr("largest", 1) == 1
    values, indices = f"{node.layer_name}_p0", f"{node.layer_name}_p1"
    order = node.name + "_order"
    self.paddle_graph.add_layer("paddle.argsort", inputs={"x": val_x.name}, outputs=[order], axis=axis,
                                descending=largest, stable=True)
    k = _const(val_k)
    if k is not None:
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": order}, outputs=[indices], axes=[axis],
                                    starts=[0], ends=[int(k.reshape(-1)[0])])
    else:
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": val_k.name}, outputs=[node.name + "_k"],
                                    dtype=_q("int64"))
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": order, "ends": node.name + "_k"},
                                    outputs=[indices], axes=[axis], starts=[0])
    self.paddle_graph.add_layer("paddle.take_along_axis", inputs={"arr": val_x.name, "indices": indices},
                                outputs=[values], axis=axis)


def topk_stable_ties() -> None:
    """TopK over equal values: X2Paddle's ``OpSet.TopK`` (opset_legacy.py) maps it to
    ``paddle.topk``, which returns equal values in another order than ONNX's (the lower index
    first): silently wrong Indices ("output 'indices': 3 of 3 elements outside tolerance",
    ``test_top_k_same_values*``). Replaces it (after ``topk_values_readers``, whose naming it
    keeps) with ``_map_topk_stable``."""
    _install("TopK", _map_topk_stable)


def topk_values_readers() -> None:
    """TopK whose Values a node reads while no node reads Indices: ``OpSet.TopK``
    (opset_legacy.py) always writes ``<name>_p0``/``<name>_p1``, but the decoder gives the node
    the ``index`` that makes its readers say ``<name>_p0`` only when a node reads a later output,
    so they read ``<name>``: "AssertionError: Couldn't find x2paddle_values in previous layers,
    the layers should be make by topological sort". Wraps it (``_map_topk``)."""
    global _topk_before
    from x2paddle.op_mapper.onnx2paddle import opset_legacy

    current = opset_legacy.OpSet.__dict__["TopK"]
    if getattr(current, "__wrapped__", None) in (_map_topk, _map_topk_stable):  # topk_stable_ties names alike
        return
    _topk_before = _unwrapped(current)
    _install("TopK", _map_topk)


# --------------------------------------------------------------------------- ArgMax


def _map_argmax(self, node) -> None:
    """ArgMax with ONNX's defaults (``axis`` 0, ``keepdims`` 1); ``select_last_index=1`` as
    ``(n - 1) - argmax(flip(x, axis))``, n the axis' size at run time."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    axis = int(node.get_attr("axis", 0))
    keepdim = bool(node.get_attr("keepdims", 1))
    if not node.get_attr("select_last_index", 0):
        self.paddle_graph.add_layer("paddle.argmax", inputs={"x": val_x.name}, outputs=[node.name], axis=axis,
                                    keepdim=keepdim)
        return
    rank = _rank(val_x)
    if axis < 0 and rank is not None:
        axis += rank
    # The axis' entry of shape(x); a negative axis counts from the end (-1: to the end).
    end = axis + 1 if axis != -1 else 2**31 - 1
    flipped, first, size, last = (node.name + suffix for suffix in ("_flip", "_first", "_n", "_last"))
    self.paddle_graph.add_layer("paddle.flip", inputs={"x": val_x.name}, outputs=[flipped], axis=[axis])
    self.paddle_graph.add_layer("paddle.argmax", inputs={"x": flipped}, outputs=[first], axis=axis, keepdim=keepdim)
    self.paddle_graph.add_layer("paddle.shape", inputs={"input": val_x.name}, outputs=[size])
    self.paddle_graph.add_layer("paddle.slice", inputs={"input": size}, outputs=[size], axes=[0], starts=[axis],
                                ends=[end])
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": size}, outputs=[size], dtype=_q("int64"))
    # Rank 0, so that it broadcasts to any index shape (keepdims=0 on a 1-D input gives rank 0).
    self.paddle_graph.add_layer("paddle.reshape", inputs={"x": size}, outputs=[size], shape=[])
    self.paddle_graph.add_layer("paddle.subtract", inputs={"x": size, "y": first}, outputs=[last])
    self.paddle_graph.add_layer("paddle.scale", inputs={"x": last}, outputs=[node.name], scale=1.0, bias=-1.0)


def argmax_defaults() -> None:
    """ArgMax without an ``axis`` attribute (ONNX default 0): X2Paddle's ``OpSet.ArgMax``
    (opset_legacy.py) passes ``axis=None``, and ``paddle.argmax`` then takes the argmax of the
    flattened input: silently wrong ("output 'result': shape [1, 1] != [1, 2]",
    ``test_argmax_default_axis_*``); it also ignores ``select_last_index``. Replaces it with
    ``_map_argmax``."""
    _install("ArgMax", _map_argmax)


# --------------------------------------------------------------------------- Gemm


def _map_gemm(self, node) -> None:
    """``alpha * (A' @ B') + beta * C``, C optional (ONNX: absent means no bias)."""
    val_a = self.graph.get_input_node(node, idx=0, copy=True)
    val_b = self.graph.get_input_node(node, idx=1, copy=True)
    alpha = float(node.get_attr("alpha", 1.0))
    beta = float(node.get_attr("beta", 1.0))
    has_c = len(node.layer.input) > 2 and bool(node.layer.input[2]) and beta != 0.0
    product = node.name + "_mm" if (alpha != 1.0 or has_c) else node.name
    self.paddle_graph.add_layer("paddle.matmul", inputs={"x": val_a.name, "y": val_b.name}, outputs=[product],
                                transpose_x=bool(node.get_attr("transA", 0)),
                                transpose_y=bool(node.get_attr("transB", 0)))
    if alpha != 1.0:
        scaled = node.name + "_alpha" if has_c else node.name
        self.paddle_graph.add_layer("paddle.scale", inputs={"x": product}, outputs=[scaled], scale=alpha)
        product = scaled
    if not has_c:
        return
    val_c = self.graph.get_input_node(node, idx=2, copy=True)
    bias = val_c.name
    if beta != 1.0:
        bias = node.name + "_beta"
        self.paddle_graph.add_layer("paddle.scale", inputs={"x": val_c.name}, outputs=[bias], scale=beta)
    self.paddle_graph.add_layer("paddle.add", inputs={"x": product, "y": bias}, outputs=[node.name])


def gemm_all_forms() -> None:
    """Gemm with ``alpha`` != 1 and ``beta`` != 0: X2Paddle's ``OpSet.Gemm`` (opset_legacy.py)
    calls ``add_layer('paddle.matmul', inputs=[matmul_inputs])`` (a list around the dict):
    "TypeError: unhashable type: 'dict'" (``test_gemm_alpha``, ``test_gemm_all_attributes``);
    without the optional C it reads input 2 anyway: "IndexError: list index out of range"
    (``test_gemm_default_no_bias``). Replaces it with ``_map_gemm``."""
    _install("Gemm", _map_gemm)


# --------------------------------------------------------------------------- Split


_split_before: Callable | None = None


def _split_outputs(node) -> list[str]:
    """The output names X2Paddle's own Split writes (``<node>_p<i>`` once the decoder set an
    ``index``, i.e. a node reads one of them; else the ONNX names)."""
    if hasattr(node, "index"):
        return [f"{node.layer_name}_p{i}" for i in range(len(node.layer.output))]
    return list(node.layer.output)


def _map_split(self, node) -> None:
    """Split with a ``split`` input that is not constant: part i is
    ``slice(x, [axis], ends[i] - split[i], ends[i])``, ``ends = cumsum(split)``; every other
    form as X2Paddle maps it."""
    names = list(node.layer.input)
    if node.get_attr("split") is not None or len(names) < 2 or not names[1]:
        _split_before(self, node)
        return
    sizes = self.graph.get_input_node(node, idx=1, copy=True)
    if _const(sizes) is not None:
        _split_before(self, node)
        return
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    axis = int(node.get_attr("axis", 0))
    rank = _rank(val_x)
    if axis < 0 and rank is not None:
        axis += rank
    ends, starts = node.name + "_split_ends", node.name + "_split_starts"
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": sizes.name}, outputs=[node.name + "_split_sizes"],
                                dtype=_q("int64"))
    sizes_name = node.name + "_split_sizes"
    self.paddle_graph.add_layer("paddle.cumsum", inputs={"x": sizes_name}, outputs=[ends], axis=0)
    self.paddle_graph.add_layer("paddle.subtract", inputs={"x": ends, "y": sizes_name}, outputs=[starts])
    for i, out in enumerate(_split_outputs(node)):
        begin, end = f"{starts}_{i}", f"{ends}_{i}"
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": starts}, outputs=[begin], axes=[0],
                                    starts=[i], ends=[i + 1])
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": ends}, outputs=[end], axes=[0],
                                    starts=[i], ends=[i + 1])
        self.paddle_graph.add_layer("paddle.slice", inputs={"input": val_x.name, "starts": begin, "ends": end},
                                    outputs=[out], axes=[axis])


def split_tensor_sizes() -> None:
    """Split with its ``split`` sizes a graph input or computed tensor (opset >= 13):
    X2Paddle's ``OpSet.Split`` (opset_legacy.py) calls ``_const_weight_or_none(...).tolist()``
    inside a bare ``try`` and on the error falls back to equal parts: silently wrong
    ("output 'output_1': shape [3] != [2]", ``test_split_variable_parts_*``). Wraps it to slice
    by the sizes at run time (``_map_split``)."""
    global _split_before
    _split_before = _wrap_mapper("Split", _map_split) or _split_before


# --------------------------------------------------------------------------- Expand

_expand_before: Callable | None = None


def _map_expand(self, node) -> None:
    """Expand with a computed shape: ``ones(shape) * x`` (X2Paddle's own formula) with the shape
    passed as a tensor; a constant shape as X2Paddle maps it."""
    val_shape = self.graph.get_input_node(node, idx=1, copy=True)
    if _const(val_shape) is not None:
        _expand_before(self, node)
        return
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    ones = node.name + "_ones"
    self.paddle_graph.add_layer("paddle.full", inputs={"shape": val_shape.name}, outputs=[ones],
                                dtype=_q(str(val_x.dtype)), fill_value=1)
    self.paddle_graph.add_layer("paddle.multiply", inputs={"x": ones, "y": val_x.name}, outputs=[node.name])


def expand_tensor_shape() -> None:
    """Expand with its shape a graph input or computed tensor: X2Paddle's ``OpSet.Expand``
    (opset_legacy.py) writes the shape's name as an attribute (``paddle.full(shape=x2paddle_new_shape,
    ...)``), so the generated ``forward`` never takes it: "NameError: In transformed code: ...
    name 'x2paddle_new_shape' is not defined" (``test_expand_dim_changed``,
    ``test_expand_dim_unchanged``). Wraps it (``_map_expand``)."""
    global _expand_before
    _expand_before = _wrap_mapper("Expand", _map_expand) or _expand_before


# --------------------------------------------------------------------------- Div

_INTEGER_DTYPES = ("int8", "uint8", "int16", "int32", "int64")


def _map_div(self, node) -> None:
    """Div: integers as ONNX divides them (truncated toward zero, the inputs' type), computed in
    int64: ``q = floor_divide(a, b)``, plus 1 where the remainder is non-zero and the signs
    differ; floats as X2Paddle maps them (``paddle.divide``)."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    dtype = str(val_x.dtype)
    if dtype not in _INTEGER_DTYPES:
        self.elementwise_map(node)
        return
    val_y = self.graph.get_input_node(node, idx=1, copy=True)
    p = node.name + "_div"
    add = self.paddle_graph.add_layer
    add("paddle.cast", inputs={"x": val_x.name}, outputs=[p + "_a"], dtype=_q("int64"))
    add("paddle.cast", inputs={"x": val_y.name}, outputs=[p + "_b"], dtype=_q("int64"))
    add("paddle.floor_divide", inputs={"x": p + "_a", "y": p + "_b"}, outputs=[p + "_q"])
    add("paddle.remainder", inputs={"x": p + "_a", "y": p + "_b"}, outputs=[p + "_r"])
    add("paddle.zeros_like", inputs={"x": p + "_r"}, outputs=[p + "_zero"])
    add("paddle.not_equal", inputs={"x": p + "_r", "y": p + "_zero"}, outputs=[p + "_inexact"])
    add("paddle.zeros_like", inputs={"x": p + "_a"}, outputs=[p + "_za"])
    add("paddle.zeros_like", inputs={"x": p + "_b"}, outputs=[p + "_zb"])
    add("paddle.less_than", inputs={"x": p + "_a", "y": p + "_za"}, outputs=[p + "_a_neg"])
    add("paddle.less_than", inputs={"x": p + "_b", "y": p + "_zb"}, outputs=[p + "_b_neg"])
    add("paddle.logical_xor", inputs={"x": p + "_a_neg", "y": p + "_b_neg"}, outputs=[p + "_signs"])
    add("paddle.logical_and", inputs={"x": p + "_inexact", "y": p + "_signs"}, outputs=[p + "_up"])
    add("paddle.cast", inputs={"x": p + "_up"}, outputs=[p + "_up"], dtype=_q("int64"))
    add("paddle.add", inputs={"x": p + "_q", "y": p + "_up"}, outputs=[p + "_t"])
    add("paddle.cast", inputs={"x": p + "_t"}, outputs=[node.name], dtype=_q(dtype))


def div_integers() -> None:
    """Div of integers: X2Paddle maps Div to ``paddle.divide`` (``elementwise_ops``,
    opset_legacy.py), which in Paddle 3 divides integers as floats and returns float32: silently
    the wrong type and value ("output 'z': dtype float32 != int8", ``test_div_int8``,
    ``test_div_uint8``, ``test_div_int32_trunc``). Adds ``OpSet.Div`` (``_map_div``; X2Paddle's
    dispatch prefers a method over ``elementwise_ops``)."""
    _install("Div", _map_div)


# --------------------------------------------------------------------------- ScatterND

# ONNX ScatterND reduction -> paddle.put_along_axis reduce.
_SCATTER_REDUCE = {"add": "add", "mul": "mul", "max": "amax", "min": "amin"}
_scatter_nd_before: Callable | None = None


def _static_dims(val) -> list[int] | None:
    shape = (getattr(val, "out_shapes", None) or [None])[0]
    if not shape or any(d is None or d < 0 for d in shape):
        return None
    return [int(d) for d in shape]


def _map_scatter_nd(self, node) -> None:
    """ScatterND with a ``reduction``: x as ``[M, R]`` (M the product of the k indexed dims, R
    of the rest), each index row made a flat row number (``sum(index * strides)``), and
    ``put_along_axis(x, rows, updates as [N, R], axis=0, reduce, include_self=True)``, which
    applies duplicates one after another as ONNX does; ``reduction="none"`` as X2Paddle maps it."""
    reduction = node.get_attr("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else reduction
    if reduction == "none":
        _scatter_nd_before(self, node)
        return
    if reduction not in _SCATTER_REDUCE:
        raise ValueError(f"ScatterND {node.name!r}: reduction {reduction!r} is not an ONNX reduction")
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    indices = self.graph.get_input_node(node, idx=1, copy=True)
    updates = self.graph.get_input_node(node, idx=2, copy=True)
    x_dims, index_dims = _static_dims(val_x), _static_dims(indices)
    if x_dims is None or index_dims is None:
        raise ValueError(f"ScatterND {node.name!r}: reduction {reduction!r} needs static data and indices shapes")
    k = index_dims[-1]
    rows = int(np.prod(x_dims[:k], dtype=np.int64))
    rest = int(np.prod(x_dims[k:], dtype=np.int64))
    count = int(np.prod(index_dims[:-1], dtype=np.int64))
    strides = [int(np.prod(x_dims[j + 1:k], dtype=np.int64)) for j in range(k)]
    p = node.name + "_scatter"
    add = self.paddle_graph.add_layer
    add("paddle.reshape", inputs={"x": val_x.name}, outputs=[p + "_x"], shape=[rows, rest])
    add("paddle.cast", inputs={"x": indices.name}, outputs=[p + "_i"], dtype=_q("int64"))
    add("paddle.reshape", inputs={"x": p + "_i"}, outputs=[p + "_i"], shape=[count, k])
    # paddle.assign of a literal list (X2Paddle's code generator reserves paddle.to_tensor for inputs).
    add("paddle.assign", inputs={}, outputs=[p + "_strides"], x=strides)
    add("paddle.cast", inputs={"x": p + "_strides"}, outputs=[p + "_strides"], dtype=_q("int64"))
    add("paddle.multiply", inputs={"x": p + "_i", "y": p + "_strides"}, outputs=[p + "_i"])
    add("paddle.sum", inputs={"x": p + "_i"}, outputs=[p + "_row"], axis=-1, keepdim=True)
    add("paddle.expand", inputs={"x": p + "_row"}, outputs=[p + "_rows"], shape=[count, rest])
    add("paddle.reshape", inputs={"x": updates.name}, outputs=[p + "_u"], shape=[count, rest])
    add("paddle.put_along_axis", inputs={"arr": p + "_x", "indices": p + "_rows", "values": p + "_u"},
        outputs=[p + "_out"], axis=0, reduce=_q(_SCATTER_REDUCE[reduction]), include_self=True)
    add("paddle.reshape", inputs={"x": p + "_out"}, outputs=[node.name], shape=x_dims)


def scatter_nd_reduction() -> None:
    """ScatterND with ``reduction`` add/mul/max/min (opset 16+): X2Paddle's ``OpSet.ScatterND``
    (opset_legacy.py) ignores the attribute and overwrites: silently wrong ("output 'y': 16 of
    64 elements outside tolerance", ``test_scatternd_add``, ``_multiply``, ``_max``, ``_min``,
    ``_max_with_element_indices``, ``_min_with_element_indices``). Wraps it
    (``_map_scatter_nd``)."""
    global _scatter_nd_before
    _scatter_nd_before = _wrap_mapper("ScatterND", _map_scatter_nd) or _scatter_nd_before


# --------------------------------------------------------------------------- Max / Min / Mod on narrow types

# Types Paddle's CPU maximum/minimum/remainder kernels lack -> the type they are computed in.
_WIDER = {"float16": "float32", "int8": "int32", "uint8": "int32", "int16": "int32", "uint16": "int32"}
_max_min_before: dict[str, Callable] = {}
_mod_before: Callable | None = None


def _widened(self, node, dtype: str) -> list[str]:
    """Both inputs cast to ``_WIDER[dtype]`` (or as they are where ``dtype`` is not narrow)."""
    names = []
    for i in range(2):
        val = self.graph.get_input_node(node, idx=i, copy=True)
        if dtype in _WIDER:
            self.paddle_graph.add_layer("paddle.cast", inputs={"x": val.name}, outputs=[f"{node.name}_wide{i}"],
                                        dtype=_q(_WIDER[dtype]))
            names.append(f"{node.name}_wide{i}")
        else:
            names.append(val.name)
    return names


def _narrowed(self, node, dtype: str, result: str) -> None:
    if dtype in _WIDER:
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": result}, outputs=[node.name], dtype=_q(dtype))


def _map_max_min(self, node) -> None:
    """Two-input Max/Min of a type Paddle's CPU kernels lack: computed in ``_WIDER`` and cast
    back; every other form as X2Paddle maps it (sum_variadic leaves only two-input ones)."""
    dtype = str(self.graph.get_input_node(node, idx=0, copy=True).dtype)
    if dtype not in _WIDER or len(node.inputs) != 2:
        _max_min_before[node.layer_type](self, node)
        return
    a, b = _widened(self, node, dtype)
    kernel = "paddle.maximum" if node.layer_type == "Max" else "paddle.minimum"
    self.paddle_graph.add_layer(kernel, inputs={"x": a, "y": b}, outputs=[node.name + "_wide"])
    _narrowed(self, node, dtype, node.name + "_wide")


def _map_mod(self, node) -> None:
    """Mod: narrow types computed in ``_WIDER`` and cast back; integer ``fmod=1`` as C's
    remainder (sign of the dividend: the floor remainder minus b where it is non-zero and the
    signs differ); ``fmod=0`` as ``paddle.remainder`` (sign of the divisor); float ``fmod=1``
    with X2Paddle's formula, ``a - sign(a / b) * floor(|a / b|) * b``. Wider types with
    ``fmod=0``, and wide floats, as X2Paddle maps them."""
    dtype = str(self.graph.get_input_node(node, idx=0, copy=True).dtype)
    fmod = int(node.get_attr("fmod", 0))
    integer = "int" in _WIDER.get(dtype, dtype)
    if dtype not in _WIDER and not (integer and fmod == 1):
        _mod_before(self, node)
        return
    a, b = _widened(self, node, dtype)
    p, add = node.name + "_mod", self.paddle_graph.add_layer
    out = p + "_out"
    if fmod == 0:
        add("paddle.remainder", inputs={"x": a, "y": b}, outputs=[out])
    elif integer:
        add("paddle.remainder", inputs={"x": a, "y": b}, outputs=[p + "_floor"])
        for name, source in ((p + "_z", p + "_floor"), (p + "_za", a), (p + "_zb", b)):
            add("paddle.zeros_like", inputs={"x": source}, outputs=[name])
        add("paddle.not_equal", inputs={"x": p + "_floor", "y": p + "_z"}, outputs=[p + "_inexact"])
        add("paddle.less_than", inputs={"x": a, "y": p + "_za"}, outputs=[p + "_a_neg"])
        add("paddle.less_than", inputs={"x": b, "y": p + "_zb"}, outputs=[p + "_b_neg"])
        add("paddle.logical_xor", inputs={"x": p + "_a_neg", "y": p + "_b_neg"}, outputs=[p + "_signs"])
        add("paddle.logical_and", inputs={"x": p + "_inexact", "y": p + "_signs"}, outputs=[p + "_shift"])
        add("paddle.subtract", inputs={"x": p + "_floor", "y": b}, outputs=[p + "_shifted"])
        add("paddle.where", inputs={"condition": p + "_shift", "x": p + "_shifted", "y": p + "_floor"}, outputs=[out])
    else:
        add("paddle.divide", inputs={"x": a, "y": b}, outputs=[p + "_q"])
        add("paddle.sign", inputs={"x": p + "_q"}, outputs=[p + "_sign"])
        add("paddle.abs", inputs={"x": p + "_q"}, outputs=[p + "_abs"])
        add("paddle.floor", inputs={"x": p + "_abs"}, outputs=[p + "_floor"])
        add("paddle.multiply", inputs={"x": p + "_sign", "y": p + "_floor"}, outputs=[p + "_trunc"])
        add("paddle.multiply", inputs={"x": p + "_trunc", "y": b}, outputs=[p + "_trunc"])
        add("paddle.subtract", inputs={"x": a, "y": p + "_trunc"}, outputs=[out])
    if dtype in _WIDER:
        _narrowed(self, node, dtype, out)
    else:
        add("paddle.assign", inputs={"x": out}, outputs=[node.name])


def narrow_max_min_mod() -> None:
    """Max, Min and Mod of float16, int8, uint8, int16 or uint16: X2Paddle maps them to
    ``paddle.maximum``/``minimum``/``mod`` (opset_legacy.py, opset10.py), which have no CPU
    kernel for these types: "TypeError: (InvalidType) Check data type error for op: maximum,
    input: y, y.dtype: int8" (``test_max_int8``, ``test_min_float16``, ``test_mod_uint8``, ...).
    And ``OpSet10.Mod`` resets ``fmod=1`` to 0 for integers, so C's remainder (sign of the
    dividend) comes out as Python's: silently wrong (``test_mod_int64_fmod``: "2 of 6 elements
    outside tolerance"). Wraps all three (``_map_max_min``, ``_map_mod``)."""
    global _mod_before
    from x2paddle.op_mapper.onnx2paddle import opset10, opset_legacy

    for op_type in ("Max", "Min"):
        current = opset_legacy.OpSet.__dict__[op_type]
        if getattr(current, "__wrapped__", None) is not _map_max_min:
            _max_min_before[op_type] = _unwrapped(current)
            _install(op_type, _map_max_min)
    current = opset10.OpSet10.__dict__["Mod"]
    if getattr(current, "__wrapped__", None) is not _map_mod:
        _mod_before = _unwrapped(current)
        _install("Mod", _map_mod, opset10.OpSet10)


# --------------------------------------------------------------------------- MaxPool Indices

_maxpool_before: Callable | None = None


def _map_maxpool(self, node) -> None:
    """2-D MaxPool whose Indices output exists (static input shape, symmetric pads, no auto_pad
    or dilations): ``max_pool2d(..., return_mask=True)``, whose mask is ``h * W + w`` within each
    (n, c) plane, plus ``(n * C + c) * H * W`` (ONNX flattens over the whole tensor);
    ``storage_order=1`` (column-major) as ``w * H + h``. Every other MaxPool as X2Paddle maps it."""
    outs = list(node.layer.output)
    kernel = node.get_attr("kernel_shape") or []
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    dims = _static_dims(val_x)
    pads = list(node.get_attr("pads") or [0] * 2 * len(kernel))
    dilations = list(node.get_attr("dilations") or [1] * len(kernel))
    auto_pad = node.get_attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if (len(outs) < 2 or not outs[1] or len(kernel) != 2 or dims is None or len(dims) != 4
            or pads[:2] != pads[2:] or any(d != 1 for d in dilations) or auto_pad not in ("NOTSET", "VALID")):
        _maxpool_before(self, node)
        return
    n, c, h, w = dims
    values, indices = _split_outputs(node)[:2]
    p, add = node.name + "_argmax", self.paddle_graph.add_layer
    add("paddle.nn.functional.max_pool2d", inputs={"x": val_x.name}, outputs=[values, p + "_mask"],
        kernel_size=[int(k) for k in kernel], stride=[int(s) for s in (node.get_attr("strides") or [1, 1])],
        padding=[int(pads[0]), int(pads[1])], ceil_mode=bool(node.get_attr("ceil_mode", 0)), return_mask=True)
    add("paddle.cast", inputs={"x": p + "_mask"}, outputs=[p + "_mask"], dtype=_q("int64"))
    if node.get_attr("storage_order", 0) == 1:
        add("paddle.full", inputs={}, outputs=[p + "_w"], shape=[1], fill_value=w, dtype=_q("int64"))
        add("paddle.full", inputs={}, outputs=[p + "_h"], shape=[1], fill_value=h, dtype=_q("int64"))
        add("paddle.floor_divide", inputs={"x": p + "_mask", "y": p + "_w"}, outputs=[p + "_row"])
        add("paddle.remainder", inputs={"x": p + "_mask", "y": p + "_w"}, outputs=[p + "_col"])
        add("paddle.multiply", inputs={"x": p + "_col", "y": p + "_h"}, outputs=[p + "_col"])
        add("paddle.add", inputs={"x": p + "_col", "y": p + "_row"}, outputs=[p + "_mask"])
    add("paddle.arange", inputs={}, outputs=[p + "_plane"], start=0, end=n * c * h * w, step=h * w, dtype=_q("int64"))
    add("paddle.reshape", inputs={"x": p + "_plane"}, outputs=[p + "_plane"], shape=[n, c, 1, 1])
    add("paddle.add", inputs={"x": p + "_mask", "y": p + "_plane"}, outputs=[indices])


def maxpool_indices() -> None:
    """MaxPool with its Indices output: X2Paddle's ``OpSet.MaxPool`` (opset_legacy.py) builds
    ``paddle.nn.MaxPool2D`` without ``return_mask`` and never defines Indices: "NameError: In
    transformed code: ... name 'x2paddle_z' is not defined"
    (``test_maxpool_with_argmax_2d_precomputed_pads``, ``_strides``). Wraps it
    (``_map_maxpool``)."""
    global _maxpool_before
    _maxpool_before = _wrap_mapper("MaxPool", _map_maxpool) or _maxpool_before


# --------------------------------------------------------------------------- GatherND batch_dims

_gather_nd_before: Callable | None = None


def _map_gather_nd(self, node) -> None:
    """GatherND with ``batch_dims`` b > 0 (static indices shape): each index row gets its b
    batch coordinates in front (``arange`` per batch dim, broadcast to the rows), then
    ``gather_nd``; ``batch_dims=0`` as X2Paddle maps it."""
    b = int(node.get_attr("batch_dims", 0))
    if b == 0:
        _gather_nd_before(self, node)
        return
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    indices = self.graph.get_input_node(node, idx=1, copy=True)
    dims = _static_dims(indices)
    if dims is None:
        raise ValueError(f"GatherND {node.name!r}: batch_dims {b} needs the indices' static shape")
    rows = dims[:-1]
    p, add = node.name + "_gnd", self.paddle_graph.add_layer
    parts = []
    for d in range(b):
        coord = f"{p}_batch{d}"
        add("paddle.arange", inputs={}, outputs=[coord], start=0, end=rows[d], dtype=_q("int64"))
        add("paddle.reshape", inputs={"x": coord}, outputs=[coord],
            shape=[rows[d] if i == d else 1 for i in range(len(rows) + 1)])
        add("paddle.expand", inputs={"x": coord}, outputs=[coord], shape=rows + [1])
        parts.append(coord)
    add("paddle.cast", inputs={"x": indices.name}, outputs=[p + "_idx"], dtype=_q("int64"))
    add("paddle.concat", inputs={"x": parts + [p + "_idx"]}, outputs=[p + "_full"], axis=-1)
    add("paddle.gather_nd", inputs={"x": val_x.name, "index": p + "_full"}, outputs=[node.name])


def gather_nd_batch_dims() -> None:
    """GatherND with ``batch_dims`` > 0: X2Paddle's ``OpSet.GatherND`` (opset_legacy.py) ignores
    it and indexes from the first dim: silently wrong ("output 'output': shape [2, 2, 2] != [2,
    2]", ``test_gathernd_example_int32_batch_dim1``). Wraps it (``_map_gather_nd``)."""
    global _gather_nd_before
    _gather_nd_before = _wrap_mapper("GatherND", _map_gather_nd) or _gather_nd_before


# --------------------------------------------------------------------------- Dropout


def _map_dropout(self, node) -> None:
    """Dropout: ``output = x`` and ``mask`` all true at inference (no ``training_mode`` input,
    or a constant false one, and every opset < 12); with a ``training_mode`` tensor, ONNX's
    training form at run time: ``keep = uniform[0, 1) >= r``, ``output = x * keep / (1 - r)``,
    ``r = ratio`` (default 0.5) where training_mode is true, else 0 (so ``output = x``)."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    names = list(node.layer.input)
    outputs = _split_outputs(node)
    dtype = str(val_x.dtype)
    training = None
    if len(names) > 2 and names[2]:
        mode = self.graph.get_input_node(node, idx=list(n for n in names if n).index(names[2]), copy=True)
        value = _const(mode)
        training = None if value is not None and not value.reshape(-1)[0] else mode
    if training is None:
        self.paddle_graph.add_layer("paddle.assign", inputs={"x": val_x.name}, outputs=[outputs[0]])
        if len(outputs) > 1:
            self.paddle_graph.add_layer("paddle.ones_like", inputs={"x": val_x.name}, outputs=[outputs[1]],
                                        dtype=_q("bool"))
        return
    prefix = node.name + "_dropout"
    if len(names) > 1 and names[1]:
        ratio = self.graph.get_input_node(node, idx=1, copy=True)
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": ratio.name}, outputs=[prefix + "_ratio"],
                                    dtype=_q(dtype))
    else:
        self.paddle_graph.add_layer("paddle.full", inputs={}, outputs=[prefix + "_ratio"], shape=[],
                                    fill_value=0.5, dtype=_q(dtype))
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": training.name}, outputs=[prefix + "_on"], dtype=_q(dtype))
    self.paddle_graph.add_layer("paddle.multiply", inputs={"x": prefix + "_ratio", "y": prefix + "_on"},
                                outputs=[prefix + "_r"])
    self.paddle_graph.add_layer("paddle.rand_like", inputs={"input": val_x.name}, outputs=[prefix + "_u"])
    keep = outputs[1] if len(outputs) > 1 else prefix + "_keep"
    self.paddle_graph.add_layer("paddle.greater_equal", inputs={"x": prefix + "_u", "y": prefix + "_r"},
                                outputs=[keep])
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": keep}, outputs=[prefix + "_keepf"], dtype=_q(dtype))
    self.paddle_graph.add_layer("paddle.multiply", inputs={"x": val_x.name, "y": prefix + "_keepf"},
                                outputs=[prefix + "_kept"])
    self.paddle_graph.add_layer("paddle.scale", inputs={"x": prefix + "_r"}, outputs=[prefix + "_left"], scale=-1.0,
                                bias=1.0)
    self.paddle_graph.add_layer("paddle.divide", inputs={"x": prefix + "_kept", "y": prefix + "_left"},
                                outputs=[outputs[0]])


def dropout() -> None:
    """Dropout: X2Paddle 1.6.0 has no mapper for it; its decoder (``optimize_model_skip_op``,
    decoder/onnx_decoder.py) bypasses Dropout where a node reads its output or it reads one, and a
    standalone one (a graph input to a graph output, as in ONNX's backend cases) is left for the op
    checker: "========== Dropout ============" then "Exception: Model is not supported yet."
    (``test_dropout_default*``, ``test_training_dropout_zero_ratio*``). Adds ``OpSet.Dropout``
    (``_map_dropout``)."""
    _install("Dropout", _map_dropout)


# --------------------------------------------------------------------------- Squeeze / Unsqueeze


_squeeze_before: Callable | None = None
_unsqueeze_before: Callable | None = None


def _tensor_axes(self, node):
    """The ``axes`` input when it is neither an attribute nor a constant, else None."""
    if node.get_attr("axes") is not None or len(node.layer.input) < 2 or not node.layer.input[1]:
        return None
    axes = self.graph.get_input_node(node, idx=1, copy=True)
    return None if _const(axes) is not None else axes


def _map_squeeze(self, node) -> None:
    """Squeeze with a computed ``axes``: ``paddle.squeeze`` with the axes as a tensor (its
    kernel takes negative axes); without axes (attribute or input): ``paddle.squeeze(x)``, every
    size-1 axis, as ONNX defines it; every other form as X2Paddle maps it."""
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    if node.get_attr("axes") is None and (len(node.layer.input) < 2 or not node.layer.input[1]):
        self.paddle_graph.add_layer("paddle.squeeze", inputs={"x": val_x.name}, outputs=[node.name])
        return
    axes = _tensor_axes(self, node)
    if axes is None:
        _squeeze_before(self, node)
        return
    self.paddle_graph.add_layer("paddle.squeeze", inputs={"x": val_x.name, "axis": axes.name}, outputs=[node.name])


def _map_unsqueeze(self, node) -> None:
    """Unsqueeze with a computed ``axes``: the axes made non-negative against the output rank
    and sorted (Paddle inserts them one after another, ONNX names output positions), then
    ``paddle.unsqueeze`` with them as a tensor; every other form as X2Paddle maps it."""
    axes = _tensor_axes(self, node)
    if axes is None:
        _unsqueeze_before(self, node)
        return
    val_x = self.graph.get_input_node(node, idx=0, copy=True)
    prefix = node.name + "_unsqueeze"
    # The output rank at run time (X2Paddle's shape inference often has no rank for x):
    # len(shape(x)) + len(axes).
    self.paddle_graph.add_layer("paddle.cast", inputs={"x": axes.name}, outputs=[prefix + "_axes"], dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.shape", inputs={"input": val_x.name}, outputs=[prefix + "_shape"])
    for what, source in (("_in_rank", prefix + "_shape"), ("_count", prefix + "_axes")):
        self.paddle_graph.add_layer("paddle.shape", inputs={"input": source}, outputs=[prefix + what])
        self.paddle_graph.add_layer("paddle.cast", inputs={"x": prefix + what}, outputs=[prefix + what],
                                    dtype=_q("int64"))
    self.paddle_graph.add_layer("paddle.add", inputs={"x": prefix + "_in_rank", "y": prefix + "_count"},
                                outputs=[prefix + "_rank"])
    # Floor modulo: -k -> rank - k, k >= 0 unchanged (ONNX allows [-rank, rank - 1]).
    self.paddle_graph.add_layer("paddle.remainder", inputs={"x": prefix + "_axes", "y": prefix + "_rank"},
                                outputs=[prefix + "_axes"])
    self.paddle_graph.add_layer("paddle.sort", inputs={"x": prefix + "_axes"}, outputs=[prefix + "_sorted"])
    self.paddle_graph.add_layer("paddle.unsqueeze", inputs={"x": val_x.name, "axis": prefix + "_sorted"},
                                outputs=[node.name])


def squeeze_unsqueeze_tensor_axes() -> None:
    """Squeeze and Unsqueeze with ``axes`` a graph input or computed tensor (opset >= 13).
    X2Paddle's ``OpSet.Squeeze`` (opset_legacy.py) reads the axes as a constant, gets None, and
    writes ``paddle.squeeze(x)``, which drops every size-1 axis: silently wrong ("output 'y':
    shape [3, 5] != [1, 3, 5]", ``test_squeeze_negative_axes``). ``OpSet13.Unsqueeze``
    (opset13.py) passes them as they are, and Paddle inserts axes one after another, so unsorted
    ones fail at run time: "InvalidArgumentError: The insert dimension value should not be
    larger than the dimension size of input tensor" (``test_unsqueeze_unsorted_axes``). Squeeze
    at opset >= 13 without axes reads input 1 anyway: "IndexError: list index out of range".
    Wraps both (``_map_squeeze``, ``_map_unsqueeze``)."""
    global _squeeze_before, _unsqueeze_before
    from x2paddle.op_mapper.onnx2paddle import opset13, opset_legacy

    current = opset_legacy.OpSet.__dict__["Squeeze"]
    if getattr(current, "__wrapped__", None) is not _map_squeeze:
        _squeeze_before = _unwrapped(current)
        _install("Squeeze", _map_squeeze)
    current = opset13.OpSet13.__dict__["Unsqueeze"]
    if getattr(current, "__wrapped__", None) is not _map_unsqueeze:
        _unsqueeze_before = _unwrapped(current)
        _install("Unsqueeze", _map_unsqueeze, opset13.OpSet13)
