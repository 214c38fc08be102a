"""Train check: the same K training steps in torch and in the converted Paddle model, compared
step by step (loss, learning rate, step-1 gradients, parameters), naming the first step and
the thing that diverged.

torch runs the source module with the exported weights; Paddle runs the generated
``ONNXModel`` with ``model.pdparams``. Parameters are matched through ``weights_map.json``
(transform applied). BatchNorm layers train in both by default (batch statistics, running
statistics compared after every step; ``batchnorm = "eval"`` freezes them); Dropout runs in
inference form in both, as the exporter dropped it from X2Paddle's graph; the report names
every layer that ran in inference form. Relative differences are ``max |paddle - torch| /
max |torch|`` per tensor (per scalar for loss and learning rate).
"""
from __future__ import annotations

import fnmatch
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge import training, training_helpers
from bridge.errors import BridgeError
from bridge.train_report import Failure, StepRecord, TensorDiff, TrainCheckReport, rel_diff

TRAIN_CHECK_JSON = "train_check.json"
TRAIN_CHECK_TXT = "train_check.txt"
TRAIN_CHECK_LOG = "train_check.log"


@dataclass
class Tolerances:
    loss: float = 1e-4   # per step, relative
    lr: float = 1e-6     # per step, relative
    grad: float = 1e-4   # step 1, per parameter
    param: float = 1e-3  # after every step, per parameter


@dataclass
class TrainConfig:
    """One training setup, named as in torch. ``TrainConfig()`` is the seed blog's: AdamW(lr
    1e-4, weight_decay 5e-4), CosineAnnealingLR over the 20 steps, BCEWithLogitsLoss, batch 8."""

    optimizer: str = "AdamW"
    optimizer_kwargs: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-4, "weight_decay": 5e-4})
    schedule: str | None = "CosineAnnealingLR"  # None: a constant learning rate
    schedule_kwargs: dict[str, Any] = field(default_factory=lambda: {"T_max": 20})
    loss: str = "BCEWithLogitsLoss"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    steps: int = 20
    batch_size: int = 8
    seed: int = 0
    clip_grad_norm: float | None = None  # torch.nn.utils.clip_grad_norm_(max_norm), 2-norm
    no_weight_decay: list[str] = field(default_factory=list)  # torch parameter names, fnmatch ("*.bias")
    dataset: str | None = None  # "module:Name" / "file.py:Name"; default: seeded synthetic batches
    output: str | None = None  # the output the loss reads; default: the first
    # "train": BatchNorm layers train in both (batch statistics; running statistics updated,
    # torch's unbiased running variance kept in Paddle, and compared after every step);
    # "eval": they run in inference form, frozen. Dropout always runs in inference form: the
    # exporter drops it, so X2Paddle's graph has none.
    batchnorm: str = "train"
    tolerances: Tolerances = field(default_factory=Tolerances)
    # Fault injection, the seed's Paddle port: the optimizer gets the base lr as a float and the
    # schedule is built and stepped beside it. The check must then fail on the learning rate.
    paddle_constant_lr: bool = False

    SECTIONS = ("optimizer", "schedule", "loss")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "train config") -> "TrainConfig":
        """TOML layout: top-level scalars, then ``[optimizer]``, ``[schedule]`` (optional: no
        section, constant lr), ``[loss]`` and ``[tolerances]`` tables; a table's ``name`` is
        the torch class, its other keys the torch arguments."""
        data = dict(data)
        values: dict[str, Any] = {}
        for section in cls.SECTIONS:
            table = data.pop(section, None)
            if table is None and section != "schedule":
                raise BridgeError(f"{where}: missing the [{section}] table (name = the torch class)")
            if table is not None and (not isinstance(table, dict) or "name" not in table):
                raise BridgeError(f"{where}: [{section}] needs name = the torch class name")
            values[section] = None if table is None else table["name"]
            values[f"{section}_kwargs"] = {} if table is None else {k: v for k, v in table.items() if k != "name"}
        tolerances = data.pop("tolerances", {})
        unknown_tol = sorted(set(tolerances) - set(asdict(Tolerances())))
        if unknown_tol:
            raise BridgeError(f"{where}: unknown [tolerances] key(s) {', '.join(unknown_tol)}")
        scalars = {"steps", "batch_size", "seed", "clip_grad_norm", "no_weight_decay", "dataset", "output",
                   "paddle_constant_lr", "batchnorm"}
        unknown = sorted(set(data) - scalars)
        if unknown:
            raise BridgeError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(scalars))}, "
                              f"tables {', '.join(cls.SECTIONS)}, tolerances)")
        config = cls(**values, **data, tolerances=Tolerances(**tolerances))
        if config.steps < 1 or config.batch_size < 1:
            raise BridgeError(f"{where}: steps and batch_size must be >= 1")
        if config.batchnorm not in ("train", "eval"):
            raise BridgeError(f"{where}: batchnorm = {config.batchnorm!r}: expected \"train\" or \"eval\"")
        return config

    @classmethod
    def from_toml(cls, path: Path) -> "TrainConfig":
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BridgeError(f"{path}: cannot read the train config: {exc}") from exc
        return cls.from_dict(data, str(path))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def torch_call_text(name: str | None, kwargs: dict[str, Any]) -> str:
    return "-" if name is None else f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def train_mode_layers(modules: list[tuple[str, Any]]) -> list[str]:
    """``name (Class)`` of the layers whose forward depends on train/eval mode, by type."""
    kinds = ("Dropout", "BatchNorm", "InstanceNorm")
    found = []
    for name, layer in modules:
        cls = type(layer).__name__
        rnn_dropout = cls in ("LSTM", "GRU", "RNN", "MultiheadAttention") and getattr(layer, "dropout", 0)
        stats = "InstanceNorm" not in cls or getattr(layer, "track_running_stats", False)
        if name and ((any(k in cls for k in kinds) and stats) or rnn_dropout):
            found.append(f"{name} ({cls})")
    return found


