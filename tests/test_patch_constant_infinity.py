"""constant_infinity: X2Paddle writes a one-element ±inf Constant as the string '-inf', which
Paddle 3 refuses; the patch stores the value as an initializer (rank 0 kept with a Squeeze)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bridge.errors import BridgeError
from bridge.patches import PATCHES_BY_NAME, apply_patches
from tests.helpers import convert_and_run_paddle, parse_model, run_ort

RNG = np.random.default_rng(0)


def masked_model(low: np.ndarray, high: np.ndarray) -> onnx.ModelProto:
    """``masked_fill`` twice, as the exporter writes it: Where(cond, Constant(-inf), x)."""
    model = parse_model("""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 6] x) => (float[N, 6] y) {
            zero = Constant <value = float {0.0}> ()
            one = Constant <value = float[1] {1.0}> ()
            low = Constant <value = float {0.0}> ()
            high = Constant <value = float[1] {0.0}> ()
            neg = Less (x, zero)
            big = Greater (x, one)
            masked = Where (neg, low, x)
            y = Where (big, high, masked)
        }""")
    for node in model.graph.node:
        if node.output[0] in ("low", "high"):
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(
                (low if node.output[0] == "low" else high).astype(np.float32))))
    return model


def only():
    return (PATCHES_BY_NAME["constant_infinity"],)


def test_constant_infinity(tmp_path):
    model = masked_model(np.array(-np.inf), np.array([np.inf]))
    x = RNG.standard_normal((3, 6)).astype(np.float32) * 2
    with pytest.raises(BridgeError, match=r"X2Paddle failed: TypeError"):
        convert_and_run_paddle(model, {"x": x}, tmp_path / "unpatched")
    log = (tmp_path / "unpatched" / "convert.log").read_text()
    assert "fill_value='-inf'" in log and "must be double, but got str" in log

    patched, report = apply_patches(model, only())
    assert [f.patch for f in report.fired] == ["constant_infinity"] * 2
    # rank 1 kept as an initializer of the same name; rank 0 as Squeeze(initializer[1])
    initializers = {i.name: list(i.dims) for i in patched.graph.initializer}
    assert initializers["high"] == [1] and initializers["low_1d"] == [1]
    assert [n.op_type for n in patched.graph.node if n.output[0] == "low"] == ["Squeeze"]
    onnx.checker.check_model(patched, full_check=True)
    before = run_ort(model, {"x": x}, tmp_path)["y"]
    after = run_ort(patched, {"x": x}, tmp_path)["y"]
    assert np.isinf(before).any() and np.isneginf(before).any()
    np.testing.assert_array_equal(after, before)

    got = convert_and_run_paddle(patched, {"x": x}, tmp_path / "patched")["y"]
    np.testing.assert_array_equal(got, after)


def test_constant_infinity_declines_finite_and_large_constants():
    model = masked_model(np.array(-3.0), np.array([np.inf, 1.0]))
    _, report = apply_patches(model, only())
    assert report.fired == []
    reasons = [d.reason for d in report.declined]
    assert len(reasons) == 4  # zero, one, low: finite; high: two elements
    assert sum("finite" in r for r in reasons) == 3 and sum("2 elements" in r for r in reasons) == 1
