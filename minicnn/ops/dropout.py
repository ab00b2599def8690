"""Inverted dropout: ``dropout`` (element-wise) and ``dropout2d`` (whole channels), op class ``Dropout``.

During training every element (or channel) is kept with probability 1 - p and the kept ones are
scaled by 1 / (1 - p), so the expected value of the output equals the input and evaluation needs
no rescaling. The mask comes from ``minicnn.random.generator(device)``, so ``minicnn.manual_seed``
makes it reproducible. Derivation and shapes: docs/backprop/dropout.md.
"""

from __future__ import annotations

import warnings

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import device_of, get_array_module
from minicnn.random import generator


class Dropout(Function):
    """out = x * mask,  mask = keep / (1 - p)  with keep ~ Bernoulli(1 - p) drawn once in forward.
    dL/dx = g * mask (the same mask: a dropped unit passes no gradient, a kept one is scaled).
    ``mask_shape`` (N, C, 1, 1) drops whole channels (dropout2d); the mask then broadcasts."""

    saved_inputs = ()  # backward reads the mask only

    def forward(self, x, p, mask_shape=None):
        xp = get_array_module(x)
        shape = x.shape if mask_shape is None else mask_shape
        if p >= 1.0:
            mask = xp.zeros(shape, dtype=x.dtype)
        else:
            # uniform draws in the input's dtype (float32 or float64), so nothing is upcast
            draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
            u = generator(device_of(x)).random(shape, dtype=draw_dtype)
            mask = (u >= p).astype(x.dtype)  # P(u >= p) = 1 - p
            mask *= 1.0 / (1.0 - p)
        self.mask = mask
        return x * mask

    def backward(self, g):
        return g * self.mask


def _check_p(p, op):
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
        raise TypeError(f"{op}: p must be a float in [0, 1], got {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return p


def _check_input(input, op):
    from minicnn.tensor import Tensor

    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a minicnn Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating-point tensor, got dtype {input.dtype.name}")


def _in_place(input, op, name):
    """PyTorch's ``inplace=True``: ``input`` takes the values of ``op(input)`` (minicnn/_inplace.py)."""
    from minicnn import _inplace

    return _inplace.unary(input, op, name)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) (torch semantics).

    Returns ``input`` itself when ``training`` is False or ``p == 0`` (the identity, as PyTorch);
    ``p == 1`` gives zeros. ``inplace=True`` writes the result into ``input`` and returns it.
    """
    p = _check_p(p, "dropout")
    _check_input(input, "dropout")
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if inplace:
        return _in_place(input, lambda t: Dropout.apply(t, p=p), "dropout_")
    return Dropout.apply(input, p=p)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of an (N, C, H, W) input with probability ``p``, scale the rest by 1 / (1 - p).

    Neighbouring pixels of a feature map are strongly correlated, so dropping single pixels barely
    regularises a CNN; dropping a whole channel does. A 3-D input is read as (N, C, L), with a
    warning, as PyTorch 2.x does (it drops whole (n, c) rows).
    """
    p = _check_p(p, "dropout2d")
    _check_input(input, "dropout2d")
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D dropout "
            "behavior is desired - input is interpreted as shape (N, C, L), where C is the channel dim. "
            "PyTorch will read a 3D input as one unbatched (C, H, W) sample in a future release; pass "
            "(N, C, L, 1) to keep this behavior.",
            UserWarning,
            stacklevel=2,
        )
    elif input.ndim != 4:
        raise ValueError(
            f"dropout2d: expected input of shape (N, C, H, W), got shape {tuple(input.shape)} "
            f"({input.ndim} dimensions)"
        )
    if not training or p == 0.0 or input.numel() == 0:
        return input
    mask_shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2)  # one draw per (n, c)
    if inplace:
        return _in_place(input, lambda t: Dropout.apply(t, p=p, mask_shape=mask_shape), "dropout2d_")
    return Dropout.apply(input, p=p, mask_shape=mask_shape)
