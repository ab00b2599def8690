"""Gradient clipping with PyTorch's names, arguments and arithmetic (``torch.nn.utils.clip_grad``).

``clip_grad_norm_`` treats all the gradients as one long vector: it computes that vector's
``norm_type`` norm (the norm of the per-tensor norms) and, when it exceeds ``max_norm``, scales
every gradient by ``max_norm / (total_norm + 1e-6)``; ``clip_grad_value_`` clamps each gradient
entry to ``[-clip_value, clip_value]``. Both change ``p.grad`` in place (its raw array, and they
bump its version counter) and record no graph. Call them between ``loss.backward()`` and
``optimizer.step()``::

    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
"""

from __future__ import annotations

import math
import numbers
import types
import warnings

import numpy as np

from minicnn.backend import device_of, get_array_module, to_device
from minicnn.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_norm", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_"]


def _as_float(who: str, what: str, value) -> float:
    """``float(value)`` (PyTorch converts the same way, so ``"inf"`` and 0-d Tensors work), or a
    one-line TypeError naming the argument."""
    if isinstance(value, (numbers.Real, str, Tensor)) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise TypeError(f"{who}: {what} must be a number, got {type(value).__name__} {value!r}")


def _tensor_list(who: str, parameters, what="parameters") -> list:
    if isinstance(parameters, Tensor):
        return [parameters]
    try:
        items = list(parameters)
    except TypeError:
        raise TypeError(
            f"{who}: {what} must be a Tensor or an iterable of Tensors (e.g. model.parameters()), "
            f"got {type(parameters).__name__}"
        ) from None
    for i, p in enumerate(items):
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: {what}[{i}] is a {type(p).__name__}, not a Tensor")
    return items


def _vector_norm(xp, a, p: float):
    """The ``p``-norm of all entries of ``a``, a 0-d array of ``a``'s dtype (``torch.linalg.vector_norm``)."""
    if p == 2.0:
        out = xp.sqrt((a * a).sum())
    elif p == 1.0:
        out = xp.abs(a).sum()
    elif math.isinf(p):
        if a.size == 0:
            out = xp.zeros((), a.dtype)
        else:
            out = xp.abs(a).max() if p > 0 else xp.abs(a).min()
    elif p == 0.0:
        out = (a != 0).sum()
    else:
        out = (xp.abs(a) ** p).sum() ** (1.0 / p)
    return xp.asarray(out, dtype=a.dtype)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> Tensor:
    """The ``norm_type`` norm of all the entries of ``tensors`` taken together, as a 0-d Tensor on
    the first tensor's device (``torch.nn.utils.get_total_norm``). ``norm_type`` may be ``inf``
    (``"inf"``) for the largest absolute entry. With ``error_if_nonfinite=True`` a NaN or infinite
    norm raises RuntimeError. ``foreach`` is accepted for compatibility and changes nothing."""
    who = "get_total_norm"
    tensors = _tensor_list(who, tensors, "tensors")
    norm_type = _as_float(who, "norm_type", norm_type)
    if len(tensors) == 0:
        return Tensor._make(np.zeros((), np.float32))
    first_device = device_of(tensors[0].array)
    norms = []
    for t in tensors:
        norm = _vector_norm(get_array_module(t.array), t.array, norm_type)
        norms.append(to_device(norm, first_device))
    xp = get_array_module(norms[0])
    total = _vector_norm(xp, xp.stack(norms), norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
            "anyway, set `error_if_nonfinite=False`"
        )
    return Tensor._make(total)


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None) -> None:
    """Scale the gradients by ``min(max_norm / (total_norm + 1e-6), 1)`` given an already computed
    total norm (``torch.nn.utils.clip_grads_with_norm_``)."""
    who = "clip_grads_with_norm_"
    params = _tensor_list(who, parameters)
    max_norm = _as_float(who, "max_norm", max_norm)
    if not max_norm >= 0:
        raise ValueError(f"{who}: max_norm must be >= 0, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if not isinstance(total_norm, Tensor):
        total_norm = Tensor._make(np.asarray(_as_float(who, "total_norm", total_norm)))
    total = total_norm.array
    xp = get_array_module(total)
    # In the total norm's dtype (float32 grads: float32 arithmetic), as PyTorch. Multiplying by a
    # coefficient clamped to 1 changes nothing, but avoids reading the norm back from a GPU.
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g.array *= to_device(coef, device_of(g.array)).astype(g.array.dtype)
        g.bump_version()


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> Tensor:
    """Rescale the gradients of ``parameters`` so that their total ``norm_type`` norm is at most
    ``max_norm``; return the total norm *before* clipping (a 0-d Tensor), as
    ``torch.nn.utils.clip_grad_norm_``.

    The total norm is the norm of all the gradient entries taken together (the norm of the
    per-parameter norms); parameters without a gradient are skipped. Every gradient is multiplied
    by ``min(max_norm / (total_norm + 1e-6), 1)`` in place. ``norm_type=float("inf")`` uses the
    largest absolute entry. ``error_if_nonfinite=True`` raises RuntimeError on a NaN or infinite
    total norm instead of scaling by it. ``foreach`` is accepted and changes nothing.
    """
    who = "clip_grad_norm_"
    is_generator = isinstance(parameters, types.GeneratorType)
    params = _tensor_list(who, parameters)
    if is_generator and len(params) == 0:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    max_norm_value = _as_float(who, "max_norm", max_norm)
    if not max_norm_value >= 0:
        raise ValueError(f"{who}: max_norm must be >= 0 (the gradients' largest norm), got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    total_norm = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm_value, total_norm, foreach)
    return total_norm


def clip_grad_norm(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> Tensor:
    """Deprecated alias of :func:`clip_grad_norm_` (as in PyTorch)."""
    warnings.warn(
        "`minicnn.nn.utils.clip_grad_norm` is now deprecated in favor of `minicnn.nn.utils.clip_grad_norm_`.",
        FutureWarning,
        stacklevel=2,
    )
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """Clamp every gradient entry of ``parameters`` to ``[-clip_value, clip_value]`` in place
    (``torch.nn.utils.clip_grad_value_``); parameters without a gradient are skipped."""
    who = "clip_grad_value_"
    params = _tensor_list(who, parameters)
    clip_value = _as_float(who, "clip_value", clip_value)
    if not clip_value >= 0:
        raise ValueError(f"{who}: clip_value must be >= 0, got {clip_value}")
    for p in params:
        if p.grad is not None:
            g = p.grad.array
            get_array_module(g).clip(g, -clip_value, clip_value, out=g)
            p.grad.bump_version()
