"""bridge.doctor: the preflight names what X2Paddle 1.6.0 refuses or mishandles, credits the
bridge step that fixes it, and never runs X2Paddle's conversion.

The tiny graphs in BLOCKING are the ones whose failure was seen in a real conversion when each
rule was written (see bridge/doctor_rules.py); the Slice test reruns that proof here.
"""
from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bridge.doctor import diagnose, diagnose_source
from bridge.errors import UnsupportedModel
from bridge.patches import apply_patches, x2paddle_shims
from bridge.spec import load_torch_source, parse_source
from bridge.stages import convert as convert_stage
from bridge.stages.export import export_torch
from tests.helpers import parse_model, save

SEED = "bridge.models.seqnet:seqnet"
SEED_POOLS = ["/pooling/MaxPool", "/pooling_1/MaxPool", "/pooling_2/MaxPool", "/pooling_3/MaxPool"]


def graph(body: str, opset: int = 13, signature: str = "(float[N, 3] x) => (float[N, 3] y)") -> onnx.ModelProto:
    return parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\ng {signature} {{\n{body}\n}}')


def by_node(report, node: str):
    return [f for f in report.findings if f.node == node]


# --- the seed ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_diagnosis():
    """diagnose_source on the seed, with X2Paddle's conversion entry points made to fail.
    torch and paddle are imported first (seconds, more on a busy machine): the time measured
    is the doctor's own, export included."""
    import torch  # noqa: F401

    x2paddle_shims.install()  # imports x2paddle.convert, and paddle with it
    import x2paddle.convert

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the doctor ran X2Paddle's conversion")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(x2paddle.convert, "onnx2paddle", forbidden)
        mp.setattr(convert_stage, "convert_in_process", forbidden)
        mp.setattr(convert_stage, "run", forbidden)
        start = time.perf_counter()
        report = diagnose_source(SEED, [])
        seconds = time.perf_counter() - start
    return report, seconds, calls


@pytest.fixture(scope="module")
def seed_raw(tmp_path_factory) -> onnx.ModelProto:
    """The seed's raw TorchScript export, as the pipeline's export stage writes it."""
    path = tmp_path_factory.mktemp("seed") / "model.onnx"
    module, example = load_torch_source(parse_source(SEED))
    export_torch(module, example, [], path, log_path=path.parent / "export.log")
    return onnx.load(str(path))


def test_seed_raw_export_names_the_four_unbatched_pools(seed_diagnosis):
    report, _, _ = seed_diagnosis
    assert report.export["strategy"] == "torchscript@13"
    for pool in SEED_POOLS:
        found = {f.rule: f for f in by_node(report, pool)}
        assert set(found) == {"pool_rank", "maxpool_dilations"}, pool
        rank, dilations = found["pool_rank"], found["maxpool_dilations"]
        assert rank.op_type == "MaxPool" and rank.opset == 13 and rank.code == "attribute_form"
        assert rank.reason == "rank-3 input with a 2-D kernel (torch's unbatched form)"
        assert rank.fixed_by == "maxpool_unbatched" and not rank.blocking
        assert dilations.fixed_by == "drop_unit_dilations" and not dilations.blocking
    assert not report.blocking
    assert all(f.fixed_by for f in report.findings)


def test_seed_diagnosis_is_fast_and_never_converts(seed_diagnosis):
    _, seconds, calls = seed_diagnosis
    assert calls == []
    assert seconds < 10, f"diagnose_source on the seed took {seconds:.1f}s"


def test_seed_render_and_json(seed_diagnosis):
    report, _, _ = seed_diagnosis
    lines = report.render().splitlines()
    assert len(lines) == len(report.findings) + 1
    for pool in SEED_POOLS:
        assert any(l.startswith(pool) and "MaxPool" in l and l.endswith("-> fixed by maxpool_unbatched") for l in lines)
    assert "none blocks" in lines[-1] and "maxpool_unbatched" in lines[-1]
    data = json.loads(json.dumps(report.to_json()))
    assert data["blocking"] is False and len(data["findings"]) == len(report.findings)
    assert data["findings"][0].keys() >= {"node", "op_type", "opset", "code", "reason", "fixed_by", "blocking"}


def test_patched_seed_has_no_findings(seed_raw):
    before = seed_raw.SerializeToString()
    patched, _ = apply_patches(seed_raw)
    report = diagnose(patched)
    assert report.findings == [], report.render()
    assert not report.blocking
    raw = diagnose(seed_raw, simplify=False)  # patches alone fix the seed too
    assert raw.findings and not raw.blocking
    assert seed_raw.SerializeToString() == before  # diagnose works on copies


