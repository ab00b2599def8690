"""Activation layers: thin modules around ``F.relu``, ``F.gelu``, ... (ops in minicnn/ops/activation.py).

``inplace=True`` (ReLU, LeakyReLU, ELU, SiLU) overwrites the input with the result and returns it,
as PyTorch (``F.relu(x, inplace=True)``, i.e. ``x.relu_()``).
"""

from __future__ import annotations

import warnings

from minicnn.nn import functional as F
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_tensor


def _inplace_str(inplace, first=False):
    if not inplace:
        return ""
    return "inplace=True" if first else ", inplace=True"


class ReLU(Module):
    """max(0, x) elementwise."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return _inplace_str(self.inplace, first=True)

    def forward(self, input):
        check_tensor(self, input)
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + _inplace_str(self.inplace)

    def forward(self, input):
        check_tensor(self, input)
        return F.leaky_relu(input, self.negative_slope, inplace=self.inplace)


class ELU(Module):
    """x if x > 0 else alpha * (exp(x) - 1)   (Clevert et al. 2015)."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def extra_repr(self):
        return f"alpha={self.alpha}" + _inplace_str(self.inplace)

    def forward(self, input):
        check_tensor(self, input)
        return F.elu(input, self.alpha, inplace=self.inplace)


class GELU(Module):
    """x * Phi(x) (Phi = standard normal CDF); ``approximate='tanh'`` uses the tanh formula."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self):
        return f"approximate={self.approximate!r}"

    def forward(self, input):
        check_tensor(self, input)
        return F.gelu(input, approximate=self.approximate)


class SiLU(Module):
    """x * sigmoid(x) (also called swish)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self):
        return _inplace_str(self.inplace, first=True)

    def forward(self, input):
        check_tensor(self, input)
        return F.silu(input, inplace=self.inplace)


class Sigmoid(Module):
    """1 / (1 + exp(-x))."""

    def forward(self, input):
        check_tensor(self, input)
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x)."""

    def forward(self, input):
        check_tensor(self, input)
        return F.tanh(input)


def _softmax_dim(name, ndim):
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated (as in PyTorch). "
        "Pass dim explicitly, e.g. dim=1 for (N, C) scores.",
        stacklevel=3,
    )
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim`` (give it: ``dim=1`` for (N, C) scores)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, input):
        check_tensor(self, input)
        dim = self.dim if self.dim is not None else _softmax_dim("Softmax", input.ndim)
        return F.softmax(input, dim)


class LogSoftmax(Module):
    """x - log(sum(exp(x))) along ``dim``; pair it with ``NLLLoss``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"

    def forward(self, input):
        check_tensor(self, input)
        dim = self.dim if self.dim is not None else _softmax_dim("LogSoftmax", input.ndim)
        return F.log_softmax(input, dim)
