"""The train check on SeqNet with the seed's training setup, the seed's own bug, the TOML
config, a user dataset, and the generated train_example.py run in a subprocess."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import BridgeError
from bridge.train_check import TRAIN_CHECK_JSON, TRAIN_CHECK_TXT, TrainConfig, run_train_check
from bridge.train_example import write_train_example

EXAMPLE_TOML = Path(__file__).resolve().parent.parent / "examples" / "seed_train.toml"
SEED_TOML = """\
steps = 20
batch_size = 8
seed = 0

[optimizer]
name = "AdamW"
lr = 1e-4
weight_decay = 5e-4

[schedule]
name = "CosineAnnealingLR"
T_max = 20

[loss]
name = "BCEWithLogitsLoss"
"""


@pytest.fixture(scope="module")
def work(seqnet_work, tmp_path_factory) -> Path:
    """SeqNet converted once (the session's pipeline.convert), copied so this module's files
    (train_check.json, train_example.py) stay out of the other tests' folder.

    torch runs on one thread here: on the shared 2-core test machine one SeqNet forward+backward
    at batch 8 took 11-16 s with torch's default 2 threads and 1.5-3 s with one (Paddle in
    the same process, other jobs on the machine); the numbers compared do not depend on it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    copy = tmp_path_factory.mktemp("train") / "seqnet"
    shutil.copytree(seqnet_work, copy)
    yield copy
    torch.set_num_threads(threads)


def test_config_from_toml(tmp_path):
    # TrainConfig() is the seed's setup, and so is the example file
    assert TrainConfig.from_toml(EXAMPLE_TOML) == TrainConfig()
    path = tmp_path / "train.toml"
    path.write_text(SEED_TOML)
    assert TrainConfig.from_toml(path) == TrainConfig()
    no_schedule = SEED_TOML.replace('[schedule]\nname = "CosineAnnealingLR"\nT_max = 20\n', "")
    path.write_text("clip_grad_norm = 1.0\n" + no_schedule + "[tolerances]\nparam = 1e-2\n")
    config = TrainConfig.from_toml(path)
    assert config.schedule is None and config.clip_grad_norm == 1.0 and config.tolerances.param == 1e-2
    path.write_text("stepz = 3\n" + SEED_TOML)
    with pytest.raises(BridgeError, match="unknown key.*stepz"):
        TrainConfig.from_toml(path)
    path.write_text(SEED_TOML.split("[loss]")[0])
    with pytest.raises(BridgeError, match=r"missing the \[loss\] table"):
        TrainConfig.from_toml(path)


def test_seqnet_seed_setup_matches_torch(work):
    """The blog's training (AdamW 1e-4 / 5e-4, cosine over 20 steps, BCEWithLogits, batch 8)."""
    report = run_train_check(work, TrainConfig())
    worst = report.worst()
    print(f"\nSeqNet seed setup, {len(report.steps)} steps in {report.seconds:.1f}s: "
          f"loss rel diff {worst['loss_rel_diff']:.2e}, lr rel diff {worst['lr_rel_diff']:.2e}, "
          f"step-1 gradient rel diff {worst['grad_rel_diff']:.2e}, "
          f"parameters after 20 steps rel diff {worst['param_rel_diff']:.2e}")
    print(report.render())
    assert len(report.steps) == 20 and len(report.gradients) == 12 and len(report.parameters) == 12
    assert worst["loss_rel_diff"] <= 1e-4
    assert worst["lr_rel_diff"] <= 1e-12
    assert worst["grad_rel_diff"] <= 1e-4
    assert worst["param_rel_diff"] <= 1e-3
    assert report.passed, report.summary()
    # the schedule really moved the learning rate, in both
    lrs = [s.lr_paddle for s in report.steps]
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-4 * (1 + math.cos(math.pi * 19 / 20)) / 2)
    # and training changed the weights well beyond the differences between frameworks
    assert {s["name"] for s in report.skipped} == {"x2paddle__v_41"}  # the int64 reshape constant
    saved = json.loads((work / TRAIN_CHECK_JSON).read_text())
    assert saved["passed"] is True and saved["worst"] == pytest.approx(worst)
    assert "PASSED" in (work / TRAIN_CHECK_TXT).read_text()


def test_seed_bug_constant_paddle_lr_fails_on_the_learning_rate(work):
    """The blog's Paddle port built CosineAnnealingDecay but gave the optimizer a float lr."""
    report = run_train_check(work, TrainConfig(steps=3, paddle_constant_lr=True))
    print(f"\n{report.summary()}")
    assert not report.passed
    assert (report.failure.step, report.failure.what) == (2, "learning rate")
    assert report.failure.paddle == pytest.approx(1e-4)
    assert report.failure.torch == pytest.approx(1e-4 * (1 + math.cos(math.pi / 20)) / 2)
    assert "step 2: learning rate diverged" in report.summary()
    assert json.loads((work / TRAIN_CHECK_JSON).read_text())["passed"] is False


