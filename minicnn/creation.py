"""Tensor constructors with PyTorch's names: ``tensor``, ``zeros``, ``ones``, ``randn``, ``arange``...

Floating-point results default to float32 (``minicnn.set_default_dtype`` changes it);
``device`` is ``"cpu"`` (NumPy) or ``"cuda"``/``"cuda:N"`` (CuPy).
"""

from __future__ import annotations

import numpy as np

from minicnn import random as _random
from minicnn.backend import Device
from minicnn.tensor import Tensor, get_default_dtype


def _shape_args(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(int(s) for s in size[0])
    return tuple(int(s) for s in size)


def _finish(arr, requires_grad):
    return Tensor._make(arr).requires_grad_(requires_grad) if requires_grad else Tensor._make(arr)


def _float_dtype(dtype):
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor from Python data, a NumPy/CuPy array or another tensor (always a copy)."""
    if isinstance(data, Tensor):
        data = data.data
    t = Tensor(data, dtype=dtype, device=device)
    if t.data is data:
        t.data = t.data.copy()
    return t.requires_grad_(requires_grad) if requires_grad else t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor that shares memory with a NumPy array (no copy, dtype kept)."""
    return Tensor._make(np.asarray(array))


def zeros(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _finish(Device(device).xp.zeros(_shape_args(size), dtype=_float_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _finish(Device(device).xp.ones(_shape_args(size), dtype=_float_dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Like torch.full: without ``dtype``, a bool fill gives bool, an int fill int64, a float the default."""
    if dtype is None and isinstance(fill_value, (bool, np.bool_)):
        dtype = np.bool_
    elif dtype is None and isinstance(fill_value, (int, np.integer)):
        dtype = np.int64
    return _finish(Device(device).xp.full(tuple(size), fill_value, dtype=_float_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _finish(Device(device).xp.empty(_shape_args(size), dtype=_float_dtype(dtype)), requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return _finish(t._xp.zeros(t.shape, dtype=dtype or t.dtype), requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad=False) -> Tensor:
    return _finish(t._xp.ones(t.shape, dtype=dtype or t.dtype), requires_grad)


def randn(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples from minicnn's seeded generator (``minicnn.manual_seed``)."""
    gen = _random.generator(device)
    return _finish(gen.standard_normal(_shape_args(size), dtype=_float_dtype(dtype)), requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minicnn's seeded generator."""
    gen = _random.generator(device)
    return _finish(gen.random(_shape_args(size), dtype=_float_dtype(dtype)), requires_grad)


def randint(low, high, size, device="cpu") -> Tensor:
    """Integers in [low, high) (int64) from minicnn's seeded generator."""
    arr = _random.cpu_generator().integers(low, high, size=tuple(size), dtype=np.int64)
    return Tensor(arr, device=device)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else get_default_dtype()
    return _finish(Device(device).xp.arange(start, end, step, dtype=dtype), requires_grad)


def linspace(start, end, steps, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _finish(Device(device).xp.linspace(start, end, steps, dtype=_float_dtype(dtype)), requires_grad)


def eye(n, m=None, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    return _finish(Device(device).xp.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)
