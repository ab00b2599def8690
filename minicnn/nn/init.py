"""``minicnn.nn.init``: weight initialisation with ``torch.nn.init``'s names, formulas and defaults.

Every function fills ``tensor`` IN PLACE (its array is overwritten, identity kept) from minicnn's
seeded generator (``minicnn.manual_seed``) and returns it. Fan-in / fan-out of a weight of shape
``(out, in, *kernel)`` are ``in * prod(kernel)`` and ``out * prod(kernel)``.

* ``kaiming_uniform_``: U(-b, b), b = gain * sqrt(3 / fan)   (He et al. 2015)
* ``kaiming_normal_``:  N(0, std^2), std = gain / sqrt(fan)
* ``xavier_uniform_``:  U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))   (Glorot & Bengio 2010)
* ``xavier_normal_``:   N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))

PyTorch's default for Conv2d/Linear weights is ``kaiming_uniform_(w, a=sqrt(5))``: gain =
sqrt(2 / (1 + 5)), so b = sqrt(3) * sqrt(1/3) / sqrt(fan_in) = 1 / sqrt(fan_in).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from minicnn import random as _random
from minicnn.tensor import Tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``).

    linear/conv/sigmoid: 1, tanh: 5/3, relu: sqrt(2), leaky_relu: sqrt(2 / (1 + slope^2))
    (slope = ``param``, default 0.01), selu: 3/4.
    """
    linear_fns = [
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    ]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``."""
    if tensor.ndim < 2:
        raise ValueError(
            f"Fan in and fan out can not be computed for tensor with fewer than 2 dimensions "
            f"(got shape {tuple(tensor.shape)})"
        )
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode!r} not supported, please use one of 'fan_in', 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor: Tensor, values) -> Tensor:
    """Overwrite ``tensor``'s array in place (no graph is recorded: initialisation is not differentiable)."""
    tensor.array[...] = values
    tensor.bump_version()
    return tensor


def _samples(tensor: Tensor, kind: str):
    """Uniform [0, 1) or standard-normal samples of the tensor's shape, dtype and device."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init expects a minicnn Tensor (or Parameter), got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(
            f"nn.init: random initialisation needs a floating-point tensor, got "
            f"{tensor.dtype.name}"
        )
    gen = _random.generator(tensor.device)
    dtype = tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.float32
    if kind == "uniform":
        return gen.random(tensor.shape, dtype=dtype)
    return gen.standard_normal(tensor.shape, dtype=dtype)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples of U(a, b)."""
    a, b = float(a), float(b)
    return _fill(tensor, a + (b - a) * _samples(tensor, "uniform"))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples of N(mean, std^2)."""
    return _fill(tensor, float(mean) + float(std) * _samples(tensor, "normal"))


def constant_(tensor: Tensor, val: float) -> Tensor:
    return _fill(tensor, val)


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0)


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1)


def _has_zero_dim(tensor, name):
    if 0 in tensor.shape:
        warnings.warn(f"Initializing zero-element tensors is a no-op ({name})", stacklevel=3)
        return True
    return False


def kaiming_uniform_(
    tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """U(-bound, bound) with bound = gain * sqrt(3 / fan); ``a`` is the leaky-ReLU slope used in the gain."""
    if _has_zero_dim(tensor, "kaiming_uniform_"):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """N(0, std^2) with std = gain / sqrt(fan)."""
    if _has_zero_dim(tensor, "kaiming_normal_"):
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    return normal_(tensor, 0.0, std)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))
