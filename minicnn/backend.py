"""Array backends: NumPy on the CPU, CuPy on a CUDA GPU.

Every op picks its array module from the data it receives (``get_array_module``),
so the same code runs on both. CuPy is imported lazily: ``import minicnn`` never
needs it, and asking for ``"cuda"`` without it raises an error that says how to
install it.
"""

from __future__ import annotations

import numpy as np

_CUPY_HELP = (
    "CuPy is needed for device 'cuda'. Install the wheel that matches your CUDA driver: "
    "`pip install cupy-cuda12x` (CUDA 12.x) or `pip install cupy-cuda13x` (CUDA 13.x); "
    "`nvidia-smi` shows the CUDA version."
)

_cupy = None
_cupy_checked = False
_cupy_error = None  # why CuPy cannot be used, as text (None: it can, or it was not asked yet)
# Array types that count as GPU arrays besides CuPy's own: the test stand-in's (use_cupy_module).
_extra_gpu_types = ()


def _first_line(exc) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."


def _import_cupy():
    """Return the cupy module, or None when it is not installed, is broken, or sees no GPU
    (``cuda_unavailable_reason()`` then says which, with the exception's text)."""
    global _cupy, _cupy_checked, _cupy_error
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy
        except ImportError as e:
            if e.name == "cupy":  # the package itself is missing
                _cupy_error = "CuPy is not installed"
            else:  # it is there but cannot load (a wheel for another CUDA version, a missing library)
                _cupy_error = f"CuPy is installed but failed: {_first_line(e)}"
            return None
        except Exception as e:  # e.g. a CUDA error raised while cupy initialises
            _cupy_error = f"CuPy is installed but failed: {_first_line(e)}"
            return None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # an old driver, no driver, no device: CUDARuntimeError
            _cupy_error = f"CuPy is installed but failed: {_first_line(e)}"
            return None
        if count > 0:
            _cupy, _cupy_error = cupy, None
        else:
            _cupy_error = "CuPy is installed but sees no GPU (cupy.cuda.runtime.getDeviceCount() is 0)"
    return _cupy


def cuda_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    return _import_cupy() is not None


def cuda_unavailable_reason():
    """Why device 'cuda' cannot be used, as one line ("CuPy is not installed", "CuPy is installed but
    failed: CUDARuntimeError: ..."); None when it can."""
    return None if _import_cupy() is not None else _cupy_error


def cupy_module():
    """The cupy module; raises a RuntimeError that explains how to get it."""
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(f"{_CUPY_HELP} ({_cupy_error}.)")
    return cp


def use_cupy_module(module, array_type):
    """Test hook: make ``module`` minicnn's CuPy and ``array_type`` its GPU array type, e.g. the
    NumPy-backed stand-in of ``parity_tests/cupy_standin.py``, so the GPU code path runs without a GPU.

    Returns a function that puts everything back (the real CuPy, or its absence). The GPU random
    generators made under the previous module are dropped on both switches.
    """
    global _cupy, _cupy_checked, _cupy_error, _extra_gpu_types
    saved = (_cupy, _cupy_checked, _cupy_error, _extra_gpu_types)
    _cupy, _cupy_checked, _cupy_error = module, True, None
    _extra_gpu_types = (*_extra_gpu_types, array_type)
    _forget_gpu_generators()

    def restore():
        global _cupy, _cupy_checked, _cupy_error, _extra_gpu_types
        _cupy, _cupy_checked, _cupy_error, _extra_gpu_types = saved
        _forget_gpu_generators()

    return restore


def _forget_gpu_generators():
    from minicnn import random as _random

    _random._forget_cuda_generators()


def is_cupy_array(a) -> bool:
    """True for a CuPy array (or the test stand-in's); False for NumPy arrays and everything else."""
    t = type(a)
    if t is np.ndarray:
        return False
    return t in _extra_gpu_types or t.__module__.split(".")[0] == "cupy"


