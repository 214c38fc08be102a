"""Self-contained Paddle/numpy functions that ``paddle/train_example.py`` embeds (their source
is copied in: the script needs no bridge) and the train check calls: each imports what it
needs itself, and none imports bridge.

``nll_loss``, ``cross_entropy`` and ``torch_rmsprop`` are torch's semantics in Paddle ops, where
Paddle's own ops differ (see the rows in ``bridge.training``).
"""
from __future__ import annotations

import inspect

import numpy as np


def synthetic_target(kind: str, output_shape: tuple[int, ...], rng) -> np.ndarray:
    """Seeded random targets for an output of ``output_shape``: 0/1 floats (binary), class
    indices over axis 1 (class), or standard normal floats (real)."""
    if kind == "binary":
        return rng.integers(0, 2, size=output_shape).astype("float32")
    if kind == "class":
        return rng.integers(0, output_shape[1], size=(output_shape[0], *output_shape[2:])).astype("int64")
    return rng.standard_normal(size=output_shape).astype("float32")


def nll_loss(input, label, weight=None, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.nll_loss in Paddle ops (classes on axis 1)."""
    import paddle

    keep = label != ignore_index
    safe = paddle.where(keep, label, paddle.zeros_like(label))
    picked = -paddle.take_along_axis(input, safe.unsqueeze(1), axis=1).squeeze(1)
    if weight is None:
        scale = keep.astype(input.dtype)
    else:
        scale = paddle.gather(weight.astype(input.dtype), safe.flatten()).reshape(safe.shape) * keep.astype(input.dtype)
    loss = picked * scale
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum() / scale.sum()


def cross_entropy(input, label, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy (class indices, classes on axis 1) in Paddle ops."""
    import paddle

    log_probs = paddle.nn.functional.log_softmax(input, axis=1)
    loss = nll_loss(log_probs, label, weight, ignore_index, reduction)
    if label_smoothing == 0.0:
        return loss
    classes = input.shape[1]
    keep = (label != ignore_index).astype(input.dtype)
    if weight is None:
        smooth = -log_probs.sum(axis=1) * keep
        total = keep.sum()
    else:
        weight = weight.astype(input.dtype)
        shape = [1, classes] + [1] * (len(input.shape) - 2)
        smooth = -(log_probs * weight.reshape(shape)).sum(axis=1) * keep
        safe = paddle.where(label != ignore_index, label, paddle.zeros_like(label))
        total = (paddle.gather(weight, safe.flatten()).reshape(safe.shape) * keep).sum()
    if reduction == "mean":
        smooth = smooth.sum() / total
    elif reduction == "sum":
        smooth = smooth.sum()
    return (1 - label_smoothing) * loss + smooth * (label_smoothing / classes)


def torch_rmsprop(learning_rate, parameters, alpha=0.99, eps=1e-08, momentum=0.0, centered=False,
                  weight_decay=0.0, grad_clip=None):
    """paddle.optimizer.RMSProp with torch.optim.RMSprop's update: divide by sqrt(avg) + eps
    (Paddle's kernel: sqrt(avg + eps)) and keep grad/denominator in the momentum buffer,
    multiplied by the current learning rate (Paddle's kernel keeps lr inside the buffer)."""
    import paddle

    class TorchRMSProp(paddle.optimizer.RMSProp):
        def _append_optimize_op(self, block, param_and_grad):
            if isinstance(param_and_grad, dict):
                param_and_grad = self._update_param_group(param_and_grad)
            param, grad = param_and_grad
            square = self._get_accumulator_master(self._mean_square_acc_str, param)
            paddle.assign(square * self._rho + grad * grad * (1.0 - self._rho), output=square)
            if self._centered:
                mean = self._get_accumulator_master(self._mean_grad_acc_str, param)
                paddle.assign(mean * self._rho + grad * (1.0 - self._rho), output=mean)
                denominator = (square - mean * mean).sqrt() + self._epsilon
            else:
                denominator = square.sqrt() + self._epsilon
            step = grad / denominator
            if self._momentum > 0:
                buffer = self._get_accumulator_master(self._momentum_acc_str, param)
                paddle.assign(buffer * self._momentum + step, output=buffer)
                step = buffer
            paddle.assign(param - self._create_param_lr(param_and_grad) * step, output=param)

    return TorchRMSProp(learning_rate, rho=alpha, epsilon=eps, momentum=momentum, centered=centered,
                        parameters=parameters, weight_decay=weight_decay, grad_clip=grad_clip)


def torch_running_variance(model):
    """Make the BatchNorm layers of ``model`` keep torch's running variance in train mode.

    Both update ``running = momentum * running + (1 - momentum) * batch`` (Paddle's momentum is
    1 - torch's), but torch puts in the unbiased batch variance and Paddle the biased one: n /
    (n - 1) apart, n the values per channel (batch x spatial). At batch 8 of a 1-d feature the
    two running variances part by 14% per step. A forward hook rescales Paddle's update after
    each training forward. Returns the hook handles (``.remove()`` undoes it)."""
    import paddle

    def before(layer, inputs):
        if layer.training:
            layer._variance_before = layer._variance.detach().clone()

    def after(layer, inputs, output):
        old = getattr(layer, "_variance_before", None)
        if not layer.training or old is None:
            return None
        per_channel = inputs[0].size // inputs[0].shape[1]
        if per_channel > 1:
            with paddle.no_grad():
                new = layer._variance.detach()
                # set_value, not assign: the variance fed this forward's batch_norm, and an
                # in-place op on it would trip autograd's version check at backward
                layer._variance.set_value(new + (new - layer._momentum * old) / (per_channel - 1))
        layer._variance_before = None
        return None

    handles = []
    for layer in model.sublayers(include_self=True):
        if "BatchNorm" in type(layer).__name__ and hasattr(layer, "_variance") and hasattr(layer, "_momentum"):
            handles += [layer.register_forward_pre_hook(before), layer.register_forward_post_hook(after)]
    return handles


def torch_padding_rows(model, rows):
    """Keep the rows torch's ``nn.Embedding(padding_idx=i)`` never updates out of training:
    ``rows`` maps a Paddle parameter name to its padding row. X2Paddle's graph has only the
    table (no padding_idx), and Paddle's own ``padding_idx`` would also zero that row in the
    forward, which torch does not do; a gradient hook zeroes the row's gradient instead.
    Returns the hook handles."""
    import paddle

    params = dict(model.named_parameters())
    handles = []
    for name, row in rows.items():
        param = params[name]
        mask = np.ones([param.shape[0]] + [1] * (len(param.shape) - 1), dtype="float32")
        mask[row] = 0.0
        mask = paddle.to_tensor(mask).astype(param.dtype)
        handles.append(param.register_hook(lambda grad, mask=mask: grad * mask))
    return handles


def helper_source(names: tuple[str, ...]) -> str:
    """The source of the functions ``names``, to embed in generated code."""
    return "\n\n".join(inspect.getsource(globals()[n]) for n in names)

