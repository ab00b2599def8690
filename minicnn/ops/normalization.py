"""Batch normalisation: ``batch_norm`` and its op class ``BatchNorm`` (forward and fused backward).

Layout: the channel axis is axis 1, so the input is (N, C), (N, C, L) or (N, C, H, W). Every
statistic is per channel, over the other axes. Internally the input is viewed (no copy) as
(N, C, M) with M = L, H*W or 1.

Speed on the CPU (NumPy, float32). The op is memory-bound, so the aim is few passes over
activation-sized arrays and few such arrays; numbers are for 64x32x28x28 on 2 cores:

* per-channel sums are a BLAS matrix-vector product ``x.reshape(N*C, M) @ ones(M)`` and a sum
  over N: ~0.15 ms against ~0.3 ms for ``einsum("ncm->c")`` and ~0.45 ms for ``sum(axis=(0, 2))``;
* per-channel constants are first repeated into a (C, M) "plane" (``_planes``), so an
  element-wise pass is ``x * plane`` whose inner loop runs over C*M contiguous elements.
  Broadcasting a (C, 1) column instead restarts NumPy's inner loop every M elements: ~1.6x
  slower per pass (1.0 vs 0.65 ms), more for small images (M = 256: 1.4 vs 0.85 ms);
* x - mean is never kept between forward and backward: the forward's output is
  ``x * scale + shift`` (PyTorch's CPU kernel does the same), the variance's deviations are
  formed slice by slice in a small buffer (``_centered_dot``), and backward forms them again
  straight into dx's memory while it accumulates sum(g * (x - mean)). The only activation-sized
  arrays are the output and dx: less memory and, inside a training step, fewer fresh arrays
  (each one costs a page fault per 4 KiB on its first write);
* backward's element-wise passes run over slices of the batch of ~512 KB (``batch_slices``),
  so passes 2-4 find the slice in the L2 cache (four passes over 64x32x28x28: 1.6 -> 1.2 ms).

The derivation of the backward formula is in docs/backprop/batchnorm.md.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.ops import workspace

SLICE_BYTES = 512 * 1024  # see batch_slices: three such slices fit a core's 2 MB L2 cache


def _channel_sum(a3, xp):
    """Per-channel sum of an (N, C, M) array -> (C,): a BLAS matrix-vector product, then N adds."""
    n, c, m = a3.shape
    return (a3.reshape(n * c, m) @ xp.ones(m, dtype=a3.dtype)).reshape(n, c).sum(0)


def _channel_dot(a3, b3, xp):
    """Per-channel sum of a3 * b3 for (N, C, M) arrays -> (C,), without the product temporary."""
    return xp.einsum("ncm,ncm->c", a3, b3)


def _centered_dot(x3, mean, a3, xp, out=None):
    """Per-channel sum of (x3 - mean) * a3 -> (C,); a3=None: sum of (x3 - mean)**2.

    x3 - mean is formed one batch slice at a time and consumed while it is in the cache: in a
    small reused buffer, or in ``out`` (an array shaped like x3) when the caller wants to keep
    it. Never as a separate activation-sized temporary."""
    (mean_p,) = _planes(x3.shape[2], mean)
    total, buf = xp.zeros(x3.shape[1], dtype=x3.dtype), None
    for s in batch_slices(x3, xp):
        xs = x3[s]
        if out is not None:
            xc = xp.subtract(xs, mean_p, out=out[s])
        else:
            buf = xp.empty_like(xs) if buf is None else buf
            xc = xp.subtract(xs, mean_p, out=buf[: xs.shape[0]])
        total += _channel_dot(xc, xc if a3 is None else a3[s], xp)
    return total


def _planes(m, *vectors):
    """One (C, M) plane per per-channel vector, the vector repeated along M (see the module doc)."""
    xp = get_array_module(vectors[0])
    planes = xp.empty((len(vectors), vectors[0].shape[0], m), dtype=vectors[0].dtype)
    for plane, v in zip(planes, vectors):
        plane[...] = v[:, None]
    return planes


def batch_slices(a, xp):
    """Slices of the batch axis (axis 0) of ``a`` of about SLICE_BYTES each, so that several
    passes over one slice find it in the CPU cache (also used by pooling). On the GPU: the
    whole batch, one slice (one kernel per pass)."""
    n = a.shape[0]
    step = n if xp is not np else max(1, SLICE_BYTES * n // max(1, a.nbytes))
    return [slice(i, i + step) for i in range(0, n, step)]


class BatchNorm(Function):
    """out = gamma * xhat + beta,  xhat = (x - mu) * invstd,  invstd = 1 / sqrt(var + eps), per channel.

    Training (mu, var = batch mean and biased variance over the m = N*H*W values of a channel):
        dbeta = sum(g),  dgamma = sum(g * xhat),
        dx = gamma * invstd * (g - sum(g) / m - xhat * sum(g * xhat) / m)   (one fused formula).
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
            # Two-pass variance (mean of squared deviations): accurate in float32.
            mean = _channel_sum(x3, xp) / m
            var = _centered_dot(x3, mean, None, xp) / m
            if running_mean is not None:
                running_mean *= 1.0 - momentum
                running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
            if running_var is not None:
                unbiased = var * (m / (m - 1))
                running_var *= 1.0 - momentum
                running_var += (momentum * unbiased).astype(running_var.dtype, copy=False)
        else:
            mean = running_mean.astype(x.dtype)  # a copy: backward needs it as it is now
            var = running_var.astype(x.dtype, copy=False)

        # out = x * scale + shift with per-channel scale = gamma * invstd and
        # shift = beta - mean * scale: one pass to the output and one in place, per batch slice
        # (PyTorch's CPU kernel uses the same form). Backward recomputes x - mean from x (kept
        # by reference) rather than keeping an activation-sized x - mean array alive in between.
        invstd = 1.0 / xp.sqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        scale_p, shift_p = _planes(x3.shape[2], scale, shift)
        out = workspace.empty(xp, x3.shape, x3.dtype)
        for s in batch_slices(x3, xp):  # the in-place add finds the slice in the cache
            xp.add(xp.multiply(x3[s], scale_p, out=out[s]), shift_p, out=out[s])

        self.invstd, self.weight = invstd, weight
        if need_w or (training and need_x):
            self.x3, self.mean = x3, mean
        return out.reshape(x.shape)

    def backward(self, g):
        xp = get_array_module(g)
        need_x, need_w, need_b = self.needs_input_grad
        n, c = self.shape[0], self.shape[1]
        g3 = g.reshape(n, c, math.prod(self.shape[2:]))
        invstd, m = self.invstd, self.count
        k = invstd if self.weight is None else invstd * self.weight  # d out / d x in eval mode

        sum_g = _channel_sum(g3, xp) if (need_b or (self.training and need_x)) else None
        # In training, dx's memory first receives xc = x - mean (slice by slice, while
        # sum(g * xc) is accumulated), and the element-wise passes below then work in place.
        dx = workspace.empty(xp, g3.shape, g3.dtype) if (need_x and self.training) else None
        need_dot = need_w or (self.training and need_x)
        sum_g_xc = _centered_dot(self.x3, self.mean, g3, xp, out=dx) if need_dot else None

        if need_x:
            if self.training:
                # dx = k * (g - mean_g - xc * c2), as xhat * sum(g * xhat) / m = xc * c2 with
                # c2 = invstd**2 * sum(g * xc) / m. Four in-place passes over each batch slice
                # while it is in the cache.
                c2_p, mean_g_p, k_p = _planes(g3.shape[2], invstd * invstd * sum_g_xc / m, sum_g / m, k)
                for s in batch_slices(g3, xp):
                    d = dx[s]
                    d *= c2_p
                    xp.subtract(g3[s], d, out=d)
                    d -= mean_g_p
                    d *= k_p
            else:
                dx = xp.multiply(g3, _planes(g3.shape[2], k)[0], out=workspace.empty(xp, g3.shape, g3.dtype))
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
        raise TypeError(f"batch_norm: input must be a floating-point tensor, got dtype {input.dtype.name}")
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
                f"batch_norm: {name} has dtype {t.dtype.name} but the input has dtype {input.dtype.name}; "
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
        running_mean=None if running_mean is None else running_mean.array,
        running_var=None if running_var is None else running_var.array,
        training=bool(training),
        momentum=float(momentum),
        eps=float(eps),
    )
