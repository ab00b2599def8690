"""minicnn's random number generators: one for the CPU (NumPy) and one for CUDA (CuPy).

``minicnn.manual_seed(s)`` seeds both, so parameter initialisation, dropout masks and data
shuffling are reproducible. ``get_rng_state()``/``set_rng_state()`` give plain JSON-able
dicts (used by checkpoints; no pickle).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import Device, cupy_module

_DEFAULT_SEED = 0
_cpu = np.random.default_rng(_DEFAULT_SEED)
_cuda = {}  # device index -> cupy Generator
_seed = _DEFAULT_SEED
_cuda_seed = _DEFAULT_SEED


_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1


def _seed_value(seed) -> int:
    """PyTorch's seed rule: any int in ``[-2**63, 2**64 - 1]``; a negative seed ``s`` stands for
    ``s + 2**64`` (so ``manual_seed(-1)`` is ``manual_seed(2**64 - 1)`` and ``initial_seed()``
    returns that), as ``torch.manual_seed`` does."""
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise TypeError(f"manual_seed: a seed is an integer, got {type(seed).__name__} {seed!r}") from None
    if not _SEED_MIN <= value <= _SEED_MAX:
        raise ValueError(f"manual_seed: the seed must be in [-2**63, 2**64 - 1], got {value}")
    return value % 2**64


def manual_seed(seed: int) -> None:
    """Seed every generator minicnn uses (CPU and all GPUs); negative seeds are accepted as in PyTorch."""
    global _cpu, _seed, _cuda_seed
    _seed = _cuda_seed = _seed_value(seed)
    _cpu = np.random.default_rng(_seed)
    _cuda.clear()


def manual_seed_cuda(seed: int) -> None:
    """Seed only the GPU generators (``minicnn.cuda.manual_seed``)."""
    global _cuda_seed
    _cuda_seed = _seed_value(seed)
    _cuda.clear()


def seed() -> int:
    """Seed every generator from fresh entropy and return the seed (``torch.seed``)."""
    new = int(np.random.SeedSequence().entropy % (2**63))
    manual_seed(new)
    return new


def initial_seed() -> int:
    return _seed


def cpu_generator() -> np.random.Generator:
    return _cpu


def generator(device="cpu"):
    """The generator for ``device``: a ``numpy.random.Generator`` or a ``cupy.random.Generator``."""
    device = Device(device)
    if device.type == "cpu":
        return _cpu
    if device.index not in _cuda:
        cp = cupy_module()
        with cp.cuda.Device(device.index):
            bitgen = cp.random.XORWOW(seed=(_cuda_seed + 1 + device.index) % 2**64)
            _cuda[device.index] = cp.random.Generator(bitgen)
    return _cuda[device.index]


def get_rng_state() -> dict:
    """The CPU generator's state as a JSON-serialisable dict (GPU streams are re-derived from the seed)."""
    return {"seed": _seed, "cpu": _cpu.bit_generator.state}


def set_rng_state(state: dict) -> None:
    global _seed
    _seed = int(state["seed"])
    _cpu.bit_generator.state = state["cpu"]
    _cuda.clear()
