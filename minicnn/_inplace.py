"""In-place tensor methods (``add_``, ``mul_``, ``zero_``, ``copy_``, ``t[i] = v``...), as in PyTorch.

Two paths:

* **No autograd involved** (under ``no_grad``, or nothing requires a gradient): the NumPy/CuPy
  array is changed in place, with PyTorch's rules: the result is cast to the tensor's dtype, but
  never from a higher category (a float result into an integer tensor is an error), and the
  other operand must broadcast to the tensor's shape (the tensor never changes shape).
* **Autograd involved** (a non-leaf tensor in the graph, or an operand that requires a gradient):
  the op runs out of place on the old value, the result is written into the tensor's memory, and
  the tensor takes the new op as its ``grad_fn``. The old value goes into the graph as a tensor
  that shares the version counter, so an op that saved it for backward notices the change.

Either way the version counter goes up by one (``minicnn/tensor.py``). A leaf that requires a
gradient cannot be changed in place outside ``no_grad`` (PyTorch's rule: its gradient would
describe a value that no longer exists).
"""

from __future__ import annotations

import functools

import numpy as np

from minicnn.autograd import is_grad_enabled
from minicnn.backend import get_array_module, gpu_guard, to_device
from minicnn.dtypes import as_dtype, default_float, result_type


def _on_its_gpu(func):
    """Run an in-place change of tensor ``t`` (the first argument) with ``t``'s GPU current, when it
    lives on another GPU than the current one (CuPy launches on the current GPU; see
    ``minicnn.backend.gpu_guard``). Nothing changes on the CPU."""

    @functools.wraps(func)
    def run(t, *args, **kwargs):
        guard = None if type(t.array) is np.ndarray else gpu_guard(t.array)
        if guard is None:
            return func(t, *args, **kwargs)
        with guard:
            return func(t, *args, **kwargs)

    return run


def _tensor():
    from minicnn.tensor import Tensor

    return Tensor


def _check_leaf(t, name):
    if t.requires_grad and t.grad_fn is None and is_grad_enabled():
        raise RuntimeError(
            f"a leaf Variable that requires grad is being used in an in-place operation ({name} on a "
            f"tensor of shape {tuple(t.shape)}). Do it under `with minicnn.no_grad():` (initialisation, "
            "manual updates), or use the out-of-place op."
        )


def _tracking(t, *others):
    Tensor = _tensor()
    others_need_grad = any(isinstance(o, Tensor) and o.requires_grad for o in others)
    return is_grad_enabled() and (t.requires_grad or others_need_grad)


def _check_not_a_view(t, name):
    if getattr(t.grad_fn, "is_view", False):
        raise RuntimeError(
            f"{name}: minicnn does not support in-place changes to a view of a tensor that is part of the "
            f"graph (this one was made by {t.grad_fn!r}). Change the tensor itself, or use an "
            "out-of-place op (y = y + 1) or clone() the view first."
        )


def _check_cast(result, own, name):
    """PyTorch's rule for writing a result back: never into a lower category (float -> int, ...)."""
    order = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
    if order[result.kind] > order[own.kind]:
        raise RuntimeError(
            f"{name}: result type {as_dtype(result)} can't be cast to the desired output type {as_dtype(own)}"
        )


def _check_shape(t, shape, name):
    if tuple(shape) != tuple(t.array.shape):
        raise RuntimeError(
            f"{name}: output with shape {list(t.array.shape)} doesn't match the broadcast shape "
            f"{list(shape)} "
            "(an in-place op cannot change the tensor's shape)"
        )


def _raw_on(t, value):
    """``value`` (Tensor, array, number) as something NumPy/CuPy can combine with ``t.array``."""
    Tensor = _tensor()
    if isinstance(value, Tensor):
        value = value.array
    if hasattr(value, "shape"):
        return to_device(value, t.device)
    return value


def _take_over(t, res, name):
    """Write ``res`` (the out-of-place result) into ``t``'s memory; ``t`` takes over its history."""
    if res.array.dtype != t.array.dtype:
        _check_cast(res.array.dtype, t.array.dtype, name)
    _check_shape(t, res.array.shape, name)
    t.array[...] = res.array
    t.grad_fn, t.requires_grad = res.grad_fn, res.requires_grad
    t.bump_version()
    return t


def _old_value(t, copy):
    """The tensor's value before the change, as a graph node: a copy, or the same memory and
    version counter (so an op that saved it sees the change)."""
    Tensor = _tensor()
    old = Tensor._make(t.array.copy() if copy else t.array, t.requires_grad, t.grad_fn)
    if not copy:
        old._vc = t._vc
    return old


