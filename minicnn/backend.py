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


def _import_cupy():
    """Return the cupy module, or None when it is not installed or sees no GPU."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # ImportError, or a CUDA driver/runtime error
            _cupy = None
    return _cupy


def cuda_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    return _import_cupy() is not None


def cupy_module():
    """The cupy module; raises a RuntimeError that explains how to get it."""
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(_CUPY_HELP + " (CuPy is not installed, or it found no GPU.)")
    return cp


def is_cupy_array(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


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


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = Device(device)
    if device.type == "cpu":
        return array.get() if is_cupy_array(array) else array
    cp = cupy_module()
    if device.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(
            f"device {device} does not exist: CuPy sees {cp.cuda.runtime.getDeviceCount()} GPU(s)"
        )
    if is_cupy_array(array) and array.device.id == device.index:
        return array
    with cp.cuda.Device(device.index):
        return cp.asarray(array)


def to_numpy(array) -> np.ndarray:
    """A host (NumPy) copy or view of an array from any device."""
    return array.get() if is_cupy_array(array) else np.asarray(array)


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices summed (unbuffered)."""
    if is_cupy_array(target):
        import cupyx

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
    return target


def surely_finite(a, xp):
    """True when ``a`` certainly holds no inf or NaN, for ops whose fast backward multiplies the
    gradient by a 0/1 mask (inf * 0 is NaN, where PyTorch's gradient is 0). On the CPU: one BLAS
    matrix-vector product over ``a`` (inf and NaN reach its result; finite values whose sum
    overflows read as "not sure", which only sends the caller down its exact path). On a GPU
    always False: asking would make the host wait for the device, so ops take the exact path,
    one ``where`` kernel."""
    if xp is not np:
        return False
    if a.size == 0:
        return True
    rows = a.reshape(a.shape[0] if a.ndim else 1, -1)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, which is the answer
        return bool(np.isfinite((rows @ np.ones(rows.shape[1], dtype=a.dtype)).sum()))
