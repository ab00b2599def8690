"""Small helpers shared by the layers: argument normalisation and input checks that speak to a learner."""

from __future__ import annotations

from minicnn.tensor import Tensor


def layer_name(layer) -> str:
    """``Conv2d(1, 32, kernel_size=(3, 3), ...)``: how error messages name a layer."""
    return f"{type(layer).__name__}({layer.extra_repr()})"


def check_tensor(layer, x):
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{layer_name(layer)}: expected a minicnn Tensor, got {type(x).__name__}; "
            "wrap the data with minicnn.tensor(...)"
        )


def check_input(layer, x, ndims, expected, channels=None, hint=""):
    """Raise a ValueError naming the layer, the ``expected`` layout and the received shape.

    ``ndims``: allowed numbers of dimensions; ``channels``: required size of dim 1 (or None).
    """
    check_tensor(layer, x)
    ok = x.ndim in ndims and (channels is None or x.shape[1] == channels)
    if not ok:
        raise ValueError(
            f"{layer_name(layer)}: expected input of shape {expected}, got "
            f"{tuple(x.shape)}{hint}"
        )