def is_foreign_gpu_array(a) -> bool:
    """True for a GPU array of another library (a PyTorch CUDA tensor, a Numba device array: anything
    with ``__cuda_array_interface__``) that is not a CuPy array."""
    return type(a) is not np.ndarray and not is_cupy_array(a) and hasattr(a, "__cuda_array_interface__")


def from_foreign_gpu_array(a):
    """A CuPy array sharing the memory of another library's GPU array (``cupy.asarray``: no copy; it
    lives on the GPU that holds the memory)."""
    return cupy_module().asarray(a)


def get_array_module(*arrays):
    """``numpy`` or ``cupy``, chosen from the arrays (CuPy wins if any array lives on a GPU)."""
    for a in arrays:
        if is_cupy_array(a):
            return _cupy if _cupy is not None else cupy_module()
    return np


class Device:
    """A device name: ``Device("cpu")``, ``Device("cuda")`` (GPU 0) or ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu', 'cuda' or 'cuda:1', got {spec!r}")
        name, sep, idx = spec.strip().lower().partition(":")
        if name == "cpu" and (not sep or idx == "0"):  # 'cpu' or 'cpu:0', as torch
            self.type, self.index = "cpu", None
        elif name in ("cuda", "gpu"):
            if (sep and not idx) or (idx and not idx.isdigit()):
                raise ValueError(f"unknown device {spec!r}: the GPU index must be a number, as in 'cuda:0'")
            self.type, self.index = "cuda", int(idx) if idx else 0
        else:
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, TypeError):
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):  # as torch.device
        if self.type == "cpu":
            return "device(type='cpu')"
        return f"device(type='cuda', index={self.index})"

    @property
    def xp(self):
        """The array module for this device."""
        return np if self.type == "cpu" else cupy_module()


CPU = Device("cpu")


def device_of(array) -> Device:
    """The device an array lives on."""
    if is_cupy_array(array):
        d = Device("cuda")
        d.index = int(array.device.id)
        return d
    return CPU


def gpu_guard(array):
    """For a GPU array on a GPU other than the current one: a context manager (``cupy.cuda.Device``)
    that makes its GPU current; None otherwise. CuPy allocates and launches kernels on the current
    GPU, so work on a ``cuda:1`` tensor must run inside it (``Function.apply``, ``backward``)."""
    if not is_cupy_array(array):
        return None
    cp = cupy_module()
    index = array.device.id
    if index == cp.cuda.runtime.getDevice():
        return None
    return cp.cuda.Device(index)


class on_device:
    """``with on_device(device):`` new GPU arrays and kernels go to ``device`` (``"cuda:1"``); a no-op
    for the CPU. Creation functions use it: CuPy allocates on the current GPU."""

    __slots__ = ("ctx",)

    def __init__(self, device):
        device = Device(device)
        self.ctx = None if device.type == "cpu" else device.xp.cuda.Device(device.index)

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there). Arrays of other GPU libraries
    (``__cuda_array_interface__``) are taken through CuPy without a trip through the host."""
    device = Device(device)
    if is_foreign_gpu_array(array):
        array = from_foreign_gpu_array(array)
    if device.type == "cpu":
        return array.get() if is_cupy_array(array) else array
    cp = cupy_module()
    if device.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(
            f"device {device} does not exist: CuPy sees {cp.cuda.runtime.getDeviceCount()} GPU(s)"
        )
    if is_cupy_array(array) and array.device.id == device.index:
        return array
    with cp.cuda.Device(device.index):  # allocate there; CuPy copies across GPUs itself
        return cp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """A host (NumPy) copy or view of an array from any device."""
    if is_foreign_gpu_array(array):
        array = from_foreign_gpu_array(array)
    return array.get() if is_cupy_array(array) else np.asarray(array)


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices summed (unbuffered)."""
    if is_cupy_array(target):
        import cupyx  # the test stand-in puts its own in sys.modules while it is installed

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
    return target