# --- what blocks ---------------------------------------------------------------------

@pytest.mark.parametrize("op, opset, body", [
    ("Unique", 12, "y = Unique (x)"),
    ("Trilu", 14, "y = Trilu (x)"),
    ("Bernoulli", 15, "y = Bernoulli (x)"),  # stays unmapped: random, no exact form
])
def test_unmapped_op_blocks(op, opset, body):
    report = diagnose(graph(f"[n0] {body}", opset))
    [finding] = [f for f in report.findings if f.code == "op_not_mapped"]
    assert (finding.node, finding.op_type, finding.opset) == ("n0", op, opset)
    assert finding.blocking and finding.fixed_by is None
    assert report.blocking
    assert ("opset_out_of_range" in {f.code for f in report.findings}) == (opset > 15)
    assert any(l.startswith("n0") and l.endswith("BLOCKS") for l in report.render().splitlines())


def slice_model(computed: str) -> onnx.ModelProto:
    """Slice(x, starts, ends, axes) where ``computed`` (starts or axes) is a graph input."""
    consts = {"s": "int64[1] s = {2}", "e": "int64[1] e = {6}", "a": "int64[1] a = {1}"}
    name = computed[0]
    inits = ", ".join(v for k, v in consts.items() if k != name)
    return parse_model(f"""
        <ir_version: 8, opset_import: ["" : 13]>
        g (float[N, 8] x, int64[1] {name}) => (float[N, 4] y) <{inits}> {{
            [slice0] y = Slice (x, s, e, a)
        }}""")


def test_slice_needs_constant_axes_not_starts(tmp_path):
    """X2Paddle issue #697 is about axes: computed starts/ends are passed to paddle.slice as
    tensors and convert; computed axes fail in the mapper. Both proven by converting."""
    axes = diagnose(slice_model("axes"))
    [finding] = axes.findings
    assert (finding.node, finding.code, finding.rule, finding.blocking) == ("slice0", "needs_constant_input", "slice_axes", True)
    with pytest.raises(UnsupportedModel, match="slice0.*Slice"):
        convert_stage.run(save(slice_model("axes"), tmp_path / "axes.onnx"), tmp_path / "axes", tmp_path / "axes.log")

    starts = diagnose(slice_model("starts"))
    assert starts.findings == [], starts.render()
    convert_stage.run(save(slice_model("starts"), tmp_path / "starts.onnx"), tmp_path / "starts", tmp_path / "starts.log")


def test_uint32_input_is_dtype_unsupported():
    report = diagnose(graph("y = Identity (x)", signature="(uint32[N, 3] x) => (uint32[N, 3] y)"))
    codes = {(f.node, f.op_type, f.code) for f in report.findings if f.blocking}
    assert ("x", "graph input", "dtype_unsupported") in codes
    assert report.blocking


def test_opset_18_is_reported_once_at_model_level():
    report = diagnose(graph("y = Relu (x)", opset=18))
    [finding] = report.findings
    assert (finding.node, finding.code, finding.opset) == ("(model)", "opset_out_of_range", 18)
    assert not finding.blocking and finding.status == "note"  # X2Paddle maps Relu at 18 as at 15
    assert not report.blocking


def _initializers(model: onnx.ModelProto, **arrays) -> onnx.ModelProto:
    """Move graph inputs named in ``arrays`` into initializers with those values."""
    keep = [i for i in model.graph.input if i.name not in arrays]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in arrays.items())
    return model