def set_train_modes(module, model, wmap: dict[str, Any], batchnorm: str) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """Put both models in eval mode, then (``batchnorm == "train"``) each BatchNorm pair in
    train mode: a Paddle BatchNorm layer and the torch one its running mean came from (through
    the weights map), with the same momentum. Returns ``({paddle layer: (its layer, torch
    module)}, notes)``; what stays in inference form is named in the notes."""
    module.eval()
    model.eval()
    torch_modules = dict(module.named_modules())
    pairs, notes, unpaired = {}, [], []
    if batchnorm == "train":
        for name, layer in model.named_sublayers():
            if "BatchNorm" not in type(layer).__name__ or not hasattr(layer, "_mean"):
                continue
            key = (wmap["params"].get(f"{name}._mean") or {}).get("torch_key") or ""
            torch_name = key.removesuffix(".running_mean")
            source = torch_modules.get(torch_name) if key.endswith(".running_mean") else None
            momentum = getattr(source, "momentum", None)
            if source is None or momentum is None or abs((1 - momentum) - layer._momentum) > 1e-6:
                why = ("no torch BatchNorm behind its running mean" if source is None else
                       "torch momentum=None, a cumulative average Paddle has no form of" if momentum is None else
                       f"momentum {1 - layer._momentum:g} against torch's {momentum:g}")
                unpaired.append(f"{name} ({why})")
                continue
            pairs[name] = (layer, torch_name)
            layer.train()
            source.train()
    for name, layer in model.named_sublayers():
        # Paddle's fused rnn op keeps what its backward needs only in train mode ("Tensor holds
        # no memory" at backward otherwise); X2Paddle writes them with dropout 0, so train mode
        # computes what eval mode does
        if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN") and not getattr(layer, "dropout", 0):
            layer.train()
    trained_torch = {torch_name for _, torch_name in pairs.values()}
    frozen = [n for n in train_mode_layers(list(module.named_modules())) if n.split(" ")[0] not in trained_torch]
    frozen_bn = [n for n in frozen if "Norm" in n]
    if pairs:
        notes.append(f"{len(pairs)} BatchNorm layer(s) trained in both (batch statistics; running mean and variance "
                     "compared after every step, Paddle's running variance kept unbiased as torch's)")
    if unpaired:
        notes.append(f"Paddle BatchNorm layers left in inference form: {', '.join(unpaired)}")
    if frozen_bn:
        notes.append(f"ran in inference form in both ({'batchnorm = eval' if batchnorm == 'eval' else 'unpaired'}): "
                     f"torch {frozen_bn}")
    if len(frozen) > len(frozen_bn):
        notes.append("ran in inference form in both (X2Paddle's graph has no Dropout: the exporter drops it): "
                     f"torch {[n for n in frozen if n not in frozen_bn]}")
    if not frozen:
        notes.append("no layer ran in inference form" + ("" if pairs else ": none behaves differently in train mode"))
    return pairs, notes


