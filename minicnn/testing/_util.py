"""Small helpers shared by minicnn.testing: the lazy PyTorch import, raw arrays, output lists."""

from __future__ import annotations

import numpy as np

from minicnn.backend import is_cupy_array, to_numpy

TORCH_INSTALL = (
    "install it with `pip install torch` "
    "(CPU-only wheel: `pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)


def require_torch(what: str):
    """Import torch, or raise a one-line ModuleNotFoundError that says how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ModuleNotFoundError(
            f"{what} compares minicnn with PyTorch, which could not be imported ({err}): {TORCH_INSTALL}",
            name="torch",
        ) from None
    return torch


_STREAMS = {"inputs": 1, "upstream": 2, "gradcheck": 3}


def stream(seed: int, purpose: str) -> np.random.Generator:
    """The generator of one purpose ("inputs", "upstream", "gradcheck") for ``seed``.

    Distinct from ``numpy.random.default_rng(seed)``, so inputs a user drew with the same seed are
    never equal to the upstream gradient (for batch norm, an upstream gradient that is an affine
    function of the input has an input gradient of exactly zero, and the comparison judges noise).
    """
    return np.random.default_rng([int(seed), _STREAMS[purpose], 0x6D696E69])


def _raw(t):
    """The NumPy/CuPy array inside a minicnn Tensor (``Tensor.array``), written in place by
    gradcheck's perturbations."""
    return t.array


def is_torch_tensor(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach")


def host_array(x) -> np.ndarray:
    """A NumPy array from a minicnn Tensor, a torch tensor, a NumPy/CuPy array (a copy)."""
    from minicnn.tensor import Tensor

    if isinstance(x, Tensor):
        return np.array(x.numpy())
    if is_torch_tensor(x):
        return np.array(x.detach().cpu().numpy())
    if is_cupy_array(x):
        return to_numpy(x)
    return np.array(x)


def output_list(out) -> list:
    """The outputs of a call as a list: a tuple/list's items (None dropped), or the single output."""
    items = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in items if o is not None]


def describe(x) -> str:
    """A short description of a value for error messages: 'a float64 Tensor of shape (2, 3)', 'a list'."""
    from minicnn.tensor import Tensor

    if isinstance(x, Tensor):
        return f"a minicnn {x.dtype.name} Tensor of shape {tuple(x.shape)}"
    if is_torch_tensor(x):
        return f"a torch {str(x.dtype).replace('torch.', '')} tensor of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray) or is_cupy_array(x):
        return f"a {type(x).__module__.split('.')[0]} {x.dtype} array of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"
