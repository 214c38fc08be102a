"""The two linear-time shims (patches/x2paddle_linear_time.py): each does what the original
does (same fused graph; same converted model), without the work that grows with the square of
the model's size. Timings are the bench's business (make bench, scaling section); these tests
count the work instead."""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bridge.patches import x2paddle_linear_time, x2paddle_shims

# A model whose ONNX export holds every pattern X2Paddle's ONNX optimizer fuses: the
# decomposed LayerNorm (onnx_layernorm_fuse_pass), the erf Gelu (onnx_gelu_fuse_pass) and
# a Div by a constant (replace_div_to_scale_pass); repeated so that there are many matches.


class _Block(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear = torch.nn.Linear(width, width)
        self.norm = torch.nn.LayerNorm(width)

    def forward(self, x):
        return self.norm(torch.nn.functional.gelu(self.linear(x)) / 3.0) + x


def _export(path: Path, blocks: int = 6, width: int = 8) -> Path:
    model = torch.nn.Sequential(*[_Block(width) for _ in range(blocks)]).eval()
    torch.manual_seed(0)
    torch.onnx.export(model, (torch.randn(2, width),), str(path), opset_version=13, dynamo=False,
                      input_names=["x"], output_names=["y"])
    return path


def _original_pattern_matcher():
    """X2Paddle's own PatternMatcher, from a private copy of its module (the shimmed class in
    ``x2paddle.optimizer.pattern_matcher`` may already be patched in this process)."""
    from x2paddle.optimizer import pattern_matcher

    spec = importlib.util.spec_from_file_location("_x2paddle_pattern_matcher_original", pattern_matcher.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PatternMatcher


class _CountingLayers(dict):
    """``graph.layers`` that counts how many layer ids ``keys()`` hands out to be copied."""
    copied = 0

    def keys(self):
        _CountingLayers.copied += len(self)
        return super().keys()


def _paddle_graph(onnx_path: Path):
    x2paddle_shims.install()
    from x2paddle.decoder.onnx_decoder import ONNXDecoder
    from x2paddle.op_mapper.onnx2paddle.onnx_op_mapper import ONNXOpMapper

    mapper = ONNXOpMapper(ONNXDecoder(str(onnx_path), False))
    mapper.paddle_graph.build()
    return mapper.paddle_graph


def _optimized(graph, methods: dict, monkeypatch) -> tuple[list, int, int]:
    """Run X2Paddle's ONNX GraphOptimizer on ``graph`` with ``methods`` on PatternMatcher;
    returns (the fused layers as comparable tuples, layer ids copied, matches found)."""
    from x2paddle.optimizer import pattern_matcher
    from x2paddle.optimizer.optimizer import GraphOptimizer

    for name, fn in methods.items():
        monkeypatch.setattr(pattern_matcher.PatternMatcher, name, fn)
    found = []
    real_operate = pattern_matcher.PatternMatcher.operate

    def operate(self, graph, match_kind="topo"):
        matches = real_operate(self, graph, match_kind)
        found.append(len(matches))
        return matches

    monkeypatch.setattr(pattern_matcher.PatternMatcher, "operate", operate)
    graph.layers = _CountingLayers(graph.layers)
    _CountingLayers.copied = 0
    GraphOptimizer(source_frame="onnx").optimize(graph)
    layers = [(lid, l.kernel, json.dumps(l.inputs, sort_keys=True), l.outputs,
               json.dumps({k: str(v) for k, v in l.attrs.items()}, sort_keys=True))
              for lid, l in graph.layers.items()]
    return layers, _CountingLayers.copied, sum(found)


def test_pattern_matcher_fuses_the_same_without_copying_layer_ids(tmp_path, monkeypatch):
    graph = _paddle_graph(_export(tmp_path / "blocks.onnx"))
    original = _original_pattern_matcher()
    names = ("detect_patterns_by_edge", "detect_patterns_by_op", "remove_overlapped_match")
    n = len(graph.layers)

    before, copied_before, matches_before = _optimized(
        copy.deepcopy(graph), {k: getattr(original, k) for k in names}, monkeypatch)
    after, copied_after, matches_after = _optimized(
        copy.deepcopy(graph), {k: getattr(x2paddle_linear_time, k) for k in names}, monkeypatch)

    assert matches_before == matches_after >= 6  # at least every block's LayerNorm fused
    assert after == before  # the same fused graph, layer by layer
    assert len(after) < n
    # X2Paddle copies every layer id once per layer per pass: O(n^2); the shim copies none.
    assert copied_before >= n * n // 2
    assert copied_after == 0


NAME_STRUCT_CHILD = """
    import json, sys
    import numpy as np, paddle, paddle.static
    from bridge.patches import x2paddle_shims as shims
    if sys.argv[3] == "without":
        shims.SHIMS = tuple(s for s in shims.SHIMS if s.name != "name_struct_linear")
    shims.install()
    from paddle.nn.layer import layers
    calls = {"from_name_struct": 0}
    real = paddle.static.default_main_program
    def counting():
        if sys._getframe(1).f_code.co_name == "name_struct":
            calls["from_name_struct"] += 1
        return real()
    paddle.static.default_main_program = counting
    from bridge.stages.convert import convert_in_process
    from pathlib import Path
    convert_in_process(Path(sys.argv[1]), Path(sys.argv[2]))
    print("RESULT " + json.dumps(calls))
"""


def _convert_in_child(onnx_path: Path, out: Path, mode: str) -> dict:
    env = dict(os.environ, GLOG_minloglevel="2", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(NAME_STRUCT_CHILD), str(onnx_path), str(out), mode],
                          capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_name_struct_reads_no_op_list_and_converts_the_same(tmp_path):
    from bridge.runners import OrtRunner, PaddleInferenceRunner
    from bridge.stages.convert import x2paddle_name

    onnx_path = _export(tmp_path / "blocks.onnx", blocks=4)
    calls = {mode: _convert_in_child(onnx_path, tmp_path / mode, mode) for mode in ("without", "with")}
    # Paddle's name_struct fetches the program (and its whole op list) twice per sub-layer call.
    assert calls["without"]["from_name_struct"] >= 2 * 4
    assert calls["with"]["from_name_struct"] == 0

    x = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
    expected = OrtRunner(onnx_path).run({"x": x})["y"]
    for mode in ("without", "with"):
        got = PaddleInferenceRunner(tmp_path / mode, {"x": x2paddle_name("x")}, [x2paddle_name("y")]).run({"x": x})[x2paddle_name("y")]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=mode)


def test_linear_time_shims_are_registered_and_idempotent():
    by_name = {s.name: s for s in x2paddle_shims.SHIMS}
    for name in ("pattern_matcher_linear", "name_struct_linear"):
        by_name[name].apply()
        by_name[name].apply()
    from paddle.nn.layer import layers
    from x2paddle.optimizer import pattern_matcher

    assert pattern_matcher.PatternMatcher.detect_patterns_by_edge is x2paddle_linear_time.detect_patterns_by_edge
    assert pattern_matcher.PatternMatcher.remove_overlapped_match is x2paddle_linear_time.remove_overlapped_match
    assert layers.name_struct.__bridge_shim__