def padding_rows(module, trained: dict[str, tuple[Any, dict]]) -> dict[str, int]:
    """``{Paddle parameter: row}`` for the tables of torch ``nn.Embedding``s with a
    ``padding_idx`` (torch never updates that row), mapped as they are (identity)."""
    import torch

    modules = dict(module.named_modules())
    rows = {}
    for name, (_, entry) in trained.items():
        owner, _, leaf = entry["torch_key"].rpartition(".")
        layer = modules.get(owner)
        if (leaf == "weight" and isinstance(layer, torch.nn.Embedding) and layer.padding_idx is not None
                and entry["transform"] == "identity"):
            rows[name] = layer.padding_idx % layer.num_embeddings
    return rows


def run_train_check(work: Path, config: TrainConfig) -> TrainCheckReport:
    """Run ``config`` for ``config.steps`` steps in torch and in the converted Paddle model in
    ``work``; write ``train_check.json`` and ``train_check.txt`` there."""
    from bridge.workdir import LOGS_DIR, Manifest, capture_fds, work_lock, write_json_atomic, write_text_atomic

    from bridge.integrity import verify_work

    manifest = Manifest.load(work)
    if "convert" not in manifest.data.get("stages", {}):
        raise BridgeError(f"{work}: not converted yet (run `bridge convert` first)")
    # Before the lock, the log and the generated code's import: a changed folder is refused
    # with nothing in it written or imported (as validate and load-weights do).
    verify_work(work, manifest)
    with work_lock(work):
        start = time.perf_counter()
        with capture_fds(work / LOGS_DIR / TRAIN_CHECK_LOG):
            report = _run(work, config)
        report.seconds = round(time.perf_counter() - start, 2)
        write_json_atomic(work / TRAIN_CHECK_JSON, report.to_json())
        write_text_atomic(work / TRAIN_CHECK_TXT, report.render() + "\n")
    return report


def load_models(work: Path):
    """(torch module with the exported weights, Paddle ONNXModel with model.pdparams, manifest)."""
    from bridge.pipeline import _torch_module
    from bridge.runners import PaddleDygraphRunner
    from bridge.workdir import PADDLE_DIR, Manifest

    manifest = Manifest.load(work)
    if "convert" not in manifest.data.get("stages", {}):
        raise BridgeError(f"{work}: not converted yet (run `bridge convert` first)")
    module = _torch_module(work, manifest)
    if module is None:
        raise BridgeError(f"{work}: the train check needs a torch source (this one was converted from ONNX)")
    conv = manifest.data["stages"]["convert"]
    inputs = {s["name"]: conv["paddle_inputs"][s["name"]] for s in manifest.data["inputs"]
              if s["name"] in conv["paddle_inputs"]}  # X2Paddle drops graph inputs its code never reads
    paddle_model = PaddleDygraphRunner(work / PADDLE_DIR, inputs, conv["paddle_outputs"]).model
    return module, paddle_model, manifest


def plan_parameters(paddle_model, torch_trainable: set[str] | None,
                    wmap: dict[str, Any]) -> tuple[dict[str, tuple[Any, dict]], list[dict[str, str]]]:
    """Which Paddle parameters train (mapped to a trainable torch parameter; ``torch_trainable``
    None: any mapped one) and which are frozen (integer constants, constants of the graph, torch
    buffers): ``({name: (param, map entry)}, [{name, reason}])``. Frozen ones get
    ``stop_gradient = True``."""
    trained, frozen = {}, []
    for name, param in paddle_model.named_parameters():
        entry = wmap["params"].get(name) or {}
        key = entry.get("torch_key")
        if "float" not in str(param.dtype):
            reason = f"{str(param.dtype).replace('paddle.', '')} constant"
        elif key is None:
            reason = "a constant of the graph (from no torch tensor)"
        elif torch_trainable is not None and key not in torch_trainable:
            reason = f"torch buffer or frozen parameter {key}"
        else:
            trained[name] = (param, entry)
            continue
        param.stop_gradient = True
        frozen.append({"name": name, "reason": f"frozen: {reason}"})
    return trained, frozen


