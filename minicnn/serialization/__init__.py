"""Checkpoints in the safetensors format -- never pickle.

* ``minicnn.save(model_or_state_dict, path)`` writes every tensor under its state-dict key
  (``features.0.weight``, ``bn1.num_batches_tracked`` as a 0-d int64, ...), so the file loads into
  the same architecture in PyTorch with ``safetensors.torch.load_file`` + ``load_state_dict``,
  and a file written by PyTorch loads here with ``minicnn.load`` + ``model.load_state_dict``.
* ``minicnn.save_training_state`` / ``load_training_state`` also store the optimizer and
  scheduler state, the epoch, the RNG state and any JSON-able ``extra``: arrays go into the
  safetensors file (``model.*``, ``optimizer.*`` keys), everything else is JSON in the file's
  metadata. Loading restores all of it, so training resumes bit for bit.

safetensors (a dev dependency) is imported only when a checkpoint is read or written.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np

from minicnn.backend import is_cupy_array, to_device, to_numpy
from minicnn.tensor import Tensor

_STATE_KEY = "minicnn.training_state"
_FORMAT_VERSION = 1


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError as e:  # pragma: no cover - safetensors is in the dev extra
        raise ImportError(
            "minicnn checkpoints need the 'safetensors' package: pip install safetensors"
        ) from e
    return safetensors.numpy


def _host_array(value, key):
    """A C-contiguous NumPy array from a minicnn Tensor, NumPy/CuPy array or torch tensor."""
    if isinstance(value, Tensor):
        value = value.array
    if is_cupy_array(value):
        value = to_numpy(value)
    elif type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"minicnn.save: the value of {key!r} is a {type(value).__name__}, expected a tensor")
    return np.asarray(value, order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)


def _write(path, arrays: dict, metadata: dict | None):
    st = _safetensors_numpy()
    if metadata is not None:
        bad = {
            k: type(v).__name__
            for k, v in metadata.items()
            if not (isinstance(k, str) and isinstance(v, str))
        }
        if bad:
            raise TypeError(f"minicnn.save: metadata must map str to str, got non-str entries {bad}")
    path = os.fspath(path)
    tmp = path + ".tmp"
    st.save_file(arrays, tmp, metadata=metadata)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the real name


def _read(path):
    """``(arrays, metadata)`` of a safetensors file, with a clear error for a missing or damaged file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"minicnn.load: no checkpoint file at {path!r}")
    st = _safetensors_numpy()
    from safetensors import safe_open

    try:
        arrays = st.load_file(path)
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # SafetensorError, OSError, ValueError from a damaged header...
        raise RuntimeError(
            f"minicnn.load: {path!r} is not a valid safetensors checkpoint (truncated or corrupt file?): {e}"
        ) from e
    return arrays, metadata


def save(model_or_state_dict, path, metadata: dict | None = None) -> None:
    """Write a model's ``state_dict()`` (or any ``{name: tensor}`` dict) to a ``.safetensors`` file.

    ``metadata`` is an optional ``{str: str}`` stored in the file header.
    """
    from minicnn.nn.module import Module

    if isinstance(model_or_state_dict, Module):
        state = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, dict):
        state = model_or_state_dict
    else:
        raise TypeError(
            "minicnn.save: expected an nn.Module or a dict of tensors, got "
            f"{type(model_or_state_dict).__name__}"
        )
    _write(path, {k: _host_array(v, k) for k, v in state.items()}, metadata)


def load(path, device="cpu") -> dict:
    """Read a ``.safetensors`` file into ``{name: minicnn.Tensor}`` on ``device`` (keys in file order).

    Feed the result to ``model.load_state_dict(...)``.
    """
    arrays, _ = _read(path)
    return OrderedDict((k, Tensor._make(to_device(a, device))) for k, a in arrays.items())


def load_metadata(path) -> dict:
    """The ``{str: str}`` metadata stored in a safetensors file's header."""
    return _read(path)[1]


# ---------------------------------------------------------------------------- training state
def _encode(obj, path, arrays):
    """Turn nested optimizer/scheduler state into JSON, moving arrays into ``arrays[path]``.

    Tagged dicts keep what JSON would lose: tuples, non-string dict keys, NumPy scalar types.
    """
    if isinstance(obj, Tensor) or isinstance(obj, np.ndarray) or is_cupy_array(obj):
        arrays[path] = _host_array(obj, path)
        return {"__array__": path, "tensor": isinstance(obj, Tensor)}
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.item(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{path}.{i}", arrays) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}.{k}", arrays) for k, v in obj.items()}
        return {
            "__items__": [[_encode(k, path, {}), _encode(v, f"{path}.{k}", arrays)] for k, v in obj.items()]
        }
    raise TypeError(
        f"save_training_state: cannot store a {type(obj).__name__} at {path!r} without pickle; "
        "use numbers, strings, lists, dicts and arrays"
    )


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        a = arrays[obj["__array__"]]
        return Tensor._make(a) if obj["tensor"] else a
    if "__scalar__" in obj:
        return np.dtype(obj["dtype"]).type(obj["__scalar__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


def save_training_state(path, model, optimizer=None, scheduler=None, epoch=None, extra=None) -> None:
    """One safetensors file with everything needed to resume training exactly.

    Stores the model's state dict (keys ``model.<name>``), ``optimizer.state_dict()``,
    ``scheduler.state_dict()``, ``epoch``, ``minicnn.random.get_rng_state()`` and ``extra``
    (JSON-able values and arrays, e.g. the loss history).
    """
    from minicnn import random as _random

    arrays = {f"model.{k}": _host_array(v, k) for k, v in model.state_dict().items()}
    state = {
        "version": _FORMAT_VERSION,
        "epoch": epoch,
        "rng": _random.get_rng_state(),
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", arrays),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", arrays),
        "extra": _encode(extra, "extra", arrays),
    }
    _write(path, arrays, {_STATE_KEY: json.dumps(state)})


def load_training_state(path, model, optimizer=None, scheduler=None, restore_rng=True) -> dict:
    """Restore what ``save_training_state`` wrote into ``model`` (and ``optimizer``/``scheduler``).

    Also restores minicnn's RNG state (unless ``restore_rng=False``). Returns
    ``{"epoch": ..., "extra": ...}``.
    """
    from minicnn import random as _random

    arrays, metadata = _read(path)
    if _STATE_KEY not in metadata:
        raise RuntimeError(
            f"load_training_state: {os.fspath(path)!r} holds no training state (it was written by "
            "minicnn.save or another tool); load its weights with minicnn.load instead"
        )
    state = json.loads(metadata[_STATE_KEY])
    model_state = {k[len("model.") :]: a for k, a in arrays.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    if optimizer is not None:
        if state["optimizer"] is None:
            raise RuntimeError(f"load_training_state: {os.fspath(path)!r} has no optimizer state")
        optimizer.load_state_dict(_decode(state["optimizer"], arrays))
    if scheduler is not None:
        if state["scheduler"] is None:
            raise RuntimeError(f"load_training_state: {os.fspath(path)!r} has no scheduler state")
        scheduler.load_state_dict(_decode(state["scheduler"], arrays))
    if restore_rng:
        _random.set_rng_state(state["rng"])
    return {"epoch": state["epoch"], "extra": _decode(state["extra"], arrays)}
