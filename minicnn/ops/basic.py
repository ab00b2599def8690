"""Elementwise arithmetic, reductions, matrix multiply and shape ops, each with its backward.

Broadcasting: when an input was broadcast in the forward pass, its gradient is the upstream
gradient summed over the broadcast dimensions (``unbroadcast``). Backward methods never modify
the incoming gradient in place (it may be shared with other ops).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import device_of, get_array_module, scatter_add, to_device


def _shape(x):
    return getattr(x, "shape", None)


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting (leading dims, then size-1 dims)."""
    if shape is None or tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _normalize_dims(dim, ndim, op):
    """``dim`` (None, int or tuple, negatives allowed) as a sorted tuple of axes, or None."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out, n = [], max(ndim, 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    for d in dims:
        if not -n <= d < n:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dimension(s)")
        out.append(int(d) % n)
    return tuple(sorted(set(out))) if ndim else ()


def _wrap_dim(dim, ndim, op, new_axis=False):
    """One ``dim`` (negatives count from the end) as an index in range(ndim); a clear IndexError otherwise.
    ``new_axis``: the dim names a position for an inserted axis (unsqueeze, stack), so ndim + 1 are valid."""
    n = max(ndim + new_axis, 1)  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    if not -n <= dim < n:
        raise IndexError(
            f"{op}: dim {dim} is out of range for a tensor with {ndim} dimension(s) "
            f"(expected a dim in [{-n}, {n - 1}])"
        )
    return int(dim) % n


def _keepdim_shape(shape, axes):
    return tuple(1 if (axes is None or i in axes) else n for i, n in enumerate(shape))


# ====================================================================== elementwise arithmetic
class Add(Function):
    """out = a + b.   dL/da = g,  dL/db = g  (each summed back to its own shape)."""

    saved_inputs = ()

    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return a + b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (
            unbroadcast(g, self.shapes[0]) if na else None,
            unbroadcast(g, self.shapes[1]) if nb else None,
        )


class Sub(Function):
    """out = a - b.   dL/da = g,  dL/db = -g."""

    saved_inputs = ()

    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return a - b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (
            unbroadcast(g, self.shapes[0]) if na else None,
            unbroadcast(-g, self.shapes[1]) if nb else None,
        )


class Mul(Function):
    """out = a * b.   dL/da = g * b,  dL/db = g * a."""

    def forward(self, a, b):
        na, nb = self.needs_input_grad
        self.a = a if nb else None
        self.b = b if na else None
        self.saved_inputs = (0,) * nb + (1,) * na  # for the version check: what backward reads
        self.shapes = (_shape(a), _shape(b))
        return a * b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (
            unbroadcast(g * self.b, self.shapes[0]) if na else None,
            unbroadcast(g * self.a, self.shapes[1]) if nb else None,
        )


class Div(Function):
    """out = a / b.   dL/da = g / b,  dL/db = -g * a / b**2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        na, nb = self.needs_input_grad
        self.saved_inputs = (0,) * nb + (1,) * (na or nb)  # for the version check: what backward reads
        self.shapes = (_shape(a), _shape(b))
        return a / b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (
            unbroadcast(g / self.b, self.shapes[0]) if na else None,
            unbroadcast(-g * self.a / (self.b * self.b), self.shapes[1]) if nb else None,
        )


class Neg(Function):
    """out = -a.   dL/da = -g."""

    saved_inputs = ()

    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


def _power(a, b):
    """a ** b, with PyTorch's values for the exponents it computes as sqrt and 1/sqrt: NaN for every
    negative base, -inf included (C's pow gives (-inf) ** 0.5 = inf and (-inf) ** -0.5 = 0)."""
    if np.isscalar(b) and b in (0.5, -0.5):
        root = get_array_module(a).sqrt(a)
        return root if b == 0.5 else 1 / root
    return a**b


