"""``minicnn.Tensor``: an n-dimensional array (NumPy or CuPy) that remembers how it was computed.

Names and semantics follow PyTorch: ``.grad`` is a Tensor, ``.data`` is a detached Tensor that
shares memory with this one, ``.detach()``, ``.numpy()``, ``.item()``, ``.to(device)``,
``.backward()``, the in-place methods ending in ``_``.

``tensor.array`` is the raw NumPy/CuPy array itself, for code that wants to work with NumPy or
CuPy directly (ops, optimizers, kernels). Write to it only under ``minicnn.no_grad()`` and call
``tensor.bump_version()`` after an in-place change, or use the in-place methods, which do both.

Version counter. Every tensor carries a version number, shared with the tensors that share its
memory (``.data``, ``detach()``, views made by reshape, indexing, permute, expand). Each in-place
change adds one. An op records the versions of the tensors its backward reads; ``backward()``
refuses to use one that changed since, as PyTorch does ("modified by an inplace operation"), so a
weight changed between forward and backward gives an error instead of a silently wrong gradient.
"""

from __future__ import annotations

import numpy as np

from minicnn import autograd
from minicnn.backend import (
    Device,
    device_of,
    from_foreign_gpu_array,
    get_array_module,
    gpu_guard,
    is_cupy_array,
    is_foreign_gpu_array,
    to_device,
    to_numpy,
)
from minicnn.dtypes import (
    Size,
    as_dtype,
    bool_,
    default_float,
    float16,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    np_dtype,
    result_type,
    set_default_dtype,
    uint8,
)

__all__ = [
    "Tensor",
    "Size",
    "float16",
    "float32",
    "float64",
    "int32",
    "int64",
    "uint8",
    "bool_",
    "get_default_dtype",
    "set_default_dtype",
]

_NUMBER_KINDS = "biufc"


def _refuse(data, why):
    raise TypeError(
        f"tensor(): cannot make a tensor from {why} ({type(data).__name__} {data!r:.60}): expected numbers "
        "(bool, int, float), nested lists of numbers, or a NumPy/CuPy array of numbers"
    )


