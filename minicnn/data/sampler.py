"""Samplers (which indices, in which order) and ``Generator``: ``torch.utils.data``'s and ``torch.Generator``.

A sampler is an iterable of dataset indices; a batch sampler an iterable of lists of indices.
Random ones draw from a NumPy generator: the one given as ``generator=`` (a
:class:`Generator`, a ``numpy.random.Generator`` or an int seed), else minicnn's global
generator, so ``minicnn.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import random as _random

__all__ = [
    "Generator",
    "Sampler",
    "SequentialSampler",
    "RandomSampler",
    "SubsetRandomSampler",
    "WeightedRandomSampler",
    "BatchSampler",
    "DistributedSampler",
]


class Generator:
    """A seeded random number generator to pass as ``generator=`` (``torch.Generator``'s role).

    ``minicnn.Generator().manual_seed(42)``; wraps a ``numpy.random.Generator`` (``.numpy``).
    ``get_state()``/``set_state()`` give plain JSON-able dicts (not a ByteTensor).
    """

    def __init__(self, device="cpu"):
        if str(device) != "cpu":
            raise ValueError(f"Generator: only 'cpu' generators exist in minicnn.data, got {device!r}")
        self.device = "cpu"
        self.manual_seed(67280421310721)  # torch.Generator()'s default seed

    def manual_seed(self, seed) -> Generator:
        self._seed = int(seed)
        self.numpy = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        new = int(np.random.SeedSequence().entropy % (2**63))
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return {"seed": self._seed, "state": self.numpy.bit_generator.state}

    def set_state(self, state) -> Generator:
        self._seed = int(state["seed"])
        self.numpy.bit_generator.state = state["state"]
        return self

    def __repr__(self):
        return f"Generator(seed={self._seed})"


def numpy_generator(generator, who="sampler"):
    """The ``numpy.random.Generator`` behind ``generator`` (None: minicnn's global CPU generator)."""
    if generator is None:
        return _random.cpu_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, Generator):
        return generator.numpy
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"{who}: generator must be a minicnn.Generator, a numpy.random.Generator or an int seed, "
        f"got {type(generator).__name__}"
    )


class Sampler:
    """Base class: ``__iter__`` yields dataset indices (``__len__`` optional)."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):  # pragma: no cover - subclasses override it
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def order(self):
        return np.arange(len(self.data_source))

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh random permutation each epoch (or ``num_samples`` draws with ``replacement=True``)."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self.generator = generator
        if num_samples is not None and (not isinstance(num_samples, (int, np.integer)) or num_samples <= 0):
            raise ValueError(f"RandomSampler: num_samples should be a positive integer, got {num_samples!r}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def order(self):
        g = numpy_generator(self.generator, "RandomSampler")
        n, k = len(self.data_source), self.num_samples
        if self.replacement:
            return g.integers(0, n, size=k)
        parts = [g.permutation(n) for _ in range(k // n)]
        if k % n:
            parts.append(g.permutation(n)[: k % n])
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices`` in a random order, fresh each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        g = numpy_generator(self.generator, "SubsetRandomSampler")
        return (self.indices[i] for i in g.permutation(len(self.indices)).tolist())

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices drawn with probabilities proportional to ``weights`` (to balance classes)."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.size == 0 or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("WeightedRandomSampler: weights must be finite, non-negative, and not all zero")
        if (
            isinstance(num_samples, bool)
            or not isinstance(num_samples, (int, np.integer))
            or num_samples <= 0
        ):
            raise ValueError(
                f"WeightedRandomSampler: num_samples should be a positive integer, got {num_samples!r}"
            )
        if not replacement and num_samples > np.count_nonzero(w):
            raise ValueError(
                f"WeightedRandomSampler: cannot draw {num_samples} samples without replacement from "
                f"{np.count_nonzero(w)} with a non-zero weight"
            )
        self.weights, self.num_samples = w, int(num_samples)
        self.replacement, self.generator = bool(replacement), generator

    def __iter__(self):
        g = numpy_generator(self.generator, "WeightedRandomSampler")
        p = self.weights / self.weights.sum()
        return iter(g.choice(len(p), size=self.num_samples, replace=self.replacement, p=p).tolist())

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Indices of ``sampler`` in lists of ``batch_size`` (the last one shorter unless ``drop_last``)."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer, got {batch_size!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), bool(drop_last)

    def __iter__(self):
        batch = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DistributedSampler(Sampler):
    """Each rank's share of the dataset, per epoch (``torch.utils.data.DistributedSampler``).

    PyTorch's partition rule: take the epoch's order (``0..n-1``, or with ``shuffle`` a permutation
    seeded by ``seed + epoch``, the same on every rank); make its length a multiple of
    ``num_replicas`` -- by repeating its first indices (default) or, with ``drop_last``, by dropping
    the tail; then rank r takes ``indices[r::num_replicas]``. The ranks' shares are disjoint (up to
    the padding) and of equal length, so every rank runs the same number of steps.
    Call ``set_epoch(epoch)`` before each epoch, or every epoch repeats the same order.
    ``num_replicas``/``rank`` default to the process group's (``minicnn.distributed``).
    The shuffled order is NumPy's permutation, not ``torch.randperm``'s: the same rule, other numbers.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            from minicnn import distributed as dist

            if num_replicas is None:
                num_replicas = dist.get_world_size()
            if rank is None:
                rank = dist.get_rank()
        for name, value in (("num_replicas", num_replicas), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"DistributedSampler: {name} must be an integer, got {value!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be at least 1, got {num_replicas}")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.epoch, self.drop_last, self.shuffle, self.seed = 0, bool(drop_last), bool(shuffle), int(seed)
        n = len(dataset)
        if self.drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order (with ``shuffle``): call it at the start of every epoch."""
        self.epoch = int(epoch)

    def order(self):
        """This rank's indices for the current epoch, as a NumPy int64 array."""
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if not self.drop_last:
            padding = self.total_size - n
            if padding > 0:
                indices = np.concatenate([indices, np.resize(indices, padding)]) if n else indices
        else:
            indices = indices[: self.total_size]
        return indices[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self):
        return self.num_samples
