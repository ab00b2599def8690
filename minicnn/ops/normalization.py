"""Batch normalisation: ``batch_norm`` and its op class ``BatchNorm`` (forward and fused backward).

Layout: the channel axis is axis 1, so the input is (N, C), (N, C, L) or (N, C, H, W). Every
statistic is per channel, over the other axes. Internally the input is viewed (no copy) as
(N, C, M) with M = L, H*W or 1, and per-channel sums are ``einsum("ncm->c")`` reductions,
which are measurably faster than ``sum(axis=(0, 2))`` on NumPy and stay in the input's dtype.

The derivation of the backward formula is in docs/backprop/batchnorm.md.
"""

from __future__ import annotations

import math

from minicnn.autograd import Function
from minicnn.backend import get_array_module


def _channel_sum(a3, xp):
    """Per-channel sum of an (N, C, M) array -> (C,)."""
    return xp.einsum("ncm->c", a3)


def _channel_dot(a3, b3, xp):
    """Per-channel sum of a3 * b3 for (N, C, M) arrays -> (C,), without the product temporary."""
    return xp.einsum("ncm,ncm->c", a3, b3)


class BatchNorm(Function):
    """out = gamma * xhat + beta,  xhat = (x - mu) * invstd,  invstd = 1 / sqrt(var + eps), per channel.

    Training (mu, var = batch mean and biased variance over the m = N*H*W values of a channel):
        dbeta = sum(g),  dgamma = sum(g * xhat),
        dx = (gamma * invstd / m) * (m * g - sum(g) - xhat * sum(g * xhat))   (one fused formula).
    Eval (mu, var = running statistics, constants):  dx = g * gamma * invstd.
    """

    def forward(
        self, x, weight, bias, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5
    ):
        xp = get_array_module(x)
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, math.prod(x.shape[2:]))
        m = x3.shape[0] * x3.shape[2]
        self.shape, self.training, self.count = x.shape, training, m
        need_x, need_w, need_b = self.needs_input_grad

        if training:
            mean = _channel_sum(x3, xp) / m
            xc = x3 - mean[:, None]
            var = _channel_dot(xc, xc, xp) / m
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
            if running_var is not None:
                unbiased = var * (m / (m - 1))
                running_var *= 1.0 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype, copy=False)
        else:
            mean = running_mean.astype(x.dtype, copy=False)
            var = running_var.astype(x.dtype, copy=False)
            xc = x3 - mean[:, None] if need_w else None

        invstd = 1.0 / xp.sqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        if training:
            out = xc * scale[:, None]
            if bias is not None:
                out += bias[:, None]
        else:
            shift = -mean * scale if bias is None else bias - mean * scale
            out = x3 * scale[:, None]
            out += shift[:, None]

        self.invstd, self.weight = invstd, weight
        self.xc = xc if (need_w or (training and need_x)) else None
        return out.reshape(x.shape)

    def backward(self, g):
        xp = get_array_module(g)
        need_x, need_w, need_b = self.needs_input_grad
        n, c = self.shape[0], self.shape[1]
        g3 = g.reshape(n, c, math.prod(self.shape[2:]))
        invstd, m = self.invstd, self.count
        k = invstd if self.weight is None else invstd * self.weight  # d out / d x in eval mode

        sum_g = _channel_sum(g3, xp) if (need_b or (self.training and need_x)) else None
        sum_g_xc = _channel_dot(g3, self.xc, xp) if (need_w or (self.training and need_x)) else None

        dx = None
        if need_x:
            dx = g3 * k[:, None]
            if self.training:
                # xhat * sum(g * xhat) = xc * invstd**2 * sum(g * xc)
                c_xc = k * invstd * invstd * sum_g_xc / m
                c_0 = k * sum_g / m
                corr = self.xc * c_xc[:, None]
                corr += c_0[:, None]
                dx -= corr
            dx = dx.reshape(self.shape)
        dweight = sum_g_xc * invstd if need_w else None
        dbias = sum_g if need_b else None
        return dx, dweight, dbias


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
    knows: the layer passes ``momentum = 1 / num_batches_tracked``.
    """
    from minicnn.tensor import Tensor

    if not isinstance(input, Tensor):
        raise TypeError(f"batch_norm: input must be a minicnn Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(
            "batch_norm: expected input of shape (N, C), (N, C, L) or (N, C, H, W), "
            f"got shape {_shape_text(input.shape)}"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be a floating-point tensor, got dtype {input.dtype}")
    if momentum is None or isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(
            f"batch_norm: momentum must be a float factor, got {momentum!r}. (For the cumulative moving "
            "average, BatchNorm(momentum=None) passes momentum = 1 / num_batches_tracked.)"
        )
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
                f"batch_norm: {name} has dtype {t.dtype} but the input has dtype {input.dtype}; "
                "convert one of them (e.g. .to(input.dtype))"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: pass both running_mean and running_var, or neither")
    if not training and running_mean is None:
        raise RuntimeError(
            "batch_norm: running_mean and running_var must be given in evaluation mode (training=False)"
        )
    if training:
        m = input.shape[0] * math.prod(input.shape[2:])
        if m <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, got input size "
                f"{_shape_text(input.shape)} (batch_norm: the batch statistics of a channel need "
                "at least 2 values; use a batch of 2 or more, or eval mode)"
            )
    return BatchNorm.apply(
        input,
        weight,
        bias,
        running_mean=None if running_mean is None else running_mean.data,
        running_var=None if running_var is None else running_var.data,
        training=bool(training),
        momentum=float(momentum),
        eps=float(eps),
    )
