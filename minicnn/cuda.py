"""``minicnn.cuda``: PyTorch's ``torch.cuda`` helpers that training scripts call.

minicnn runs on a GPU through CuPy (``pip install cupy-cuda12x`` or ``cupy-cuda13x``); these
functions answer from CuPy and never fail when it is missing: ``is_available()`` is then False
and ``device_count()`` 0, so ``device = "cuda" if minicnn.cuda.is_available() else "cpu"`` works
on any machine. ``unavailable_reason()`` says why there is no GPU (CuPy missing, or installed but
failing, with the error). Tensors on ``cuda:1`` need no ``set_device``: every op runs with its
tensors' GPU current (docs/gpu.md).
"""

from __future__ import annotations

from minicnn import random as _random
from minicnn.backend import _import_cupy, cuda_available, cuda_unavailable_reason, on_device


def is_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    return cuda_available()


def unavailable_reason():
    """Why there is no usable GPU, as one line (None when there is one)."""
    return cuda_unavailable_reason()


class device(on_device):
    """``with minicnn.cuda.device(1):`` makes GPU 1 current inside the block (``torch.cuda.device``)."""

    __slots__ = ()

    def __init__(self, index):
        super().__init__(index if not isinstance(index, int) else f"cuda:{index}")


def device_count() -> int:
    cp = _import_cupy()
    return 0 if cp is None else int(cp.cuda.runtime.getDeviceCount())


def current_device() -> int:
    cp = _import_cupy()
    return 0 if cp is None else int(cp.cuda.Device().id)


def set_device(device) -> None:
    """Make GPU ``device`` (an index, ``"cuda:N"`` or a ``minicnn.device``) the current one."""
    from minicnn.backend import Device

    index = device if isinstance(device, int) else Device(device).index
    cp = _import_cupy()
    if cp is not None:
        cp.cuda.Device(index).use()


def get_device_name(device=None) -> str:
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError("minicnn.cuda.get_device_name: no GPU (CuPy is not installed or sees none)")
    index = current_device() if device is None else int(str(device).rsplit(":", 1)[-1])
    return cp.cuda.runtime.getDeviceProperties(index)["name"].decode()


def manual_seed(seed: int) -> None:
    """Seed the GPU generators only (``minicnn.manual_seed`` seeds every generator)."""
    _random.manual_seed_cuda(seed)


manual_seed_all = manual_seed


def synchronize(device=None) -> None:
    """Wait until the GPU (the current one, or ``device``) has finished its queued work (a no-op
    without a GPU)."""
    from minicnn.backend import Device

    cp = _import_cupy()
    if cp is not None:
        index = None if device is None else (device if isinstance(device, int) else Device(device).index)
        cp.cuda.Device(index).synchronize()


def empty_cache() -> None:
    """Give CuPy's cached, unused GPU memory back to the driver (a no-op without a GPU)."""
    cp = _import_cupy()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()
