"""Write ``<work>/paddle/train_example.py``: a ready-to-run Paddle training script for the
converted model, from a ``TrainConfig`` mapped by ``bridge.training`` (the same ``PaddleCall``s
the train check builds, written out as code, so the script trains what the check proved).

The script needs paddle, numpy and x2paddle (the generated code imports its custom layers),
not bridge: the helpers it uses (``synthetic_target``, torch-exact losses and RMSprop) are
copied in from ``bridge.training_helpers``.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from bridge import training, training_helpers
from bridge.train_check import TrainConfig, torch_call_text

EXAMPLE_FILE = "train_example.py"

TEMPLATE = '''\
"""Train the converted model in Paddle. Written by bridge from the torch training setup

    optimizer  {torch_optimizer}
    schedule   {torch_schedule}
    loss       {torch_loss}
    clip       {torch_clip}

mapped row by row (bridge/training.py); `bridge train-check` runs the same mapping against
torch step by step. Run it from any directory, e.g. in the converted folder:

    python {relpath} --steps {steps} --batch-size {batch_size}

It imports the generated ONNXModel from this folder, loads model.pdparams and trains on
SyntheticDataset (seeded random data shaped like the model's inputs): replace it with yours.
{mode_note}"""
from __future__ import annotations

import argparse
{functools}import os
import sys

import numpy as np
import paddle

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from x2paddle_code import ONNXModel  # noqa: E402  (the model X2Paddle generated)

# Per sample: the model's inputs (name, shape without the batch axis, dtype), in call order.
INPUTS = {inputs!r}
OUTPUT_INDEX = {output_index!r}  # the output the loss reads ({output_name})
TARGET_KIND = {target_kind!r}  # synthetic targets: binary 0/1 floats, class indices, or real values
# Paddle parameters that do not train: no torch parameter behind them (graph constants, buffers).
FROZEN = {frozen!r}
# Parameters without weight decay (torch: {no_decay_patterns!r}).
NO_DECAY = {no_decay!r}
# Embedding tables and the row torch's nn.Embedding(padding_idx=...) never updates.
PADDING_ROWS = {padding!r}


{helpers}


class SyntheticDataset(paddle.io.Dataset):
    """Seeded random samples: inputs shaped like the model's, targets like its output.
    Replace with your data: __getitem__ returns (input, ..., target) as numpy arrays."""

    def __init__(self, size, target_shape, seed=0):
        rng = np.random.default_rng(seed)
        # integer inputs (token ids, indices) in [0, 10), as bridge's validation feeds them
        self.inputs = [rng.integers(0, 10, (size, *shape)).astype(dtype) if dtype.startswith(("int", "uint"))
                       else rng.standard_normal((size, *shape)).astype(dtype) for _, shape, dtype in INPUTS]
        self.targets = synthetic_target(TARGET_KIND, (size, *target_shape), rng)

    def __getitem__(self, index):
        return (*(x[index] for x in self.inputs), self.targets[index])

    def __len__(self):
        return len(self.targets)


def build_model():
    # X2Paddle names its parameters explicitly; a name namespace of its own lets models coexist.
    with paddle.utils.unique_name.guard():
        model = ONNXModel()
    model.set_dict(paddle.load(os.path.join(HERE, "model.pdparams")))
    for name, param in model.named_parameters():
        if name in FROZEN or not paddle.is_floating_point(param):
            param.stop_gradient = True
    return model


def output_of(outputs):
    return outputs[OUTPUT_INDEX] if isinstance(outputs, (list, tuple)) else outputs


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the converted model in Paddle.")
    parser.add_argument("--steps", type=int, default={steps})
    parser.add_argument("--batch-size", type=int, default={batch_size})
    parser.add_argument("--seed", type=int, default={seed})
    parser.add_argument("--save", help="write the trained parameters to this .pdparams file")
    args = parser.parse_args(argv)
    paddle.seed(args.seed)

    model = build_model()
    model.train()
{batchnorm_setup}    parameters = [p for p in model.parameters() if not p.stop_gradient]
{optimizer_setup}
    criterion = {loss}

    with paddle.no_grad():  # one forward decides the synthetic targets' shape
        sample = [paddle.to_tensor(np.zeros((1, *shape), dtype)) for _, shape, dtype in INPUTS]
        target_shape = output_of(model(*sample)).shape[1:]
    dataset = SyntheticDataset(max(64, args.batch_size), target_shape, args.seed)
    loader = paddle.io.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True)
    step = 0
    while step < args.steps:
        for *inputs, target in loader:
            loss = criterion(output_of(model(*inputs)), target)
            loss.backward()
            lr = optimizer.get_lr()
            optimizer.step()
            optimizer.clear_grad()
{schedule_step}
            step += 1
            print(f"step {{step}} loss {{float(loss):.6f}} lr {{lr:.6g}}", flush=True)
            if step == args.steps:
                break
    if args.save:
        paddle.save(model.state_dict(), args.save)


if __name__ == "__main__":
    main()
'''


def _optimizer_setup(opt: training.PaddleCall, sched: training.PaddleCall | None,
                     clip: training.PaddleCall | None, has_no_decay: bool) -> str:
    lines = []
    if has_no_decay:
        lines.append("    no_decay = {p.name for n, p in model.named_parameters() if n in NO_DECAY}")
        if "apply_decay_param_fun" not in opt.kwargs:  # torch's way: a param group with weight_decay 0
            lines.append('    parameters = [{"params": [p for p in parameters if p.name not in no_decay]},\n'
                         '                  {"params": [p for p in parameters if p.name in no_decay], "weight_decay": 0.0}]')
    if sched is not None:
        lines.append("    # In Paddle the schedule IS the optimizer's learning_rate, stepped after optimizer.step().")
        lines.append(f"    scheduler = {sched.code()}")
    names = {"learning_rate": "scheduler" if sched is not None else repr(opt.lr),
             "grad_clip": clip.code() if clip is not None else "None",
             "apply_decay_param_fun": "lambda name: name not in no_decay" if has_no_decay else "None"}
    lines.append(f"    optimizer = {opt.code(names=names)}")
    return "\n".join(lines)


def write_train_example(work: Path, config: TrainConfig | None = None) -> Path:
    """Write ``<work>/paddle/train_example.py`` for ``config`` (default: the seed's setup) and
    return its path. Refuses (BridgeError) a config that does not map to Paddle."""
    from bridge.workdir import PADDLE_DIR, Manifest, write_text_atomic

    config = config or TrainConfig()
    manifest = Manifest.load(work)
    opt = training.paddle_optimizer(config.optimizer, config.optimizer_kwargs)
    sched = training.paddle_schedule(config.schedule, config.schedule_kwargs, opt.lr) if config.schedule else None
    clip = training.clip_grad_norm(config.clip_grad_norm) if config.clip_grad_norm else None
    loss = training.paddle_loss(config.loss, config.loss_kwargs)
    frozen, no_decay, padding = _parameter_lists(work, manifest, config)

    outputs = manifest.data["output_names"]
    output_index = outputs.index(config.output) if config.output else 0
    paddle_inputs = manifest.data["stages"]["convert"]["paddle_inputs"]
    inputs = [(paddle_inputs[s["name"]], list(s["shape"][1:]), s["dtype"]) for s in manifest.data["inputs"]
              if s["name"] in paddle_inputs]  # X2Paddle drops graph inputs its code never reads
    has_batchnorm = "BatchNorm" in (work / PADDLE_DIR / "x2paddle_code.py").read_text()
    helpers = ("synthetic_target",) + opt.helpers + loss.helpers + (("torch_running_variance",) if has_batchnorm else ()) \
        + (("torch_padding_rows",) if padding else ())
    step_args = "float(loss)" if config.schedule in training.METRIC_SCHEDULES else ""
    text = TEMPLATE.format(
        torch_optimizer=torch_call_text(config.optimizer, config.optimizer_kwargs),
        torch_schedule=torch_call_text(config.schedule, config.schedule_kwargs),
        torch_loss=torch_call_text(config.loss, config.loss_kwargs),
        torch_clip=f"clip_grad_norm_(max_norm={config.clip_grad_norm!r})" if clip else "-",
        relpath=f"{PADDLE_DIR}/{EXAMPLE_FILE}",  # not work's own name: convert writes into a temp folder
        steps=config.steps, batch_size=config.batch_size,
        seed=config.seed, mode_note=_mode_note(work),
        functools="import functools\n" if loss.partial else "",
        inputs=inputs, output_index=output_index, output_name=outputs[output_index],
        target_kind=training.target_kind(config.loss),
        frozen=frozen, no_decay_patterns=config.no_weight_decay, no_decay=no_decay,
        helpers=training_helpers.helper_source(tuple(dict.fromkeys(helpers))).rstrip(),
        optimizer_setup=_optimizer_setup(opt, sched, clip, bool(no_decay)),
        loss=loss.code(),
        schedule_step=f"            scheduler.step({step_args})" if sched is not None else "",
        batchnorm_setup=("    torch_running_variance(model)  # BatchNorm running variance updated as torch does\n"
                         if has_batchnorm else "")
        + ("    torch_padding_rows(model, PADDING_ROWS)  # torch's padding_idx rows never train\n" if padding else ""),
        padding=padding,
    )
    path = work / PADDLE_DIR / EXAMPLE_FILE
    write_text_atomic(path, text)
    return path


def _parameter_lists(work: Path, manifest, config: TrainConfig) -> tuple[list[str], list[str], dict[str, int]]:
    """(frozen Paddle parameter names, Paddle parameters without weight decay, embedding
    padding rows), planned as the train check plans them. Without a weights map (an ONNX
    source) only integer parameters are frozen, by the script itself."""
    import paddle

    from bridge.pipeline import _torch_module
    from bridge.runners import load_generated_module
    from bridge.train_check import padding_rows, plan_parameters
    from bridge.weights_map import MAP_FILE, read_map
    from bridge.workdir import PADDLE_DIR

    if not (work / PADDLE_DIR / MAP_FILE).exists():
        return [], [], {}
    wmap = read_map(work / PADDLE_DIR)
    module = _torch_module(work, manifest)
    trainable = None if module is None else {k for k, p in module.named_parameters() if p.requires_grad}
    with paddle.utils.unique_name.guard():
        model = load_generated_module(work / PADDLE_DIR / "x2paddle_code.py").ONNXModel()
    trained, frozen = plan_parameters(model, trainable, wmap)
    no_decay = [name for name, (_, entry) in trained.items()
                if any(fnmatch.fnmatchcase(entry["torch_key"], p) for p in config.no_weight_decay)]
    padding = {} if module is None else padding_rows(module, trained)
    return [f["name"] for f in frozen], no_decay, padding


def _mode_note(work: Path) -> str:
    code = (work / "paddle" / "x2paddle_code.py").read_text()
    if "BatchNorm" in code:
        return ("\nmodel.train() makes its BatchNorm layers use batch statistics (X2Paddle wrote is_test=True, which\n"
                "Paddle's dygraph ignores), and torch_running_variance keeps their running variance as torch does\n"
                "(unbiased); the graph has no Dropout, torch's was dropped at export.\n")
    return "\nThe converted graph has no Dropout or BatchNorm: train and eval mode compute the same.\n"
