"""Export strategies, input/output naming and flattening, and --weights."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.runners import OrtRunner
from bridge.spec import InputSpec
from bridge.stages.export import export_torch, flatten_outputs
from bridge.stages.export_strategies import DynamoStrategy, ExportCall, _math_sdpa, try_strategies
from bridge.weights import load_weights


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h, _ = self.mha(x, x, x, need_weights=False)
        return self.head(h)


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.proj = nn.Linear(8, 3)

    def forward(self, tokens, scale):
        h = self.emb(tokens) * scale.unsqueeze(-1)
        return {"logits": self.proj(h), "pooled": (h.mean(1), h.amax(1))}


def ort_out(path, feeds):
    return OrtRunner(path).run(feeds)


@pytest.mark.parametrize(
    "mask, causal, gqa",
    [(None, False, False), ("bool", False, False), ("float", False, False), (None, True, False), (None, False, True)],
)
def test_math_sdpa_equals_torch(mask, causal, gqa):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 5, 8, generator=g)
    kv_heads = 2 if gqa else 4
    k = torch.randn(2, kv_heads, 5, 8, generator=g)
    v = torch.randn(2, kv_heads, 5, 8, generator=g)
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(5, 5, generator=g) > 0.3
        attn_mask.fill_diagonal_(True)
    elif mask == "float":
        attn_mask = torch.randn(5, 5, generator=g)
    kwargs = dict(attn_mask=attn_mask, is_causal=causal, enable_gqa=gqa)
    torch.testing.assert_close(_math_sdpa(q, k, v, **kwargs), F.scaled_dot_product_attention(q, k, v, **kwargs))


def test_attention_falls_back_to_plain_attention(tmp_path):
    torch.manual_seed(0)
    model = Attention().eval()
    x = torch.randn(2, 6, 16)
    result = export_torch(model, (x,), [], tmp_path / "m.onnx")
    assert [a["strategy"] for a in result.attempts] == ["torchscript@13", "torchscript+plain-attention@13"]
    assert "scaled_dot_product_attention" in result.attempts[0]["error"]
    assert result.exporter == "torchscript+plain-attention@13" and result.opset == 13
    got = ort_out(tmp_path / "m.onnx", {"x": x.numpy()})["output"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_dynamo_strategy_converts_down_to_x2paddle_opset(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.randn(2, 3, 8, 8)
    call = ExportCall(model, (x,), ["x"], ["output"], {"x": {0: "batch"}, "output": {0: "batch"}})
    [result] = try_strategies(call, tmp_path / "d.onnx", (DynamoStrategy(18, 15),))
    assert result.success and result.opset == 15, result
    proto = onnx.load(str(tmp_path / "d.onnx"))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [15]
    got = ort_out(tmp_path / "d.onnx", {"x": x.numpy()})["output"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_every_strategy_failing_names_each_error(tmp_path):
    class Fft(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()

    with pytest.raises(BridgeError) as info:
        export_torch(Fft(), (torch.randn(2, 16),), [], tmp_path / "f.onnx", source_text="fft.py:Fft")
    message = str(info.value)
    assert "\n" not in message and message.startswith("fft.py:Fft: every export strategy failed")
    for name in ("torchscript@13", "torchscript+plain-attention@13", "torchscript@15", "dynamo@18->15"):
        assert f"{name}: " in message
    assert not (tmp_path / "f.onnx").exists()


def test_multi_input_multi_output_names_and_order(tmp_path):
    torch.manual_seed(0)
    model = TwoInTwoOut().eval()
    tokens = torch.randint(0, 20, (2, 5))
    scale = torch.rand(2, 5)
    names = [n for n, _ in flatten_outputs(model(tokens, scale))]
    assert names == ["logits", "pooled_0", "pooled_1"]
    result = export_torch(model, (tokens, scale), [], tmp_path / "m.onnx")
    assert [s.name for s in result.inputs] == ["tokens", "scale"]
    assert result.inputs[0].dtype == "int64"
    assert result.output_names == names
    got = ort_out(tmp_path / "m.onnx", {"tokens": tokens.numpy(), "scale": scale.numpy()})
    for name, tensor in flatten_outputs(model(tokens, scale)):
        np.testing.assert_allclose(got[name], tensor.detach().numpy(), atol=1e-5)


def test_multi_input_multi_output_converts_and_validates(tmp_path):
    source = tmp_path / "two.py"
    source.write_text(
        "import torch\nfrom tests.test_export import TwoInTwoOut\n"
        "def build():\n    return TwoInTwoOut(), (torch.randint(0, 20, (2, 5)), torch.rand(2, 5))\n"
    )
    out = tmp_path / "out"
    pipeline.convert(f"{source}:build", out, echo=lambda line: None)
    report = pipeline.validate(out, batch_sizes=(1, 3))
    assert report.passed, report.render()
    assert {d.output for d in report.diffs} == {"logits", "pooled_0", "pooled_1"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["convert"]["paddle_inputs"] == {"tokens": "x2paddle_tokens", "scale": "x2paddle_scale"}


def test_input_specs_override_example_and_dynamic_axis(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    result = export_torch(model, None, [InputSpec("x", (3, 7, 4))], tmp_path / "m.onnx", dynamic_axes={"x": [1]})
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "x_dim1", 4]
    assert result.inputs == [InputSpec("x", (3, 7, 4))]
    with pytest.raises(BridgeError, match="--dynamic y"):
        export_torch(model, None, [InputSpec("x", (3, 7, 4))], tmp_path / "n.onnx", dynamic_axes={"y": [1]})


# --- weights --------------------------------------------------------------------------

def small():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6, 1)).eval()


def test_load_weights_pt_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    trained = small()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"epoch": 3, "state_dict": trained.state_dict()}, tmp_path / "ckpt.pth")
    x = torch.randn(2, 2, 8)
    for name in ("w.pt", "w.safetensors", "ckpt.pth"):
        model = small()
        assert not torch.equal(model(x), trained(x))
        load_weights(model, tmp_path / name)
        torch.testing.assert_close(model(x), trained(x))


def test_load_weights_reports_mismatches_in_one_line(tmp_path):
    state = small().state_dict()
    state.pop("0.bias")
    state["extra.weight"] = torch.zeros(1)
    state["3.weight"] = torch.zeros(1, 5)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(BridgeError) as info:
        load_weights(small(), tmp_path / "bad.pt")
    message = str(info.value)
    assert "\n" not in message
    assert "missing 0.bias" in message and "unexpected extra.weight" in message
    assert "wrong shape 3.weight [1, 5] vs model [1, 18]" in message


def test_load_weights_refuses_arbitrary_pickles(tmp_path):
    torch.save({"w": Exploit(str(tmp_path / "pwned"))}, tmp_path / "evil.pt")
    with pytest.raises(BridgeError, match="refused by torch.load\\(weights_only=True\\)"):
        load_weights(small(), tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(BridgeError, match="not a state_dict"):
        load_weights(small(), tmp_path / "list.pt")


class Exploit:
    """Unpickling this creates a folder: proof that code would have run."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_torchscript_at_15_exports_sdpa_natively(tmp_path):
    from bridge.stages.export_strategies import TorchScriptStrategy

    torch.manual_seed(0)
    model = Attention().eval()
    x = torch.randn(2, 6, 16)
    call = ExportCall(model, (x,), ["x"], ["output"], {"x": {0: "batch"}, "output": {0: "batch"}})
    results = try_strategies(call, tmp_path / "a.onnx", (TorchScriptStrategy(13), TorchScriptStrategy(15)))
    assert [(r.strategy, r.success) for r in results] == [("torchscript@13", False), ("torchscript@15", True)]
    got = ort_out(tmp_path / "a.onnx", {"x": x.numpy()})["output"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)
