"""minicnn's random number generators: one for the CPU (NumPy) and one per GPU (CuPy).

``minicnn.manual_seed(s)`` seeds all of them, so parameter initialisation, dropout masks and data
shuffling are reproducible. ``get_rng_state()``/``set_rng_state()`` give plain JSON-able
dicts (used by checkpoints; no pickle), the GPUs' included.

A GPU's generator is CuPy's ``Generator(XORWOW)``, made and drawn with its GPU current (CuPy keeps
the XORWOW state on the GPU that was current when it was made). CuPy exposes no way to read or set
that state, so the state minicnn saves is how to rebuild it: the seed, and the draws made since
(method, size, dtype, how many times in a row; a training loop's identical draws take one entry).
``set_rng_state`` rebuilds the generator from the seed and replays the draws -- one kernel launch per
draw, milliseconds for thousands -- which gives bit-for-bit the stream the saved run would have
continued with. After 256 entries the log is folded: the generator is reseeded from
(seed, GPU, number of folds) and the log starts again, so a checkpoint's state stays small; an
uninterrupted and a resumed run fold at the same points and so stay identical (docs/gpu.md).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import Device, cupy_module

_DEFAULT_SEED = 0
_cpu = np.random.default_rng(_DEFAULT_SEED)
_cuda = {}  # device index -> _CudaGenerator
_cuda_pending = {}  # device index -> a saved state, rebuilt when that GPU's generator is next used
_seed = _DEFAULT_SEED
_cuda_seed = _DEFAULT_SEED
_MAX_LOG = 256  # entries of a GPU generator's draw log before it is folded into a reseed


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
    _forget_cuda_generators()


def manual_seed_cuda(seed: int) -> None:
    """Seed only the GPU generators (``minicnn.cuda.manual_seed``)."""
    global _cuda_seed
    _cuda_seed = _seed_value(seed)
    _forget_cuda_generators()


def _forget_cuda_generators() -> None:
    """Drop every GPU generator (and saved GPU states not yet rebuilt): they restart from the seed."""
    _cuda.clear()
    _cuda_pending.clear()


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
    """The generator for ``device``: a ``numpy.random.Generator`` for the CPU; for a GPU, an object
    with the same drawing methods (``random``, ``standard_normal``, ``uniform``, ``integers``) that
    draws from CuPy's generator of that GPU with that GPU current, and logs the draws."""
    device = Device(device)
    if device.type == "cpu":
        return _cpu
    gen = _cuda.get(device.index)
    if gen is None:
        pending = _cuda_pending.pop(device.index, None)
        if pending is None:
            gen = _CudaGenerator(device.index, _cuda_seed)
        else:
            gen = _CudaGenerator(device.index, int(pending["seed"]), int(pending["folds"]), pending["draws"])
        _cuda[device.index] = gen
    return gen


def _jsonable(value):
    """A draw's arguments as JSON values: tuples as lists, dtypes as names, NumPy ints as ints."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.dtype, type)):
        return np.dtype(value).name
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _from_json(value):
    """Back from ``_jsonable``: lists (sizes) as tuples."""
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


class _CudaGenerator:
    """The random generator of one GPU: CuPy's ``Generator(XORWOW)``, made and drawn with that GPU
    current, and the log of its draws since the last fold (see the module's doc)."""

    def __init__(self, index, seed, folds=0, draws=()):
        self.index, self.seed, self.folds = index, int(seed), int(folds)
        self._make()
        for method, args, kwargs, count in draws:  # replay a saved state
            for _ in range(int(count)):
                self._draw(method, _from_json(args), _from_json(kwargs))

    def _make(self):
        cp = cupy_module()
        entropy = [self.seed % 2**64, self.index, self.folds]
        with cp.cuda.Device(self.index):
            self.gen = cp.random.Generator(cp.random.XORWOW(seed=entropy))
        self.draws = []

    def _draw(self, method, args, kwargs):
        cp = cupy_module()
        with cp.cuda.Device(self.index):
            out = getattr(self.gen, method)(*args, **kwargs)
        entry = [method, _jsonable(args), _jsonable(kwargs)]
        if self.draws and self.draws[-1][:3] == entry:
            self.draws[-1][3] += 1
        else:
            self.draws.append([*entry, 1])
            if len(self.draws) > _MAX_LOG:
                self.folds += 1
                self._make()
        return out

    def random(self, size=None, dtype=np.float64):
        return self._draw("random", (size,), {"dtype": dtype})

    def standard_normal(self, size=None, dtype=np.float64):
        return self._draw("standard_normal", (size,), {"dtype": dtype})

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return self._draw("uniform", (low, high, size), {"dtype": dtype})

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return self._draw("integers", (low, high, size), {"dtype": dtype})

    def state(self) -> dict:
        return {"seed": self.seed, "folds": self.folds, "draws": [list(d) for d in self.draws]}

    def __repr__(self):
        return f"<minicnn GPU generator cuda:{self.index}, seed {self.seed}, {len(self.draws)} logged draws>"


def get_rng_state() -> dict:
    """Every generator's state as a JSON-serialisable dict: the CPU's (NumPy's bit-generator state)
    and each GPU's that has been used (seed, folds and the log of draws; see the module's doc)."""
    devices = {str(i): st for i, st in _cuda_pending.items()}
    devices.update({str(i): gen.state() for i, gen in _cuda.items()})
    return {"seed": _seed, "cpu": _cpu.bit_generator.state, "cuda": {"seed": _cuda_seed, "devices": devices}}


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state()`` returned. A GPU generator is rebuilt (and its draws replayed)
    when it is next used; one already in that very state is kept. A state without ``"cuda"`` (saved
    by an older minicnn) restarts the GPU generators from the seed."""
    global _seed, _cuda_seed
    _seed = int(state["seed"])
    _cpu.bit_generator.state = state["cpu"]
    cuda = state.get("cuda")
    if cuda is None:
        _cuda_seed = _seed
        _forget_cuda_generators()
        return
    _cuda_seed = int(cuda["seed"])
    wanted = {int(i): st for i, st in cuda["devices"].items()}
    for index in list(_cuda):
        if _cuda[index].state() != wanted.get(index):
            del _cuda[index]
    _cuda_pending.clear()
    _cuda_pending.update({i: st for i, st in wanted.items() if i not in _cuda})
