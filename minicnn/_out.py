"""The ``out=`` argument of PyTorch's functions (``torch.mul(a, b, out=c)``, ``torch.matmul(..., out=y)``).

``with_out(fn)`` gives ``fn`` an ``out=`` keyword, with PyTorch's rules:

* the result is written into ``out``'s memory and ``out`` is returned (the same object);
* the result's dtype is cast to ``out``'s, but never into a lower category (a float result into an
  integer ``out`` is a RuntimeError: "result type float32 can't be cast to the desired output type
  int64");
* an ``out`` of another shape is resized to the result's shape (PyTorch warns when ``out`` was not
  empty; so does minicnn);
* no autograd: if an argument requires a gradient while grad mode is on, it is a RuntimeError, as
  PyTorch's "functions with out=... arguments don't support automatic differentiation".
"""

from __future__ import annotations

import functools
import warnings

from minicnn.autograd import is_grad_enabled


def _needs_grad(args):
    from minicnn.tensor import Tensor

    for a in args:
        if isinstance(a, Tensor) and a.requires_grad:
            return True
        if isinstance(a, (list, tuple)) and _needs_grad(a):  # cat / stack take a sequence
            return True
    return False


def write_out(result, out, name):
    """Write ``result`` into the tensor ``out`` (see the module doc) and return ``out``."""
    from minicnn.tensor import Tensor

    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: out must be a minicnn Tensor, got {type(out).__name__}")
    if out.device != result.device:
        raise RuntimeError(f"{name}: out is on {out.device} but the result is on {result.device}")
    order = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
    if order[result.dtype.kind] > order[out.dtype.kind]:
        raise RuntimeError(
            f"{name}: result type {result.dtype.name} can't be cast to the desired output type "
            f"{out.dtype.name}"
        )
    value = result.array
    if out.shape != result.shape:
        if out.numel() != 0:
            warnings.warn(
                f"{name}: an output with one or more elements was resized since it had shape "
                f"{list(out.shape)}, which does not match the required output shape "
                f"{list(result.shape)}. This behavior is deprecated (as in PyTorch): pass an out of "
                "the right shape or an empty one.",
                UserWarning,
                stacklevel=3,
            )
        out.array = value.astype(out.array.dtype, copy=True)  # a new buffer of the right shape
    else:
        out.array[...] = value
    out.bump_version()
    return out


def with_out(fn):
    """``fn`` with PyTorch's ``out=`` keyword (see the module doc)."""

    @functools.wraps(fn)
    def call(*args, out=None, **kwargs):
        if out is None:
            return fn(*args, **kwargs)
        if is_grad_enabled() and _needs_grad(args):
            raise RuntimeError(
                f"{fn.__name__}(): functions with out=... arguments don't support automatic "
                "differentiation, but one of the arguments requires grad (as in PyTorch). Call it "
                "without out= (y = minicnn.mul(a, b)), or under minicnn.no_grad()."
            )
        return write_out(fn(*args, **kwargs), out, fn.__name__)

    return call
