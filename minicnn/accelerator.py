"""``minicnn.accelerator``: PyTorch's ``torch.accelerator``, the device-neutral way scripts pick a device::

    device = minicnn.accelerator.current_accelerator() if minicnn.accelerator.is_available() else "cpu"

minicnn has one accelerator, CUDA, through CuPy. The functions answer as PyTorch's default Linux
wheel (built with CUDA) does:

* ``current_accelerator()`` is ``device('cuda')`` on every machine: CUDA is the accelerator minicnn
  is built for, as a CUDA build of PyTorch reports it without a GPU. With ``check_available=True`` it
  is None when no GPU can be used. (It names the current GPU: ``cuda:0`` where PyTorch prints
  ``cuda`` without an index; a tensor moved there lands on the same GPU in both.)
* ``is_available()`` is True when CuPy is installed and sees a GPU; ``device_count()`` is then the
  number of GPUs, else 0.
* ``current_device_index()``, ``set_device_index(i)`` and ``synchronize()`` (which reads the current
  index) need a GPU: without one they raise a RuntimeError that says why (PyTorch: "Found no NVIDIA
  driver ..."); ``synchronize(i)`` with an explicit index is then a no-op, as PyTorch's. A negative
  index is a no-op; a device of another type (``"cpu"``) is a ValueError.
* ``current_device_idx`` and ``set_device_idx`` are PyTorch's deprecated names: they work and warn
  (FutureWarning), as PyTorch's do.
"""

from __future__ import annotations

import builtins
import warnings

from minicnn.backend import Device, _import_cupy, cuda_available, cuda_unavailable_reason

__all__ = [
    "current_accelerator",
    "current_device_idx",
    "current_device_index",
    "device_count",
    "is_available",
    "set_device_idx",
    "set_device_index",
    "synchronize",
]


def _cupy_or_raise(what):
    """The cupy module; without a usable GPU a RuntimeError naming ``what`` and the reason."""
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(
            f"minicnn.accelerator.{what}: no GPU can be used ({cuda_unavailable_reason()}). "
            "Check minicnn.accelerator.is_available() first and use 'cpu' otherwise."
        )
    return cp


def is_available() -> bool:
    """True when the accelerator (CUDA through CuPy) can be used: CuPy is installed and sees a GPU."""
    return cuda_available()


def current_accelerator(check_available: bool = False) -> Device | None:
    """The accelerator's device, ``cuda`` (at the current GPU's index); None with
    ``check_available=True`` when no GPU can be used (``torch.accelerator.current_accelerator``)."""
    if not cuda_available():
        return None if check_available else Device("cuda")
    return Device(f"cuda:{current_device_index()}")


def device_count() -> int:
    """How many GPUs the accelerator sees (0 without one)."""
    cp = _import_cupy()
    return 0 if cp is None else builtins.int(cp.cuda.runtime.getDeviceCount())


def current_device_index() -> int:
    """The index of the current GPU (RuntimeError without a GPU, as PyTorch)."""
    cp = _cupy_or_raise("current_device_index")
    return builtins.int(cp.cuda.runtime.getDevice())


def _device_index(device, optional, what):
    """PyTorch's ``_get_device_index``: an int as is; a device (or its name) of type cuda gives its
    index; a device of another type is a ValueError; no index: the current GPU if ``optional``."""
    if isinstance(device, builtins.bool) or not isinstance(device, (builtins.int, str, Device)):
        if device is None and optional:
            return current_device_index()
        raise ValueError(
            f"minicnn.accelerator.{what}: expected a device with an index ('cuda:0', "
            f"minicnn.device('cuda', 0)) or an integer, got {device!r}"
        )
    if isinstance(device, builtins.int):
        return device
    has_index = True
    if isinstance(device, str):
        has_index = ":" in device
        device = Device(device)
    if device.type != "cuda":
        raise ValueError(
            f"minicnn.accelerator.{what}: {device.type} doesn't match the current accelerator cuda."
        )
    if not has_index:
        if optional:
            return current_device_index()
        raise ValueError(
            f"minicnn.accelerator.{what}: expected a device with an index ('cuda:0') or an integer, "
            f"got {str(device).split(':')[0]!r}"
        )
    return device.index


def set_device_index(device, /) -> None:
    """Make GPU ``device`` (an index, ``"cuda:N"`` or a ``minicnn.device``) current; a negative index
    is a no-op (``torch.accelerator.set_device_index``)."""
    index = _device_index(device, optional=False, what="set_device_index")
    if index < 0:
        return
    cp = _cupy_or_raise("set_device_index")
    count = cp.cuda.runtime.getDeviceCount()
    if index >= count:
        raise RuntimeError(
            f"minicnn.accelerator.set_device_index: GPU {index} does not exist: CuPy sees {count} GPU(s)"
        )
    cp.cuda.Device(index).use()


def synchronize(device=None, /) -> None:
    """Wait until the GPU (``device``, or the current one) has finished its queued work; a negative
    index is a no-op (``torch.accelerator.synchronize``)."""
    index = _device_index(device, optional=True, what="synchronize")
    cp = _import_cupy()
    if index < 0 or cp is None:  # no GPU: nothing queued (PyTorch: a no-op before CUDA starts)
        return
    cp.cuda.Device(index).synchronize()


def current_device_idx() -> int:
    """Deprecated name of ``current_device_index`` (FutureWarning, as PyTorch)."""
    warnings.warn("Use `current_device_index` instead.", FutureWarning, stacklevel=2)
    return current_device_index()


def set_device_idx(device, /) -> None:
    """Deprecated name of ``set_device_index`` (FutureWarning, as PyTorch)."""
    warnings.warn("Use `set_device_index` instead.", FutureWarning, stacklevel=2)
    set_device_index(device)
