"""``scatter``: write values into a copy of a tensor at positions an index tensor names along one
axis (``torch.scatter``, ``Tensor.scatter_``), e.g. one-hot targets::

    minicnn.zeros(10).scatter_(0, minicnn.tensor(label), value=1)

For ``index`` of shape S (the same number of axes as ``a``, each no larger than ``a``'s except along
``dim``), position i of S writes ``src[i]`` (or ``value``) to ``a`` at i with the ``dim`` coordinate
replaced by ``index[i]``:

    out[i_0, ..., index[i], ..., i_n] = src[i_0, ..., i_n]          (i over S)

Where an index repeats, one of the writes wins (which one is not defined, as in PyTorch).
"""

from __future__ import annotations

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module


def _positions(index, dim, xp):
    """The full coordinates the scatter writes to: one integer array per axis, broadcasting to
    index's shape S, with ``index`` itself on axis ``dim``."""
    coords = []
    for axis, size in enumerate(index.shape):
        if axis == dim:
            coords.append(index)
        else:
            shape = [1] * index.ndim
            shape[axis] = size
            coords.append(xp.arange(size).reshape(shape))
    return tuple(coords)


class Scatter(Function):
    """out = a with out[pos(i)] = src[i] for every i of index's shape S (pos: ``_positions``).
    dL/da = g with the written positions set to 0;   dL/dsrc[i] = g[pos(i)]   (a gather)."""

    saved_inputs = ()  # backward needs the positions only

    def forward(self, a, src, index, dim):
        xp = get_array_module(a)
        self.pos, self.index_shape = _positions(index, dim, xp), index.shape
        out = a.copy()
        if np.ndim(src) == 0:  # a value: the same number everywhere
            out[self.pos] = src
        else:  # src may be larger than index: its first S entries are used
            out[self.pos] = src[tuple(slice(0, n) for n in index.shape)]
        self.src_shape = np.shape(src)
        return out

    def backward(self, g):
        xp = get_array_module(g)
        da = dsrc = None
        if self.needs_input_grad[0]:
            da = g.copy()
            da[self.pos] = 0
        if self.needs_input_grad[1]:
            dsrc = xp.zeros(self.src_shape, dtype=g.dtype)
            dsrc[tuple(slice(0, n) for n in self.index_shape)] = g[self.pos]
        return da, dsrc


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """``torch.scatter(input, dim, index, src)`` or ``(..., value=v)``: a copy of ``input`` with
    ``src``'s entries (or ``value``) written at ``index`` along ``dim``; see the module doc."""
    from minicnn.tensor import Tensor

    op = "scatter"
    if reduce is not None:
        raise NotImplementedError(f"{op}: reduce={reduce!r} (deprecated in PyTorch) is not supported")
    if not isinstance(input, Tensor) or not isinstance(index, Tensor):
        raise TypeError(f"{op}: input and index must be minicnn Tensors")
    if isinstance(src, (int, float, bool)) and value is None:  # scatter(dim, index, 1.0), as PyTorch
        src, value = None, src
    if (src is None) == (value is None):
        raise TypeError(f"{op}: pass exactly one of src (a Tensor) and value (a number)")
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must hold integers (int64), got dtype {index.dtype.name}")
    ndim = max(input.ndim, 1)
    if index.ndim == 0:
        index = index.reshape((1,) * ndim)
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have at least one axis, got a 0-d tensor")
    if index.ndim != input.ndim:
        raise ValueError(
            f"{op}: index must have the same number of axes as the input ({input.ndim}), got index of "
            f"shape {tuple(index.shape)} for an input of shape {tuple(input.shape)}"
        )
    axis = dim + input.ndim if dim < 0 else dim
    if not 0 <= axis < input.ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {input.ndim} axes")
    for d, (n_i, n_a) in enumerate(zip(index.shape, input.shape)):
        if d != axis and n_i > n_a:
            raise ValueError(
                f"{op}: index of shape {tuple(index.shape)} is larger than the input {tuple(input.shape)} "
                f"along axis {d} (only axis dim={dim} may differ)"
            )
    if src is not None:
        if not isinstance(src, Tensor):
            raise TypeError(f"{op}: src must be a minicnn Tensor (or pass value=number)")
        if src.ndim != index.ndim or any(n_i > n_s for n_i, n_s in zip(index.shape, src.shape)):
            raise ValueError(
                f"{op}: src of shape {tuple(src.shape)} must have index's number of axes and be at "
                f"least as large as index {tuple(index.shape)} along each"
            )
        if src.dtype != input.dtype:
            raise TypeError(
                f"{op}: src has dtype {src.dtype.name} but the input has dtype {input.dtype.name}"
            )
    if index.device != input.device:
        raise RuntimeError(f"{op}: index is on {index.device} but the input is on {input.device}")
    idx = index.array
    if isinstance(idx, np.ndarray) and idx.size:  # on a GPU: no check (it would wait for the device)
        size = input.shape[axis]
        bad = (idx < 0) | (idx >= size)
        if bad.any():
            raise IndexError(
                f"{op}: index {int(idx[bad].reshape(-1)[0])} is out of bounds for dimension {axis} with "
                f"size {size}"
            )
    other = src if src is not None else value
    return Scatter.apply(input, other, index.array, dim=axis)
