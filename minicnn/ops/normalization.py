"""Batch normalisation, the textbook: ``batch_norm`` and its op class ``BatchNorm``.

Layout: the channel axis is axis 1, so the input is (N, C), (N, C, L) or (N, C, H, W). Every
statistic is per channel, over the other axes: the m = N, N*L or N*H*W values of one channel.
The code is the math of docs/backprop/batchnorm.md, line for line, as whole-array code on ``xp``
(NumPy or CuPy). Its compiled CPU twin, the same math as loops, is minicnn/kernels/normalization.py.
"""

from __future__ import annotations

import math

from minicnn.autograd import Function
from minicnn.backend import get_array_module


def _per_channel(v, ndim):
    """A (C,) vector as (1, C, 1, ...), so that it broadcasts along axis 1 of an ndim-d input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _update_running_stats(running_mean, running_var, mean, var, m, momentum):
    """running = (1 - momentum) * running + momentum * batch statistic, in place, with the
    *unbiased* batch variance var * m / (m - 1) (PyTorch's rule). ``momentum`` is a float, or a
    0-d array on the arrays' device (``BatchNorm(momentum=None)``: 1 / num_batches_tracked)."""
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += (momentum * (var * (m / (m - 1)))).astype(running_var.dtype, copy=False)


class BatchNorm(Function):
    """x̂ = (x - μ) · invstd,  invstd = 1 / sqrt(var + eps),  out = γ · x̂ + β   (per channel).

    Training: μ and var are the batch mean and biased variance of the channel's m values, so x
    reaches out through μ and var too (docs/backprop/batchnorm.md):
        dx = γ · invstd / m · (m · g - Σg - x̂ · Σ(g · x̂)),   dγ = Σ(g · x̂),   dβ = Σg.
    Eval: μ and var are the running statistics, constants:  dx = γ · invstd · g  (dγ, dβ as above).
    """

    # Backward reads γ (weight). x is listed too though x̂ is what this tier saves: the compiled twin
    # re-reads x (as PyTorch does), so changing x in place before backward raises on both tiers.
    saved_inputs = (0, 1)

    def forward(
        self, x, weight, bias, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5
    ):
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channels
        m = x.shape[0] * math.prod(x.shape[2:])  # values per channel
        if training:
            mean = x.mean(axis=axes)
            var = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=axes)  # biased, two passes
            _update_running_stats(running_mean, running_var, mean, var, m, momentum)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat = (x - _per_channel(mean, x.ndim)) * _per_channel(invstd, x.ndim)
        out = xhat if weight is None else _per_channel(weight, x.ndim) * xhat
        if bias is not None:
            out = out + _per_channel(bias, x.ndim)
        self.xhat, self.invstd, self.weight, self.training, self.m = xhat, invstd, weight, training, m
        return out

    def backward(self, g):
        xhat, invstd, m = self.xhat, self.invstd, self.m
        axes = (0,) + tuple(range(2, g.ndim))
        gamma_invstd = invstd if self.weight is None else self.weight * invstd  # (C,)
        sum_g = g.sum(axis=axes)  # Σg, (C,)
        sum_g_xhat = (g * xhat).sum(axis=axes)  # Σ(g · x̂), (C,)
        dx = None
        if self.needs_input_grad[0] and self.training:
            dx = _per_channel(gamma_invstd / m, g.ndim) * (
                m * g - _per_channel(sum_g, g.ndim) - xhat * _per_channel(sum_g_xhat, g.ndim)
            )
        elif self.needs_input_grad[0]:
            dx = _per_channel(gamma_invstd, g.ndim) * g
        return dx, sum_g_xhat, sum_g


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalisation over axis 1 of an (N, C), (N, C, L) or (N, C, H, W) input (torch semantics).

    ``training=True`` normalises with the batch mean and biased variance and, when they are given,
    updates ``running_mean`` and the *unbiased* ``running_var`` in place:
    ``running = (1 - momentum) * running + momentum * batch_stat``. Passing ``None`` for both is the
    ``track_running_stats=False`` behaviour (batch statistics, nothing updated).
    ``training=False`` normalises with the running statistics.

    ``momentum`` is a float factor, exactly as in ``torch.nn.functional.batch_norm``. The cumulative
    moving average of ``BatchNorm(momentum=None)`` needs ``num_batches_tracked``, which only the layer
    knows: the layer passes ``momentum = 1 / num_batches_tracked`` (to ``_batch_norm``, as a 0-d
    array computed on the input's device).
    """
    _check_input(input)
    if momentum is None or isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(
            f"batch_norm: momentum must be a float factor, got {momentum!r}. (For the cumulative moving "
            "average, BatchNorm(momentum=None) passes momentum = 1 / num_batches_tracked.)"
        )
    return _batch_norm(input, running_mean, running_var, weight, bias, training, float(momentum), eps)


def _check_input(input):
    from minicnn.tensor import Tensor

    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: input must be a minicnn Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(
            "batch_norm: expected input of shape (N, C), (N, C, L) or (N, C, H, W), "
            f"got shape {_shape_text(input.shape)}"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be a floating-point tensor, got dtype {input.dtype.name}")


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps):
    """``batch_norm`` after its momentum check: the other checks, then the op. ``momentum`` is a
    float, or a 0-d array on the input's device: ``BatchNorm(momentum=None)`` passes
    1 / num_batches_tracked computed there, so no step waits for the GPU to read a number."""
    from minicnn.tensor import Tensor

    _check_input(input)
    c = input.shape[1]
    layout = "(N, C)" if input.ndim == 2 else "(N, C, L)" if input.ndim == 3 else "(N, C, H, W)"

    def check_vector(name, t):
        if t is None:
            return None
        if not isinstance(t, Tensor):
            raise TypeError(f"batch_norm: {name} must be a Tensor or None, got {type(t).__name__}")
        if t.shape != (c,):
            raise ValueError(
                f"batch_norm: input of shape {_shape_text(input.shape)} (layout {layout}) has C={c} "
                f"channels, so {name} must have shape ({c},), got {_shape_text(t.shape)}"
            )
        if t.device != input.device:
            raise RuntimeError(f"batch_norm: {name} is on {t.device} but the input is on {input.device}")
        return t

    check_vector("running_mean", running_mean)
    check_vector("running_var", running_var)
    for name, t in (("weight", weight), ("bias", bias)):
        check_vector(name, t)
        if t is not None and t.dtype != input.dtype:
            raise TypeError(
                f"batch_norm: {name} has dtype {t.dtype.name} but the input has dtype {input.dtype.name}; "
                "convert one of them (e.g. .to(input.dtype))"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise RuntimeError(
            "batch_norm: running_mean and running_var must be given in evaluation mode (training=False)"
        )
    stats = (None, None) if running_mean is None else (running_mean.array, running_var.array)
    if training:
        m = input.shape[0] * math.prod(input.shape[2:])
        if m == 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{_shape_text(input.shape)} (batch_norm: the batch statistics of a channel need "
                "at least 2 values; use a batch of 2 or more, or eval mode)"
            )
        if m == 0:  # an empty batch: an empty output, no statistics to take or update (as PyTorch)
            xp = get_array_module(input.array)
            stats, training = (xp.zeros(c, input.dtype), xp.ones(c, input.dtype)), False
    return BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=stats[0],
        running_var=stats[1],
        training=bool(training),
        momentum=momentum,
        eps=float(eps),
    )
