"""Batch normalisation as loops: the compiled twin of ``minicnn.ops.normalization.BatchNorm``
(a subclass of the same name).

Four kernels, one per pass over the activations, each the loop form of a line of the textbook op
(docs/backprop/batchnorm.md). The input is viewed as (N, C, M), M = L or H*W (a reshape, no copy).

* ``batch_norm_stats``: per-channel mean and biased variance (training forward). Threads own
  channels (``prange(C)``); each sums its channel's N*M values in float64, then sums the squared
  deviations: the second pass finds the channel in the core's cache.
* ``batch_norm_normalize``: out = γ·x̂ + β with x̂ = (x − μ)·invstd (both forwards).
* ``batch_norm_backward_sums``: Σg and Σ(g·x̂) per channel, in float64, in one pass over g and x.
* ``batch_norm_backward_dx``: dx = γ·invstd/m · (m·g − Σg − x̂·Σ(g·x̂)) (training backward).

Element-wise passes (normalize, dx) run in the input's dtype with per-channel constants in that
dtype, in the textbook's order of operations: given the same constants they equal the textbook
bit for bit. The sums differ from NumPy's in order (and precision: float64 here), so the batch
statistics, and what depends on them, agree to rounding. x̂ is never stored: backward recomputes
it from x (saved by reference), which costs one multiply and saves writing and reading an array
of the activation's size.

``NUMBA_DISABLE_JIT=1`` runs these loops as plain Python (slow), for a debugger.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from minicnn.kernels import twin
from minicnn.ops import normalization as textbook

# fastmath={"reassoc"} on the reductions only: it lets LLVM keep several partial sums at once (SIMD),
# which changes the order of the additions and nothing else (NaN and inf still propagate).


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def batch_norm_stats(x):
    """Equals ``mean = x.mean(axes)`` and ``var = ((x - mean)**2).mean(axes)`` of ``BatchNorm.forward``
    (training), for x of shape (N, C, M); returns both as float64 (C,) arrays."""
    N, C, M = x.shape
    mean = np.empty(C, dtype=np.float64)
    var = np.empty(C, dtype=np.float64)
    for c in prange(C):  # each thread owns whole channels: no two threads add to one sum
        total = np.float64(0.0)  # float64 sums (also when NUMBA_DISABLE_JIT=1 runs this as Python)
        for n in range(N):
            for i in range(M):
                total += x[n, c, i]
        mu = total / (N * M)
        squares = np.float64(0.0)
        for n in range(N):
            for i in range(M):
                d = x[n, c, i] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / (N * M)
    return mean, var


@njit(parallel=True, cache=True)
def batch_norm_normalize(x, mean, invstd, gamma, beta):
    """Equals ``out = γ · x̂ + β``, ``x̂ = (x - μ) · invstd`` of ``BatchNorm.forward``; the (C,) vectors
    in x's dtype."""
    N, C, M = x.shape
    out = np.empty_like(x)
    for p in prange(N * C):  # one (n, c) plane per iteration
        n, c = p // C, p % C
        mu, inv, ga, be = mean[c], invstd[c], gamma[c], beta[c]
        for i in range(M):
            xhat = (x[n, c, i] - mu) * inv
            out[n, c, i] = ga * xhat + be
    return out


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def batch_norm_backward_sums(g, x, mean, invstd):
    """Equals ``sum_g = g.sum(axes)`` and ``sum_g_xhat = (g * x̂).sum(axes)`` of ``BatchNorm.backward``,
    with x̂ = (x - μ) · invstd recomputed; returns float64 (C,) arrays."""
    N, C, M = x.shape
    sum_g = np.empty(C, dtype=np.float64)
    sum_g_xhat = np.empty(C, dtype=np.float64)
    for c in prange(C):
        mu, inv = mean[c], invstd[c]
        s1 = np.float64(0.0)
        s2 = np.float64(0.0)
        for n in range(N):
            for i in range(M):
                xhat = (x[n, c, i] - mu) * inv
                s1 += g[n, c, i]
                s2 += g[n, c, i] * xhat
        sum_g[c] = s1
        sum_g_xhat[c] = s2
    return sum_g, sum_g_xhat


@njit(parallel=True, cache=True)
def batch_norm_backward_dx(g, x, mean, invstd, k, m, sum_g, sum_g_xhat):
    """Equals the training ``dx = k · (m · g - Σg - x̂ · Σ(g · x̂))``, k = γ · invstd / m, of
    ``BatchNorm.backward``; (C,) vectors and the scalar m in x's dtype."""
    N, C, M = x.shape
    dx = np.empty_like(g)
    for p in prange(N * C):
        n, c = p // C, p % C
        mu, inv, kc, sg, sgx = mean[c], invstd[c], k[c], sum_g[c], sum_g_xhat[c]
        for i in range(M):
            xhat = (x[n, c, i] - mu) * inv
            dx[n, c, i] = kc * (m * g[n, c, i] - sg - xhat * sgx)
    return dx


_COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@twin(textbook.BatchNorm)
class BatchNorm(textbook.BatchNorm):
    """The textbook ``BatchNorm`` with its passes compiled (same name: the profiler and grad_fn show one
    op). Saves x, not x̂, for backward: x is an input it reads."""

    def forward(
        self, x, weight, bias, running_mean=None, running_var=None, training=False, momentum=0.1, eps=1e-5
    ):
        self.textbook = x.dtype not in _COMPILED_DTYPES  # (float16: the textbook, no extra specialisation)
        if self.textbook:
            return super().forward(x, weight, bias, running_mean, running_var, training, momentum, eps)
        n, c = x.shape[0], x.shape[1]
        x3 = np.ascontiguousarray(x).reshape(n, c, math.prod(x.shape[2:]))
        m = n * x3.shape[2]  # values per channel
        if training:
            mean, var = (s.astype(x.dtype) for s in batch_norm_stats(x3))
            textbook._update_running_stats(running_mean, running_var, mean, var, m, momentum)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        invstd = 1.0 / np.sqrt(var + eps)
        gamma = np.ones(c, x.dtype) if weight is None else weight
        beta = np.zeros(c, x.dtype) if bias is None else bias
        out = batch_norm_normalize(x3, mean, invstd, gamma, beta)
        self.x3, self.mean, self.invstd, self.weight = x3, mean, invstd, weight
        self.training, self.m = training, m
        return out.reshape(x.shape)

    def backward(self, g):
        if self.textbook:
            return super().backward(g)
        x3, mean, invstd, m = self.x3, self.mean, self.invstd, self.m
        g3 = np.ascontiguousarray(g, dtype=x3.dtype).reshape(x3.shape)
        gamma_invstd = invstd if self.weight is None else self.weight * invstd
        sum_g, sum_g_xhat = (s.astype(x3.dtype) for s in batch_norm_backward_sums(g3, x3, mean, invstd))
        dx = None
        if self.needs_input_grad[0] and self.training:
            k = gamma_invstd / m
            dx = batch_norm_backward_dx(g3, x3, mean, invstd, k, x3.dtype.type(m), sum_g, sum_g_xhat)
        elif self.needs_input_grad[0]:
            dx = gamma_invstd[:, None] * g3  # eval: γ · invstd · g, one NumPy pass
        return (None if dx is None else dx.reshape(g.shape)), sum_g_xhat, sum_g