class Pow(Function):
    """out = a ** b.   dL/da = g * b * a**(b-1)  (0 where b == 0),
    dL/db = g * out * log(a)  (0 where a == 0 and b >= 0, as PyTorch)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.shapes = (_shape(a), _shape(b))
        self.out = _power(a, b)
        return self.out

    def backward(self, g):
        a, b = self.a, self.b
        xp = get_array_module(g)
        ga = gb = None
        # 0 ** negative and log(0) give inf/nan, as in PyTorch (masked below where PyTorch gives 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.needs_input_grad[0]:
                if np.isscalar(b):
                    ga = xp.zeros_like(g) if b == 0 else g * (b * _power(a, b - 1))
                else:
                    ga = xp.where(b == 0, 0, g * (b * a ** (b - 1)))
                ga = unbroadcast(ga, self.shapes[0])
            if self.needs_input_grad[1]:
                mask = (a == 0) & (b >= 0)
                # a may be a Python scalar (2 ** x): take its log in the output dtype, not float64
                log_a = xp.log(xp.asarray(a, dtype=self.out.dtype))
                gb = unbroadcast(xp.where(mask, 0, g * (self.out * log_a)), self.shapes[1])
        return ga, gb


def pow(a, b):
    return Pow.apply(a, b)


class Exp(Function):
    """out = exp(a).   dL/da = g * out."""

    saved_inputs, saves_output = (), True

    def forward(self, a):
        self.out = get_array_module(a).exp(a)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    """out = log(a).   dL/da = g / a."""

    def forward(self, a):
        self.a = a
        return get_array_module(a).log(a)

    def backward(self, g):
        return g / self.a


class Log1p(Function):
    """out = log(1 + a), exact for tiny a.   dL/da = g / (1 + a)."""

    def forward(self, a):
        self.a = a
        return get_array_module(a).log1p(a)

    def backward(self, g):
        return g / (1 + self.a)


class Sqrt(Function):
    """out = sqrt(a).   dL/da = g / (2 * out)."""

    saved_inputs, saves_output = (), True

    def forward(self, a):
        self.out = get_array_module(a).sqrt(a)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Abs(Function):
    """out = |a|.   dL/da = g * sign(a)  (sign 0 at a == 0 and at a NaN input, as PyTorch's sign)."""

    def forward(self, a):
        self.a = a
        return get_array_module(a).abs(a)

    def backward(self, g):
        a = self.a
        return g * ((a > 0).astype(g.dtype) - (a < 0).astype(g.dtype))


class Clamp(Function):
    """out = min(max(a, lo), hi).   dL/da = g where lo < a < hi, else 0.
    At a bound the gradient is 0 (the minimum-norm subgradient, as PyTorch >= 2.14, relu and hardtanh)."""

    saved_inputs = ()  # backward reads the mask only

    def forward(self, a, lo=None, hi=None):
        xp = get_array_module(a)
        self.mask = xp.ones(a.shape, dtype=bool)
        out = a
        if lo is not None:
            self.mask &= a > lo
            out = xp.maximum(out, lo)
        if hi is not None:
            self.mask &= a < hi
            out = xp.minimum(out, hi)
        return out.astype(a.dtype, copy=False)

    def backward(self, g):
        xp = get_array_module(g)  # where, not g * mask: 0 outside the bounds even if g is inf/NaN
        return xp.where(self.mask, g, xp.zeros((), dtype=g.dtype))


def clamp(a, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return Clamp.apply(a, lo=min, hi=max)


class Maximum(Function):
    """out = max(a, b) elementwise (NaN wins, as PyTorch).   dL/da = g where a > b, g/2 where a == b, 0 where
    a < b (and dL/db the mirror image): a tie splits the gradient, as PyTorch's."""

    minimum = False  # Minimum: the same op with the comparisons turned round

    def forward(self, a, b):
        xp = get_array_module(a, b)
        self.a, self.b = a, b
        self.shapes = (_shape(a), _shape(b))
        return xp.minimum(a, b) if self.minimum else xp.maximum(a, b)

    def backward(self, g):
        xp = get_array_module(g)
        a, b = self.a, self.b
        share = xp.where(a == b, g / 2, g)  # a tie: half each
        a_loses, b_loses = (a > b, b > a) if self.minimum else (a < b, b < a)
        ga = unbroadcast(xp.where(a_loses, 0, share), self.shapes[0]) if self.needs_input_grad[0] else None
        gb = unbroadcast(xp.where(b_loses, 0, share), self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


class Minimum(Maximum):
    """out = min(a, b) elementwise.   dL/da = g where a < b, g/2 where a == b, 0 where a > b."""

    minimum = True


class Where(Function):
    """out = cond ? a : b.   dL/da = g where cond, dL/db = g where not cond."""

    saved_inputs = ()  # a copy of the condition is kept

    def forward(self, cond, a, b):
        xp = get_array_module(cond, a, b)
        self.cond = cond.astype(bool)
        self.shapes = (_shape(a), _shape(b))
        return xp.where(self.cond, a, b)

    def backward(self, g):
        xp = get_array_module(g)
        _, na, nb = self.needs_input_grad
        zero = xp.zeros((), dtype=g.dtype)
        return (
            None,
            unbroadcast(xp.where(self.cond, g, zero), self.shapes[0]) if na else None,
            unbroadcast(xp.where(self.cond, zero, g), self.shapes[1]) if nb else None,
        )


def where(condition, a, b):
    from minicnn.tensor import Tensor, _operand

    like = next((t for t in (a, b, condition) if isinstance(t, Tensor)), None)
    if like is None:
        raise TypeError("where: at least one argument must be a Tensor")
    cond = condition if isinstance(condition, Tensor) else _operand(condition, like)
    if not isinstance(cond, Tensor):
        cond = Tensor(np.asarray(cond), device=like.device)
    return Where.apply(cond, _operand(a, like), _operand(b, like))


# ====================================================================== matrix multiply
class MatMul(Function):
    """out = a @ b (batched, broadcast over leading dims).
    dL/da = g @ b^T,  dL/db = a^T @ g  (1-D operands are promoted to matrices and back)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        na, nb = self.needs_input_grad
        self.saved_inputs = (0,) * nb + (1,) * na  # for the version check: what backward reads
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g[..., None] if b.ndim == 1 else g
        g2 = g2[..., None, :] if a.ndim == 1 else g2
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = unbroadcast(a2.swapaxes(-1, -2) @ g2, b2.shape).reshape(b.shape)
        return ga, gb


def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dimension, got shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied: the last "
            f"dimension of the "
            f"first ({k_a}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} dimension "
            f"of the second ({k_b})"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast"
            ) from None
    return MatMul.apply(a, b)


# ====================================================================== reductions
class Sum(Function):
    """out = sum of a over ``dim``.   dL/da = g broadcast back to a's shape."""

    saved_inputs = ()

    def forward(self, a, dim=None, keepdim=False):
        self.axes = _normalize_dims(dim, a.ndim, "sum")
        self.in_shape = a.shape
        return a.sum(axis=self.axes, keepdims=keepdim)

    def backward(self, g):
        xp = get_array_module(g)
        return xp.broadcast_to(g.reshape(_keepdim_shape(self.in_shape, self.axes)), self.in_shape)


class Mean(Function):
    """out = mean of a over ``dim``.   dL/da = g / (number of averaged elements), broadcast back."""

    saved_inputs = ()

    def forward(self, a, dim=None, keepdim=False):
        self.axes = _normalize_dims(dim, a.ndim, "mean")
        self.in_shape = a.shape
        n = a.size if self.axes is None else int(np.prod([a.shape[i] for i in self.axes]))
        self.count = n
        return a.mean(axis=self.axes, keepdims=keepdim)

    def backward(self, g):
        xp = get_array_module(g)
        g = g.reshape(_keepdim_shape(self.in_shape, self.axes)) / self.count
        return xp.broadcast_to(g, self.in_shape)


class Norm(Function):
    """out = (sum |a|^p)^(1/p) over ``dim`` (p = 2: sqrt(sum a^2); p = inf: max |a|).
    dL/da = g * sign(a) |a|^(p-1) / out^(p-1)   (p = 2: g * a / out; p = 1: g * sign(a); p = inf: g * sign(a)
    shared by the elements at the max); 0 where out == 0, as PyTorch."""

    def forward(self, a, p=2, dim=None, keepdim=False):
        xp = get_array_module(a)
        self.a, self.p, self.in_shape = a, p, a.shape
        self.axes = _normalize_dims(dim, a.ndim, "norm")
        absa = xp.abs(a)
        if p == 2:
            out = xp.sqrt((a * a).sum(axis=self.axes, keepdims=True))
        elif p == 1:
            out = absa.sum(axis=self.axes, keepdims=True)
        elif p == float("inf"):
            out = absa.max(axis=self.axes, keepdims=True)
        else:
            out = (absa**p).sum(axis=self.axes, keepdims=True) ** (1.0 / p)
        self.out = out  # keepdim shape, for backward
        return out if keepdim else out.reshape([n for i, n in enumerate(out.shape) if not self._reduced(i)])

    def _reduced(self, axis):
        return self.axes is None or axis in self.axes

    def backward(self, g):
        xp = get_array_module(g)
        a, p, out = self.a, self.p, self.out
        g = g.reshape(out.shape)
        nonzero = out != 0
        safe = xp.where(nonzero, out, 1)
        if p == 2:
            da = a / safe
        elif p == 1:
            da = xp.sign(a)
        elif p == float("inf"):
            at_max = (xp.abs(a) == out).astype(a.dtype)
            da = xp.sign(a) * at_max / at_max.sum(axis=self.axes, keepdims=True)
        else:
            da = xp.sign(a) * xp.abs(a) ** (p - 1) / safe ** (p - 1)
        return xp.where(nonzero, da * g, 0)


class AMax(Function):
    """out = max (or min) of a over ``dim``.
    dL/da = g split evenly between the elements equal to the extreme (as torch.amax)."""

    def forward(self, a, dim=None, keepdim=False, minimum=False):
        self.axes = _normalize_dims(dim, a.ndim, "amin" if minimum else "amax")
        if a.size == 0:
            raise RuntimeError("max/min of an empty tensor is not defined")
        self.a = a
        self.out = (a.min if minimum else a.max)(axis=self.axes, keepdims=True)
        return (
            self.out
            if keepdim
            else self.out.reshape(
                tuple(n for i, n in enumerate(a.shape) if not (self.axes is None or i in self.axes))
            )
        )

    def backward(self, g):
        mask = self.a == self.out
        count = mask.sum(axis=self.axes, keepdims=True).astype(g.dtype)  # no float64 upcast
        g = g.reshape(self.out.shape)
        return (mask * (g / count)).astype(g.dtype, copy=False)


class MaxDim(Function):
    """out = max (or min) of a along one ``dim``, with the index of the first extreme.
    dL/da = g routed to that index only (as torch.max(dim))."""

    saved_inputs = ()

    def forward(self, a, dim, keepdim=False, minimum=False):
        xp = get_array_module(a)
        (self.axis,) = _normalize_dims(dim, a.ndim, "max")
        self.in_shape = a.shape
        idx = (xp.argmin if minimum else xp.argmax)(a, axis=self.axis)
        self.idx = xp.expand_dims(idx, self.axis)
        out = xp.take_along_axis(a, self.idx, axis=self.axis)
        return out if keepdim else out.squeeze(self.axis)

    def backward(self, g):
        xp = get_array_module(g)
        positions = xp.arange(self.in_shape[self.axis]).reshape(
            [-1 if i == self.axis else 1 for i in range(len(self.in_shape))]
        )
        g = xp.expand_dims(g, self.axis) if g.ndim < len(self.in_shape) else g
        return xp.where(positions == self.idx, g, xp.zeros((), dtype=g.dtype))


MaxResult = namedtuple("max", ["values", "indices"])


def _reduce_extreme(a, dim, keepdim, minimum):
    if dim is None:
        return AMax.apply(a, minimum=minimum)
    values = MaxDim.apply(a, dim=dim, keepdim=keepdim, minimum=minimum)
    return MaxResult(values, argmax(a, dim, keepdim, minimum=minimum))


def reduce_max(a, dim=None, keepdim=False):
    """``max(a)`` -> the largest element; ``max(a, dim)`` -> (values, indices) like torch.max."""
    return _reduce_extreme(a, dim, keepdim, minimum=False)


def reduce_min(a, dim=None, keepdim=False):
    return _reduce_extreme(a, dim, keepdim, minimum=True)


def argmax(a, dim=None, keepdim=False, minimum=False):
    from minicnn.tensor import Tensor

    xp = a._xp
    f = xp.argmin if minimum else xp.argmax
    if dim is None:
        return Tensor._make(xp.asarray(f(a.array)).astype(np.int64))
    out = f(a.array, axis=dim)
    if keepdim:
        out = xp.expand_dims(out, dim)
    return Tensor._make(out.astype(np.int64))


# ====================================================================== shape ops
class Reshape(Function):
    """out = a viewed with a new shape.   dL/da = g reshaped back."""

    saved_inputs, is_view = (), True

    def forward(self, a, shape):
        self.in_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {tuple(a.shape)} ({a.size} elements) "
                f"as shape {tuple(shape)}"
            ) from None

    def backward(self, g):
        return g.reshape(self.in_shape)


def check_size(value, what="size", op="reshape"):
    """One dimension of a shape as an int: ints (and one-element integer tensors) only. Floats and
    strings are refused, as in PyTorch, instead of being truncated or parsed."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        index = getattr(value, "__index__", None)
        if index is not None and not isinstance(value, (bool, np.bool_, float, np.floating)):
            try:
                return int(index())
            except TypeError:
                pass
        raise TypeError(
            f"{op}(): argument '{what}' must be a tuple of ints, but found element of type "
            f"{type(value).__name__} ({value!r})"
        )
    return int(value)


def _shape_args(shape, op="reshape"):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(check_size(s, "shape", op) for s in shape)


def reshape(a, *shape):
    return Reshape.apply(a, shape=_shape_args(shape))


def flatten(a, start_dim=0, end_dim=-1):
    if a.ndim == 0:
        return reshape(a, 1)
    s, e = _wrap_dim(start_dim, a.ndim, "flatten"), _wrap_dim(end_dim, a.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(a, a.shape[:s] + (int(np.prod(a.shape[s : e + 1])),) + a.shape[e + 1 :])


def unsqueeze(a, dim):
    dim = _wrap_dim(dim, a.ndim, "unsqueeze", new_axis=True)
    return reshape(a, a.shape[:dim] + (1,) + a.shape[dim:])


def squeeze(a, dim=None):
    if dim is None:
        return reshape(a, tuple(n for n in a.shape if n != 1))
    dim = _wrap_dim(dim, a.ndim, "squeeze")
    if a.ndim == 0 or a.shape[dim] != 1:
        return a
    return reshape(a, a.shape[:dim] + a.shape[dim + 1 :])


class Permute(Function):
    """out = a with its axes reordered.   dL/da = g with the inverse order."""

    saved_inputs, is_view = (), True

    def forward(self, a, dims):
        self.inverse = tuple(int(i) for i in np.argsort(dims))
        return a.transpose(dims)

    def backward(self, g):
        return g.transpose(self.inverse)


def permute(a, *dims):
    dims = _shape_args(dims, "permute")
    if sorted(_wrap_dim(d, a.ndim, "permute") for d in dims) != list(range(a.ndim)):
        raise ValueError(
            f"permute: {dims} is not a permutation of the {a.ndim} dims of shape "
            f"{tuple(a.shape)}"
        )
    return Permute.apply(a, dims=tuple(d % a.ndim for d in dims))


def transpose(a, dim0, dim1):
    dim0, dim1 = _wrap_dim(dim0, a.ndim, "transpose"), _wrap_dim(dim1, a.ndim, "transpose")
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute.apply(a, dims=tuple(dims))


class Expand(Function):
    """out = a broadcast to a larger shape.   dL/da = g summed over the broadcast dims."""

    saved_inputs, is_view = (), True

    def forward(self, a, shape):
        self.in_shape = a.shape
        return get_array_module(a).broadcast_to(a, shape)

    def backward(self, g):
        return unbroadcast(g, self.in_shape)


def expand(a, *shape):
    shape = list(_shape_args(shape, "expand"))
    lead = len(shape) - a.ndim
    for i in range(a.ndim):
        if shape[lead + i] == -1:
            shape[lead + i] = a.shape[i]
    return Expand.apply(a, shape=tuple(shape))


def _is_basic_index(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(
        i is None
        or i is Ellipsis
        or isinstance(i, (slice, int, np.integer))
        or (hasattr(i, "dtype") and i.dtype == bool)
        for i in items
    )


class GetItem(Function):
    """out = a[index].   dL/da = zeros with g written (basic index) or added (integer arrays,
    where repeated indices must sum) at the indexed places."""

    saved_inputs, is_view = (), True  # a view for basic indices (apply checks the memory)

    def forward(self, a, index):
        self.in_shape, self.index = a.shape, index
        self.dtype = a.dtype
        return a[index]

    def backward(self, g):
        xp = get_array_module(g)
        grad = xp.zeros(self.in_shape, dtype=g.dtype)
        if _is_basic_index(self.index):
            grad[self.index] = g
        else:
            scatter_add(grad, self.index, g)
        return grad


def convert_index(a, index):
    """An index for ``a``'s array: Tensors become their arrays, lists and NumPy index arrays move
    to ``a``'s device."""
    from minicnn.tensor import Tensor

    def conv(i):
        if isinstance(i, Tensor):
            return a._xp.asarray(i.array)
        if isinstance(i, (list, np.ndarray)):
            return a._xp.asarray(i)
        return i

    return tuple(conv(i) for i in index) if isinstance(index, tuple) else conv(index)


def getitem(a, index):
    return GetItem.apply(a, index=convert_index(a, index))


class SetItem(Function):
    """out = a copy of ``dst`` with ``value`` written at ``index`` (``t[index] = value`` in the graph).
    dL/d(dst) = g with zeros at the written places,  dL/d(value) = g at those places (summed back
    to value's shape)."""

    saved_inputs = ()

    def forward(self, dst, value, index):
        self.index, self.value_shape = index, _shape(value)
        out = dst.copy()
        out[index] = value
        return out

    def backward(self, g):
        need_dst, need_value = self.needs_input_grad[:2]
        gd = gv = None
        if need_dst:
            gd = g.copy()
            gd[self.index] = 0
        if need_value:
            gv = unbroadcast(g[self.index], self.value_shape)
        return gd, gv


class CopyFrom(Function):
    """out = ``src`` broadcast to ``dst``'s shape and cast to its dtype (``dst.copy_(src)``).
    dL/d(dst) = 0 (its old values are gone),  dL/d(src) = g summed back to src's shape."""

    saved_inputs = ()

    def forward(self, dst, src):
        self.src_shape = _shape(src)
        self.src_dtype = getattr(src, "dtype", None)
        out = get_array_module(dst).empty_like(dst)
        out[...] = src
        return out

    def backward(self, g):
        need_dst, need_src = self.needs_input_grad[:2]
        gd = get_array_module(g).zeros_like(g) if need_dst else None
        gs = None
        if need_src:
            gs = unbroadcast(g, self.src_shape)
            if self.src_dtype is not None and gs.dtype != self.src_dtype:
                gs = gs.astype(self.src_dtype)
        return gd, gs


class Cat(Function):
    """out = the inputs joined along ``dim``.   dL/d(input_i) = the slice of g that input_i fills."""

    saved_inputs = ()

    def forward(self, *arrays, dim=0):
        xp = get_array_module(*arrays)
        self.axis = dim % arrays[0].ndim
        self.sizes = [x.shape[self.axis] for x in arrays]
        return xp.concatenate(arrays, axis=self.axis)

    def backward(self, g):
        xp = get_array_module(g)
        return tuple(xp.split(g, np.cumsum(self.sizes)[:-1].tolist(), axis=self.axis))


class Stack(Function):
    """out = the inputs stacked along a new ``dim``.   dL/d(input_i) = g indexed at i along ``dim``."""

    saved_inputs = ()

    def forward(self, *arrays, dim=0):
        xp = get_array_module(*arrays)
        self.axis = dim % (arrays[0].ndim + 1)
        return xp.stack(arrays, axis=self.axis)

    def backward(self, g):
        xp = get_array_module(g)
        return tuple(xp.moveaxis(g, self.axis, 0))


def _check_same_shapes(tensors, op, skip_dim=None):
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    ref = tuple(tensors[0].shape)
    for t in tensors[1:]:
        same = len(t.shape) == len(ref) and all(
            a == b
            for i, (a, b) in enumerate(zip(t.shape, ref))
            if skip_dim is None or i != skip_dim % len(ref)
        )
        if not same:
            raise ValueError(f"{op}: all tensors must have matching shapes, got {ref} and {tuple(t.shape)}")


def cat(tensors, dim=0):
    tensors = list(tensors)
    if tensors:
        dim = _wrap_dim(dim, tensors[0].ndim, "cat")
    _check_same_shapes(tensors, "cat", skip_dim=dim)
    return Cat.apply(*tensors, dim=dim)


def stack(tensors, dim=0):
    tensors = list(tensors)
    if tensors:
        dim = _wrap_dim(dim, tensors[0].ndim, "stack", new_axis=True)
    _check_same_shapes(tensors, "stack")
    return Stack.apply(*tensors, dim=dim)


# ====================================================================== dtype / device moves
class Cast(Function):
    """out = a converted to ``dtype``.   dL/da = g converted back to a's dtype."""

    saved_inputs = ()

    def forward(self, a, dtype):
        self.in_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, g):
        return g.astype(self.in_dtype)


class ToDevice(Function):
    """out = a copied to ``device``.   dL/da = g copied back to a's device."""

    saved_inputs = ()

    def forward(self, a, device):
        self.src = device_of(a)
        return to_device(a, device)

    def backward(self, g):
        return to_device(g, self.src)


class Clone(Function):
    """out = a copy of a.   dL/da = g."""

    saved_inputs = ()

    def forward(self, a):
        return a.copy()

    def backward(self, g):
        return g


# ====================================================================== composite reductions and splits
def var(a, dim=None, unbiased=None, keepdim=False, correction=None):
    """Variance over ``dim`` with ``correction`` (1 = Bessel's, the default; ``unbiased=False`` is 0),
    built from differentiable ops: sum((a - mean)^2) / (n - correction)."""
    if unbiased is not None and correction is not None:
        raise ValueError("var/std: give either unbiased or correction, not both")
    correction = (1 if unbiased is None or unbiased else 0) if correction is None else correction
    if a.dtype.kind not in "fc":
        raise RuntimeError(f"std and var only support floating point and complex dtypes, got {a.dtype.name}")
    axes = _normalize_dims(dim, a.ndim, "var")
    n = a.numel() if axes is None else int(np.prod([a.shape[i] for i in axes]))
    centered = a - a.mean(dim=axes, keepdim=True)
    total = (centered * centered).sum(dim=axes, keepdim=keepdim)
    return total / max(n - correction, 0) if n - correction > 0 else total * float("nan")


class TakeAlong(Function):
    """out = a's values at ``indices`` along ``axis`` (a gather).
    dL/da = g put back at those indices (they are distinct along the axis), zeros elsewhere."""

    saved_inputs = ()

    def forward(self, a, indices, axis):
        self.indices, self.axis, self.in_shape = indices, axis, a.shape
        return get_array_module(a).take_along_axis(a, indices, axis=axis)

    def backward(self, g):
        xp = get_array_module(g)
        grad = xp.zeros(self.in_shape, dtype=g.dtype)
        xp.put_along_axis(grad, self.indices, g, axis=self.axis)
        return grad


TopKResult = namedtuple("topk", ["values", "indices"])


def topk(a, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, largest first."""
    from minicnn.tensor import Tensor

    axis = _wrap_dim(dim, a.ndim, "topk")
    size = a.shape[axis] if a.ndim else 1
    k = check_size(k, "k", "topk")
    if not 0 <= k <= size:
        raise RuntimeError(f"topk: k ({k}) is out of range for dimension {dim} of size {size}")
    xp = a._xp
    keys = -a.array if largest else a.array
    order = xp.argsort(keys, axis=axis, kind="stable")
    idx = xp.take(order, xp.arange(k), axis=axis)
    return TopKResult(TakeAlong.apply(a, idx, axis=axis), Tensor._make(idx.astype(np.int64)))


class Repeat(Function):
    """out = a tiled ``reps`` times along each axis (``Tensor.repeat``).
    dL/da = g cut into the tiles and the tiles summed."""

    saved_inputs = ()

    def forward(self, a, reps):
        self.reps = reps
        self.in_shape = (1,) * (len(reps) - a.ndim) + tuple(a.shape)
        self.orig_shape = a.shape
        return get_array_module(a).tile(a.reshape(self.in_shape), reps)

    def backward(self, g):
        split = []
        for r, n in zip(self.reps, self.in_shape):
            split += [r, n]
        tiles = g.reshape(split)
        return tiles.sum(axis=tuple(range(0, len(split), 2))).reshape(self.orig_shape)


def repeat(a, *sizes):
    reps = _shape_args(sizes, "repeat")
    if len(reps) < a.ndim:
        raise RuntimeError(
            f"repeat: the number of repeats ({len(reps)}) can not be smaller than the number of "
            f"dimensions of the tensor ({a.ndim})"
        )
    return Repeat.apply(a, reps=reps)


class Roll(Function):
    """out = a shifted by ``shifts`` along ``dims``, wrapping around (flattened when dims is None).
    dL/da = g shifted back by -shifts."""

    saved_inputs = ()

    def forward(self, a, shifts, dims):
        self.shifts, self.dims = shifts, dims
        return get_array_module(a).roll(a, shifts, axis=dims)

    def backward(self, g):
        back = -self.shifts if isinstance(self.shifts, int) else tuple(-s for s in self.shifts)
        return get_array_module(g).roll(g, back, axis=self.dims)


def roll(a, shifts, dims=None):
    """``torch.roll``: elements shifted along ``dims`` (one int or a tuple, one shift each), wrapping
    around; without ``dims`` the tensor is shifted as if flattened."""
    if isinstance(shifts, (list, tuple)) != isinstance(dims, (list, tuple)) and dims is not None:
        raise ValueError(f"roll: shifts {shifts!r} and dims {dims!r} must both be ints or both be tuples")
    if isinstance(shifts, (list, tuple)):
        if dims is None or len(shifts) != len(dims):
            raise ValueError(f"roll: one shift per dim, got shifts {shifts!r} and dims {dims!r}")
        shifts = tuple(int(s) for s in shifts)
        dims = tuple(_wrap_dim(d, a.ndim, "roll") for d in dims)
    else:
        shifts = int(shifts)
        dims = None if dims is None else _wrap_dim(dims, a.ndim, "roll")
    return Roll.apply(a, shifts=shifts, dims=dims)


def norm(a, p="fro", dim=None, keepdim=False):
    """``torch.norm`` / ``Tensor.norm``: the p-norm over ``dim`` (all elements when None); p = "fro"
    or 2 (Euclidean), 1, inf or any positive number."""
    if p == "fro":
        p = 2
    if isinstance(p, str) or not p > 0:
        raise ValueError(f"norm: p must be 'fro' or a positive number (inf included), got {p!r}")
    if a.dtype.kind != "f":
        raise TypeError(f"norm: expected a floating-point tensor, got dtype {a.dtype.name}")
    return Norm.apply(a, p=p, dim=dim, keepdim=keepdim)


def maximum(a, b):
    """Elementwise maximum (``torch.maximum``), with PyTorch's promotion and broadcasting."""
    from minicnn.tensor import _binary

    return _binary(Maximum, a, b)


def minimum(a, b):
    """Elementwise minimum (``torch.minimum``)."""
    from minicnn.tensor import _binary

    return _binary(Minimum, a, b)


def split(a, split_size, dim=0):
    """Pieces of ``split_size`` along ``dim`` (the last one smaller), or of the listed sizes."""
    axis = _wrap_dim(dim, a.ndim, "split")
    n = a.shape[axis]
    if isinstance(split_size, (list, tuple)):
        sizes = [check_size(s, "split_size", "split") for s in split_size]
        if sum(sizes) != n:
            raise RuntimeError(f"split: the sizes {list(sizes)} do not add up to {n} along dim {dim}")
    else:
        step = check_size(split_size, "split_size", "split")
        if step <= 0:
            raise RuntimeError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)]
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(getitem(a, index))
        start += size
    return tuple(pieces)


def chunk(a, chunks, dim=0):
    """``chunks`` pieces along ``dim`` of ceil(n / chunks) each (fewer when they run out), as torch.chunk."""
    chunks = check_size(chunks, "chunks", "chunk")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = a.shape[_wrap_dim(dim, a.ndim, "chunk")]
    return split(a, max(1, -(-n // chunks)), dim)
