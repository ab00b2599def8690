"""Tensor constructors with PyTorch's names: ``tensor``, ``zeros``, ``ones``, ``randn``, ``arange``...

Floating-point results default to float32 (``minicnn.set_default_dtype`` changes it);
``device`` is ``"cpu"`` (NumPy) or ``"cuda"``/``"cuda:N"`` (CuPy).
"""

from __future__ import annotations

import numpy as np

from minicnn import random as _random
from minicnn.backend import Device, from_foreign_gpu_array, is_cupy_array, is_foreign_gpu_array, on_device
from minicnn.dtypes import default_float, np_dtype
from minicnn.ops.basic import check_size
from minicnn.tensor import Tensor


def _shape_args(size, op):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    shape = tuple(check_size(s, "size", op) for s in size)
    if any(s < 0 for s in shape):
        raise RuntimeError(f"{op}(): trying to create tensor with negative dimension: {list(shape)}")
    return shape


def _finish(arr, requires_grad):
    return Tensor._make(arr).requires_grad_(requires_grad) if requires_grad else Tensor._make(arr)


def _float_dtype(dtype):
    return np_dtype(dtype) if dtype is not None else default_float()


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor from Python data, a NumPy/CuPy array or another tensor (always a copy)."""
    if isinstance(data, Tensor):
        data = data.array
    elif is_foreign_gpu_array(data):  # viewed through CuPy, then copied below
        data = from_foreign_gpu_array(data)
    t = Tensor(data, dtype=dtype, device=device)
    if t.array is data:
        t.array = t.array.copy()
    return t.requires_grad_(requires_grad) if requires_grad else t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor that shares memory with a NumPy array (no copy, dtype kept). A CuPy array, or another
    library's GPU array (``__cuda_array_interface__``: a PyTorch CUDA tensor, a Numba device array),
    is shared the same way, through CuPy, and the tensor lives on its GPU."""
    if is_foreign_gpu_array(array):
        array = from_foreign_gpu_array(array)
    if not (isinstance(array, np.ndarray) or is_cupy_array(array)):
        raise TypeError(f"from_numpy: expected a NumPy array, got {type(array).__name__}")
    if array.dtype.kind not in "biufc":
        raise TypeError(
            f"from_numpy: an array of dtype {array.dtype} cannot be a tensor: it must hold numbers"
        )
    return Tensor._make(array)


def zeros(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    shape = _shape_args(size, "zeros")
    with on_device(device):
        return _finish(Device(device).xp.zeros(shape, dtype=_float_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    shape = _shape_args(size, "ones")
    with on_device(device):
        return _finish(Device(device).xp.ones(shape, dtype=_float_dtype(dtype)), requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Like torch.full: without ``dtype``, a bool fill gives bool, an int fill int64, a float the default."""
    if dtype is None and isinstance(fill_value, (bool, np.bool_)):
        dtype = np.bool_
    elif dtype is None and isinstance(fill_value, (int, np.integer)):
        dtype = np.int64
    shape = _shape_args((size,) if isinstance(size, (tuple, list)) else (size,), "full")
    with on_device(device):
        return _finish(Device(device).xp.full(shape, fill_value, dtype=_float_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    shape = _shape_args(size, "empty")
    with on_device(device):
        return _finish(Device(device).xp.empty(shape, dtype=_float_dtype(dtype)), requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(t, "zeros", dtype, device, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(t, "ones", dtype, device, requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(t, "empty", dtype, device, requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    device = t.device if device is None else Device(device)
    with on_device(device):
        arr = device.xp.full(
            t.array.shape, fill_value, dtype=np_dtype(dtype) if dtype is not None else t.array.dtype
        )
    return _finish(arr, requires_grad)


def rand_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return rand(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def randn_like(t: Tensor, dtype=None, device=None, requires_grad=False) -> Tensor:
    return randn(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def _like(t, kind, dtype, device, requires_grad):
    device = t.device if device is None else Device(device)
    with on_device(device):
        arr = getattr(device.xp, kind)(
            t.array.shape, dtype=np_dtype(dtype) if dtype is not None else t.array.dtype
        )
    return _finish(arr, requires_grad)


def randn(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples from minicnn's seeded generator (``minicnn.manual_seed``)."""
    gen = _random.generator(device)
    return _finish(gen.standard_normal(_shape_args(size, "randn"), dtype=_float_dtype(dtype)), requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minicnn's seeded generator."""
    gen = _random.generator(device)
    return _finish(gen.random(_shape_args(size, "rand"), dtype=_float_dtype(dtype)), requires_grad)


def randint(low, high=None, size=None, dtype=None, device="cpu") -> Tensor:
    """Integers in [low, high) (int64) from minicnn's seeded generator; ``randint(high, size)`` too."""
    if size is None:  # randint(high, size)
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint() missing the size argument: randint(low, high, size)")
    shape = _shape_args((size,) if isinstance(size, (tuple, list)) else (size,), "randint")
    arr = _random.cpu_generator().integers(low, high, size=shape, dtype=np.int64)
    return Tensor(arr, dtype=dtype, device=device)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"arange(): {name} must be a number, got {v!r}")
    if step == 0:
        raise RuntimeError("arange(): step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(
            f"arange(): upper bound and larger bound inconsistent with step sign (start={start}, end={end}, "
            f"step={step})"
        )
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else default_float()
    with on_device(device):
        return _finish(Device(device).xp.arange(start, end, step, dtype=np_dtype(dtype)), requires_grad)


def linspace(start, end, steps, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    steps = check_size(steps, "steps", "linspace")
    if steps < 0:
        raise RuntimeError(f"linspace(): number of steps must be non-negative, got {steps}")
    with on_device(device):
        return _finish(
            Device(device).xp.linspace(start, end, steps, dtype=_float_dtype(dtype)), requires_grad
        )


def eye(n, m=None, dtype=None, device="cpu", requires_grad=False) -> Tensor:
    n = check_size(n, "n", "eye")
    m = None if m is None else check_size(m, "m", "eye")
    with on_device(device):
        return _finish(Device(device).xp.eye(n, m, dtype=_float_dtype(dtype)), requires_grad)
