"""``bridge.opset_upgrade.upgrade_if_below``: models below X2Paddle's opset 7 (the IR 3 /
opset 6 models of ONNX's pytorch-converted and pytorch-operator test data) go through
``onnx.version_converter``; other models are left alone."""
from __future__ import annotations

import onnx
import onnx.parser
import pytest

from bridge.errors import BridgeError
from bridge.opset_upgrade import default_opset, upgrade_if_below

# Opset 6 Add broadcasts only with broadcast=1 (as torch's old exporter wrote it); opset 7
# broadcasts numpy-style and has no such attribute.
ADD_BROADCAST_6 = """
<ir_version: 3, opset_import: ["" : 6]>
g (float[2,3] a, float[3] b) => (float[2,3] y) { y = Add <broadcast = 1> (a, b) }
"""


def test_opset_6_is_upgraded_to_7_on_a_copy():
    model = onnx.parser.parse_model(ADD_BROADCAST_6)
    before = model.SerializeToString()
    upgraded = upgrade_if_below(model)
    assert default_opset(upgraded) == 7
    assert [a.name for a in upgraded.graph.node[0].attribute] == []
    onnx.checker.check_model(upgraded, full_check=True)
    assert model.SerializeToString() == before  # the input is never modified


@pytest.mark.parametrize("opset", [7, 13, 18])
def test_opset_7_and_above_is_returned_as_is(opset):
    model = onnx.parser.parse_model(
        f'<ir_version: 8, opset_import: ["" : {opset}]>\ng (float[2] x) => (float[2] y) {{ y = Relu (x) }}'
    )
    assert upgrade_if_below(model) is model


def test_a_model_the_converter_cannot_upgrade_names_both_opsets():
    model = onnx.parser.parse_model(
        '<ir_version: 3, opset_import: ["" : 5]>\n'
        "g (float[1,1,2,2] x) => (float[1,1,4,4] y) { y = Upsample <scales = [1.0, 1.0, 2.0, 2.0]> (x) }"
    )
    with pytest.raises(BridgeError, match=r"^opset 5 -> 7: onnx.version_converter failed: .*Upsample"):
        upgrade_if_below(model)