def _as_array(data, dtype=None, device=None):
    """Turn Python data / NumPy / CuPy / Tensor / torch tensor into an array on ``device`` with ``dtype``.

    Refuses strings, None and other objects at once (as PyTorch does), rather than building an
    array of objects that fails later. Arrays from other GPU libraries (anything with
    ``__cuda_array_interface__``, e.g. a PyTorch CUDA tensor) become CuPy arrays.
    """
    if isinstance(data, Tensor):
        arr = data.array
    elif isinstance(data, np.ndarray) or is_cupy_array(data):
        arr = data
    elif is_foreign_gpu_array(data):
        arr = from_foreign_gpu_array(data)
    elif type(data).__module__.startswith("torch"):
        t = data.detach()
        if str(t.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: upcast, exactly
            t = t.float()
        arr = t.cpu().numpy()
    elif isinstance(data, str):
        _refuse(data, "a string")
    elif data is None:
        _refuse(data, "None")
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise TypeError(f"tensor(): cannot make a tensor from {type(data).__name__}: {e}") from None
        if arr.dtype.kind not in _NUMBER_KINDS:
            _refuse(data, "non-numeric data")
        if dtype is None and not isinstance(data, np.generic):
            if arr.dtype == np.float64:
                arr = arr.astype(default_float())  # Python floats get the default dtype, as in PyTorch
            elif arr.dtype == np.complex128 and default_float() == np.float32:
                arr = arr.astype(np.complex64)
    if arr.dtype.kind not in _NUMBER_KINDS:
        raise TypeError(f"tensor(): an array of dtype {arr.dtype} cannot be a tensor: it must hold numbers")
    if dtype is not None:
        arr = arr.astype(np_dtype(dtype), copy=False)
    if device is not None:
        arr = to_device(arr, device)
    return arr


class Tensor:
    """A NumPy/CuPy array plus autograd bookkeeping (``requires_grad``, ``grad``, ``grad_fn``)."""

    __slots__ = ("array", "requires_grad", "grad", "grad_fn", "_vc", "__weakref__")
    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        self.array = _as_array(data, dtype, device)
        self.grad = None
        self.grad_fn = None
        self.requires_grad = False
        self._vc = [0]
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, array, requires_grad=False, grad_fn=None):
        """Fast internal constructor around an array an op produced."""
        if isinstance(array, np.generic):  # numpy reductions return scalars; keep 0-d arrays
            array = np.asarray(array)
        t = object.__new__(cls)
        t.array, t.requires_grad, t.grad, t.grad_fn, t._vc = array, requires_grad, None, grad_fn, [0]
        return t

    # ----------------------------------------------------------------- properties
    @property
    def data(self) -> Tensor:
        """A detached tensor sharing this tensor's memory and version counter (as ``torch.Tensor.data``,
        except that in-place changes through it are still seen by ``backward()``'s check)."""
        t = Tensor._make(self.array)
        t._vc = self._vc
        return t

    @data.setter
    def data(self, value):
        self.array = value.array if isinstance(value, Tensor) else _as_array(value)

    @property
    def _version(self) -> int:
        return self._vc[0]

    def bump_version(self) -> None:
        """Record an in-place change made directly on ``self.array`` (see the module doc)."""
        self._vc[0] += 1

    @property
    def shape(self) -> Size:
        return Size(self.array.shape)

    @property
    def dtype(self):
        return as_dtype(self.array.dtype)

    @property
    def device(self) -> Device:
        return device_of(self.array)

    @property
    def is_cuda(self) -> bool:
        return is_cupy_array(self.array)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _xp(self):
        return get_array_module(self.array)

    def size(self, dim=None):
        return self.shape if dim is None else self.array.shape[dim]

    def dim(self) -> int:
        return self.array.ndim

    def numel(self) -> int:
        return int(self.array.size)

    def element_size(self) -> int:
        return self.array.itemsize

    def is_floating_point(self) -> bool:
        return self.array.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self.array.flags.c_contiguous)

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        if self.array.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.array.shape[0]))

    # ----------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.array.dtype.kind not in "fc":
            raise RuntimeError(
                f"only floating-point tensors can require gradients, this one is {self.dtype.name}"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Compute d(self)/d(leaf) for every leaf with ``requires_grad`` and add it to ``leaf.grad``."""
        if create_graph:
            raise NotImplementedError("backward(create_graph=True): minicnn has no higher-order gradients")
        autograd.backward(self, gradient, retain_graph=bool(retain_graph))

    def retain_grad(self):
        autograd.retain_grad(self)

    def register_post_accumulate_grad_hook(self, hook):
        """Run ``hook(self)`` in each backward once ``self.grad`` holds this backward's whole gradient.

        As ``torch.Tensor.register_post_accumulate_grad_hook``: leaves that require grad only; the
        hook returns None and may change ``self.grad`` in place; returns a handle (``.remove()``).
        It fires while backward is still running through earlier layers: DistributedDataParallel
        starts each bucket's all-reduce there (docs/autograd.md, docs/distributed.md).
        """
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def detach(self):
        """The same memory (and version counter), cut from the graph."""
        t = Tensor._make(self.array)
        t._vc = self._vc
        return t

    def detach_(self):
        self.grad_fn, self.requires_grad = None, False
        return self

    def zero_grad_(self):
        self.grad = None

    # ----------------------------------------------------------------- conversion
    def numpy(self, force=False) -> np.ndarray:
        """A NumPy array: shares memory on the CPU; a host copy when the tensor lives on a GPU.
        (Unlike PyTorch, also for a tensor that requires a gradient: the values are the same.)"""
        return to_numpy(self.array)

    def item(self):
        if self.array.size != 1:
            raise ValueError(
                f"item(): only one-element tensors can be converted, got shape "
                f"{tuple(self.shape)}"
            )
        return self.array.reshape(()).item()

    def tolist(self):
        return to_numpy(self.array).tolist()

    def __array__(self, dtype=None, copy=None):
        a = to_numpy(self.array)
        return a if dtype is None else a.astype(dtype)

    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """``t.to("cuda")``, ``t.to(minicnn.float64)``, ``t.to("cpu", minicnn.float32)``, ``t.to(other)``;
        differentiable. ``non_blocking`` is accepted and ignored (copies are synchronous here)."""
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if dtype is not None and np_dtype(dtype) != self.array.dtype:
            out = _ops.Cast.apply(out, dtype=np_dtype(dtype))
        if device is not None and Device(device) != self.device:
            out = _ops.ToDevice.apply(out, device=Device(device))
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False):
        if isinstance(device, (str, Device)):
            return self.to(device)
        return self.to(f"cuda:{0 if device is None else device}")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def half(self):
        return self.to(float16)

    def long(self):
        return self.to(int64)

    def int(self):
        return self.to(int32)

    def bool(self):
        return self.to(bool_)

    def type(self, dtype=None):
        """Without an argument, the type name (``'minicnn.FloatTensor'``); with one, ``to(dtype)``."""
        if dtype is None:
            return "minicnn." + _TYPE_NAMES.get(self.array.dtype, "Tensor")
        if isinstance(dtype, str) and dtype.split(".")[-1] in _TYPE_NAMES.values():
            dtype = next(k for k, v in _TYPE_NAMES.items() if v == dtype.split(".")[-1])
        return self.to(dtype)

    def type_as(self, other):
        return self.to(other.dtype)

    def contiguous(self):
        return self

    def clone(self):
        return _ops.Clone.apply(self)

    def new_tensor(self, data, dtype=None):
        dtype = dtype or (None if isinstance(data, Tensor) else self.dtype)
        return Tensor(data, dtype=dtype, device=self.device)

    def new_zeros(self, *size, dtype=None):
        return _raw_call(self, self._xp.zeros, _size_args(size), dtype=np_dtype(dtype or self.dtype))

    def new_ones(self, *size, dtype=None):
        return _raw_call(self, self._xp.ones, _size_args(size), dtype=np_dtype(dtype or self.dtype))

    def new_full(self, size, fill_value, dtype=None):
        shape = _size_args((size,))
        return _raw_call(self, self._xp.full, shape, fill_value, dtype=np_dtype(dtype or self.dtype))

    def new_empty(self, *size, dtype=None):
        return _raw_call(self, self._xp.empty, _size_args(size), dtype=np_dtype(dtype or self.dtype))

    # ----------------------------------------------------------------- printing
    def __repr__(self):
        arr = to_numpy(self.array)
        mode = "maxprec"  # like PyTorch: "1., 2." for whole numbers, else 4 fixed decimals ("1.5000")
        if arr.dtype.kind == "f":
            finite = arr[np.isfinite(arr)]
            mode = "maxprec" if np.array_equal(finite, np.round(finite)) else "fixed"
        body = np.array2string(arr, separator=", ", prefix="tensor(", precision=4, floatmode=mode)
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.array.dtype not in (default_float(), np.int64, np.bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __format__(self, spec):
        """``f"{loss:.4f}"`` formats a one-element tensor's value, as PyTorch does."""
        if self.array.size == 1 and self.array.ndim == 0:
            return format(self.item(), spec)
        if not spec:
            return repr(self)
        raise TypeError(f"unsupported format string {spec!r} for a tensor of shape {tuple(self.shape)}")

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self.array.size} elements is ambiguous; use .any() or .all()"
            )
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iu":
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other):
        return _binary(_ops.Add, self, other)

    def __radd__(self, other):
        return _binary(_ops.Add, other, self)

    def __sub__(self, other):
        return _binary(_ops.Sub, self, other)

    def __rsub__(self, other):
        return _binary(_ops.Sub, other, self)

    def __mul__(self, other):
        return _binary(_ops.Mul, self, other)

    def __rmul__(self, other):
        return _binary(_ops.Mul, other, self)

    def __truediv__(self, other):
        return _binary(_ops.Div, self, other)

    def __rtruediv__(self, other):
        return _binary(_ops.Div, other, self)

    def __floordiv__(self, other):
        return _no_grad_binary(np.floor_divide, self, other)

    def __rfloordiv__(self, other):
        return _no_grad_binary(np.floor_divide, other, self)

    def __mod__(self, other):
        return _no_grad_binary(np.remainder, self, other)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __pow__(self, exponent):
        return _binary(_ops.Pow, self, exponent)

    def __rpow__(self, base):
        return _binary(_ops.Pow, base, self)

    def __matmul__(self, other):
        return _ops.matmul(self, _operand(other, self))

    def __rmatmul__(self, other):
        return _ops.matmul(_operand(other, self), self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def __setitem__(self, index, value):
        _inplace.setitem(self, index, value)

    # in place: x += y changes x's memory, as in PyTorch
    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    # comparisons and logic build no graph and return bool tensors
    def __lt__(self, other):
        return _no_grad_binary(np.less, self, other)

    def __le__(self, other):
        return _no_grad_binary(np.less_equal, self, other)

    def __gt__(self, other):
        return _no_grad_binary(np.greater, self, other)

    def __ge__(self, other):
        return _no_grad_binary(np.greater_equal, self, other)

    def __eq__(self, other):
        if other is None:  # `t == None` is False, as in PyTorch
            return False
        return _no_grad_binary(np.equal, self, other)

    def __ne__(self, other):
        if other is None:
            return True
        return _no_grad_binary(np.not_equal, self, other)

    def __and__(self, other):
        return _no_grad_binary(np.bitwise_and, self, other)

    __rand__ = __and__

    def __or__(self, other):
        return _no_grad_binary(np.bitwise_or, self, other)

    __ror__ = __or__

    def __xor__(self, other):
        return _no_grad_binary(np.bitwise_xor, self, other)

    def __invert__(self):
        if self.array.dtype.kind not in "biu":
            raise TypeError(f"~ (bitwise not) is only for bool and integer tensors, got {self.dtype}")
        return _raw_call(self, self._xp.invert, self.array)

    __hash__ = object.__hash__

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def equal(self, other) -> bool:
        """True when both tensors have the same shape and the same values (``torch.equal``)."""
        if self.shape != other.shape:
            return False
        return bool(_raw_call(self, self._xp.array_equal, self.array, _raw(other)))

    def logical_not(self):
        return _raw_call(self, self._xp.logical_not, self.array)

    def any(self, dim=None, keepdim=False):
        return _raw_call(self, self.array.any, axis=dim, keepdims=keepdim)

    def all(self, dim=None, keepdim=False):
        return _raw_call(self, self.array.all, axis=dim, keepdims=keepdim)

    def isfinite(self):
        return _raw_call(self, self._xp.isfinite, self.array)

    def isnan(self):
        return _raw_call(self, self._xp.isnan, self.array)

    def isinf(self):
        return _raw_call(self, self._xp.isinf, self.array)

    # ----------------------------------------------------------------- methods mirroring ops
    def add(self, other, alpha=1):
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def neg(self):
        return -self

    def pow(self, exponent):
        return self**exponent

    def square(self):
        return self * self

    def matmul(self, other):
        return self @ other

    def mm(self, other):
        if self.ndim != 2 or _operand(other, self).ndim != 2:
            raise RuntimeError(
                f"mm: both operands must be matrices (2-D), got shapes {tuple(self.shape)} and "
                f"{tuple(_operand(other, self).shape)}; use matmul for other shapes"
            )
        return self @ other

    def exp(self):
        return _ops.Exp.apply(self)

    def log(self):
        return _ops.Log.apply(self)

    def log1p(self):
        return _ops.Log1p.apply(self)

    def sqrt(self):
        return _ops.Sqrt.apply(self)

    def abs(self):
        return _ops.Abs.apply(self)

    def relu(self):
        from minicnn.ops.activation import relu

        return relu(self)

    def sigmoid(self):
        from minicnn.ops.activation import sigmoid

        return sigmoid(self)

    def tanh(self):
        from minicnn.ops.activation import tanh

        return tanh(self)

    def softmax(self, dim):
        from minicnn.ops.activation import softmax

        return softmax(self, dim)

    def log_softmax(self, dim):
        from minicnn.ops.activation import log_softmax

        return log_softmax(self, dim)

    def sum(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind in "bu" or (x.array.dtype.kind == "i" and x.array.dtype != np.int64):
            x = x.to(int64)  # as PyTorch: integer and bool sums are int64
        return _ops.Sum.apply(x, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if x.array.dtype.kind not in "fc":
            raise RuntimeError(
                f"mean(): could not infer output dtype. Input dtype must be either a floating point or "
                f"complex dtype. Got: {x.dtype}; use .float() first"
            )
        return _ops.Mean.apply(x, dim=dim, keepdim=keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _ops.var(self, dim, unbiased, keepdim, correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _ops.var(self, dim, unbiased, keepdim, correction).sqrt()

    def max(self, dim=None, keepdim=False):
        if isinstance(dim, Tensor):  # x.max(other): the elementwise maximum, as PyTorch
            return _ops.maximum(self, dim)
        return _ops.reduce_max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        if isinstance(dim, Tensor):
            return _ops.minimum(self, dim)
        return _ops.reduce_min(self, dim, keepdim)

    def maximum(self, other):
        return _ops.maximum(self, other)

    def minimum(self, other):
        return _ops.minimum(self, other)

    def norm(self, p="fro", dim=None, keepdim=False):
        return _ops.norm(self, p, dim, keepdim)

    def roll(self, shifts, dims=None):
        return _ops.roll(self, shifts, dims)

    def amax(self, dim=None, keepdim=False):
        return _ops.AMax.apply(self, dim=dim, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False):
        return _ops.AMax.apply(self, dim=dim, keepdim=keepdim, minimum=True)

    def argmax(self, dim=None, keepdim=False):
        return _ops.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _ops.argmax(self, dim, keepdim, minimum=True)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        return _ops.topk(self, k, dim, largest, sorted)

    def reshape(self, *shape):
        return _ops.reshape(self, *shape)

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int, np.integer)):
            return self.to(shape[0])  # view(dtype) of the same size is not supported; convert
        return _ops.reshape(self, *shape)

    def view_as(self, other):
        return _ops.reshape(self, *other.shape)

    def reshape_as(self, other):
        return _ops.reshape(self, *other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim):
        return _ops.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return _ops.squeeze(self, dim)

    def transpose(self, dim0, dim1):
        return _ops.transpose(self, dim0, dim1)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self if self.ndim < 2 else _ops.transpose(self, 0, 1)

    def permute(self, *dims):
        return _ops.permute(self, *dims)

    @property
    def T(self):
        if self.ndim > 2:
            raise RuntimeError(f".T is for tensors of at most 2 dimensions, got shape {tuple(self.shape)}")
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *shape):
        return _ops.expand(self, *shape)

    def expand_as(self, other):
        return _ops.expand(self, *other.shape)

    def repeat(self, *sizes):
        return _ops.repeat(self, *sizes)

    def chunk(self, chunks, dim=0):
        return _ops.chunk(self, chunks, dim)

    def split(self, split_size, dim=0):
        return _ops.split(self, split_size, dim)

    def clamp(self, min=None, max=None):
        return _ops.clamp(self, min, max)

    def scatter(self, dim, index, src=None, value=None, *, reduce=None):
        """A copy with ``src`` (or ``value``) written at ``index`` along ``dim`` (minicnn/ops/scatter.py)."""
        from minicnn.ops.scatter import scatter

        return scatter(self, dim, index, src, value, reduce=reduce)

    def scatter_(self, dim, index, src=None, value=None, *, reduce=None):
        """``scatter`` in place: ``minicnn.zeros(10).scatter_(0, minicnn.tensor(label), value=1)``."""
        from minicnn.ops.scatter import scatter

        if isinstance(src, Tensor) and src.requires_grad and autograd.is_grad_enabled():
            _inplace._check_leaf(self, "scatter_")  # src's gradient must flow: the tracking path
            _inplace._check_not_a_view(self, "scatter_")
            res = scatter(_inplace._old_value(self, copy=False), dim, index, src, value, reduce=reduce)
            return _inplace._take_over(self, res, "scatter_")
        return _inplace.unary(self, lambda t: scatter(t, dim, index, src, value, reduce=reduce), "scatter_")

    clip = clamp

    # ----------------------------------------------------------------- in place (minicnn/_inplace.py)
    def add_(self, other, alpha=1):
        return _inplace.binary(self, other if alpha == 1 else other * alpha, _ops.Add, np.add, "add_")

    def sub_(self, other, alpha=1):
        return _inplace.binary(self, other if alpha == 1 else other * alpha, _ops.Sub, np.subtract, "sub_")

    def mul_(self, other):
        return _inplace.binary(self, other, _ops.Mul, np.multiply, "mul_")

    def div_(self, other):
        return _inplace.binary(self, other, _ops.Div, np.true_divide, "div_")

    def clamp_(self, min=None, max=None):
        return _inplace.unary(self, lambda t: _ops.clamp(t, min, max), "clamp_")

    clip_ = clamp_

    def relu_(self):
        return _inplace.unary(self, lambda t: t.relu(), "relu_")

    def zero_(self):
        return _inplace.fill(self, 0, "zero_")

    def fill_(self, value):
        return _inplace.fill(self, value, "fill_")

    def copy_(self, src, non_blocking=False):
        return _inplace.copy(self, src)

    def uniform_(self, a=0.0, b=1.0):
        return _inplace.random(self, "uniform", a, b, "uniform_")

    def normal_(self, mean=0.0, std=1.0):
        return _inplace.random(self, "normal", mean, std, "normal_")


_TYPE_NAMES = {
    np.dtype(np.float32): "FloatTensor",
    np.dtype(np.float64): "DoubleTensor",
    np.dtype(np.float16): "HalfTensor",
    np.dtype(np.int64): "LongTensor",
    np.dtype(np.int32): "IntTensor",
    np.dtype(np.int16): "ShortTensor",
    np.dtype(np.int8): "CharTensor",
    np.dtype(np.uint8): "ByteTensor",
    np.dtype(np.bool_): "BoolTensor",
}


def _raw_call(like, func, *args, **kwargs):
    """``Tensor(func(*args))`` for a raw NumPy/CuPy call made outside ``Function.apply`` (comparisons,
    new_zeros...), with ``like``'s GPU current when it lives on another one than the current GPU."""
    guard = None if type(like.array) is np.ndarray else gpu_guard(like.array)
    if guard is None:
        out = func(*args, **kwargs)
    else:
        with guard:
            out = func(*args, **kwargs)
    return out if isinstance(out, (bool, np.bool_)) else Tensor._make(out)


def _size_args(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(_ops.check_size(s, "size") for s in size)


def _raw(x):
    return x.array if isinstance(x, Tensor) else x


def _operand(other, like):
    """The other side of a binary op: a Tensor, or a Python number kept as is.

    NumPy scalars count as Python numbers (``float32_tensor * np.float64(2)`` stays float32, as in
    PyTorch); arrays and lists become constant tensors on ``like``'s device.
    """
    if isinstance(other, Tensor):
        return other
    if isinstance(other, np.generic):  # before the float check: np.float64 is a subclass of float
        return other.item()
    if isinstance(other, (bool, int, float, complex)):
        return other
    return Tensor._make(_as_array(other, device=like.device))


def _promoted(a, b, true_division=False):
    """(a, b) converted to PyTorch's result dtype of a binary op (``minicnn.dtypes.result_type``):
    tensors are cast (differentiably), Python numbers stay numbers. True division of integers
    gives the default float dtype."""
    dims, zeros, scalars = [], [], []
    for x in (a, b):
        if isinstance(x, Tensor):
            (dims if x.array.ndim else zeros).append(x.array.dtype)
        else:
            scalars.append(x)
    target = result_type(dims, zeros, scalars)
    if true_division and target.kind in "biu":
        target = default_float()
    out = []
    for x in (a, b):
        if isinstance(x, Tensor) and x.array.dtype != target:
            x = x.to(target)
        elif not isinstance(x, Tensor) and target.kind in "fc" and isinstance(x, (bool, int)):
            x = float(x)  # 2 ** float_tensor, int_scalar / float_tensor: no integer NumPy paths
        out.append(x)
    return out


def _binary(op_cls, a, b):
    """A differentiable binary op with PyTorch's operand handling and type promotion."""
    like = a if isinstance(a, Tensor) else b
    a, b = _operand(a, like), _operand(b, like)
    a, b = _promoted(a, b, true_division=op_cls is _ops.Div)
    return op_cls.apply(a, b)


def _no_grad_binary(ufunc, a, b):
    """Comparison, logic, floor division: element-wise, promoted like PyTorch, never differentiable."""
    like = a if isinstance(a, Tensor) else b
    a, b = _operand(a, like), _operand(b, like)
    if ufunc in (np.bitwise_and, np.bitwise_or, np.bitwise_xor):
        for x in (a, b):
            kind = x.array.dtype.kind if isinstance(x, Tensor) else np.asarray(x).dtype.kind
            if kind not in "biu":
                raise TypeError(f"&, | and ^ are for bool and integer tensors, got {kind!r} data")
    else:
        a, b = _promoted(a, b)
    return _raw_call(like, getattr(like._xp, ufunc.__name__), _raw(a), _raw(b))


from minicnn import _inplace  # noqa: E402  (needs Tensor)
from minicnn.ops import basic as _ops  # noqa: E402  (ops need Tensor defined first)
