"""The weights map round trip: a later torch checkpoint loaded through the map gives the same
Paddle model as a fresh conversion with that checkpoint."""
from __future__ import annotations

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
