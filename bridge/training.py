"""Torch training pieces mapped to Paddle: optimizers, LR schedules, losses, gradient clipping.

One function per row, registered in ``OPTIMIZERS``, ``SCHEDULES`` and ``LOSSES``; its first
docstring line is the row (torch → Paddle) and the rest names the semantic differences it
handles. Each takes torch's class name and keyword arguments (torch's defaults filled in from
its signature, so Paddle's different defaults never leak in) and returns a ``PaddleCall``: the
Paddle constructor and its arguments. The train check builds it (``PaddleCall.build``) and
``paddle/train_example.py`` writes it out (``PaddleCall.code``), so both use one mapping.

Schedules are stepped once per optimizer step. In Paddle the schedule *is* the optimizer's
``learning_rate`` and is stepped separately (``scheduler.step()`` after ``optimizer.step()``);
built with a float learning rate instead, the optimizer never sees the schedule (the seed's
port did that: its learning rate never changed).

Nothing here imports torch or paddle at module level (``bridge --help`` imports no framework).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bridge.errors import BridgeError

# torch arguments that choose an implementation, not the math: accepted and dropped.
IMPLEMENTATION_ARGS = ("foreach", "fused", "capturable", "differentiable")


@dataclass(frozen=True)
class Ref:
    """A value the caller supplies at build time (the parameters, the schedule, ...); in code,
    the variable of that name."""

    name: str


@dataclass(frozen=True)
class Tensor:
    """A tensor-valued argument (class weights), built in the model's float dtype."""

    values: tuple


@dataclass
class PaddleCall:
    """``target(**kwargs)``: a dotted Paddle name, or a function of ``bridge.training_helpers``
    (no dot), called as ``target(output, label, **kwargs)`` when ``partial``."""

    target: str
    kwargs: dict[str, Any]
    partial: bool = False
    helpers: tuple[str, ...] = ()  # training_helpers functions the generated code must embed
    lr: float | None = None  # optimizers: torch's lr, the schedule's base learning rate

    def build(self, refs: dict[str, Any] | None = None, dtype: str = "float32") -> Any:
        import functools
        import importlib

        kwargs = {k: _build_value(v, refs or {}, dtype) for k, v in self.kwargs.items()}
        module, _, name = self.target.rpartition(".")
        function = getattr(importlib.import_module(module or "bridge.training_helpers"), name)
        return functools.partial(function, **kwargs) if self.partial else function(**kwargs)

    def code(self, dtype: str = "float32", names: dict[str, str] | None = None) -> str:
        """Python source for the call; ``names`` renames Refs (default: the ref's own name)."""
        args = ", ".join(f"{k}={_code_value(v, dtype, names or {})}" for k, v in self.kwargs.items())
        if self.partial:
            return f"functools.partial({self.target}, {args})" if args else self.target
        return f"{self.target}({args})"


def _build_value(value: Any, refs: dict[str, Any], dtype: str) -> Any:
    if isinstance(value, Ref):
        return refs[value.name]
    if isinstance(value, PaddleCall):
        return value.build(refs, dtype)
    if isinstance(value, Tensor):
        import paddle

        return paddle.to_tensor(np.asarray(value.values, dtype=dtype))
    return value


def _code_value(value: Any, dtype: str, names: dict[str, str]) -> str:
    if isinstance(value, Ref):
        return names.get(value.name, value.name)
    if isinstance(value, PaddleCall):
        return value.code(dtype, names)
    if isinstance(value, Tensor):
        return f"paddle.to_tensor({list(value.values)!r}, dtype={dtype!r})"
    return repr(value)


