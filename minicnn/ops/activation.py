"""Activation functions and softmax, the textbook: one op class each, forward and backward side by side.

Element-wise ops save the smallest thing their backward needs, computed in forward (ReLU, sigmoid,
tanh, SiLU: their output; leaky ReLU and ELU: a mask), so most never keep their input: their
in-place forms (``relu(x, inplace=True)``...) can then overwrite it. Softmax and log-softmax
subtract the maximum along ``dim`` first, so logits of any magnitude (1e4 and beyond) give finite
results. Derivations: docs/backprop/activations.md. ReLU's compiled CPU twin is in
minicnn/kernels/activation.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module, is_cupy_array
from minicnn.ops.basic import _normalize_dims

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_BETA = math.sqrt(2.0 / math.pi)
_GELU_KAPPA = 0.044715


def _erf(x):
    """The error function, element-wise. NumPy has none: SciPy's (CPU) or CuPy's (GPU) ufunc is used,
    and without SciPy a slower but exact fallback through ``math.erf``."""
    if is_cupy_array(x):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    try:
        import scipy.special
    except ImportError:
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    return scipy.special.erf(x)


def _stable_sigmoid(x, xp):
    """1 / (1 + exp(-x)) without overflow: with e = exp(-|x|) <= 1, it is 1/(1+e) for x >= 0, e/(1+e) else."""
    e = xp.exp(-xp.abs(x))
    s = 1.0 / (1.0 + e)
    return xp.where(x >= 0, s, e * s)


def _zero(g, xp):
    """A 0-d zero of g's dtype, for ``where`` (no Python scalar: CuPy's where wants arrays)."""
    return xp.zeros((), dtype=g.dtype)


# ====================================================================== rectifiers
class ReLU(Function):
    """out = max(x, 0).   dL/dx = 0 where x <= 0, else g.

    Out <= 0 exactly where x <= 0, so backward reads the output. The gradient is 0 at x == 0, and
    0 where x <= 0 even if g is inf or NaN (``g * mask`` would give inf * 0 = NaN there); a NaN
    input passes g (NaN <= 0 is false), as PyTorch's rule."""

    saved_inputs, saves_output = (), True

    def forward(self, x):
        self.out = get_array_module(x).maximum(x, 0)
        return self.out

    def backward(self, g):
        xp = get_array_module(g)
        return xp.where(self.out <= 0, _zero(g, xp), g)


class LeakyReLU(Function):
    """out = x if x > 0 else slope * x.   dL/dx = g if x > 0 else slope * g  (slope at x == 0)."""

    saved_inputs = ()  # a mask is kept

    def forward(self, x, negative_slope=0.01):
        xp = get_array_module(x)
        self.positive, self.slope = x > 0, negative_slope
        return xp.where(self.positive, x, x * negative_slope)

    def backward(self, g):
        return get_array_module(g).where(self.positive, g, g * self.slope)


class ELU(Function):
    """out = x if x > 0 else alpha * (exp(x) - 1).
    dL/dx = g if x > 0 else g * alpha * exp(x)   (alpha at x == 0; NaN at a NaN input: 'x > 0' is
    false there and alpha * exp(NaN) is NaN. PyTorch gives 1 or NaN there by SIMD path: docs/check.md)."""

    saved_inputs = ()  # a mask and alpha * exp(x) are kept

    def forward(self, x, alpha=1.0):
        xp = get_array_module(x)
        positive = x > 0
        exp_neg = xp.exp(xp.minimum(x, 0))  # no overflow for large positive x; NaN stays NaN
        self.positive, self.alpha_exp = positive, alpha * exp_neg
        return xp.where(positive, x, alpha * xp.expm1(xp.minimum(x, 0)))

    def backward(self, g):
        xp = get_array_module(g)
        return xp.where(self.positive, g, g * self.alpha_exp)


class GELU(Function):
    """approximate='none': out = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2  (the normal CDF),
        dL/dx = g * (Phi(x) + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    approximate='tanh': out = x/2 * (1 + t),  t = tanh(b (x + k x^3)),  b = sqrt(2/pi), k = 0.044715,
        dL/dx = g * ((1 + t) / 2 + x/2 * (1 - t^2) * b * (1 + 3 k x^2)).
    Non-finite inputs: GELU(+inf) = +inf (PyTorch's float32 vector path gives NaN: docs/check.md),
    GELU(-inf) = NaN (-inf * 0) and the gradient at +-inf is NaN (inf * 0), as in PyTorch."""

    def forward(self, x, approximate="none"):
        xp = get_array_module(x)
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = xp.tanh(_GELU_BETA * (x + _GELU_KAPPA * x * x * x))
            return 0.5 * x * (1.0 + self.t)
        self.cdf = 0.5 * (1.0 + _erf(x * _SQRT_HALF))
        return x * self.cdf

    def backward(self, g):
        xp = get_array_module(g)
        x = self.x
        if self.approximate == "tanh":
            t = self.t
            inner_grad = _GELU_BETA * (1.0 + 3.0 * _GELU_KAPPA * x * x)
            return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_grad)
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return g * (self.cdf + x * pdf)


# ====================================================================== smooth squashing
class Sigmoid(Function):
    """out = s = 1 / (1 + exp(-x)).   dL/dx = g * s * (1 - s)."""

    saved_inputs, saves_output = (), True

    def forward(self, x):
        self.out = _stable_sigmoid(x, get_array_module(x))
        return self.out

    def backward(self, g):
        s = self.out
        return g * (s * (1.0 - s))


