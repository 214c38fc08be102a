"""The simplify stage keeps the unsimplified model, and says why, when onnxsim would fold a
graph output into a constant: X2Paddle 1.6.0 writes no inference model for an output that no
graph input reaches (ONNX's test_shape passed through X2Paddle alone and failed through bridge
until this)."""
from __future__ import annotations

import numpy as np

from bridge.stages.simplify import simplify_model
from tests.helpers import convert_and_run_paddle, parse_model

FOLDS = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3, 4] x) => (int64[2] s, float[3, 4] y) {
        s = Shape (x)
        y = Relu (x)
    }"""
STAYS = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[3, 4] x) => (float[3, 4] y) {
        two = Constant <value = float[1] {2.0}> ()
        three = Add (two, two)
        y = Mul (x, three)
    }"""


def test_an_output_folded_to_a_constant_keeps_the_model_unsimplified(tmp_path):
    model = parse_model(FOLDS)
    kept, error = simplify_model(model)
    assert kept is model
    assert error == ("onnxsim folded output 's' into a constant, which X2Paddle cannot convert "
                     "(no graph input reaches it)")
    got = convert_and_run_paddle(model, {"x": np.ones((3, 4), np.float32)}, tmp_path)
    assert got["s"].tolist() == [3, 4]


def test_folding_that_leaves_every_output_reached_is_kept():
    simplified, error = simplify_model(parse_model(STAYS))
    assert error is None
    assert "Add" not in [n.op_type for n in simplified.graph.node]  # folded