def _torch_args(path: str, kwargs: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``kwargs`` over the defaults of the torch class ``path``'s signature; unknown names refused."""
    import importlib

    module, _, name = path.rpartition(".")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    known = [p for p in signature.parameters if p not in skip]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise BridgeError(f"{name}: unknown argument(s) {', '.join(unknown)} (torch's {name} takes {', '.join(known)})")
    args = {p: signature.parameters[p].default for p in known}
    args.update(kwargs)
    missing = [p for p, v in args.items() if v is inspect.Parameter.empty]
    if missing:
        raise BridgeError(f"{name}: missing required argument(s) {', '.join(missing)}")
    for implementation in IMPLEMENTATION_ARGS:
        args.pop(implementation, None)
    return args


def _refuse(name: str, args: dict[str, Any], **unsupported: Any) -> None:
    """Refuse arguments Paddle cannot reproduce: each keyword is ``arg=value Paddle supports``."""
    for arg, supported in unsupported.items():
        if arg in args and args[arg] != supported:
            raise BridgeError(f"{name}({arg}={args[arg]!r}): no Paddle equivalent (supported: {arg}={supported!r})")


# ---------------------------------------------------------------- optimizers ----------

def _optimizer_call(target: str, lr: float, kwargs: dict[str, Any], helpers: tuple[str, ...] = ()) -> PaddleCall:
    return PaddleCall(target, {"learning_rate": Ref("learning_rate"), "parameters": Ref("parameters"), **kwargs,
                               "grad_clip": Ref("grad_clip")}, helpers=helpers, lr=float(lr))


def sgd(kwargs: dict[str, Any]) -> PaddleCall:
    """torch.optim.SGD(momentum, nesterov, weight_decay) → paddle.optimizer.SGD, or Momentum(use_nesterov) when momentum > 0.

    Both add weight_decay·param to the gradient (Paddle: an L2Decay regularizer). The velocity
    starts at the first gradient in both (torch's buffer = grad; Paddle's 0·mu + grad), and
    Nesterov steps by grad + momentum·velocity in both. Paddle has no dampening (refused), and
    its Momentum keeps ``mu`` as a float32 attribute (visible only in float64 models, ~1e-8).
    """
    args = _torch_args("torch.optim.SGD", kwargs, ("params",))
    _refuse("SGD", args, dampening=0, maximize=False)
    if not args["momentum"]:
        return _optimizer_call("paddle.optimizer.SGD", args["lr"], {"weight_decay": float(args["weight_decay"])})
    return _optimizer_call("paddle.optimizer.Momentum", args["lr"], {
        "momentum": float(args["momentum"]), "use_nesterov": bool(args["nesterov"]),
        "weight_decay": float(args["weight_decay"])})


def adam(kwargs: dict[str, Any]) -> PaddleCall:
    """torch.optim.Adam(betas, eps, weight_decay, amsgrad) → paddle.optimizer.Adam(beta1, beta2, epsilon, weight_decay, amsgrad).

    weight_decay is L2 added to the gradient before the moments in both (Paddle: L2Decay).
    ``decoupled_weight_decay=True`` is torch's AdamW and maps to paddle.optimizer.AdamW.
    """
    args = _torch_args("torch.optim.Adam", kwargs, ("params",))
    if args.pop("decoupled_weight_decay"):
        return adamw({k: v for k, v in kwargs.items() if k != "decoupled_weight_decay"})
    _refuse("Adam", args, maximize=False)
    beta1, beta2 = args["betas"]
    return _optimizer_call("paddle.optimizer.Adam", args["lr"], {
        "beta1": float(beta1), "beta2": float(beta2), "epsilon": float(args["eps"]),
        "weight_decay": float(args["weight_decay"]), "amsgrad": bool(args["amsgrad"])})


def adamw(kwargs: dict[str, Any]) -> PaddleCall:
    """torch.optim.AdamW(betas, eps, weight_decay, amsgrad) → paddle.optimizer.AdamW(beta1, beta2, epsilon, weight_decay, amsgrad).

    Same decoupled decay: torch multiplies each parameter by 1 − lr·weight_decay, Paddle by
    1 − lr·coeff, with the scheduled lr in both; the value passes through unchanged. Both
    decay every parameter by default; torch excludes parameters with a param group
    (weight_decay 0), Paddle with ``apply_decay_param_fun(param.name) -> False``.
    """
    args = _torch_args("torch.optim.AdamW", kwargs, ("params",))
    _refuse("AdamW", args, maximize=False)
    beta1, beta2 = args["betas"]
    call = _optimizer_call("paddle.optimizer.AdamW", args["lr"], {
        "beta1": float(beta1), "beta2": float(beta2), "epsilon": float(args["eps"]),
        "weight_decay": float(args["weight_decay"]), "amsgrad": bool(args["amsgrad"])})
    call.kwargs["apply_decay_param_fun"] = Ref("apply_decay_param_fun")
    return call


def rmsprop(kwargs: dict[str, Any]) -> PaddleCall:
    """torch.optim.RMSprop(alpha, eps, momentum, centered, weight_decay) → paddle.optimizer.RMSProp with torch's update (``training_helpers.torch_rmsprop``).

    Paddle's own RMSProp kernel divides by sqrt(avg + epsilon) where torch divides by
    sqrt(avg) + eps (no epsilon reproduces that for every avg: eps**2 still left 1.5e-6 at eps
    1e-8 and 1.2e-2 at eps 1e-4 on a tiny net), and with momentum its buffer holds
    lr·grad/denominator where torch's holds grad/denominator times the current lr (they part
    under a schedule). ``torch_rmsprop`` keeps Paddle's class (accumulators, state_dict,
    schedule, grad_clip, weight_decay as L2 on the gradient, centered) and replaces the update.
    alpha → rho; Paddle's defaults (rho 0.95, epsilon 1e-6) are never used.
    """
    args = _torch_args("torch.optim.RMSprop", kwargs, ("params",))
    _refuse("RMSprop", args, maximize=False)
    return _optimizer_call("torch_rmsprop", args["lr"], {
        "alpha": float(args["alpha"]), "eps": float(args["eps"]), "momentum": float(args["momentum"]),
        "centered": bool(args["centered"]), "weight_decay": float(args["weight_decay"])}, helpers=("torch_rmsprop",))


OPTIMIZERS: dict[str, Callable[[dict[str, Any]], PaddleCall]] = {
    "SGD": sgd, "Adam": adam, "AdamW": adamw, "RMSprop": rmsprop,
}


# ---------------------------------------------------------------- schedules -----------

def _schedule_args(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    args = _torch_args(f"torch.optim.lr_scheduler.{name}", kwargs, ("optimizer",))
    _refuse(name, args, last_epoch=-1)
    args.pop("last_epoch", None)
    return args


def step_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch StepLR(step_size, gamma) → paddle.optimizer.lr.StepDecay(step_size, gamma)."""
    args = _schedule_args("StepLR", kwargs)
    return PaddleCall("paddle.optimizer.lr.StepDecay", {
        "learning_rate": lr, "step_size": int(args["step_size"]), "gamma": float(args["gamma"])})


def multi_step_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch MultiStepLR(milestones, gamma) → paddle.optimizer.lr.MultiStepDecay(milestones, gamma).

    torch counts a repeated milestone twice (gamma²); Paddle requires increasing milestones:
    repeated ones are refused.
    """
    args = _schedule_args("MultiStepLR", kwargs)
    milestones = sorted(int(m) for m in args["milestones"])
    if len(set(milestones)) != len(milestones):
        raise BridgeError(f"MultiStepLR(milestones={args['milestones']!r}): repeated milestones have no Paddle equivalent")
    return PaddleCall("paddle.optimizer.lr.MultiStepDecay", {
        "learning_rate": lr, "milestones": milestones, "gamma": float(args["gamma"])})


def cosine_annealing_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch CosineAnnealingLR(T_max, eta_min) → paddle.optimizer.lr.CosineAnnealingDecay(T_max, eta_min).

    Both use the same recursive form (and keep cycling past T_max); T_max is in steps here.
    """
    args = _schedule_args("CosineAnnealingLR", kwargs)
    return PaddleCall("paddle.optimizer.lr.CosineAnnealingDecay", {
        "learning_rate": lr, "T_max": int(args["T_max"]), "eta_min": float(args["eta_min"])})


def one_cycle_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch OneCycleLR(max_lr, total_steps, pct_start, div_factor, final_div_factor, ...) → paddle.optimizer.lr.OneCycleLR.

    Paddle takes the final learning rate itself: end_learning_rate = max_lr / div_factor /
    final_div_factor. torch's cycle_momentum (on by default) also cycles the optimizer's
    momentum or beta1, which Paddle's schedule cannot: it must be turned off.
    """
    args = _schedule_args("OneCycleLR", kwargs)
    if args["cycle_momentum"]:
        raise BridgeError("OneCycleLR(cycle_momentum=True) also cycles the optimizer's momentum/beta1, which Paddle's "
                          "OneCycleLR does not: set cycle_momentum = false")
    if isinstance(args["max_lr"], (list, tuple)):
        raise BridgeError("OneCycleLR: one max_lr per param group has no Paddle equivalent; give one number")
    total = args["total_steps"]
    if total is None:
        if args["epochs"] is None or args["steps_per_epoch"] is None:
            raise BridgeError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
        total = args["epochs"] * args["steps_per_epoch"]
    max_lr, div = float(args["max_lr"]), float(args["div_factor"])
    return PaddleCall("paddle.optimizer.lr.OneCycleLR", {
        "max_learning_rate": max_lr, "total_steps": int(total), "divide_factor": div,
        "end_learning_rate": max_lr / div / float(args["final_div_factor"]), "phase_pct": float(args["pct_start"]),
        "anneal_strategy": args["anneal_strategy"], "three_phase": bool(args["three_phase"])})


def linear_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch LinearLR(start_factor, end_factor, total_iters) → paddle.optimizer.lr.LinearLR(total_steps=total_iters, ...)."""
    args = _schedule_args("LinearLR", kwargs)
    return PaddleCall("paddle.optimizer.lr.LinearLR", {
        "learning_rate": lr, "total_steps": int(args["total_iters"]),
        "start_factor": float(args["start_factor"]), "end_factor": float(args["end_factor"])})


def sequential_lr(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch SequentialLR([LinearLR warmup, S], milestones=[w]) → paddle.optimizer.lr.LinearWarmup(learning_rate=S', warmup_steps=w).

    The warmup + schedule pair only: LinearWarmup ramps from start_factor·lr to end_factor·lr
    over w steps, then steps S' from 0, as SequentialLR restarts S at the milestone. Needs
    total_iters == w and a rising ramp (LinearWarmup asserts end_lr > start_lr).
    """
    args = _schedule_args("SequentialLR", {**kwargs, "schedulers": []})  # the stages are mapped below
    stages = kwargs.get("schedulers") or []
    milestones = list(args["milestones"])
    if len(stages) != 2 or len(milestones) != 1 or stages[0].get("name") != "LinearLR":
        raise BridgeError("SequentialLR: only [LinearLR warmup, one schedule] with one milestone maps to Paddle (LinearWarmup)")
    warmup = _schedule_args("LinearLR", {k: v for k, v in stages[0].items() if k != "name"})
    if int(warmup["total_iters"]) != int(milestones[0]):
        raise BridgeError(f"SequentialLR: the LinearLR warmup's total_iters ({warmup['total_iters']}) must equal the milestone ({milestones[0]})")
    start, end = lr * float(warmup["start_factor"]), lr * float(warmup["end_factor"])
    if not end > start:
        raise BridgeError("SequentialLR: Paddle's LinearWarmup needs a rising warmup (end_factor > start_factor)")
    after = paddle_schedule(stages[1]["name"], {k: v for k, v in stages[1].items() if k != "name"}, lr)
    return PaddleCall("paddle.optimizer.lr.LinearWarmup", {
        "learning_rate": after, "warmup_steps": int(milestones[0]), "start_lr": start, "end_lr": end})


def reduce_lr_on_plateau(kwargs: dict[str, Any], lr: float) -> PaddleCall:
    """torch ReduceLROnPlateau(mode, factor, patience, threshold, ...) → paddle.optimizer.lr.ReduceOnPlateau(..., epsilon=eps).

    Stepped with the monitored value in both (here the step's loss): ``scheduler.step(loss)``.
    """
    args = _schedule_args("ReduceLROnPlateau", kwargs)
    if isinstance(args["min_lr"], (list, tuple)):
        raise BridgeError("ReduceLROnPlateau: one min_lr per param group has no Paddle equivalent; give one number")
    return PaddleCall("paddle.optimizer.lr.ReduceOnPlateau", {
        "learning_rate": lr, "mode": args["mode"], "factor": float(args["factor"]), "patience": int(args["patience"]),
        "threshold": float(args["threshold"]), "threshold_mode": args["threshold_mode"],
        "cooldown": int(args["cooldown"]), "min_lr": float(args["min_lr"]), "epsilon": float(args["eps"])})


SCHEDULES: dict[str, Callable[[dict[str, Any], float], PaddleCall]] = {
    "StepLR": step_lr, "MultiStepLR": multi_step_lr, "CosineAnnealingLR": cosine_annealing_lr,
    "OneCycleLR": one_cycle_lr, "LinearLR": linear_lr, "SequentialLR": sequential_lr,
    "ReduceLROnPlateau": reduce_lr_on_plateau,
}
METRIC_SCHEDULES = ("ReduceLROnPlateau",)  # step(metric), in torch and Paddle alike


# ---------------------------------------------------------------- losses --------------

def _loss_args(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    args = _torch_args(f"torch.nn.{name}", kwargs)
    _refuse(name, args, size_average=None, reduce=None)
    args.pop("size_average", None)
    args.pop("reduce", None)
    return args


def _weight(value: Any) -> Tensor | None:
    return None if value is None else Tensor(tuple(float(v) for v in np.asarray(value, dtype=np.float64).ravel()))


def bce_with_logits(kwargs: dict[str, Any]) -> PaddleCall:
    """torch BCEWithLogitsLoss(weight, pos_weight, reduction) → paddle.nn.BCEWithLogitsLoss(weight, pos_weight, reduction)."""
    args = _loss_args("BCEWithLogitsLoss", kwargs)
    return PaddleCall("paddle.nn.BCEWithLogitsLoss", {
        "weight": _weight(args["weight"]), "reduction": args["reduction"], "pos_weight": _weight(args["pos_weight"])})


def cross_entropy_loss(kwargs: dict[str, Any]) -> PaddleCall:
    """torch CrossEntropyLoss(weight, ignore_index, label_smoothing, reduction) → log_softmax + NLL in Paddle ops (``training_helpers.cross_entropy``).

    Not paddle.nn.CrossEntropyLoss (Paddle 3.3.1, measured): its mean over a batch with
    ignored labels divides by all N (torch: by the kept ones), and its label_smoothing
    one-hots the last axis and fails on ignored labels; the class axis is 1 as in torch.
    """
    args = _loss_args("CrossEntropyLoss", kwargs)
    return PaddleCall("cross_entropy", {
        "weight": _weight(args["weight"]), "ignore_index": int(args["ignore_index"]), "reduction": args["reduction"],
        "label_smoothing": float(args["label_smoothing"])}, partial=True, helpers=("nll_loss", "cross_entropy"))


def nll_loss_row(kwargs: dict[str, Any]) -> PaddleCall:
    """torch NLLLoss(weight, ignore_index, reduction) → a gather in Paddle ops (``training_helpers.nll_loss``).

    Not paddle.nn.functional.nll_loss: on CPU (Paddle 3.3.1) it corrupts the heap when
    ignore_index is a valid class that occurs in the labels (``nll_loss(log(full((4, 3), 1/3)),
    [0, 1, 2, 1], ignore_index=2, reduction="sum")``: "free(): invalid next size", then abort).
    """
    args = _loss_args("NLLLoss", kwargs)
    return PaddleCall("nll_loss", {"weight": _weight(args["weight"]), "ignore_index": int(args["ignore_index"]),
                                   "reduction": args["reduction"]}, partial=True, helpers=("nll_loss",))


def mse_loss(kwargs: dict[str, Any]) -> PaddleCall:
    """torch MSELoss(reduction) → paddle.nn.MSELoss(reduction)."""
    return PaddleCall("paddle.nn.MSELoss", {"reduction": _loss_args("MSELoss", kwargs)["reduction"]})


def l1_loss(kwargs: dict[str, Any]) -> PaddleCall:
    """torch L1Loss(reduction) → paddle.nn.L1Loss(reduction)."""
    return PaddleCall("paddle.nn.L1Loss", {"reduction": _loss_args("L1Loss", kwargs)["reduction"]})


def smooth_l1_loss(kwargs: dict[str, Any]) -> PaddleCall:
    """torch SmoothL1Loss(beta) → paddle.nn.SmoothL1Loss(delta=beta, is_huber=False); beta 0 → paddle.nn.L1Loss.

    torch: 0.5·x²/beta below beta, |x| − 0.5·beta above. Paddle's default (is_huber=True) is
    the Huber loss, 0.5·x² and delta·(|x| − 0.5·delta), i.e. beta × torch's: is_huber=False
    divides by delta. beta = 0 is L1 in torch; Paddle would divide by zero.
    """
    args = _loss_args("SmoothL1Loss", kwargs)
    if float(args["beta"]) == 0.0:
        return PaddleCall("paddle.nn.L1Loss", {"reduction": args["reduction"]})
    return PaddleCall("paddle.nn.SmoothL1Loss", {
        "reduction": args["reduction"], "delta": float(args["beta"]), "is_huber": False})


def huber_loss(kwargs: dict[str, Any]) -> PaddleCall:
    """torch HuberLoss(delta) → paddle.nn.SmoothL1Loss(delta, is_huber=True)."""
    args = _loss_args("HuberLoss", kwargs)
    return PaddleCall("paddle.nn.SmoothL1Loss", {"reduction": args["reduction"], "delta": float(args["delta"]), "is_huber": True})


LOSSES: dict[str, Callable[[dict[str, Any]], PaddleCall]] = {
    "BCEWithLogitsLoss": bce_with_logits, "CrossEntropyLoss": cross_entropy_loss, "NLLLoss": nll_loss_row,
    "MSELoss": mse_loss, "L1Loss": l1_loss, "SmoothL1Loss": smooth_l1_loss, "HuberLoss": huber_loss,
}
# What the synthetic targets look like, per loss (training_helpers.synthetic_target).
TARGET_KINDS = {"BCEWithLogitsLoss": "binary", "CrossEntropyLoss": "class", "NLLLoss": "class"}


def target_kind(loss: str) -> str:
    """The targets ``loss`` (a torch class name) takes: binary, class or real."""
    return TARGET_KINDS.get(loss.rpartition(".")[2], "real")


def clip_grad_norm(max_norm: float, norm_type: float = 2.0) -> PaddleCall:
    """torch.nn.utils.clip_grad_norm_(max_norm) → paddle.nn.ClipGradByGlobalNorm(clip_norm=max_norm), the optimizer's grad_clip.

    torch scales by max_norm / (norm + 1e-6), Paddle by max_norm / norm: the clipped gradients
    differ by 1e-6/norm relative. torch clips outside the optimizer, Paddle inside step(),
    both before weight decay. Only the 2-norm maps.
    """
    if float(norm_type) != 2.0:
        raise BridgeError(f"clip_grad_norm_(norm_type={norm_type!r}): Paddle's ClipGradByGlobalNorm is the 2-norm only")
    return PaddleCall("paddle.nn.ClipGradByGlobalNorm", {"clip_norm": float(max_norm)})


# ---------------------------------------------------------------- lookups -------------

def _lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    short = name.rpartition(".")[2]  # "torch.optim.AdamW" and "AdamW" alike
    if short not in table:
        raise BridgeError(f"{kind} {name!r}: not mapped to Paddle (mapped: {', '.join(table)})")
    return table[short]


def paddle_optimizer(name: str, kwargs: dict[str, Any]) -> PaddleCall:
    """The Paddle optimizer for ``torch.optim.<name>(**kwargs)``; ``.lr`` is torch's lr. Refs
    to supply: learning_rate (float or schedule), parameters, grad_clip, and for AdamW
    apply_decay_param_fun."""
    return _lookup(OPTIMIZERS, "optimizer", name)(dict(kwargs))


def paddle_schedule(name: str, kwargs: dict[str, Any], lr: float) -> PaddleCall:
    return _lookup(SCHEDULES, "schedule", name)(dict(kwargs), lr)


def paddle_loss(name: str, kwargs: dict[str, Any]) -> PaddleCall:
    return _lookup(LOSSES, "loss", name)(dict(kwargs))


def torch_optimizer(name: str, kwargs: dict[str, Any], params: Any):
    import torch

    _lookup(OPTIMIZERS, "optimizer", name)
    kwargs = dict(kwargs)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(torch.optim, name.rpartition(".")[2])(params, **kwargs)


def torch_schedule(name: str, kwargs: dict[str, Any], optimizer: Any):
    import torch

    _lookup(SCHEDULES, "schedule", name)
    kwargs = dict(kwargs)
    if "schedulers" in kwargs:
        kwargs["schedulers"] = [torch_schedule(s["name"], {k: v for k, v in s.items() if k != "name"}, optimizer)
                                for s in kwargs["schedulers"]]
    return getattr(torch.optim.lr_scheduler, name.rpartition(".")[2])(optimizer, **kwargs)


def torch_loss(name: str, kwargs: dict[str, Any], dtype: str = "float32"):
    import torch

    _lookup(LOSSES, "loss", name)
    kwargs = {k: (torch.tensor(np.asarray(v, dtype=dtype)) if k in ("weight", "pos_weight") and v is not None else v)
              for k, v in kwargs.items()}
    return getattr(torch.nn, name.rpartition(".")[2])(**kwargs)


def mapping_rows() -> list[tuple[str, str, str]]:
    """(kind, torch name, the row: its function's first docstring line), for reports and docs."""
    tables = (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES), ("clip", {"clip_grad_norm_": clip_grad_norm}))
    return [(kind, name, fn.__doc__.strip().splitlines()[0]) for kind, table in tables for name, fn in table.items()]


def build_paddle_optimizer(call: PaddleCall, parameters: list, learning_rate: Any, grad_clip: Any = None,
                           no_decay: list = ()) -> Any:
    """Build a mapped optimizer over ``parameters``; ``no_decay`` (a subset) gets no weight
    decay: AdamW through apply_decay_param_fun (by param.name), the others through a second
    param group with weight_decay 0, as torch does."""
    names = {p.name for p in no_decay}
    refs = {"learning_rate": learning_rate, "grad_clip": grad_clip, "parameters": list(parameters)}
    if "apply_decay_param_fun" in call.kwargs:
        refs["apply_decay_param_fun"] = (lambda name: name not in names) if names else None
    elif names:
        decay = [p for p in parameters if p.name not in names]
        refs["parameters"] = [g for g in ({"params": decay}, {"params": list(no_decay), "weight_decay": 0.0}) if g["params"]]
    return call.build(refs)