def test_a_parameter_left_out_of_the_paddle_optimizer_is_named(work, monkeypatch):
    """Same loss, lr and gradients at step 1, but conv0.weight (torch conv1.weight) never updates."""
    from bridge import train_check

    build = train_check.training.build_paddle_optimizer

    def without_conv0(call, parameters, *args):
        return build(call, [p for p in parameters if p.name != "conv1d_0.w_0"], *args)

    monkeypatch.setattr(train_check.training, "build_paddle_optimizer", without_conv0)
    report = run_train_check(work, TrainConfig(steps=1))
    print(f"\n{report.summary()}")
    assert not report.passed
    assert (report.failure.step, report.failure.what) == (1, "parameter")
    assert report.failure.name == "conv0.weight (torch conv1.weight)"


def test_user_dataset_and_clipping(work, tmp_path):
    """dataset = "file.py:Name" feeds both frameworks the same batches; SGD with momentum and
    gradient clipping on the way."""
    data = tmp_path / "ecg_data.py"
    data.write_text(textwrap.dedent("""\
        import numpy as np

        class ECG:
            def __init__(self):
                rng = np.random.default_rng(5)
                self.x = rng.standard_normal((4, 12, 5000)).astype("float32")
                self.y = rng.integers(0, 2, (4, 1)).astype("float32")

            def __len__(self):
                return len(self.x)

            def __getitem__(self, i):
                return self.x[i], self.y[i]
        """))
    config = TrainConfig(optimizer="SGD", optimizer_kwargs={"lr": 1e-3, "momentum": 0.9}, schedule="StepLR",
                         schedule_kwargs={"step_size": 1, "gamma": 0.5}, steps=2, batch_size=2,
                         clip_grad_norm=0.1, dataset=f"{data}:ECG")
    report = run_train_check(work, config)
    print(f"\n{report.summary()}")
    assert report.passed, report.summary()
    assert [s.lr_paddle for s in report.steps] == pytest.approx([1e-3, 5e-4])


