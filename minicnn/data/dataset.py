"""Map-style datasets, as ``torch.utils.data``: ``Dataset``, ``TensorDataset``, ``Subset``, ``ConcatDataset``,
``random_split``.

A map-style dataset is anything with ``__getitem__(index)`` and ``__len__()``: a subclass of
:class:`Dataset`, a plain list of ``(x, y)`` pairs, a :class:`TensorDataset`.
:class:`~minicnn.data.DataLoader` calls ``dataset[i]`` for each index of a batch and collates the
samples with :func:`~minicnn.data.default_collate`.
"""

from __future__ import annotations

import bisect
import math
import warnings

import numpy as np

from minicnn.data.sampler import numpy_generator

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """Base class of map-style datasets: define ``__getitem__(index)`` and ``__len__()``.

    ``a + b`` concatenates two datasets (:class:`ConcatDataset`).
    """

    def __getitem__(self, index):
        raise NotImplementedError(
            f"{type(self).__name__} must define __getitem__(index) (a map-style dataset)"
        )

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are ``(tensors[0][i], tensors[1][i], ...)``: e.g. ``TensorDataset(x, y)``.

    Every tensor must have the same size in its first dimension. NumPy arrays are accepted and
    turned into Tensors (their dtype is kept).
    """

    def __init__(self, *tensors):
        from minicnn.tensor import Tensor

        tensors = tuple(t if isinstance(t, Tensor) else Tensor(t) for t in tensors)
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor")
        sizes = [t.shape[0] if t.ndim else None for t in tensors]
        if any(s is None for s in sizes) or len(set(sizes)) != 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(
                f"TensorDataset: size mismatch between tensors: every tensor needs the same first "
                f"dimension (the number of samples), got shapes {shapes}"
            )
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return int(self.tensors[0].shape[0])

    def __repr__(self):
        return f"TensorDataset({', '.join(str(tuple(t.shape)) for t in self.tensors)})"


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self):
        return len(self.indices)

    def __repr__(self):
        return f"Subset({type(self.dataset).__name__}, n={len(self)})"


class ConcatDataset(Dataset):
    """The samples of several datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes, total = [], 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("ConcatDataset: absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        if idx >= len(self):
            raise IndexError(f"ConcatDataset: index {idx} is out of range for {len(self)} samples")
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random :class:`Subset`\\ s of the given lengths.

    As ``torch.utils.data.random_split``: ``lengths`` are sample counts summing to
    ``len(dataset)``, or fractions summing to 1 (each gets ``floor(frac * len)``; the remainder
    is handed out one by one, round-robin from the first split). ``generator``: a
    ``minicnn.Generator``, a ``numpy.random.Generator`` or an int seed; by default minicnn's
    generator (``minicnn.manual_seed`` makes the split reproducible).
    """
    n = len(dataset)
    lengths = list(lengths)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1 and all(0 <= f <= 1 for f in lengths):
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(
                    f"random_split: length of split at index {i} is 0; this leads to an empty Subset",
                    stacklevel=2,
                )
        lengths = counts
    if any(isinstance(x, float) and not float(x).is_integer() for x in lengths) or any(
        x < 0 for x in lengths
    ):
        raise ValueError(
            "random_split: lengths must be non-negative sample counts or fractions summing to 1, "
            f"got {lengths}"
        )
    lengths = [int(x) for x in lengths]
    if sum(lengths) != n:
        raise ValueError(
            f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length of the input "
            f"dataset ({n})"
        )
    perm = numpy_generator(generator, "random_split").permutation(n).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[start : start + length]))
        start += length
    return out


def targets_of(dataset):
    """``(targets array, number of classes or None)`` when ``dataset`` knows its labels, else None.

    Looks through ``Subset``\\ s; used by the DataLoader to check the labels once, on the host.
    """
    index_map = None
    while isinstance(dataset, Subset):
        idx = np.asarray(dataset.indices, dtype=np.int64).reshape(-1)
        index_map = idx if index_map is None else idx[index_map]
        dataset = dataset.dataset
    targets = getattr(dataset, "targets", None)
    if targets is None or getattr(dataset, "target_transform", None) is not None:
        return None
    try:
        targets = np.asarray(targets)
    except Exception:  # a torch tensor on a GPU, a ragged list...
        return None
    if targets.ndim != 1 or targets.dtype.kind not in "biuf":
        return None
    if index_map is not None:
        targets = targets[index_map]
    classes = getattr(dataset, "classes", None)
    try:
        n_classes = len(classes) if classes else None
    except TypeError:
        n_classes = None
    return targets, n_classes


def check_labels(targets, num_classes, who):
    """One-line ValueError unless every label is an integer class index (in range when ``num_classes``)."""
    t = np.asarray(targets)
    if t.dtype.kind == "f":
        bad = ~np.isfinite(t) | (t != np.round(t))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{who}: label {t[i].item()!r} at index {i} is not an integer class index (labels are class "
                f"numbers 0, 1, 2, ...; dtype {t.dtype})"
            )
    elif t.dtype.kind not in "biu":
        raise ValueError(f"{who}: labels must be integer class indices, got dtype {t.dtype}")
    bad = t < 0 if num_classes is None else (t < 0) | (t >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        where = ">= 0" if num_classes is None else f"in [0, {num_classes}) ({num_classes} classes)"
        value = t[i].item()
        raise ValueError(f"{who}: label {value} at index {i} is not a class index {where}")
