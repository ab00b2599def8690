"""A stand-in for CuPy on top of NumPy: minicnn's GPU code path, run in CI without a GPU.

minicnn picks its array module from the arrays it is given (``minicnn.backend.get_array_module``),
so the code that runs on a GPU is the same textbook code that runs on the CPU, with ``xp`` = CuPy
instead of NumPy. Where CuPy differs from NumPy, code that passes on the CPU can still fail or
stall on a GPU. This module is a fake ``cupy`` that computes with NumPy but behaves like CuPy at
exactly those places, so a test can run the cuda code path here and see them:

* **What CuPy refuses, refused** (with CuPy's exception type):
  - NumPy arrays mixed into device operations (``cupy_array + numpy_array``, ``cupy.add(x, np_arr)``,
    a non-scalar NumPy array assigned into a device array): ``TypeError: Unsupported type``;
  - implicit conversion to NumPy (``numpy.asarray(x)``, ``numpy.testing`` on a device array):
    ``TypeError`` (CuPy's ``__array__`` refuses; ``.get()`` is the explicit way);
  - a condition of ``cupy.where`` that is not a device array (a Python bool or number, a NumPy array:
    CuPy calls ``condition.astype``), and Python scalars where a routine needs an array
    (``cupy.expand_dims(2.0, 0)``, ``cupy.sum(3)``, ``cupy.stack([1, 2])``);
  - object, string, void and datetime dtypes: ``ValueError: Unsupported dtype``;
  - an array on one GPU used while another GPU is current (a kernel would run on the current
    device and read another's memory): ``ValueError``, as CuPy without peer access; the stand-in
    fakes as many GPUs as ``install(devices=N)`` asks for;
  - a ``cupy.random`` generator drawn while another device than its own is current: ``ValueError``.
* **What NumPy does differently, done as CuPy does it**: reductions (``x.sum()``, ``cupy.max(x)``)
  and integer indexing (``x[0, 1]``) return 0-d device arrays, never Python or NumPy scalars; no
  floating-point warnings (a GPU reports no overflow or invalid value).
* **Host synchronisations, counted** (``syncs``): every operation that makes the host wait for the
  GPU -- ``bool()``, ``float()``, ``int()``, ``complex()``, ``operator.index``, ``.item()``,
  ``.tolist()``, ``.get()``, ``cupy.asnumpy``, ``repr``/``str``/``format`` of a device array,
  ``Device.synchronize()``, ``x in array``, and the operations whose output size depends on the
  data (boolean-mask indexing and assignment, ``nonzero``, ``argwhere``, ``flatnonzero``,
  ``unique``, one-argument ``where``). Each event records where in minicnn it happened.
  Host-to-device copies (``cupy.asarray(list or numpy array)``) are counted apart (``transfers``):
  they are not synchronisations, but a training step should not need them either.
* **Unknown names fail loudly**: any ``cupy.X`` or ``cupyx.X`` the stand-in does not provide raises
  ``AttributeError`` naming this file, so a new CuPy call in minicnn shows up as a test failure;
  add it here after checking that CuPy has it, with CuPy's behaviour.

What it cannot catch (docs/gpu.md): anything about real kernels (CuPy's compiled elementwise and
reduction kernels, cuBLAS, their speed and their float rounding), streams and asynchrony (a race
between streams, a host buffer changed before an async copy used it), device memory (out of
memory, the memory pool's caching, fragmentation), and CuPy's own dtype and casting corner cases
(the stand-in computes with NumPy's rules, which CuPy follows closely but not everywhere: float16
math, integer overflow, out-of-bounds integer indices, which CuPy wraps around instead of raising).

Use::

    from parity_tests import cupy_standin

    with cupy_standin.installed(devices=2):   # minicnn's CuPy is now the stand-in (2 fake GPUs)
        x = minicnn.randn(3, device="cuda:1")
        cupy_standin.syncs.clear()
        ...
        assert len(cupy_standin.syncs) == 0, cupy_standin.syncs.report()

The tests under ``parity_tests/`` use it for their ``cuda`` parameter when CuPy sees no GPU
(``parity_tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import math
import operator
import sys
import types
import weakref

import numpy as np

_THIS_FILE = __file__.rsplit(".", 1)[0]  # .py or .pyc
_REFUSED_KINDS = "OUSVMm"  # object, unicode, bytes, void, datetime, timedelta: CuPy has none of them


# ====================================================================== what is counted
class EventLog:
    """Events (host synchronisations or host-to-device copies) with where each one happened."""

    def __init__(self, what):
        self.what = what
        self.events = []  # (kind, where, stack)

    def record(self, kind):
        stack = _outside_frames()
        where = next((f for f in stack if "/minicnn/" in f.replace("\\", "/")), stack[0] if stack else "?")
        self.events.append((kind, where, stack))

    def clear(self):
        self.events.clear()

    def __len__(self):
        return len(self.events)

    def kinds(self):
        return [k for k, _, _ in self.events]

    def report(self, full=False) -> str:
        """One line per event: what, and the innermost minicnn frame (``full``: the call chain)."""
        if not self.events:
            return f"no {self.what}"
        lines = [f"{len(self.events)} {self.what}:"]
        for kind, where, stack in self.events:
            lines.append(f"  {kind} at {where}")
            if full:
                lines.extend(f"      {f}" for f in stack)
        return "\n".join(lines)

    def __repr__(self):
        return f"<{len(self.events)} {self.what}>"


_REPO_DIRS = ("/minicnn/", "/tests/", "/parity_tests/", "/benchmarks/", "/examples/")


def _outside_frames(limit=8):
    """The innermost frames of this repository outside this file, as 'path:line in function: code'."""
    import linecache

    out = []
    frame = sys._getframe(1)
    while frame is not None and len(out) < limit:
        path = frame.f_code.co_filename
        short = path.replace("\\", "/")
        marker = next((m for m in _REPO_DIRS if m in short), None)
        if path.rsplit(".", 1)[0] != _THIS_FILE and marker is not None:
            code = linecache.getline(path, frame.f_lineno).strip()
            short = short[short.rindex(marker) + 1 :]
            out.append(f"{short}:{frame.f_lineno} in {frame.f_code.co_name}: {code}")
        frame = frame.f_back
    return out


syncs = EventLog("host synchronisations")
transfers = EventLog("host-to-device copies")


# ====================================================================== devices
class CUDARuntimeError(RuntimeError):
    pass


class _State:
    current = 0  # the current device
    count = 1  # how many fake GPUs


_state = _State()


class Device:
    """``cupy.cuda.Device``: ``Device()`` is the current one; ``with Device(1):`` makes GPU 1 current."""

    def __init__(self, device=None):
        if isinstance(device, Device):
            device = device.id
        self.id = _state.current if device is None else int(device)
        self._previous = []

    def _check(self):
        if not 0 <= self.id < _state.count:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def __enter__(self):
        self._check()
        self._previous.append(_state.current)
        _state.current = self.id
        return self

    def __exit__(self, *exc):
        _state.current = self._previous.pop()
        return False

    def use(self):
        self._check()
        _state.current = self.id

    def synchronize(self):
        syncs.record("Device.synchronize()")

    @property
    def compute_capability(self):
        return "90"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("standin-device", self.id))

    def __int__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _check_device(arr):
    if arr._dev != _state.current:
        raise ValueError(
            f"The device where the array resides ({arr._dev}) is different from the current device "
            f"({_state.current}). Peer access is unavailable between these devices. (CuPy stand-in: "
            "minicnn must make the array's device current -- `with cupy.cuda.Device(i):` -- before it "
            "launches work on it.)"
        )


# ====================================================================== arrays
_owners = weakref.WeakValueDictionary()  # id(numpy owner of the memory) -> its ndarray wrapper


def _refuse_dtype(dtype):
    if dtype is None:
        return
    d = np.dtype(dtype)
    if d.kind in _REFUSED_KINDS:
        raise ValueError(f"Unsupported dtype {d}")


def _root(a):
    """The NumPy array that owns ``a``'s memory (following views, and as_strided's holder)."""
    while True:
        b = a.base
        if isinstance(b, np.ndarray):
            a = b
        elif b is not None and isinstance(getattr(b, "base", None), np.ndarray):
            a = b.base
        else:
            return a


def _wrap(r, dev=None):
    """A NumPy result as a device array (0-d for a NumPy scalar, as CuPy returns)."""
    if isinstance(r, np.generic):
        r = np.asarray(r)
    _refuse_dtype(r.dtype)
    w = ndarray.__new__(ndarray)
    w._a = r
    w._dev = _state.current if dev is None else dev
    root = _root(r)
    if root is r:
        w._base = None
        _owners[id(r)] = w
    else:
        owner = _owners.get(id(root))
        if owner is None or owner._a is not root:
            owner = ndarray.__new__(ndarray)
            owner._a, owner._dev, owner._base = root, w._dev, None
            _owners[id(root)] = owner
        w._base = owner
    return w


def _wrap_result(r, dev=None, seen=()):
    if isinstance(r, np.ndarray):
        for o in seen:  # e.g. a function that wrote into out= returns that very array
            if o._a is r:
                return o
        return _wrap(r, dev)
    if isinstance(r, np.generic):
        return _wrap(r, dev)
    if isinstance(r, tuple):
        return tuple(_wrap_result(x, dev, seen) for x in r)
    if isinstance(r, list):
        return [_wrap_result(x, dev, seen) for x in r]
    return r


def _arg(x, seen=None):
    """A device array's NumPy array (its device must be current); refuses NumPy arrays. Device
    arrays are appended to ``seen`` (so a result that is one of them is returned as it is)."""
    t = type(x)
    if t is ndarray:
        _check_device(x)
        if seen is not None:
            seen.append(x)
        return x._a
    if t is np.ndarray or isinstance(x, np.ndarray):
        raise TypeError(
            f"Unsupported type {t}: a NumPy array cannot take part in a CuPy operation; move it with "
            "cupy.asarray first (CuPy stand-in)"
        )
    if t is list or t is tuple:
        return t(_arg(v, seen) for v in x)
    return x


def _needs_array(x, name, what="a"):
    if type(x) is not ndarray:
        raise TypeError(
            f"cupy.{name}: {what} must be a cupy.ndarray, got {type(x).__name__} (CuPy calls its array "
            "methods; a Python scalar or a NumPy array fails there) (CuPy stand-in)"
        )


class ndarray:
    """``cupy.ndarray``: a NumPy array that behaves like a device array (see the module doc)."""

    __slots__ = ("_a", "_dev", "_base", "__weakref__")
    __array_priority__ = 100  # CuPy's; minicnn's Tensor has 1000, so tensor-aware ops go first
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        _refuse_dtype(dtype)
        self._a = np.empty(shape, dtype=dtype, order=order)
        self._dev = _state.current
        self._base = None
        _owners[id(self._a)] = self

    # ------------------------------------------------------------ attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    base = property(lambda self: self._base)

    @shape.setter
    def shape(self, value):
        self._a.shape = value

    @property
    def device(self):
        return Device(self._dev)

    @property
    def T(self):
        return _wrap(self._a.T, self._dev)

    @property
    def real(self):
        return _wrap(self._a.real, self._dev)

    @property
    def imag(self):
        return _wrap(self._a.imag, self._dev)

    # ------------------------------------------------------------ the host: counted, or refused
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
            "NumPy array explicitly. (CuPy stand-in)"
        )

    def get(self, stream=None, order="C", out=None, blocking=True):
        syncs.record(".get()")
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        transfers.record(".set()")
        self._a[...] = arr

    def item(self):
        syncs.record(".item()")
        return self._a.item()

    def tolist(self):
        syncs.record(".tolist()")
        return self._a.tolist()

    def __bool__(self):
        syncs.record("bool()")
        return bool(self._a)

    def __float__(self):
        syncs.record("float()")
        return float(self._a)

    def __int__(self):
        syncs.record("int()")
        return int(self._a)

    def __complex__(self):
        syncs.record("complex()")
        return complex(self._a)

    def __index__(self):
        syncs.record("operator.index()")
        return operator.index(self._a)

    def __contains__(self, value):
        syncs.record("`in`")
        return value in self._a

    def __repr__(self):
        syncs.record("repr()")
        return repr(self._a)

    def __str__(self):
        syncs.record("str()")
        return str(self._a)

    def __format__(self, spec):
        syncs.record("format()")
        return format(self._a, spec)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return self._a.shape[0]

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        syncs.record("pickle")
        return (_unpickle, (np.array(self._a),))

    # ------------------------------------------------------------ NumPy's protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            raise TypeError(
                f"CuPy stand-in: numpy.{ufunc.__name__}.{method} on device arrays is not supported"
            )
        fn = _NAMESPACE_FUNCTIONS.get(ufunc.__name__)
        if fn is None:
            return NotImplemented
        return fn(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        fn = _NAMESPACE_FUNCTIONS.get(func.__name__)
        if fn is None:
            return NotImplemented
        return fn(*args, **kwargs)

    # ------------------------------------------------------------ indexing
    def __getitem__(self, key):
        basic = _is_basic(key)
        if not basic:
            _check_device(self)
        r = self._a[_index(key)]
        return _wrap(r, self._dev if basic else None)

    def __setitem__(self, key, value):
        _check_device(self)
        basic = _is_basic(key)
        k = _index(key)
        if type(value) is ndarray:
            value = _arg(value)
        elif basic and isinstance(value, np.ndarray) and value.ndim > 0:
            # CuPy fills a basic slice with a non-device value: only scalars can do that
            raise ValueError(
                "non-scalar numpy.ndarray cannot be used for fill (CuPy stand-in: move it with "
                "cupy.asarray first)"
            )
        elif basic and isinstance(value, (list, tuple)):
            raise TypeError(
                f"Unsupported type {type(value)} (CuPy stand-in: assign a cupy.ndarray or a scalar)"
            )
        elif isinstance(value, (np.ndarray, list, tuple)):  # advanced indexing copies host values over
            transfers.record("host values assigned")
        self._a[k] = value

    # ------------------------------------------------------------ methods
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        _check_device(self)
        _refuse_dtype(dtype)
        if not copy and np.dtype(dtype) == self._a.dtype:
            return self
        return _wrap(self._a.astype(dtype, order=order, copy=True))

    def copy(self, order="C"):
        _check_device(self)
        return _wrap(self._a.copy(order=order))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype), self._dev)

    def reshape(self, *shape, order="C"):
        return _wrap(self._a.reshape(*shape, order=order), self._dev)

    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes), self._dev)

    def swapaxes(self, a, b):
        return _wrap(self._a.swapaxes(a, b), self._dev)

    def squeeze(self, axis=None):
        return _wrap(self._a.squeeze(axis), self._dev)

    def ravel(self, order="C"):
        return _wrap(self._a.ravel(order), self._dev)

    def flatten(self, order="C"):
        _check_device(self)
        return _wrap(self._a.flatten(order))

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return _wrap(self._a.diagonal(offset, axis1, axis2), self._dev)

    def fill(self, value):
        _check_device(self)
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a.fill(_arg(value) if type(value) is ndarray else value)

    def nonzero(self):
        syncs.record("nonzero()")
        _check_device(self)
        return _wrap_result(self._a.nonzero())

    def __neg__(self):
        return _NAMESPACE_FUNCTIONS["negative"](self)

    def __pos__(self):
        return _NAMESPACE_FUNCTIONS["positive"](self)

    def __abs__(self):
        return _NAMESPACE_FUNCTIONS["absolute"](self)

    def __invert__(self):
        return _NAMESPACE_FUNCTIONS["invert"](self)


def _array_method(name):
    """A method of ``cupy.ndarray`` that runs a kernel: the array's device must be current."""

    def method(self, *args, **kwargs):
        _check_device(self)
        seen = [self]
        args = [_arg(a, seen) for a in args]
        kwargs = {k: _arg(v, seen) for k, v in kwargs.items()}
        if "dtype" in kwargs:
            _refuse_dtype(kwargs["dtype"])
        with np.errstate(all="ignore"):
            return _wrap_result(getattr(self._a, name)(*args, **kwargs), None, seen)

    method.__name__ = name
    return method