def test_train_example_runs(work, tmp_path):
    script = write_train_example(work, TrainConfig())
    assert script == work / "paddle" / "train_example.py"
    code = script.read_text()
    assert "learning_rate=scheduler" in code and "scheduler.step()" in code and "optimizer.clear_grad()" in code
    env = {**os.environ, "GLOG_minloglevel": "2"}
    proc = subprocess.run([sys.executable, str(script), "--steps", "3", "--batch-size", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [line.split() for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert [int(s[1]) for s in steps] == [1, 2, 3]
    assert all(math.isfinite(float(s[3])) for s in steps)
    # the schedule drives the optimizer: torch's cosine values, step by step
    expected = [1e-4 * (1 + math.cos(math.pi * k / 20)) / 2 for k in range(3)]
    assert [float(s[5]) for s in steps] == pytest.approx(expected, rel=1e-5)


def test_train_example_for_other_rows(work, tmp_path):
    """CrossEntropy (a helper copied into the script), RMSprop (torch's update), warmup and no-decay
    render to code that compiles."""
    config = TrainConfig(optimizer="RMSprop", optimizer_kwargs={"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4},
                         schedule="SequentialLR", schedule_kwargs={"milestones": [2], "schedulers": [
                             {"name": "LinearLR", "start_factor": 0.1, "total_iters": 2},
                             {"name": "CosineAnnealingLR", "T_max": 10}]},
                         loss="CrossEntropyLoss", loss_kwargs={"label_smoothing": 0.1}, clip_grad_norm=1.0,
                         no_weight_decay=["*.bias"])
    code = write_train_example(work, config).read_text()
    compile(code, "train_example.py", "exec")
    assert "def torch_rmsprop(" in code and "def cross_entropy(" in code and "def nll_loss(" in code
    assert "paddle.optimizer.lr.LinearWarmup(learning_rate=paddle.optimizer.lr.CosineAnnealingDecay(" in code
    assert "'x2paddle_fc1_bias'" in code and "'conv0.bias'" in code  # NO_DECAY, from the weights map
    assert "paddle.nn.ClipGradByGlobalNorm(clip_norm=1.0)" in code


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def zoo_work(tmp_path_factory):
    """Zoo models converted on demand, once per module: ``zoo_work("resnet_cnn")``."""
    from bridge import pipeline

    done = {}

    def convert(name: str) -> Path:
        if name not in done:
            work = tmp_path_factory.mktemp("zoo") / name
            pipeline.convert(f"{EXAMPLES / name}.py:build", work, echo=lambda line: None)
            done[name] = work
        return done[name]

    return convert


def _within_issue_limits(report) -> dict:
    worst = report.worst()
    assert worst["loss_rel_diff"] <= 1e-4 and worst["grad_rel_diff"] <= 1e-4 and worst["param_rel_diff"] <= 1e-3
    assert worst["lr_rel_diff"] <= 1e-12
    assert report.passed, report.summary()
    return worst


def test_resnet_cnn_batchnorm_trains_in_both(zoo_work):
    """BatchNorm in train mode on both sides: batch statistics in the forward, running mean and
    variance updated (torch's unbiased variance kept in Paddle) and compared after every step.
    SGD with Nesterov momentum, MultiStepLR, CrossEntropy, 10 steps at batch 8."""
    work = zoo_work("resnet_cnn")
    config = TrainConfig(optimizer="SGD", optimizer_kwargs={"lr": 0.01, "momentum": 0.9, "nesterov": True},
                         schedule="MultiStepLR", schedule_kwargs={"milestones": [3, 6], "gamma": 0.5},
                         loss="CrossEntropyLoss", steps=10, batch_size=8, seed=1)
    report = run_train_check(work, config)
    worst = _within_issue_limits(report)
    print(f"\nresnet_cnn, BatchNorm training: {report.summary()}")
    stats = {d.torch_key: d for d in report.parameters if d.torch_key.endswith(("running_mean", "running_var"))}
    assert len(stats) == 20 and max(d.rel_diff for d in stats.values()) <= 1e-3
    assert any("10 BatchNorm layer(s) trained in both" in n for n in report.notes)
    assert not any("inference form in both" in n for n in report.notes)
    assert worst["param_rel_diff"] > 0
    assert report.steps[-1].lr_torch == pytest.approx(0.01 * 0.25)


def test_resnet_cnn_batchnorm_eval_is_frozen_and_named(zoo_work):
    """batchnorm = "eval": the running statistics normalise (a different loss from batch
    statistics on the same batch), are not compared, and the layers are named."""
    work = zoo_work("resnet_cnn")
    report = run_train_check(work, TrainConfig(loss="CrossEntropyLoss", steps=2, batchnorm="eval"))
    assert report.passed, report.summary()
    trained = run_train_check(work, TrainConfig(loss="CrossEntropyLoss", steps=1))
    assert abs(trained.steps[0].loss_torch - report.steps[0].loss_torch) > 1e-3
    assert not [d for d in report.parameters if "running" in d.torch_key]
    assert any("ran in inference form in both (batchnorm = eval)" in n and "stem.1 (BatchNorm2d)" in n
               for n in report.notes)


def test_transformer_encoder_adamw_warmup_label_smoothing(zoo_work):
    """nn.TransformerEncoder (LayerNorm at its initial ones and zeros, the two layers deep copies
    of one): every parameter has its own Paddle counterpart, trained as torch trains it."""
    work = zoo_work("transformer_encoder")
    config = TrainConfig(optimizer="AdamW", optimizer_kwargs={"lr": 1e-3, "weight_decay": 1e-2},
                         schedule="LinearLR", schedule_kwargs={"start_factor": 0.1, "total_iters": 5},
                         loss="CrossEntropyLoss", loss_kwargs={"label_smoothing": 0.1},
                         no_weight_decay=["*.bias", "*norm*"], steps=20, batch_size=8)
    report = run_train_check(work, config)
    _within_issue_limits(report)
    print(f"\ntransformer_encoder: {report.summary()}")
    keys = {d.torch_key for d in report.parameters}
    assert {"encoder.layers.0.norm1.weight", "encoder.layers.1.norm2.bias",
            "encoder.layers.1.linear1.weight", "encoder.layers.1.self_attn.in_proj_bias"} <= keys
    assert len(keys) == 29  # every trainable torch parameter
    # the key part of in_proj_bias gets no gradient (softmax ignores a per-query constant)
    assert any("float32 noise" in n and "in_proj_bias" in n for n in report.notes)
    assert any("Dropout" in n and "inference form" in n for n in report.notes)


def test_train_example_trains_batchnorm_as_torch(zoo_work, tmp_path):
    """The generated script for a model with BatchNorm embeds torch_running_variance and runs."""
    work = zoo_work("resnet_cnn")
    code = write_train_example(work, TrainConfig(loss="CrossEntropyLoss")).read_text()
    assert "def torch_running_variance(" in code and "    torch_running_variance(model)" in code
    env = {**os.environ, "GLOG_minloglevel": "2"}
    proc = subprocess.run([sys.executable, str(work / "paddle" / "train_example.py"), "--steps", "2", "--batch-size", "4",
                           "--save", str(tmp_path / "trained.pdparams")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import paddle

    trained = paddle.load(str(tmp_path / "trained.pdparams"))
    before = paddle.load(str(work / "paddle" / "model.pdparams"))
    # the running statistics moved: the BatchNorms trained
    assert not np.array_equal(np.asarray(trained["batchnorm0._variance"]), np.asarray(before["batchnorm0._variance"]))


def test_lstm_text_trains_through_paddles_rnn_op(zoo_work):
    """Paddle's fused rnn op has no backward in eval mode ("Tensor holds no memory"): its LSTM
    layers train in train mode, which X2Paddle's dropout-free layers compute as eval."""
    report = run_train_check(zoo_work("lstm_text"), TrainConfig(
        optimizer="RMSprop", optimizer_kwargs={"lr": 1e-3}, schedule="StepLR", schedule_kwargs={"step_size": 2},
        loss="CrossEntropyLoss", steps=4))
    _within_issue_limits(report)
    assert {"lstm.weight_ih_l0", "lstm.weight_hh_l1"} <= {d.torch_key for d in report.gradients}


def _convert_source(tmp_path, name: str, source: str) -> Path:
    """Write ``source`` to ``name.py`` and convert its ``build`` into ``tmp_path/w``."""
    from bridge import pipeline

    (tmp_path / f"{name}.py").write_text(source)
    work = tmp_path / "w"
    pipeline.convert(f"{tmp_path / name}.py:build", work, echo=lambda line: None)
    return work


EMBEDDING_MODEL = '''
import torch, torch.nn as nn

class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 6, padding_idx=0)
        self.fc = nn.Linear(6, 3)

    def forward(self, ids):
        return self.fc(self.embedding(ids).mean(dim=1))

def build():
    torch.manual_seed(0)
    return Tagger().eval(), (torch.randint(0, 10, (2, 5)),)
'''


def test_embedding_padding_row_does_not_train(tmp_path, monkeypatch):
    """torch's nn.Embedding(padding_idx=0) never updates row 0; X2Paddle's table has no
    padding_idx. The check keeps the row out (a gradient hook), and without the hook it fails
    on the table's gradient. The ids feed [0, 10), so row 0 is looked up."""
    from bridge import train_check

    work = _convert_source(tmp_path, "tagger", EMBEDDING_MODEL)
    config = TrainConfig(optimizer="SGD", optimizer_kwargs={"lr": 0.1}, schedule=None, schedule_kwargs={},
                         loss="CrossEntropyLoss", steps=3)
    report = run_train_check(work, config)
    assert report.passed, report.summary()
    assert any("padding rows kept out of training" in n and ": 0}" in n for n in report.notes)
    monkeypatch.setattr(train_check.training_helpers, "torch_padding_rows", lambda model, rows: [])
    report = run_train_check(work, config)
    assert not report.passed and report.failure.what == "gradient of"
    assert "torch embedding.weight" in report.failure.name


CONV_BN_MODEL = '''
import torch, torch.nn as nn

class ConvBN(nn.Module):
    """A conv with a bias right before a BatchNorm: in train mode the BatchNorm takes the mean
    out, so the loss does not depend on the conv bias (its gradient is rounding noise)."""
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        return self.body(x)

def build():
    torch.manual_seed(0)
    return ConvBN().eval(), (torch.randn(2, 3, 12, 12),)
'''


def test_noise_gradients_are_zeroed_in_both_under_adam(tmp_path, monkeypatch):
    """Adam turns the conv bias's noise gradient into updates of about +-lr that differ between
    frameworks, and the BatchNorm's running mean follows the bias. With the float64 reference
    the bias is found to be noise, zeroed in both, and the check passes; without it, it fails."""
    from bridge import train_check

    work = _convert_source(tmp_path, "convbn", CONV_BN_MODEL)
    config = TrainConfig(optimizer="Adam", optimizer_kwargs={"lr": 0.01}, schedule=None, schedule_kwargs={},
                         loss="CrossEntropyLoss", steps=5)
    report = run_train_check(work, config)
    assert report.passed, report.summary()
    noise = [s for s in report.skipped if s["reason"].startswith(train_check.NOISE_REASON)]
    assert [s["name"] for s in noise] == ["conv0.bias"], report.skipped
    monkeypatch.setattr(train_check, "_noise_masks", lambda *args: {})
    report = run_train_check(work, config)
    assert not report.passed, report.summary()
    print(f"\nwithout the noise masks: {report.summary()}")