@_on_its_gpu
def binary(t, other, op_cls, ufunc, name):
    """``t = t <op> other`` in place (add_, sub_, mul_, div_)."""
    from minicnn.tensor import _binary, _operand

    _check_leaf(t, name)
    other = _operand(other, t)
    if _tracking(t, other):
        _check_not_a_view(t, name)
        return _take_over(t, _binary(op_cls, _old_value(t, copy=_saves_input(op_cls)), other), name)
    Tensor = _tensor()
    own = t.array.dtype
    if isinstance(other, Tensor):
        tier = ([own, other.array.dtype], []) if other.ndim else ([own], [other.array.dtype])
        target = result_type(*tier, [])
    else:
        target = result_type([own], [], [other])
    if ufunc is np.true_divide and target.kind in "biu":
        target = default_float()
    _check_cast(target, own, name)
    value = _raw_on(t, other)
    _check_shape(t, np.broadcast_shapes(t.array.shape, getattr(value, "shape", ())), name)
    xp = get_array_module(t.array)
    getattr(xp, ufunc.__name__)(t.array, value, out=t.array, casting="unsafe")
    t.bump_version()
    return t


def _saves_input(op_cls):
    """Whether either tier of ``op_cls`` keeps its input array for backward."""
    return any(
        cls is not None and (cls.saved_inputs is None or 0 in cls.saved_inputs)
        for cls in (op_cls, op_cls.compiled)
    )


@_on_its_gpu
def unary(t, fn, name):
    """``t = fn(t)`` in place (relu_, clamp_, inplace=True activations); ``fn`` is the out-of-place
    op. The old value shares ``t``'s memory and version counter: an op that kept its input for
    backward (none of minicnn's element-wise ops do) would see the change and raise."""
    from minicnn.autograd import no_grad

    _check_leaf(t, name)
    if _tracking(t):
        _check_not_a_view(t, name)
        return _take_over(t, fn(_old_value(t, copy=False)), name)
    with no_grad():
        res = fn(t)
    t.array[...] = res.array
    t.bump_version()
    return t


@_on_its_gpu
def copy(t, src, name="copy_"):
    """``t``'s values replaced by ``src`` (broadcast to ``t``'s shape, cast to its dtype, moved to its
    device)."""
    from minicnn.ops.basic import CopyFrom
    from minicnn.tensor import _operand

    _check_leaf(t, name)
    src = _operand(src, t)
    if _tracking(t, src):
        _check_not_a_view(t, name)
        Tensor = _tensor()
        if isinstance(src, Tensor) and src.device != t.device:
            src = src.to(t.device)
        res = CopyFrom.apply(_old_value(t, copy=False), src)
        t.array[...] = res.array
        t.grad_fn, t.requires_grad = res.grad_fn, res.requires_grad
        t.bump_version()
        return t
    value = _raw_on(t, src)
    _check_shape(t, np.broadcast_shapes(t.array.shape, getattr(value, "shape", ())), name)
    t.array[...] = value
    t.bump_version()
    return t


@_on_its_gpu
def fill(t, value, name):
    """Every element set to ``value`` (a number or a one-element tensor)."""
    Tensor = _tensor()
    if isinstance(value, Tensor) and value.numel() != 1:
        raise RuntimeError(
            f"{name} only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions"
        )
    return copy(t, value, name)


@_on_its_gpu
def random(t, kind, a, b, name):
    """uniform_(a, b) / normal_(mean, std) from minicnn's seeded generator for the tensor's device."""
    from minicnn import random as _random

    if t.array.dtype.kind != "f":
        raise TypeError(f"{name}: needs a floating-point tensor, got {t.dtype}")
    gen = _random.generator(t.device)
    draw_dtype = t.array.dtype if t.array.dtype in (np.float32, np.float64) else np.float32
    if kind == "uniform":
        values = gen.random(t.array.shape, dtype=draw_dtype) * (b - a) + a
    else:
        if not b >= 0:
            raise RuntimeError(f"{name} expects std >= 0.0, but found std {b}")
        values = gen.standard_normal(t.array.shape, dtype=draw_dtype) * b + a
    return copy(t, _tensor()._make(values.astype(t.array.dtype, copy=False)), name)


@_on_its_gpu
def setitem(t, index, value):
    """``t[index] = value``."""
    from minicnn.ops.basic import SetItem, convert_index

    name = "setitem (t[...] = value)"
    _check_leaf(t, name)
    index = convert_index(t, index)
    Tensor = _tensor()
    if _tracking(t, value):
        _check_not_a_view(t, name)
        if not isinstance(value, Tensor):
            value = Tensor._make(get_array_module(t.array).asarray(_raw_on(t, value), dtype=t.array.dtype))
        elif value.device != t.device:
            value = value.to(t.device)
        if value.array.dtype != t.array.dtype:  # assignment casts, as copy_ does
            value = value.to(t.array.dtype)
        res = SetItem.apply(_old_value(t, copy=False), value, index=index)
        t.array[...] = res.array
        t.grad_fn, t.requires_grad = res.grad_fn, res.requires_grad
        t.bump_version()
        return
    t.array[index] = _raw_on(t, value)
    t.bump_version()
