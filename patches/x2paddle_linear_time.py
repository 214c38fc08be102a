"""Two quadratic steps in X2Paddle 1.6.0's conversion, made linear (registered as shims in
``patches/x2paddle_shims.py``: SHIMS ``pattern_matcher_linear`` and ``name_struct_linear``).

Measured on bridge's synthetic scaling models (``bridge/bench_models.py``), 1,000 → 4,000
nodes (4×): X2Paddle's graph optimizer took 17× longer and Paddle's ``name_struct`` 47×
longer; together they were a third of the conversion time at 4,000 nodes.

1. ``x2paddle/optimizer/pattern_matcher.py``: ``PatternMatcher.detect_patterns_by_edge`` and
   ``detect_patterns_by_op`` call an inner ``get_subgraph(pattern, graph, i)`` for every
   layer ``i``, and it starts with ``list(graph.layers.keys())[start_index]``: a copy of every
   layer id per layer, O(n²) per fusion pass. ``remove_overlapped_match`` tests membership in
   a list that grows with the matches. The replacements below are the same algorithms (kept
   line for line, comments say where they differ) with the layer id passed in and a set
   beside the list.
2. ``paddle/base/framework.py`` ``name_struct`` (entered by every sub-layer call,
   ``paddle/nn/layer/layers.py``): in PIR static mode it reads
   ``default_main_program().global_block().ops`` (a fresh list of every op in the program)
   on entry and on exit, to stamp a ``struct_name`` attribute on the ops the layer created:
   O(ops) per sub-layer call, O(n²) over the conversion of X2Paddle's generated forward, whose
   sub-layers (Conv2D, Linear, ...) are called once each while ``paddle.jit.save`` traces it.
   ``struct_name`` is only read by Paddle's auto-parallel code (``paddle/distributed``), never
   by inference, so during a conversion the replacement keeps the name stack and stamps
   nothing. It is installed in the converting process only (X2Paddle runs in a child process
   of its own, ``bridge/stages/convert.py``).
"""
from __future__ import annotations

import contextlib


def detect_patterns_by_edge(self, graph) -> None:
    """``PatternMatcher.detect_patterns_by_edge`` with the layer id passed in, not looked up
    by position in a fresh copy of the layer ids."""

    def get_subgraph(pattern, graph, layer_id):  # X2Paddle: (pattern, graph, start_index)
        pattern_id2layers = pattern.get_global_layers()
        pattern_ids = list(pattern_id2layers.keys())
        pattern_layer_id = pattern_ids[0]
        subgraph_id2layers = dict()
        graph_layers = graph.layers

        def update(layer_id, pattern_layer_id):
            layer = graph_layers[layer_id]
            pattern_layer = pattern_id2layers[pattern_layer_id]
            if layer.kernel != pattern_layer.kernel:
                return False
            subgraph_id2layers[layer_id] = layer

            if pattern.edges_in.get(pattern_layer_id, 0) != 0:
                if len(pattern.edges_in[pattern_layer_id]) != len(graph.edges_in[layer_id]):
                    return False
                for i, pattern_layer_id_in in enumerate(pattern.edges_in[pattern_layer_id]):
                    if pattern_layer_id_in == -1:
                        continue
                    if pattern_layer_id_in in pattern_ids:
                        new_layer_id_in = graph.edges_in[layer_id][i]
                        if new_layer_id_in in subgraph_id2layers:
                            continue
                        update(new_layer_id_in, pattern_layer_id_in)
            if pattern.edges_out.get(pattern_layer_id, 0) != 0:
                if layer_id not in graph.edges_out:
                    return False
                if len(pattern.edges_out[pattern_layer_id]) != len(graph.edges_out[layer_id]):
                    return False
                for i, pattern_layer_id_out in enumerate(pattern.edges_out[pattern_layer_id]):
                    if pattern_layer_id_out in pattern_ids:
                        new_layer_id_out = graph.edges_out[layer_id][i]
                        if new_layer_id_out in subgraph_id2layers:
                            continue
                        update(new_layer_id_out, pattern_layer_id_out)

        while len(subgraph_id2layers) != len(pattern_id2layers):
            out = update(layer_id, pattern_layer_id)
            if out == False:  # noqa: E712 - X2Paddle's test: update() returns None or False
                return False
            else:
                if len(subgraph_id2layers) == len(pattern_id2layers):
                    return subgraph_id2layers
                else:
                    return False

    for layer_id, layer in graph.layers.items():
        match_info = get_subgraph(self.pattern, graph, layer_id)
        if match_info:
            self.matches.append(match_info)
        for j, block in enumerate(layer.blocks):
            if len(block.layers) > 0:
                self.detect_patterns_by_edge(layer.blocks[j])


def detect_patterns_by_op(self, graph) -> None:
    """``PatternMatcher.detect_patterns_by_op`` with the layer id passed in (see above)."""

    def get_subgraph(pattern, graph, layer_id):
        pattern_id2layers = pattern.get_global_layers()
        pattern_layer_id = list(pattern_id2layers.keys())[0]
        subgraph_id2layers = dict()
        graph_layers = graph.layers

        def update(layer_id, pattern_layer_id):
            layer = graph_layers[layer_id]
            pattern_layer = pattern_id2layers[pattern_layer_id]
            if layer.kernel != pattern_layer.kernel:
                return False
            subgraph_id2layers[layer_id] = layer

        while len(subgraph_id2layers) != len(pattern_id2layers):
            out = update(layer_id, pattern_layer_id)
            if out == False:  # noqa: E712
                return False
            else:
                if len(subgraph_id2layers) == len(pattern_id2layers):
                    return subgraph_id2layers
                else:
                    return False

    for layer_id, layer in graph.layers.items():
        match_info = get_subgraph(self.pattern, graph, layer_id)
        if match_info:
            self.matches.append(match_info)
        for j, block in enumerate(layer.blocks):
            if len(block.layers) > 0:
                self.detect_patterns_by_op(layer.blocks[j])


def remove_overlapped_match(self) -> None:
    """``PatternMatcher.remove_overlapped_match`` with a set beside the list of seen ids.
    X2Paddle pops from ``self.matches`` while enumerating it (so the match after a popped one
    is never checked); kept as is: the fused graph must not change."""
    seen: set = set()
    for i, match in enumerate(self.matches):
        is_overlapped = False
        for id_ in match.keys():
            if id_ in seen:
                self.matches.pop(i)
                is_overlapped = True
                break
        if not is_overlapped:
            seen.update(match.keys())


def pattern_matcher_linear() -> None:
    from x2paddle.optimizer import pattern_matcher

    matcher = pattern_matcher.PatternMatcher
    matcher.detect_patterns_by_edge = detect_patterns_by_edge
    matcher.detect_patterns_by_op = detect_patterns_by_op
    matcher.remove_overlapped_match = remove_overlapped_match


def name_struct_linear() -> None:
    import paddle.base.framework as framework
    from paddle.nn.layer import layers

    if getattr(layers.name_struct, "__bridge_shim__", False):
        return

    @contextlib.contextmanager
    def name_struct(prefix=None):
        # Paddle's name_struct without the struct_name stamping (module docstring, 2.).
        if framework.in_dygraph_mode():
            yield
            return
        assert prefix, "namescope prefix can not be empty."
        framework._name_struct = framework._name_struct.child(prefix)
        try:
            yield
        finally:
            framework._name_struct = framework._name_struct.parent()

    name_struct.__bridge_shim__ = True
    layers.name_struct = name_struct
