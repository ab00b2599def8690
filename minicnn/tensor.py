"""``minicnn.Tensor``: an n-dimensional array (NumPy or CuPy) that remembers how it was computed.

Unlike PyTorch, ``tensor.data`` is the raw NumPy/CuPy array (handy for reading and for
optimizers); everything else follows PyTorch's names: ``.grad`` is a Tensor, ``.detach()``,
``.numpy()``, ``.item()``, ``.to(device)``, ``.backward()``.
"""

from __future__ import annotations

import numpy as np

from minicnn import autograd
from minicnn.backend import Device, device_of, get_array_module, is_cupy_array, to_device, to_numpy

float16, float32, float64 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64")
int32, int64, uint8, bool_ = np.dtype("int32"), np.dtype("int64"), np.dtype("uint8"), np.dtype("bool")

_default_dtype = float32


def set_default_dtype(dtype) -> None:
    """Dtype given to floating-point data created from Python numbers (float32 unless changed)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _default_dtype = dtype


def get_default_dtype():
    return _default_dtype


def _as_array(data, dtype=None, device=None):
    """Turn Python data / NumPy / CuPy / Tensor into an array on ``device`` with ``dtype``."""
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "__cuda_array_interface__") or isinstance(data, np.ndarray) or is_cupy_array(data):
        arr = data
    elif type(data).__module__.startswith("torch"):
        arr = data.detach().cpu().numpy()
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            arr = arr.astype(_default_dtype)  # Python floats get the default dtype, as in PyTorch
    if dtype is not None:
        arr = arr.astype(np.dtype(dtype), copy=False)
    if device is not None:
        arr = to_device(arr, device)
    return arr


class Tensor:
    """A NumPy/CuPy array plus autograd bookkeeping (``requires_grad``, ``grad``, ``grad_fn``)."""

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "__weakref__")
    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        self.data = _as_array(data, dtype, device)
        self.grad = None
        self.grad_fn = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, requires_grad=False, grad_fn=None):
        """Fast internal constructor around an array an op produced."""
        if isinstance(data, np.generic):  # numpy reductions return scalars; keep 0-d arrays
            data = np.asarray(data)
        t = object.__new__(cls)
        t.data, t.requires_grad, t.grad, t.grad_fn = data, requires_grad, None, grad_fn
        return t

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> Device:
        return device_of(self.data)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _xp(self):
        return get_array_module(self.data)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    # ----------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(
                f"only floating-point tensors can require gradients, this one is {self.data.dtype}"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) is only allowed on leaf tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=False):
        """Compute d(self)/d(leaf) for every leaf with ``requires_grad`` and add it to ``leaf.grad``."""
        autograd.backward(self, gradient, retain_graph=retain_graph)

    def retain_grad(self):
        autograd.retain_grad(self)

    def detach(self):
        """Same data, cut from the graph."""
        return Tensor._make(self.data)

    def detach_(self):
        self.grad_fn, self.requires_grad = None, False
        return self

    def zero_grad_(self):
        self.grad = None

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """A NumPy array (a host copy when the tensor lives on a GPU)."""
        return to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def to(self, *args, dtype=None, device=None):
        """``t.to("cuda")``, ``t.to(minicnn.float64)``, ``t.to("cpu", minicnn.float32)``; differentiable."""
        for a in args:
            if isinstance(a, (str, Device)):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if dtype is not None and np.dtype(dtype) != self.dtype:
            out = _ops.Cast.apply(out, dtype=np.dtype(dtype))
        if device is not None and Device(device) != self.device:
            out = _ops.ToDevice.apply(out, device=Device(device))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    def type_as(self, other):
        return self.to(other.dtype)

    def contiguous(self):
        return self

    def clone(self):
        return _ops.Clone.apply(self)

    # ----------------------------------------------------------------- printing
    def __repr__(self):
        arr = self.numpy()
        mode = "maxprec"  # like PyTorch: "1., 2." for whole numbers, else 4 fixed decimals ("1.5000")
        if arr.dtype.kind == "f":
            finite = arr[np.isfinite(arr)]
            mode = "maxprec" if np.array_equal(finite, np.round(finite)) else "fixed"
        body = np.array2string(arr, separator=", ", prefix="tensor(", precision=4, floatmode=mode)
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (float32, int64, bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other):
        return _ops.Add.apply(self, _operand(other, self))

    def __radd__(self, other):
        return _ops.Add.apply(_operand(other, self), self)

    def __sub__(self, other):
        return _ops.Sub.apply(self, _operand(other, self))

    def __rsub__(self, other):
        return _ops.Sub.apply(_operand(other, self), self)

    def __mul__(self, other):
        return _ops.Mul.apply(self, _operand(other, self))

    def __rmul__(self, other):
        return _ops.Mul.apply(_operand(other, self), self)

    def __truediv__(self, other):
        return _ops.Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other):
        return _ops.Div.apply(_operand(other, self), self)

    def __neg__(self):
        return _ops.Neg.apply(self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        return _ops.pow(self, _operand(exponent, self))

    def __rpow__(self, base):
        return _ops.pow(_operand(base, self), self)

    def __matmul__(self, other):
        return _ops.matmul(self, _operand(other, self))

    def __rmatmul__(self, other):
        return _ops.matmul(_operand(other, self), self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # comparisons build no graph and return bool tensors
    def __lt__(self, other):
        return Tensor._make(self.data < _raw(other))

    def __le__(self, other):
        return Tensor._make(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor._make(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor._make(self.data >= _raw(other))

    def __eq__(self, other):
        return Tensor._make(self.data == _raw(other))

    def __ne__(self, other):
        return Tensor._make(self.data != _raw(other))

    __hash__ = object.__hash__

    def eq(self, other):
        return self == other

    def any(self):
        return Tensor._make(self.data.any())

    def all(self):
        return Tensor._make(self.data.all())

    def isfinite(self):
        return Tensor._make(self._xp.isfinite(self.data))

    # ----------------------------------------------------------------- methods mirroring ops
    def add(self, other):
        return self + other

    def sub(self, other):
        return self - other

    def mul(self, other):
        return self * other

    def div(self, other):
        return self / other

    def neg(self):
        return -self

    def pow(self, exponent):
        return self**exponent

    def matmul(self, other):
        return self @ other

    def exp(self):
        return _ops.Exp.apply(self)

    def log(self):
        return _ops.Log.apply(self)

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

    def sum(self, dim=None, keepdim=False):
        return _ops.Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        return _ops.Mean.apply(self, dim=dim, keepdim=keepdim)

    def max(self, dim=None, keepdim=False):
        return _ops.reduce_max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return _ops.reduce_min(self, dim, keepdim)

    def amax(self, dim=None, keepdim=False):
        return _ops.AMax.apply(self, dim=dim, keepdim=keepdim)

    def amin(self, dim=None, keepdim=False):
        return _ops.AMax.apply(self, dim=dim, keepdim=keepdim, minimum=True)

    def argmax(self, dim=None, keepdim=False):
        return _ops.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _ops.argmax(self, dim, keepdim, minimum=True)

    def reshape(self, *shape):
        return _ops.reshape(self, *shape)

    def view(self, *shape):
        return _ops.reshape(self, *shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim):
        return _ops.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return _ops.squeeze(self, dim)

    def transpose(self, dim0, dim1):
        return _ops.transpose(self, dim0, dim1)

    def permute(self, *dims):
        return _ops.permute(self, *dims)

    @property
    def T(self):
        if self.ndim > 2:
            raise RuntimeError(f".T is for tensors of at most 2 dimensions, got shape {self.shape}")
        return self.permute(*reversed(range(self.ndim)))

    def expand(self, *shape):
        return _ops.expand(self, *shape)

    def clamp(self, min=None, max=None):
        return _ops.clamp(self, min, max)

    clip = clamp


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _operand(other, like):
    """The other side of a binary op: a Tensor, or a Python scalar kept as is.

    NumPy scalars become Python scalars so ``float32_tensor * np.float64(2)`` stays float32
    (NumPy 2 would otherwise upcast); arrays become constant tensors.
    """
    if isinstance(other, Tensor):
        return other
    if isinstance(other, np.generic):  # before the float check: np.float64 is a subclass of float
        return other.item()
    if isinstance(other, (bool, int, float)):
        return other
    return Tensor._make(_as_array(other, device=like.device))


from minicnn.ops import basic as _ops  # noqa: E402  (ops need Tensor defined first)
