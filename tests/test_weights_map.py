"""The weights map round trip: a later torch checkpoint loaded through the map gives the same
Paddle model as a fresh conversion with that checkpoint."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bridge import pipeline
from bridge.errors import BridgeError
from bridge.runners import PaddleDygraphRunner, PaddleInferenceRunner
from bridge.weights_map import new_params

MODEL = '''
import torch, torch.nn as nn

class Net(nn.Module):
    """Two Conv+BN blocks: default BatchNorm weights (ones, zeros) repeat across layers,
    so value matching alone is ambiguous and the map needs its probe conversion."""
    def __init__(self):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.b2(self.b1(x)).flatten(1))

def build():
    return Net().eval(), (torch.randn(2, 3, 8, 8),)
'''


def paddle_outputs(work, x):
    manifest = json.loads((work / "manifest.json").read_text())
    conv = manifest["stages"]["convert"]
    runners = [PaddleInferenceRunner(work / "paddle", conv["paddle_inputs"], conv["paddle_outputs"]),
               PaddleDygraphRunner(work / "paddle", conv["paddle_inputs"], conv["paddle_outputs"])]
    return [r.run({"x": x})["output"] for r in runners]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmap")
    (root / "net.py").write_text(MODEL)
    work = root / "a"
    pipeline.convert(f"{root / 'net.py'}:build", work, echo=lambda line: None)
    # a "later checkpoint": every float tensor changed, BatchNorm statistics included
    state = torch.load(work / "torch_state_dict.pt", weights_only=True)
    g = torch.Generator().manual_seed(7)
    later = {k: v + 0.3 * torch.randn(v.shape, generator=g).abs() if v.dtype.is_floating_point else v
             for k, v in state.items()}
    torch.save(later, root / "later.pt")
    return root, work


def test_map_names_every_parameter(converted):
    _, work = converted
    wmap = json.loads((work / "paddle" / "weights_map.json").read_text())
    assert wmap["unmapped"] == []
    torch_keys = {e["torch_key"] for e in wmap["params"].values() if e["torch_key"]}
    state = torch.load(work / "torch_state_dict.pt", weights_only=True)
    assert torch_keys == {k for k, v in state.items() if v.dtype.is_floating_point}
    # the two BatchNorms' identical default weights went to distinct, correct places
    bn_scales = {e["torch_key"] for k, e in wmap["params"].items() if k.endswith(".weight") and "batchnorm" in k}
    assert bn_scales == {"b1.1.weight", "b2.1.weight"}


def test_load_weights_matches_a_fresh_conversion(converted, tmp_path):
    root, work = converted
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    before = paddle_outputs(work, x)
    fresh = tmp_path / "fresh"
    pipeline.convert(f"{root / 'net.py'}:build", fresh, weights=root / "later.pt", echo=lambda line: None)
    expected = paddle_outputs(fresh, x)
    loaded_dir = tmp_path / "loaded"
    subprocess.run(["cp", "-r", str(work), str(loaded_dir)], check=True)
    proc = subprocess.run([sys.executable, "-m", "bridge", "load-weights", str(loaded_dir), str(root / "later.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Paddle parameters set" in proc.stdout
    after = paddle_outputs(loaded_dir, x)
    for got, want, old in zip(after, expected, before):
        assert not np.allclose(old, want, atol=1e-3)  # the checkpoint really changes the model
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    report = pipeline.validate(loaded_dir, batch_sizes=(2,))
    assert report.passed, report.render()


def test_load_weights_refuses_wrong_keys(converted, tmp_path):
    root, work = converted
    state = torch.load(root / "later.pt", weights_only=True)
    state.pop("fc.bias")
    torch.save(state, tmp_path / "bad.pt")
    before = (work / "paddle" / "model.pdparams").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "bridge", "load-weights", str(work), str(tmp_path / "bad.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "missing fc.bias" in proc.stderr and "Traceback" not in proc.stderr
    assert (work / "paddle" / "model.pdparams").read_bytes() == before


def test_unmapped_parameters_are_refused():
    wmap = {"params": {"lstm0.weight_ih_l0": {"torch_key": None}}, "unmapped": ["lstm0.weight_ih_l0"]}
    with pytest.raises(BridgeError, match="come from no single torch tensor.*lstm0.weight_ih_l0"):
        new_params(wmap, {}, {})


CLONED = '''
import copy, torch, torch.nn as nn

class Net(nn.Module):
    """Two deep copies of one Linear+LayerNorm block (as nn.TransformerEncoder builds its
    layers): at initialisation the copies are equal tensor for tensor, and LayerNorm's weight
    and bias are ones and zeros."""
    def __init__(self):
        super().__init__()
        block = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        self.blocks = nn.Sequential(block, copy.deepcopy(block))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.blocks(x))

def build():
    return Net().eval(), (torch.randn(2, 8),)
'''


def test_equal_and_identity_valued_parameters_stay_their_own(tmp_path):
    """The exporter (by-value initializer dedup), onnxsim (duplicate-initializer merge, and
    dropping a multiply by ones / add of zeros) would leave these parameters out or merged. The
    export and simplify stages keep every torch tensor, so the map covers each and the Paddle
    model trains them apart."""
    import importlib.util

    import onnx

    from bridge.stages import simplify
    from bridge.stages.export_strategies import distinct_initializers

    (tmp_path / "net.py").write_text(CLONED)
    work = tmp_path / "w"
    pipeline.convert(f"{tmp_path / 'net.py'}:build", work, echo=lambda line: None)
    wmap = json.loads((work / "paddle" / "weights_map.json").read_text())
    state = torch.load(work / "torch_state_dict.pt", weights_only=True)
    mapped = [e["torch_key"] for e in wmap["params"].values() if e["torch_key"]]
    assert sorted(mapped) == sorted(state) and len(set(mapped)) == len(mapped)
    manifest = json.loads((work / "manifest.json").read_text())
    assert any("torch parameters and buffers kept as they are" in n for n in manifest["stages"]["simplify"]["notes"])

    # torch's exporter alone merges the equal tensors; under distinct_initializers it keeps each
    spec = importlib.util.spec_from_file_location("cloned_net", tmp_path / "net.py")
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    module, args = source.build()
    counts = []
    for keep in (False, True):
        path = tmp_path / f"export_{keep}.onnx"
        with distinct_initializers() if keep else contextlib.nullcontext():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=13)
        counts.append(len(onnx.load(path).graph.initializer))
    assert counts[0] < counts[1] == len(state), counts

    # without the kept names, onnxsim folds the LayerNorms' ones and zeros away and merges the copies
    folded = simplify.run(work / "model.onnx", tmp_path / "folded.onnx")
    names = {t.name for t in onnx.load(tmp_path / "folded.onnx").graph.initializer}
    assert "blocks.0.1.weight" not in names and "blocks.1.0.bias" not in names, names
    assert folded.notes == []
