"""Nested Python objects <-> (safetensors arrays, JSON), with no pickle.

Every tensor/array becomes a safetensors entry named by where it sits (``net.conv1.weight``,
``opt.state.0.exp_avg``); the structure becomes JSON in which each array is a tag
``{"__array__": name, "tensor": true}``. Tagged dicts also keep what JSON would lose: tuples
(``__tuple__``), non-string or ``__``-prefixed dict keys (``__items__``), NumPy scalars
(``__scalar__`` + dtype), complex numbers, bytes, devices and dtypes. The same object stored
twice (a shared tensor) is stored once and comes back as one object.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

import numpy as np

from minicnn.backend import Device, is_cupy_array, to_numpy

_SCALAR_KINDS = "biufcU"


def is_array_like(value) -> bool:
    from minicnn.tensor import Tensor

    return (
        isinstance(value, (Tensor, np.ndarray))
        or is_cupy_array(value)
        or (type(value).__module__.startswith("torch") and hasattr(value, "detach"))
    )


def host_array(value, key, who="minicnn.save"):
    """A C-contiguous NumPy array from a minicnn Tensor, NumPy/CuPy array or torch tensor."""
    from minicnn.tensor import Tensor

    if isinstance(value, Tensor):
        value = value.array
    if is_cupy_array(value):
        value = to_numpy(value)
    elif type(value).__module__.startswith("torch"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: upcast, exactly
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{who}: the value of {key!r} is a {type(value).__name__}, expected a tensor")
    if value.dtype.kind not in "biufc":
        raise TypeError(f"{who}: the array at {key!r} has dtype {value.dtype}; only numbers can be stored")
    return np.asarray(value, order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)


class Encoder:
    """Collects arrays into ``self.arrays`` while turning the structure into JSON-able values."""

    def __init__(self, who="minicnn.save", arrays=None):
        self.who = who
        self.arrays = {} if arrays is None else arrays
        self._stored = {}  # id(object) -> (entry name, object kept alive)
        self._open = set()  # ids of the containers being encoded (to refuse cycles)

    def _entry_name(self, hint):
        name, k = hint or "tensor", 1
        while name in self.arrays:
            k += 1
            name = f"{hint}#{k}"
        return name

    def encode(self, obj, path=""):
        from minicnn.dtypes import dtype as mc_dtype
        from minicnn.nn.module import Module
        from minicnn.tensor import Tensor

        if is_array_like(obj):
            if id(obj) in self._stored:
                name = self._stored[id(obj)][0]
            else:
                name = self._entry_name(path)
                self.arrays[name] = host_array(obj, path or "<root>", self.who)
                self._stored[id(obj)] = (name, obj)
            tag = {"__array__": name, "tensor": not isinstance(obj, np.ndarray) and not is_cupy_array(obj)}
            if isinstance(obj, Tensor) and obj.requires_grad:
                tag["requires_grad"] = True
            return tag
        if isinstance(obj, np.generic):
            if obj.dtype.kind not in _SCALAR_KINDS:
                self._refuse(obj, path)
            value = obj.item()
            return {
                "__scalar__": [value.real, value.imag] if obj.dtype.kind == "c" else value,
                "dtype": str(obj.dtype),
            }
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, complex):
            return {"__complex__": [obj.real, obj.imag]}
        if isinstance(obj, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, Device):
            return {"__device__": str(obj)}
        if isinstance(obj, mc_dtype):
            return {"__dtype__": obj.name}
        if isinstance(obj, Module):
            raise TypeError(
                f"{self.who}: cannot store the nn.Module at {path or '<root>'!r} without pickle; store its "
                "state_dict() instead (and rebuild the model in code before load_state_dict)"
            )
        if isinstance(obj, (list, tuple, Mapping)):
            if id(obj) in self._open:
                raise TypeError(
                    f"{self.who}: the container at {path!r} contains itself; cannot store a cycle"
                )
            self._open.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self._open.discard(id(obj))
        self._refuse(obj, path)

    def _container(self, obj, path):
        def sub(key):
            return f"{path}.{key}" if path else str(key)

        if isinstance(obj, (list, tuple)):
            items = [self.encode(v, sub(i)) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else {"__tuple__": items}
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: self.encode(v, sub(k)) for k, v in obj.items()}
        return {"__items__": [[self.encode(k, path), self.encode(v, sub(k))] for k, v in obj.items()]}

    def _refuse(self, obj, path):
        raise TypeError(
            f"{self.who}: cannot store a {type(obj).__name__} at {path or '<root>'!r} without pickle; use "
            "tensors, arrays, numbers, strings, bools, None, bytes, lists, tuples and dicts"
        )


def decode(obj, arrays, make_tensor, _cache=None):
    """Rebuild what :class:`Encoder` wrote. ``make_tensor(array, requires_grad)`` makes each Tensor."""
    cache = {} if _cache is None else _cache
    if isinstance(obj, list):
        return [decode(v, arrays, make_tensor, cache) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        name = obj["__array__"]
        key = (name, bool(obj.get("tensor")))
        if key not in cache:
            if name not in arrays:
                raise KeyError(name)
            a = arrays[name]
            cache[key] = make_tensor(a, bool(obj.get("requires_grad"))) if obj.get("tensor") else a
        return cache[key]
    if "__scalar__" in obj:
        value = obj["__scalar__"]
        return np.dtype(obj["dtype"]).type(complex(*value) if isinstance(value, list) else value)
    if "__tuple__" in obj:
        return tuple(decode(v, arrays, make_tensor, cache) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {
            decode(k, arrays, make_tensor, cache): decode(v, arrays, make_tensor, cache)
            for k, v in obj["__items__"]
        }
    if "__complex__" in obj:
        return complex(*obj["__complex__"])
    if "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    if "__device__" in obj:
        return Device(obj["__device__"])
    if "__dtype__" in obj:
        from minicnn.dtypes import as_dtype

        return as_dtype(obj["__dtype__"])
    return {k: decode(v, arrays, make_tensor, cache) for k, v in obj.items()}