class Tanh(Function):
    """out = t = tanh(x).   dL/dx = g * (1 - t^2)."""

    saved_inputs, saves_output = (), True

    def forward(self, x):
        self.out = get_array_module(x).tanh(x)
        return self.out

    def backward(self, g):
        t = self.out
        return g * (1.0 - t * t)


class SiLU(Function):
    """out = x * s,  s = sigmoid(x).   dL/dx = g * (s + x * s * (1 - s)) = g * (s + out * (1 - s)).
    The second form needs only s and the output, not x (so ``silu(x, inplace=True)`` works)."""

    saved_inputs, saves_output = (), True

    def forward(self, x):
        self.s = _stable_sigmoid(x, get_array_module(x))
        self.out = x * self.s
        return self.out

    def backward(self, g):
        s = self.s
        return g * (s + self.out * (1.0 - s))


# ====================================================================== softmax
class Softmax(Function):
    """out = s = exp(x - max) / sum(exp(x - max)) along ``dim``.
    dL/dx = s * (g - sum(g * s))   (the Jacobian diag(s) - s s^T applied to g, without building it)."""

    saved_inputs, saves_output = (), True

    def forward(self, x, dim):
        xp = get_array_module(x)
        self.dim = dim
        if x.size == 0:  # an empty batch: nothing to normalise (and an empty axis has no maximum)
            self.out = x.copy()
            return self.out
        e = xp.exp(x - x.max(axis=dim, keepdims=True))
        e /= e.sum(axis=dim, keepdims=True)
        self.out = e
        return e

    def backward(self, g):
        s = self.out
        gs = g * s
        gs -= s * gs.sum(axis=self.dim, keepdims=True)
        return gs


class LogSoftmax(Function):
    """out = x - max - log(sum(exp(x - max))) along ``dim``.
    dL/dx = g - softmax(x) * sum(g),  softmax(x) = exp(out)."""

    saved_inputs, saves_output = (), True

    def forward(self, x, dim):
        xp = get_array_module(x)
        self.dim = dim
        if x.size == 0:  # an empty batch (as in Softmax)
            self.out = x.copy()
            return self.out
        shifted = x - x.max(axis=dim, keepdims=True)
        shifted -= xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        self.out = shifted
        return shifted

    def backward(self, g):
        xp = get_array_module(g)
        return g - xp.exp(self.out) * g.sum(axis=self.dim, keepdims=True)


# ====================================================================== functional API
def _check_float(input, op):
    from minicnn.tensor import Tensor

    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a minicnn Tensor, got {type(input).__name__}")
    if input.dtype.kind != "f":
        raise TypeError(f"{op}: input must be a floating-point tensor, got dtype {input.dtype.name}")


def _in_place(input, op, name):
    """PyTorch's ``inplace=True``: ``input`` takes the values of ``op(input)`` (minicnn/_inplace.py:
    its version counter goes up, and inside a graph it takes the op as its grad_fn). The ops above
    keep no reference to their input, so their backward still works."""
    from minicnn import _inplace

    return _inplace.unary(input, op, name)


def relu(input, inplace=False):
    _check_float(input, "relu")
    if inplace:
        return input.relu_()
    return ReLU.apply(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    _check_float(input, "leaky_relu")
    if inplace:
        return _in_place(input, lambda t: leaky_relu(t, negative_slope), "leaky_relu_")
    return LeakyReLU.apply(input, negative_slope=float(negative_slope))


def elu(input, alpha=1.0, inplace=False):
    _check_float(input, "elu")
    if inplace:
        return _in_place(input, lambda t: elu(t, alpha), "elu_")
    return ELU.apply(input, alpha=float(alpha))


def gelu(input, approximate="none"):
    _check_float(input, "gelu")
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU.apply(input, approximate=approximate)


def silu(input, inplace=False):
    _check_float(input, "silu")
    if inplace:
        return _in_place(input, silu, "silu_")
    return SiLU.apply(input)


def sigmoid(input):
    _check_float(input, "sigmoid")
    return Sigmoid.apply(input)


def tanh(input):
    _check_float(input, "tanh")
    return Tanh.apply(input)


def _softmax_dim(input, dim, op, dtype):
    if dtype is not None:
        input = input.to(dtype)
    _check_float(input, op)
    if dim is None:  # PyTorch's legacy implicit choice, with the same warning
        dim = 0 if input.ndim in (0, 1, 3) else 1
        warnings.warn(
            f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
            "as an argument.",
            UserWarning,
            stacklevel=3,
        )
    if input.ndim == 0:
        if dim not in (0, -1):
            raise IndexError(f"{op}: dim {dim} is out of range for a 0-d tensor")
        return input, None
    (axis,) = _normalize_dims(dim, input.ndim, op)
    return input, axis


def softmax(input, dim=None, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, computed stably (the maximum is subtracted first)."""
    input, axis = _softmax_dim(input, dim, "softmax", dtype)
    return Softmax.apply(input, dim=axis)


def log_softmax(input, dim=None, dtype=None):
    """log(softmax(x)) along ``dim`` as x - max - log(sum(exp(x - max))): finite for any logits."""
    input, axis = _softmax_dim(input, dim, "log_softmax", dtype)
    return LogSoftmax.apply(input, dim=axis)