def raw_tensor_attributes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store tensor attributes as raw_data, as exporters do (onnx.parser writes typed fields)."""
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t), a.t.name))
    return model


RNG = np.random.default_rng(0)
LSTM_W = {"w": RNG.standard_normal((1, 8, 3)).astype(np.float32), "r": RNG.standard_normal((1, 8, 2)).astype(np.float32)}

# (id, model, node, rule, code): each failure was seen converting the graph (doctor_rules.py)
BLOCKING = [
    ("maxpool-indices", graph("[n0] y, i = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)", 13,
                              "(float[N, 3, 8, 8] x) => (float[N, 3, 4, 4] y, int64[N, 3, 4, 4] i)"), "n0", "maxpool_indices", "attribute_form"),
    ("convtranspose-1d", graph("[n0] y = ConvTranspose <kernel_shape = [3]> (x, w)", 13,
                               "(float[N, 1, 8] x) => (float[N, 1, 10] y) <float[1, 1, 3] w = {1, 1, 1}>"), "n0", "convt_nd", "attribute_form"),
    ("resize-computed-scales", graph('[n0] y = Resize <mode = "nearest"> (x, , s)', 13,
                                     "(float[N, 3, 4, 4] x, float[4] s) => (float[N, 3, H, W] y)"), "n0", "resize_scales", "needs_constant_input"),
    ("cumsum-computed-axis", graph("[n0] y = CumSum (x, a)", 13, "(float[N, 3] x, int64 a) => (float[N, 3] y)"),
     "n0", "cumsum_axis", "needs_constant_input"),
    ("opset-6", graph("[n0] y = Relu (x)", 6), "(model)", "opset", "opset_out_of_range"),
    ("isinf-attrs", graph("[n0] y = IsInf <detect_negative = 1, detect_positive = 1> (x)", 13,
                          "(float[N, 3] x) => (bool[N, 3] y)"), "n0", "isinf_attrs", "attribute_form"),
    ("lstm-reverse", _initializers(graph('[n0] y, yh, yc = LSTM <hidden_size = 2, direction = "reverse"> (x, w, r, b, , h, c)', 13,
                                         "(float[5, 1, 3] x, float[1, 8, 3] w, float[1, 8, 2] r, float[1, 16] b, float[1, 1, 2] h, float[1, 1, 2] c)"
                                         " => (float[5, 1, 1, 2] y, float[1, 1, 2] yh, float[1, 1, 2] yc)"),
                                   **LSTM_W, b=np.zeros((1, 16), np.float32), h=np.zeros((1, 1, 2), np.float32),
                                   c=np.zeros((1, 1, 2), np.float32)), "n0", "lstm_direction", "attribute_form"),
    ("constantofshape-typed-value", graph("s = Shape (x)\n[n0] m = ConstantOfShape <value = float[1] {0}> (s)\ny = Max (x, m)"),
     "n0", "cos_raw_data", "attribute_form"),
    ("constantofshape-inf", raw_tensor_attributes(graph("s = Shape (x)\n[n0] m = ConstantOfShape <value = float[1] {-inf}> (s)\ny = Max (x, m)")),
     "n0", "cos_infinity", "constant_value"),
    ("tensor-name-not-python", graph("[n0] h_plus = Relu (x)\ny = Add (h_plus, x)"), "h+1", "tensor_name", "invalid_name"),
    ("uint32-cast", graph("[n0] y = Cast <to = 12> (x)", 13, "(float[N, 3] x) => (uint32[N, 3] y)"), "n0", "cast_to", "dtype_unsupported"),
]


@pytest.mark.parametrize("model, node, rule_id, code", [row[1:] for row in BLOCKING], ids=[row[0] for row in BLOCKING])
def test_blocking_rules(model, node, rule_id, code):
    if node == "h+1":  # the text format cannot spell this name
        for n in model.graph.node:
            n.output[:] = ["h+1" if o == "h_plus" else o for o in n.output]
            n.input[:] = ["h+1" if i == "h_plus" else i for i in n.input]
    report = diagnose(model)
    matches = [f for f in report.findings if f.node == node and f.rule == rule_id]
    assert matches, report.render()
    assert matches[0].code == code and matches[0].blocking and matches[0].fixed_by is None
    assert report.blocking


# --- what bridge fixes, and what X2Paddle takes as is ----------------------------------

def test_fixes_are_credited_to_their_patch():
    gru = _initializers(graph('[gru0] y, yh = GRU <hidden_size = 2> (x, w, r)', 13,
                              "(float[4, N, 3] x, float[1, 6, 3] w, float[1, 6, 2] r) => (float[4, 1, N, 2] y, float[1, N, 2] yh)"),
                        w=RNG.standard_normal((1, 6, 3)).astype(np.float32), r=RNG.standard_normal((1, 6, 2)).astype(np.float32))
    [finding] = diagnose(gru).findings
    assert (finding.node, finding.code, finding.fixed_by, finding.blocking) == ("gru0", "op_not_mapped", "gru_unroll", False)

    lstm = _initializers(graph('[lstm0] y, yh, yc = LSTM <hidden_size = 2> (x, w, r)', 13,
                               "(float[5, N, 3] x, float[1, 8, 3] w, float[1, 8, 2] r) => (float[5, 1, N, 2] y, float[1, N, 2] yh, float[1, N, 2] yc)"),
                         **LSTM_W)
    [finding] = diagnose(lstm).findings
    assert (finding.node, finding.rule, finding.fixed_by) == ("lstm0", "lstm_inputs", "lstm_initial_states")

    pool = graph("[pool0] y = AveragePool <kernel_shape = [2, 2]> (x)", 13, "(float[N, 3, 8, 8] x) => (float[N, 3, 7, 7] y)")
    [finding] = diagnose(pool).findings
    assert (finding.rule, finding.severity, finding.fixed_by) == ("pool_strides", "mismatch", "pool_default_strides")
    three = graph("[n0] y = Sum (x, x2, x3)", 13, "(float[N, 3] x, float[N, 3] x2, float[N, 3] x3) => (float[N, 3] y)")
    [finding] = diagnose(three).findings
    assert (finding.node, finding.rule, finding.fixed_by, finding.blocking) == ("n0", "sum_inputs", "sum_variadic", False)

    shape = graph("[n0] s = Shape <start = 1> (x)\ny = Cast <to = 1> (s)", 15, "(float[N, M, 4] x) => (float[2] y)")
    [finding] = diagnose(shape).findings
    assert (finding.node, finding.rule, finding.fixed_by, finding.blocking) == ("n0", "shape_slice", "shape_start_end", False)

    dilated = graph("[mp0] y = MaxPool <kernel_shape = [3], dilations = [2]> (x)", 13, "(float[N, 3, 9] x) => (float[N, 3, 5] y)")
    found = {f.rule: f for f in diagnose(dilated).findings}
    assert (found["maxpool_dilations"].fixed_by, found["maxpool_dilations"].blocking) == ("maxpool_dilated", False)
    # ReduceMean/Max/Min/Prod with an axes input (opset 18): bridge's reduce_tensor_axes shim maps
    # them, so the doctor's directly_map_inputs no longer finds them (tests/test_x2paddle_mapper_fixes.py)


@pytest.mark.parametrize("model", [
    graph("y = Relu (x)"),
    slice_model("starts"),  # converts: see test_slice_needs_constant_axes_not_starts
    graph("[t0] y = Tile (x, r)", 13, "(float[N, 3] x, int64[2] r) => (float[A, B] y)"),  # verified: converts
    graph("[u0] y = Unsqueeze (x, a)", 13, "(float[N, 3] x, int64[1] a) => (float[N, 1, 3] y)"),  # OpSet13 takes a tensor
    graph("[c0] y = Cast <to = 16> (x)", 13, "(float[N, 3] x) => (bfloat16[N, 3] y)"),  # verified: converts
    # Fixed by bridge's shims in patches/x2paddle_mappers_more.py (tests/test_x2paddle_mappers_more.py):
    graph("[n0] y = Squeeze (x)", 13, "(float[2, 1, 3] x) => (float[2, 3] y)"),
    graph("[n0] y = Gemm <alpha = 2.0, beta = 1.0> (x, w, b)", 13,
          "(float[N, 3] x) => (float[N, 4] y) <float[3, 4] w = {1,1,1,1,1,1,1,1,1,1,1,1}, float[4] b = {0,0,0,0}>"),
    graph("[n0] y0, y1 = Split <axis = 1> (x, s)", 13, "(float[N, 5] x, int64[2] s) => (float[N, A] y0, float[N, B] y1)"),
    graph("[n0] v, i = TopK (x, k)\n[n1] y = Relu (v)", 13, "(float[N, 5] x) => (float[N, 2] y) <int64[1] k = {2}>"),
    graph("[n0] y, i = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)", 13,
          "(float[1, 3, 8, 8] x) => (float[1, 3, 4, 4] y, int64[1, 3, 4, 4] i)"),  # static: maxpool_indices maps it
], ids=["relu", "slice-computed-starts", "tile-computed-repeats", "unsqueeze-axes-input", "cast-bfloat16",
        "squeeze-no-axes", "gemm-alpha-beta", "split-computed", "topk-indices-unused", "maxpool-indices-static"])
def test_what_x2paddle_takes_has_no_findings(model):
    report = diagnose(model)
    assert report.findings == [], report.render()
    assert report.render().startswith("no findings")


@pytest.mark.parametrize("blocking", [False, True], ids=["converts", "blocks"])
def test_doctor_cli_exit_codes(tmp_path, blocking):
    import subprocess
    import sys

    body = "y = Unique (x)" if blocking else "y = Relu (x)"
    path = tmp_path / "m.onnx"
    onnx.save(graph(body, opset=12), str(path))
    proc = subprocess.run([sys.executable, "-m", "bridge", "doctor", str(path)], capture_output=True, text=True)
    assert proc.returncode == (1 if blocking else 0), proc.stdout + proc.stderr
    assert ("BLOCKS" in proc.stdout) == blocking
    as_json = subprocess.run([sys.executable, "-m", "bridge", "doctor", str(path), "--json"],
                             capture_output=True, text=True)
    assert json.loads(as_json.stdout)["blocking"] == blocking