def _run(work: Path, config: TrainConfig) -> TrainCheckReport:
    import paddle
    import torch

    from bridge import weights_map
    from bridge.spec import InputSpec
    from bridge.stages.export import flatten_outputs
    from bridge.workdir import PADDLE_DIR

    module, model, manifest = load_models(work)
    wmap = weights_map.read_map(work / PADDLE_DIR)
    notes = []
    modes = {"torch": train_mode_layers(list(module.named_modules())),
             "paddle": train_mode_layers(list(model.named_sublayers()))}
    batchnorms, mode_notes = set_train_modes(module, model, wmap, config.batchnorm)
    notes += mode_notes
    if batchnorms:
        training_helpers.torch_running_variance(model)

    torch_params = dict(module.named_parameters())
    trained, skipped = plan_parameters(model, {k for k, p in torch_params.items() if p.requires_grad}, wmap)
    padding = padding_rows(module, trained)
    if padding:
        training_helpers.torch_padding_rows(model, padding)
        notes.append(f"embedding padding rows kept out of training as torch's padding_idx keeps them: {padding}")
    covered = {entry["torch_key"] for _, entry in trained.values()}
    # running statistics of the BatchNorm layers that train: compared after every step
    buffers = {f"{layer}.{attr}": (getattr(bn, attr), wmap["params"][f"{layer}.{attr}"])
               for layer, (bn, _) in batchnorms.items() for attr in ("_mean", "_variance")}
    torch_buffers = dict(module.named_buffers())
    missing = sorted(k for k, p in torch_params.items() if p.requires_grad and k not in covered)
    output_names = manifest.data["output_names"]
    output_index = output_names.index(config.output) if config.output else 0

    # torch side
    groups_decay = [p for k, p in torch_params.items() if p.requires_grad and not _no_decay(k, config)]
    groups_none = [p for k, p in torch_params.items() if p.requires_grad and _no_decay(k, config)]
    groups = [{"params": groups_decay}] + ([{"params": groups_none, "weight_decay": 0.0}] if groups_none else [])
    t_opt = training.torch_optimizer(config.optimizer, config.optimizer_kwargs, groups)
    t_sched = training.torch_schedule(config.schedule, config.schedule_kwargs, t_opt) if config.schedule else None
    t_loss_fn = training.torch_loss(config.loss, config.loss_kwargs)
    clipped = [p for p in torch_params.values() if p.requires_grad]

    # Paddle side, from the same mapping train_example.py writes out
    opt_call = training.paddle_optimizer(config.optimizer, config.optimizer_kwargs)
    sched_call = training.paddle_schedule(config.schedule, config.schedule_kwargs, opt_call.lr) if config.schedule else None
    clip_call = training.clip_grad_norm(config.clip_grad_norm) if config.clip_grad_norm else None
    loss_call = training.paddle_loss(config.loss, config.loss_kwargs)
    p_sched = sched_call.build() if sched_call else None
    if config.paddle_constant_lr:
        notes.append("paddle_constant_lr: the Paddle optimizer got a constant learning rate (the seed's port)")
    p_opt = training.build_paddle_optimizer(
        opt_call, [p for p, _ in trained.values()],
        opt_call.lr if (p_sched is None or config.paddle_constant_lr) else p_sched,
        clip_call.build() if clip_call else None,
        [p for p, e in trained.values() if _no_decay(e["torch_key"], config)])
    p_loss_fn = loss_call.build()
    mapping = {
        "optimizer": f"{torch_call_text(config.optimizer, config.optimizer_kwargs)} -> {opt_call.code()}",
        "schedule": f"{torch_call_text(config.schedule, config.schedule_kwargs)} -> {sched_call.code() if sched_call else '-'}",
        "loss": f"{torch_call_text(config.loss, config.loss_kwargs)} -> {loss_call.code()}",
        "clip": f"clip_grad_norm_(max_norm={config.clip_grad_norm}) -> {clip_call.code()}" if clip_call else "-",
    }

    specs = [InputSpec.from_json(s) for s in manifest.data["inputs"]]
    batches = _batches(config, specs)
    records, gradients, failure, noise_masks = [], [], None, {}
    kind = training.target_kind(config.loss)
    torch.manual_seed(config.seed)
    paddle.seed(config.seed)
    if missing:
        failure = Failure(0, "parameter", missing[0], None, None, float("inf"), 0.0)
        notes.append(f"torch parameters with no Paddle counterpart in weights_map.json (they would not train): {missing}")

    reference64 = _float64_copy(module, notes)
    for step in range(1, config.steps + 1):
        inputs, target = next(batches)
        t_out = flatten_outputs(module(*[torch.from_numpy(inputs[s.name]) for s in specs]))[output_index][1]
        if target is None:
            target = training_helpers.synthetic_target(kind, tuple(t_out.shape), np.random.default_rng([config.seed, step]))
        target = np.ascontiguousarray(target, dtype="int64" if kind == "class" else str(t_out.dtype).replace("torch.", ""))
        t_loss = t_loss_fn(t_out, torch.from_numpy(target))
        t_opt.zero_grad()
        t_loss.backward()
        lr_torch = float(t_opt.param_groups[0]["lr"])

        p_outs = model(*[paddle.to_tensor(inputs[s.name]) for s in specs])
        p_out = p_outs[output_index] if isinstance(p_outs, (list, tuple)) else p_outs
        p_loss = p_loss_fn(p_out, paddle.to_tensor(target))
        p_loss.backward()
        lr_paddle = float(p_opt.get_lr())
        if step == 1:
            t_grads = {k: None if p.grad is None else p.grad.detach().numpy().copy() for k, p in torch_params.items()}
            grads64 = _float64_grads(reference64, specs, inputs, target, output_index, t_loss_fn, notes)
            reference64 = None  # needed at step 1 only: not held (at twice the model's size) for the rest
            noise_masks = _noise_masks(trained, t_grads, grads64)
            gradients, skipped_grads = _compare_gradients(trained, t_grads, noise_masks)
            skipped += skipped_grads
            if noise_masks:
                notes.append(f"{sum(int(m.sum()) for m, _ in noise_masks.values())} elements of {len(noise_masks)} "
                             f"parameter(s) have a step-1 gradient that is float32 noise in both frameworks (torch's "
                             "float64 gradient there is below torch's own float32 rounding error on that tensor, "
                             "and Paddle's too: the loss does not depend on them, e.g. a conv bias before a "
                             "training BatchNorm, the key bias under softmax). Adam-like optimizers would turn that "
                             "noise into updates of about +-lr that differ by construction, so those gradient "
                             "elements are zeroed in both at every step and left out of the comparisons: "
                             f"{', '.join(sorted(noise_masks))}")
        _zero_noise(noise_masks, trained, torch_params)
        if config.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(clipped, config.clip_grad_norm)
        t_opt.step()
        p_opt.step()
        p_opt.clear_grad()
        for sched, loss in ((t_sched, t_loss), (p_sched, p_loss)):
            if sched is not None:
                sched.step(*([float(loss.item())] if config.schedule in training.METRIC_SCHEDULES else []))

        params = _compare_parameters(trained, torch_params, skipped, noise_masks)
        params += _compare_parameters(buffers, torch_buffers, [], {})
        worst = max(params, key=lambda d: d.rel_diff, default=None)
        loss_t, loss_p = float(t_loss.item()), float(p_loss.item())
        records.append(StepRecord(
            step, loss_t, loss_p, rel_diff(loss_p, loss_t)[0], lr_torch, lr_paddle, rel_diff(lr_paddle, lr_torch)[0],
            worst.name if worst else None, worst.rel_diff if worst else 0.0))
        failure = failure or _first_failure(records[-1], gradients if step == 1 else [], params, config.tolerances)
    return TrainCheckReport(
        passed=failure is None, failure=failure, steps=records, gradients=gradients, parameters=params,
        skipped=skipped, train_mode_layers=modes, mapping=mapping, notes=notes, config=config.to_json())


