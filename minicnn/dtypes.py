"""Dtypes, shapes and type promotion with PyTorch's names and rules.

* ``minicnn.float32``, ``minicnn.int64``... are small objects that print as ``minicnn.float32`` (as
  ``torch.float32`` does) and stand for a NumPy dtype: ``np.dtype(minicnn.float32)`` is
  ``float32``, and they compare equal to it, so NumPy and CuPy accept them wherever a dtype goes.
  PyTorch's aliases are here too: ``minicnn.float`` is float32, ``long`` int64, ``int`` int32...
* ``minicnn.Size`` is a tuple that prints as ``minicnn.Size([2, 3])`` (``tensor.shape``).
* ``result_type`` is PyTorch's type promotion for a binary op. Operands come in three tiers:
  tensors with dimensions, 0-d tensors, Python numbers. Within a tier the highest category wins
  (bool < integer < floating < complex) and sizes promote as in NumPy. A 0-d tensor or a Python
  number only changes the result when its category is higher than every dimensioned operand's:
  ``float32 tensor * float64 0-d tensor`` stays float32, ``int64 tensor * 2.5`` gives the default
  float dtype (float32). NumPy would give float64 in both cases.
"""

from __future__ import annotations

import builtins

import numpy as np


class dtype:  # noqa: N801  (torch.dtype)
    """A tensor element type; ``np.dtype(d)`` is its NumPy dtype."""

    __slots__ = ("_np",)

    def __init__(self, np_dtype):
        object.__setattr__(self, "_np", np.dtype(np_dtype))

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype (this attribute is what lets ``np.dtype(d)``, NumPy and CuPy accept ``d``)."""
        return self._np

    @property
    def name(self) -> str:
        return self._np.name

    @property
    def kind(self) -> str:
        return self._np.kind

    @property
    def itemsize(self) -> int:
        return self._np.itemsize

    @property
    def is_floating_point(self) -> bool:
        return self._np.kind == "f"

    @property
    def is_complex(self) -> bool:
        return self._np.kind == "c"

    @property
    def is_signed(self) -> bool:
        return self._np.kind in "ifc"

    def __eq__(self, other):
        if isinstance(other, dtype):
            return self._np == other._np
        try:
            return self._np == np.dtype(other)
        except TypeError:
            return NotImplemented

    def __hash__(self):
        return hash(self._np)

    def __repr__(self):
        return f"minicnn.{self._np.name if self._np.kind != 'b' else 'bool'}"

    __str__ = __repr__

    def __reduce__(self):
        return (as_dtype, (self._np.str,))


_BY_NUMPY = {}


def _make(name):
    d = dtype(name)
    _BY_NUMPY[d.dtype] = d
    return d


float16, float32, float64 = _make("float16"), _make("float32"), _make("float64")
complex64, complex128 = _make("complex64"), _make("complex128")
int8, int16, int32, int64 = _make("int8"), _make("int16"), _make("int32"), _make("int64")
uint8, bool_ = _make("uint8"), _make("bool")
# PyTorch's aliases
half, double, cfloat, cdouble = float16, float64, complex64, complex128
short, long = int16, int64
# (``float``, ``int`` and ``bool`` shadow builtins, so they are exported by minicnn/__init__.py only)


def as_dtype(value) -> dtype:
    """The minicnn dtype for a minicnn dtype, NumPy dtype, string (``"float32"``) or Python type."""
    if isinstance(value, dtype):
        return value
    if value is builtins.float:
        value = np.float64  # as torch: dtype=float means float64
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise TypeError(f"{value!r} is not a dtype: use e.g. minicnn.float32 or minicnn.int64") from None
    found = _BY_NUMPY.get(np_dtype)
    if found is None:
        raise TypeError(
            f"minicnn has no dtype {np_dtype}: use one of "
            + ", ".join(sorted({repr(d) for d in _BY_NUMPY.values()}))
        )
    return found


def np_dtype(value) -> np.dtype:
    """The NumPy dtype of anything ``as_dtype`` accepts."""
    return as_dtype(value).dtype


_default_dtype = np.dtype("float32")


def set_default_dtype(d) -> None:
    """Dtype given to floating-point data created from Python numbers (float32 unless changed)."""
    global _default_dtype
    d = np_dtype(d)
    if d.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {d}")
    _default_dtype = d


def get_default_dtype() -> dtype:
    return as_dtype(_default_dtype)


def default_float() -> np.dtype:
    """The default floating NumPy dtype (for internal use)."""
    return _default_dtype


class Size(tuple):
    """A tensor's shape: a tuple of ints that prints as ``minicnn.Size([2, 3])`` (``torch.Size``)."""

    def __repr__(self):
        return f"minicnn.Size({list(self)})"

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, index):
        out = tuple.__getitem__(self, index)
        return Size(out) if isinstance(index, slice) else out

    def __add__(self, other):
        return Size(tuple.__add__(self, tuple(other)))

    def __reduce__(self):
        return (Size, (tuple(self),))


# ============================================================================ type promotion
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


def _category(d: np.dtype) -> int:
    return _CATEGORY[d.kind]


def _promote_tier(dtypes):
    """Promote the dtypes of one tier: only those of the highest category count."""
    top = max(_category(d) for d in dtypes)
    return np.result_type(*[d for d in dtypes if _category(d) == top])


def _scalar_category(value) -> int:
    if isinstance(value, (bool, np.bool_)):
        return 0
    if isinstance(value, (int, np.integer)):
        return 1
    if isinstance(value, (float, np.floating)):
        return 2
    return 3


def result_type(dimensioned, zero_dim, scalars) -> np.dtype:
    """PyTorch's result dtype of an op over tensors with dimensions, 0-d tensors and Python numbers
    (each a list: NumPy dtypes, NumPy dtypes, Python numbers)."""
    result = None
    for tier in (dimensioned, zero_dim):
        if tier:
            r = _promote_tier(tier)
            if result is None or _category(r) > _category(result):
                result = r
    for value in scalars:
        cat = _scalar_category(value)
        if result is None or cat > _category(result):
            if cat == 0:
                result = np.dtype(bool)
            elif cat == 1:
                result = np.dtype(np.int64)
            elif cat == 2:
                result = _default_dtype
            else:
                result = np.dtype(np.complex128 if _default_dtype == np.float64 else np.complex64)
    return result
