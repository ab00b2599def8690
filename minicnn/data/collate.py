"""``default_collate``: a list of samples -> one batch, with the rules of PyTorch's ``default_collate``.

* Tensors and NumPy arrays -> stacked into one Tensor (a new first dimension); they must have
  equal shapes;
* NumPy scalars -> a 1-d Tensor of their dtype; Python ``int`` -> int64, ``float`` -> float64,
  ``bool`` -> bool (as PyTorch: a float label batch is float64, not the default dtype);
* ``str``/``bytes`` -> the list as it is;
* dicts -> a dict of collated values, key by key; tuples and lists -> element by element
  (a batch of ``(x, y)`` tuples gives ``[X, Y]``, a list, as PyTorch); named tuples keep their type.

Anything else (None, a PIL image, ...) is a one-line TypeError naming what was found.
"""

from __future__ import annotations

import collections.abc
import copy

import numpy as np

__all__ = ["default_collate", "default_convert"]

_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _stack(arrays, what):
    from minicnn.backend import get_array_module

    first = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != first:
            raise RuntimeError(
                f"default_collate: stack expects each {what} to be equal size, but got {list(first)} at "
                f"entry 0 and {list(a.shape)} at entry {i}"
            )
    return get_array_module(*arrays).stack(arrays)


def default_collate(batch):
    """Merge a list of samples into a batch (see the module doc)."""
    from minicnn.backend import is_cupy_array
    from minicnn.tensor import Tensor

    elem = batch[0]
    if isinstance(elem, Tensor):
        return Tensor._make(_stack([b.array for b in batch], "tensor"))
    if isinstance(elem, np.ndarray) or is_cupy_array(elem):
        if elem.dtype.kind in "USO":
            raise TypeError(_ERROR.format(f"a numpy array of dtype {elem.dtype}"))
        return Tensor._make(
            _stack([np.asarray(b) if isinstance(b, np.ndarray) else b for b in batch], "array")
        )
    if isinstance(elem, np.generic):
        if elem.dtype.kind in "USO":
            raise TypeError(_ERROR.format(f"a numpy scalar of dtype {elem.dtype}"))
        return Tensor._make(np.array(batch, dtype=elem.dtype))
    if isinstance(elem, bool):
        return Tensor._make(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor._make(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor._make(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                out = copy.copy(elem)
                out.update(collated)
                return out
            return type(elem)(collated)
        except TypeError:
            return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(b) != size for b in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        transposed = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return transposed
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                out = copy.copy(elem)
                out[:] = transposed
                return out
            return type(elem)(transposed)
        except TypeError:
            return transposed
    hint = ""
    if type(elem).__module__.startswith("PIL."):
        hint = " (a PIL image: give the dataset transform=ToTensor(), as in torchvision)"
    raise TypeError(_ERROR.format(type(elem)) + hint)


def default_convert(data):
    """One sample, unbatched (``batch_size=None``): NumPy arrays become Tensors; containers recurse."""
    from minicnn.tensor import Tensor

    if isinstance(data, np.ndarray) and data.dtype.kind not in "USO":
        return Tensor._make(data)
    if isinstance(data, np.generic) and data.dtype.kind not in "USO":
        return Tensor._make(np.asarray(data))
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, collections.abc.Mapping):
        converted = {k: default_convert(v) for k, v in data.items()}
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, list):
        return [default_convert(d) for d in data]
    return data