def _no_decay(torch_key: str, config: TrainConfig) -> bool:
    return any(fnmatch.fnmatchcase(torch_key, pattern) for pattern in config.no_weight_decay)


# Paddle's gradient counts as noise where it is within this many times torch's own float32
# rounding error on that tensor (the two frameworks round differently).
NOISE_FACTOR = 10.0


def _float64_copy(module, notes: list[str]):
    """A float64 copy of the torch module in its current modes (the step-1 reference that tells
    float32 noise from gradient), or None with a note when it cannot be made."""
    import copy

    try:
        return copy.deepcopy(module).double()
    except Exception as exc:  # a module that cannot be copied: no noise classification
        notes.append(f"no float64 reference ({type(exc).__name__}: {exc}); every gradient element is compared")
        return None


def _float64_grads(module64, specs, inputs, target, output_index, loss_fn, notes) -> dict[str, np.ndarray] | None:
    """Step 1's torch gradients in float64 (same batch, same target)."""
    import torch

    from bridge.stages.export import flatten_outputs

    if module64 is None:
        return None
    try:
        args = [torch.from_numpy(inputs[s.name]) for s in specs]
        args = [a.double() if a.is_floating_point() else a for a in args]
        out = flatten_outputs(module64(*args))[output_index][1]
        label = torch.from_numpy(target)
        loss_fn(out, label.double() if label.is_floating_point() else label).backward()
    except Exception as exc:  # an op without a float64 kernel
        notes.append(f"no float64 reference ({type(exc).__name__}: {exc}); every gradient element is compared")
        return None
    return {k: p.grad.detach().numpy() for k, p in module64.named_parameters() if p.grad is not None}