def _operator(ufunc, reflected=False, inplace=False):
    def op(self, other):
        if _defers(other):
            return NotImplemented
        fn = _NAMESPACE_FUNCTIONS[ufunc]
        if inplace:
            fn(self, other, out=self)
            return self
        return fn(other, self) if reflected else fn(self, other)

    return op


for _name in (
    "sum mean max min argmax argmin prod any all var std cumsum cumprod clip dot take repeat conj round "
    "sort argsort trace"
).split():
    setattr(ndarray, _name, _array_method(_name))
for _dunder, _ufunc in (
    ("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
    ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
    ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
    ("lshift", "left_shift"), ("rshift", "right_shift"),
):  # fmt: skip
    setattr(ndarray, f"__{_dunder}__", _operator(_ufunc))
    setattr(ndarray, f"__r{_dunder}__", _operator(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_dunder}__", _operator(_ufunc, inplace=True))
for _dunder, _ufunc in (
    ("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
    ("eq", "equal"), ("ne", "not_equal"),
):  # fmt: skip
    setattr(ndarray, f"__{_dunder}__", _operator(_ufunc))
del _name, _dunder, _ufunc


def _unpickle(host):
    return asarray(host)


def _defers(other):
    """True when the other operand should handle the operation (e.g. a minicnn Tensor)."""
    return (
        type(other) is not ndarray
        and not isinstance(other, np.ndarray)
        and getattr(other, "__array_priority__", 0) > ndarray.__array_priority__
    )


def _is_basic(key):
    """True for an index of ints, slices, None and Ellipsis only (a view: no kernel runs)."""
    items = key if isinstance(key, tuple) else (key,)
    return all(
        isinstance(k, (int, np.integer, slice, type(None), type(Ellipsis))) and not isinstance(k, bool)
        for k in items
    )


def _index(key):
    """An index with device arrays replaced by their NumPy arrays; boolean masks are counted."""
    items = key if isinstance(key, tuple) else (key,)
    out = []
    for k in items:
        if type(k) is ndarray:
            _check_device(k)
            if k.dtype == np.bool_:
                syncs.record("boolean-mask indexing")
            k = k._a
        elif isinstance(k, (list, np.ndarray)):  # CuPy copies host indices to the device
            transfers.record("host index array")
            if np.asarray(k).dtype == np.bool_:
                syncs.record("boolean-mask indexing")
        elif isinstance(k, (bool, np.bool_)):
            syncs.record("boolean-mask indexing")
        out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


# ====================================================================== the cupy namespace
def asarray(a, dtype=None, order=None, *, blocking=False):
    """``cupy.asarray``: device arrays stay (copied to the current device if they live on another);
    host data is copied to the device (counted in ``transfers``); objects with
    ``__cuda_array_interface__`` are viewed, as CuPy does."""
    if type(a) is ndarray:
        if a._dev != _state.current:  # CuPy copies across devices
            a = _wrap(a._a.copy(), _state.current)
        return a if dtype is None else a.astype(dtype, copy=False)
    if hasattr(a, "__cuda_array_interface__"):  # a view of the foreign array's memory, no copy
        view = _wrap(_from_cuda_array_interface(a))
        return view if dtype is None else view.astype(dtype, copy=False)
    transfers.record("cupy.asarray(host data)")
    arr = np.asarray(a, dtype=dtype, order=order)
    _refuse_dtype(arr.dtype)
    if arr is a or (isinstance(a, np.ndarray) and np.shares_memory(arr, a)):
        arr = arr.copy()  # device memory is never the host's
    return _wrap(arr)


class _HostView:
    """Holds the pointer of a ``__cuda_array_interface__`` so NumPy can view it (the stand-in's
    "device memory" is host memory), and keeps the owner alive, as CuPy's UnownedMemory does."""

    def __init__(self, owner):
        cai = owner.__cuda_array_interface__
        self.owner = owner
        self.__array_interface__ = {
            "shape": tuple(cai["shape"]),
            "typestr": cai["typestr"],
            "data": tuple(cai["data"]),
            "strides": cai.get("strides"),
            "version": 3,
        }


def _from_cuda_array_interface(obj):
    return np.asarray(_HostView(obj))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    a = asarray(obj, dtype=dtype)
    if copy and (type(obj) is ndarray and a is obj or hasattr(obj, "__cuda_array_interface__")):
        a = a.copy()
    if ndmin > a.ndim:
        a = a.reshape((1,) * (ndmin - a.ndim) + a.shape)
    return a


def ascontiguousarray(a, dtype=None):
    if type(a) is not ndarray:
        return asarray(np.ascontiguousarray(a, dtype=dtype))
    _check_device(a)
    _refuse_dtype(dtype)
    r = np.ascontiguousarray(a._a, dtype=dtype)
    return a if r is a._a else _wrap(r)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if type(a) is ndarray:
        syncs.record("cupy.asnumpy()")
        return np.array(a._a, order=order)
    return np.asarray(a, order=order)


def where(condition, x=None, y=None):
    if x is None and y is None:
        syncs.record("where(condition) (nonzero)")
        _needs_array(condition, "where", "condition")
        return _wrap_result(np.nonzero(_arg(condition)))
    if x is None or y is None:
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    _needs_array(condition, "where", "condition")
    return _wrap(np.where(_arg(condition), _arg(x), _arg(y)))


def _creation(name):
    np_fn = getattr(np, name)

    def create(*args, **kwargs):
        dtype = kwargs.get("dtype")
        _refuse_dtype(dtype)
        args = [_arg(a) if type(a) is ndarray else a for a in args]  # full's fill value, *_like's array
        if name.endswith("_like") and args and isinstance(args[0], np.ndarray):
            _refuse_dtype(args[0].dtype)
        return _wrap(np_fn(*args, **kwargs))

    create.__name__ = name
    return create


def _routine(name, np_fn=None, view=False, array_args=(0,), syncing=None):
    """A NumPy function behind CuPy's rules: device arrays in, device arrays (0-d for scalars) out.

    ``view``: the result is a view of the first argument (no kernel: no device check, same device).
    ``array_args``: positions that must be device arrays (CuPy calls methods on them).
    ``syncing``: the operation's output size depends on the data (it synchronises).
    """
    np_fn = np_fn or getattr(np, name)

    def routine(*args, **kwargs):
        for i in array_args:
            if i < len(args):
                if name in ("stack", "concatenate", "hstack", "vstack") and isinstance(
                    args[i], (list, tuple)
                ):
                    for a in args[i]:
                        _needs_array(a, name, "every array")
                else:
                    _needs_array(args[i], name)
        if syncing:
            syncs.record(f"{name}()")
        if "dtype" in kwargs:
            _refuse_dtype(kwargs["dtype"])
        if view:
            src = args[0]
            r = np_fn(src._a, *args[1:], **kwargs)
            return _wrap_result(r, src._dev)
        seen = []
        args = [_arg(a, seen) for a in args]
        kwargs = {k: _arg(v, seen) for k, v in kwargs.items()}
        with np.errstate(all="ignore"):  # a GPU reports no floating-point errors (inf, NaN)
            return _wrap_result(np_fn(*args, **kwargs), None, seen)

    routine.__name__ = name
    return routine


_UFUNCS = """
add subtract multiply divide true_divide floor_divide power float_power negative positive absolute
abs fabs sign exp exp2 expm1 log log2 log10 log1p sqrt cbrt square reciprocal maximum minimum fmax
fmin equal not_equal less less_equal greater greater_equal logical_and logical_or logical_not
logical_xor bitwise_and bitwise_or bitwise_xor invert left_shift right_shift isfinite isnan isinf
sin cos tan sinh cosh tanh arcsin arccos arctan arctan2 arcsinh arccosh arctanh floor ceil trunc rint
remainder mod fmod copysign signbit hypot heaviside matmul conj conjugate deg2rad rad2deg
""".split()
_REDUCTIONS = """
sum prod mean var std max min amax amin argmax argmin any all cumsum cumprod nansum nanmax nanmin
count_nonzero argsort sort clip round around trace
""".split()
_ROUTINES_NEEDING_AN_ARRAY = """
take take_along_axis put_along_axis pad split array_split tile repeat flip roll diagonal
""".split()
_VIEWS = """
reshape transpose swapaxes moveaxis squeeze expand_dims broadcast_to ravel atleast_1d atleast_2d
""".split()
_OTHER = """
dot einsum outer inner tensordot stack concatenate hstack vstack copyto isclose allclose array_equal
diff meshgrid broadcast_arrays ndim shape size result_type
""".split()
_SYNCING = "unique argwhere flatnonzero".split()

_NAMESPACE_FUNCTIONS = {}
for _n in _UFUNCS + _OTHER:
    _NAMESPACE_FUNCTIONS[_n] = _routine(_n, array_args=())
for _n in _REDUCTIONS + _ROUTINES_NEEDING_AN_ARRAY:
    _NAMESPACE_FUNCTIONS[_n] = _routine(_n)
for _n in _VIEWS:
    _NAMESPACE_FUNCTIONS[_n] = _routine(_n, view=True)
for _n in _SYNCING:
    _NAMESPACE_FUNCTIONS[_n] = _routine(_n, syncing=True)
for _n in ("stack", "concatenate", "hstack", "vstack"):
    _NAMESPACE_FUNCTIONS[_n] = _routine(_n)
_NAMESPACE_FUNCTIONS["nonzero"] = _routine("nonzero", syncing=True)
_NAMESPACE_FUNCTIONS["take_along_axis"] = _routine("take_along_axis", array_args=(0, 1))
_NAMESPACE_FUNCTIONS["copyto"] = _routine("copyto", array_args=(0,))
_NAMESPACE_FUNCTIONS["where"] = where
for (
    _n
) in "zeros ones empty full arange linspace eye identity zeros_like ones_like empty_like full_like".split():
    _NAMESPACE_FUNCTIONS[_n] = _creation(_n)
del _n


def _as_strided(x, shape=None, strides=None):
    _needs_array(x, "lib.stride_tricks.as_strided", "x")
    return _wrap(np.lib.stride_tricks.as_strided(x._a, shape=shape, strides=strides), x._dev)


def _get_array_module(*args):
    return cupy if any(type(a) is ndarray for a in args) else np


def _loud_getattr(module_name):
    def __getattr__(name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"{module_name}.{name}: the CuPy stand-in (parity_tests/cupy_standin.py) does not provide it. "
            f"If minicnn now calls {module_name}.{name}, check that CuPy has it and add it there with "
            "CuPy's behaviour."
        )

    return __getattr__


def _module(name, doc, **attrs):
    m = types.ModuleType(name, doc)
    m.__dict__.update(attrs)
    m.__getattr__ = _loud_getattr(name)
    return m


# ----------------------------------------------------------------- cupy.random
class XORWOW:
    """``cupy.random.XORWOW``: its state lives on the device that was current when it was made."""

    def __init__(self, seed=None, *, size=-1):
        self._dev = _state.current
        self._rng = np.random.Generator(np.random.PCG64(seed))


class Generator:
    """``cupy.random.Generator`` (the methods CuPy's has and minicnn may use); draws must run with
    the bit generator's device current."""

    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def _rng(self):
        dev = self.bit_generator._dev
        if dev != _state.current:
            raise ValueError(
                f"cupy.random.Generator: its XORWOW state lives on device {dev} but device "
                f"{_state.current} is current (CuPy stand-in: draw with the generator's device current)"
            )
        return self.bit_generator._rng

    def random(self, size=None, dtype=np.float64, out=None):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"Unsupported dtype {np.dtype(dtype).name} for random")
        return _wrap(np.asarray(self._rng().random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"Unsupported dtype {np.dtype(dtype).name} for standard_normal")
        return _wrap(np.asarray(self._rng().standard_normal(size, dtype=dtype)))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return _wrap(np.asarray(self._rng().uniform(low, high, size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return _wrap(np.asarray(self._rng().integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def __getattr__(self, name):
        raise AttributeError(
            f"cupy.random.Generator.{name}: not in the CuPy stand-in (CuPy's Generator has no `normal`; "
            "use standard_normal)"
        )


# ----------------------------------------------------------------- memory pools
class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        pass

    def get_limit(self):
        return 0


_memory_pool = _MemoryPool()
_pinned_pool = _MemoryPool()


# ----------------------------------------------------------------- cupy.cuda
def _get_device_count():
    return _state.count


def _get_device_properties(index):
    if not 0 <= int(index) < _state.count:
        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
    return {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": 16 << 30, "major": 9, "minor": 0}


def _set_device(index):
    Device(index).use()


runtime = _module(
    "cupy.cuda.runtime",
    "cupy.cuda.runtime (stand-in)",
    getDeviceCount=_get_device_count,
    getDevice=lambda: _state.current,
    setDevice=_set_device,
    getDeviceProperties=_get_device_properties,
    memGetInfo=lambda: (15 << 30, 16 << 30),
    CUDARuntimeError=CUDARuntimeError,
)
cuda = _module(
    "cupy.cuda",
    "cupy.cuda (stand-in)",
    Device=Device,
    runtime=runtime,
    is_available=lambda: _state.count > 0,
    get_device_id=lambda: _state.current,
)
random = _module("cupy.random", "cupy.random (stand-in)", XORWOW=XORWOW, Generator=Generator)
lib = _module(
    "cupy.lib",
    "cupy.lib (stand-in)",
    stride_tricks=_module("cupy.lib.stride_tricks", "", as_strided=_as_strided),
)

_DTYPE_NAMES = """
float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool_ complex64 complex128
intp uintp dtype finfo iinfo promote_types can_cast issubdtype floating integer signedinteger
unsignedinteger number inexact complexfloating generic newaxis inf nan pi e half single double
""".split()

cupy = _module(
    "cupy",
    "CuPy stand-in on NumPy for minicnn's tests (parity_tests/cupy_standin.py).",
    ndarray=ndarray,
    asarray=asarray,
    array=array,
    ascontiguousarray=ascontiguousarray,
    asnumpy=asnumpy,
    get_array_module=_get_array_module,
    cuda=cuda,
    random=random,
    lib=lib,
    get_default_memory_pool=lambda: _memory_pool,
    get_default_pinned_memory_pool=lambda: _pinned_pool,
    **_NAMESPACE_FUNCTIONS,
    **{n: getattr(np, n) for n in _DTYPE_NAMES},
)
cupy.__standin__ = True


# ----------------------------------------------------------------- cupyx
def _scatter_add(a, slices, value):
    _needs_array(a, "scatter_add", "a")
    _check_device(a)
    np.add.at(a._a, _arg(slices), _arg(value))


def _erf(x):
    xa = _arg(x)
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - scipy is a dev dependency
        return _wrap(np.vectorize(math.erf, otypes=[xa.dtype])(xa))
    return _wrap(np.asarray(erf(xa)))


cupyx_special = _module("cupyx.scipy.special", "cupyx.scipy.special (stand-in)", erf=_erf)
cupyx_scipy = _module("cupyx.scipy", "cupyx.scipy (stand-in)", special=cupyx_special)
cupyx = _module("cupyx", "cupyx (stand-in)", scatter_add=_scatter_add, scipy=cupyx_scipy)
_CUPYX_MODULES = {"cupyx": cupyx, "cupyx.scipy": cupyx_scipy, "cupyx.scipy.special": cupyx_special}


# ====================================================================== installing it
def install(devices=1):
    """Make the stand-in minicnn's CuPy (``minicnn.backend``'s test hook), with ``devices`` fake GPUs.

    Returns a function that undoes it. ``import cupyx`` (and ``cupyx.scipy.special``) gives the
    stand-in's while it is installed.
    """
    from minicnn import backend

    _state.current, _state.count = 0, int(devices)
    syncs.clear()
    transfers.clear()
    saved_modules = {name: sys.modules.get(name) for name in _CUPYX_MODULES}
    sys.modules.update(_CUPYX_MODULES)
    restore_backend = backend.use_cupy_module(cupy, ndarray)

    def uninstall():
        restore_backend()
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        _state.current, _state.count = 0, 1

    return uninstall


@contextlib.contextmanager
def installed(devices=1):
    """``with installed(devices=2): ...``: the stand-in is minicnn's CuPy inside the block."""
    uninstall = install(devices)
    try:
        yield cupy
    finally:
        uninstall()


def current_device() -> int:
    return _state.current


# ====================================================================== for the test suites
REQUIRE_CUDA_VARIABLE = "MINICNN_REQUIRE_CUDA"


def cuda_required() -> bool:
    """True when ``MINICNN_REQUIRE_CUDA=1``: tests that need a real GPU fail instead of skipping, and
    the ``cuda`` parameter never falls back to the stand-in (set it on a GPU machine, so a broken CuPy
    install cannot pass as "no GPU here")."""
    import os

    return os.environ.get(REQUIRE_CUDA_VARIABLE, "").strip() == "1"


def real_gpu_problem():
    """None when CuPy sees a real GPU; else why not, as one line (the exception's text included)."""
    from minicnn import backend

    if backend._cupy is not None and getattr(backend._cupy, "__standin__", False):
        raise RuntimeError("real_gpu_problem() asked while the stand-in is installed")
    return backend.cuda_unavailable_reason()


def describe_cuda_parameter() -> str:
    """What the ``cuda`` test parameter runs on, for pytest's header."""
    problem = real_gpu_problem()
    if problem is None:
        from minicnn import backend

        cp = backend.cupy_module()
        return f"cuda parameter: real GPU (CuPy {cp.__version__}, {cp.cuda.runtime.getDeviceCount()} GPU(s))"
    if cuda_required():
        return f"cuda parameter: FAILS ({REQUIRE_CUDA_VARIABLE}=1 and no usable GPU: {problem})"
    return f"cuda parameter: CuPy stand-in on NumPy (parity_tests/cupy_standin.py); no real GPU: {problem}"


def skip_without_real_gpu(what="this test"):
    """Skip (or, with ``MINICNN_REQUIRE_CUDA=1``, fail) unless CuPy sees a real GPU."""
    import pytest

    problem = real_gpu_problem()
    if problem is None:
        return
    message = f"cuda: {what} needs a real GPU: {problem}"
    if cuda_required():
        pytest.fail(f"{message} ({REQUIRE_CUDA_VARIABLE}=1)", pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def cuda_for_tests(devices=1):
    """The backend of a test's ``cuda`` parameter: the real GPU when CuPy sees one; otherwise the
    stand-in, installed for the test's duration; with ``MINICNN_REQUIRE_CUDA=1`` and no GPU, a failure
    that names the reason."""
    import pytest

    problem = real_gpu_problem()
    if problem is None:
        yield "real"
        return
    if cuda_required():
        pytest.fail(f"cuda: {REQUIRE_CUDA_VARIABLE}=1 but there is no usable GPU: {problem}", pytrace=False)
    with installed(devices):
        yield "standin"
