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


def manual_seed(seed: int) -> None:
    """Seed every generator minicnn uses (CPU and all GPUs)."""
    global _cpu, _seed, _cuda_seed
    _seed = _cuda_seed = int(seed)
    _cpu = np.random.default_rng(_seed)
    _cuda.clear()


def manual_seed_cuda(seed: int) -> None:
    """Seed only the GPU generators (``minicnn.cuda.manual_seed``)."""
    global _cuda_seed
    _cuda_seed = int(seed)
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
            bitgen = cp.random.XORWOW(seed=_cuda_seed + 1 + device.index)
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