def _noise_masks(trained, t_grads, grads64) -> dict[str, tuple[Any, Any]]:
    """``{Paddle name: (mask in Paddle's layout, mask in torch's)}``: the elements of a
    parameter whose step-1 gradient is float32 noise in both frameworks. An element is noise
    where torch's float64 gradient is no larger than torch's own float32 error on that tensor
    (``max |g32 - g64|``) and Paddle's is within ``NOISE_FACTOR`` times that error: the loss
    does not depend on it (a conv bias before a training BatchNorm, the key third of a packed
    ``in_proj_bias``), and a relative difference there is noise over noise."""
    from bridge.weights_map import apply_transform

    masks = {}
    for name, (param, entry) in trained.items():
        key = entry["torch_key"]
        g32, g64 = t_grads.get(key), (grads64 or {}).get(key)
        if g32 is None or g64 is None:
            continue
        error = float(np.abs(g32.astype("float64") - g64).max(initial=0.0))
        torch_mask = np.abs(g64) <= error
        if not error or not torch_mask.any():
            continue
        mask = apply_transform(torch_mask, entry["transform"], entry["shape"], "bool")
        got = np.zeros(entry["shape"]) if param.grad is None else param.grad.numpy()
        mask &= np.abs(got) <= NOISE_FACTOR * error
        if mask.any():
            back = mask.T if entry["transform"] == "transpose" else mask
            masks[name] = (mask, np.ascontiguousarray(back).reshape(g32.shape))
    return masks


def _zero_noise(masks, trained, torch_params) -> None:
    """Zero the noise elements' gradients in both frameworks before the optimizer steps."""
    import torch

    for name, (mask, torch_mask) in masks.items():
        param, entry = trained[name]
        if param.grad is not None:
            grad = param.grad.numpy()
            param.grad.set_value(np.where(mask, 0, grad).astype(grad.dtype))
        t_param = torch_params[entry["torch_key"]]
        if t_param.grad is not None:
            with torch.no_grad():
                t_param.grad[torch.from_numpy(torch_mask)] = 0


def _compare_gradients(trained, t_grads, masks) -> tuple[list[TensorDiff], list[dict[str, str]]]:
    """Step-1 gradients, less the noise elements (``_noise_masks``): ``(diffs, skipped)``; a
    parameter that is all noise is skipped with the reason."""
    from bridge.weights_map import apply_transform

    with_grad = {e["torch_key"] for p, e in trained.values() if p.grad is not None}
    diffs, skipped = [], []
    for name, (param, entry) in trained.items():
        key = entry["torch_key"]
        ref = t_grads.get(key)
        if param.grad is None:
            if key in with_grad:
                skipped.append({"name": name, "reason": f"unused duplicate of {key} (no gradient in Paddle)"})
                continue
            if ref is None or not np.any(ref):
                skipped.append({"name": name, "reason": "no gradient in either framework"})
                continue
        ref = np.zeros(entry["shape"]) if ref is None else apply_transform(ref, entry["transform"], entry["shape"], entry["dtype"])
        got = np.zeros(entry["shape"]) if param.grad is None else param.grad.numpy()
        mask = masks.get(name, (np.zeros(ref.shape, bool),))[0]
        if mask.all():
            skipped.append({"name": name, "reason": f"{NOISE_REASON}: max |grad| torch {np.abs(ref).max(initial=0):.1e}, "
                                                    f"paddle {np.abs(got).max(initial=0):.1e}"})
            continue
        diffs.append(TensorDiff(name, key, entry["transform"], *rel_diff(got[~mask], ref[~mask])))
    return diffs, skipped


NOISE_REASON = ("step-1 gradient is float32 noise in both (the loss does not depend on it); zeroed in both, "
                "not compared")


def _compare_parameters(trained, torch_params, skipped, masks) -> list[TensorDiff]:
    from bridge.weights_map import apply_transform

    unused = {s["name"] for s in skipped if s["reason"].startswith(("unused duplicate", NOISE_REASON))}
    diffs = []
    for name, (param, entry) in trained.items():
        if name in unused:
            continue
        ref = apply_transform(torch_params[entry["torch_key"]].detach().numpy(), entry["transform"], entry["shape"], entry["dtype"])
        got = param.numpy()
        if name in masks:
            ref, got = ref[~masks[name][0]], got[~masks[name][0]]
        diffs.append(TensorDiff(name, entry["torch_key"], entry["transform"], *rel_diff(got, ref)))
    return diffs


def _first_failure(record: StepRecord, gradients: list[TensorDiff], params: list[TensorDiff],
                   tol: Tolerances) -> Failure | None:
    """The first thing over tolerance at this step, in the order a divergence propagates:
    learning rate, loss, gradients (step 1), parameters after the update."""
    if record.lr_rel_diff > tol.lr:
        return Failure(record.step, "learning rate", None, record.lr_torch, record.lr_paddle, record.lr_rel_diff, tol.lr)
    if record.loss_rel_diff > tol.loss:
        return Failure(record.step, "loss", None, record.loss_torch, record.loss_paddle, record.loss_rel_diff, tol.loss)
    for kind, diffs, limit in (("gradient of", gradients, tol.grad), ("parameter", params, tol.param)):
        bad = [d for d in diffs if d.rel_diff > limit]
        if bad:
            worst = max(bad, key=lambda d: d.rel_diff)
            return Failure(record.step, kind, f"{worst.name} (torch {worst.torch_key})", None, None, worst.rel_diff, limit)
    return None


def _batches(config: TrainConfig, specs):
    """Yield ``(inputs by name, target or None)`` per step: the user's dataset in order (indices
    wrap around), or seeded random inputs shaped like the manifest's with targets made from
    the model's output shape (``target None``)."""
    from bridge.stages.export import random_inputs

    if config.dataset is None:
        step = 0
        while True:
            step += 1
            yield random_inputs(specs, batch=config.batch_size, seed=config.seed * 100_003 + step), None
    dataset = load_dataset(config.dataset)
    position = 0
    while True:
        items = [dataset[(position + i) % len(dataset)] for i in range(config.batch_size)]
        position += config.batch_size
        inputs = [item[0] if isinstance(item[0], (tuple, list)) else (item[0],) for item in items]
        if len(inputs[0]) != len(specs):
            raise BridgeError(f"dataset {config.dataset}: items give {len(inputs[0])} input(s), the model takes {len(specs)}")
        feeds = {s.name: np.stack([np.asarray(x[i]) for x in inputs]).astype(s.dtype) for i, s in enumerate(specs)}
        yield feeds, np.stack([np.asarray(item[1]) for item in items])


def load_dataset(text: str):
    """``module:Name`` or ``file.py:Name``: built with no arguments; ``len()`` and ``[i] ->
    (input or tuple of inputs, target)``, values numpy arrays or anything ``np.asarray`` takes."""
    from bridge.spec import _import_source_module, parse_source

    source = parse_source(text)
    if source.kind != "torch":
        raise BridgeError(f"dataset {text!r}: expected module:Name or file.py:Name")
    target = getattr(_import_source_module(source), source.attr, None)
    if target is None:
        raise BridgeError(f"dataset {text}: no attribute {source.attr!r}")
    dataset = target()
    if not len(dataset):
        raise BridgeError(f"dataset {text}: empty")
    return dataset
