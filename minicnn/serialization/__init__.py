"""Checkpoints in the safetensors format -- never pickle -- and PyTorch's own files, read safely.

* ``minicnn.save(obj, path)``: ``obj`` is a model, a ``{name: tensor}`` state dict, or any nesting
  of dicts/lists/tuples of tensors, arrays, numbers, strings, bools, None (e.g.
  ``{'net': model.state_dict(), 'optimizer': opt.state_dict(), 'acc': acc, 'epoch': epoch}``).
  A flat state dict is written exactly as ``safetensors.numpy.save_file`` writes it, so the file
  loads in PyTorch with ``safetensors.torch.load_file`` + ``load_state_dict``. A nested object
  stores every tensor as a safetensors entry (``net.conv1.weight``...) and its structure as JSON
  in the file's metadata (``minicnn/serialization/nested.py``).
* ``minicnn.load(path, map_location=None)`` returns what was saved, tensors on ``map_location``
  (default: the CPU). It also reads ``torch.save`` files (zip and legacy formats) through a
  restricted unpickler that admits only tensors, storages and plain containers -- the rules of
  ``torch.load(weights_only=True)`` -- and never runs code from the file
  (``minicnn/serialization/torch_format.py``). The format is told from the file's first bytes.
* ``minicnn.save_training_state`` / ``load_training_state`` also store the optimizer and
  scheduler state, the epoch, the RNG state and any JSON-able ``extra``; loading restores all of
  it, so training resumes bit for bit.

Every write goes to a temporary file that is fsynced, renamed over the target and the folder
fsynced (``minicnn/serialization/files.py``). safetensors (a dev dependency) is imported only
when a checkpoint is written; reading needs only NumPy.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping

from minicnn.backend import Device, to_device
from minicnn.serialization import files, nested, torch_format
from minicnn.serialization.files import CheckpointError
from minicnn.serialization.torch_format import UnsafeCheckpointError
from minicnn.tensor import Tensor

__all__ = [
    "save",
    "load",
    "load_metadata",
    "save_training_state",
    "load_training_state",
    "CheckpointError",
    "UnsafeCheckpointError",
]

_STATE_KEY = "minicnn.training_state"
_OBJECT_KEY = "minicnn.object"
_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- save
def save(obj, f, metadata: dict | None = None, **torch_kwargs) -> None:
    """Write ``obj`` (a model, a state dict, or nested containers of them: module doc) to ``f``.

    ``f`` is a path (written atomically and fsynced) or a binary file object. ``metadata`` is an
    optional ``{str: str}`` stored in the file header. PyTorch's ``pickle_module``/``pickle_protocol``
    keywords are accepted and ignored (nothing is pickled).
    """
    from minicnn.nn.module import Module

    unknown = set(torch_kwargs) - {"pickle_module", "pickle_protocol", "_use_new_zipfile_serialization"}
    if unknown:
        raise TypeError(f"minicnn.save: unexpected keyword argument(s) {sorted(unknown)}")
    if isinstance(obj, Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and all(
        isinstance(k, str) and nested.is_array_like(v) for k, v in obj.items()
    ):  # a flat state dict: plain safetensors, as it always was
        arrays = {k: nested.host_array(v, k) for k, v in obj.items()}
        files.durable_write(f, files.safetensors_bytes(arrays, metadata, "minicnn.save"), "minicnn.save")
        return
    if metadata is not None and _OBJECT_KEY in metadata:
        raise ValueError(f"minicnn.save: the metadata key {_OBJECT_KEY!r} is reserved")
    enc = nested.Encoder("minicnn.save")
    structure = enc.encode(obj)
    meta = dict(metadata or {})
    meta[_OBJECT_KEY] = json.dumps({"version": _FORMAT_VERSION, "object": structure})
    files.durable_write(f, files.safetensors_bytes(enc.arrays, meta, "minicnn.save"), "minicnn.save")


# ---------------------------------------------------------------------------- load
def _placer(map_location):
    """``place(array, saved_location) -> Tensor`` for ``map_location`` (as ``torch.load``'s)."""
    if map_location is None:

        def target(location):
            return "cpu"
    elif isinstance(map_location, Mapping):

        def target(location):
            return map_location.get(location, location)
    elif callable(map_location) and not isinstance(map_location, (str, Device)):
        fn = map_location

        def place_with_fn(array, location):
            out = fn(array, location)
            if out is None:
                return Tensor._make(array)
            return out if isinstance(out, Tensor) else Tensor._make(out)

        return place_with_fn
    else:

        def target(location):
            return map_location

    def place(array, location):
        spec = target(location)
        device = Device(spec if isinstance(spec, (str, Device)) else str(spec))
        return Tensor._make(array if device.type == "cpu" else to_device(array, device))

    return place


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, device=None, **kwargs):
    """Read a checkpoint: what :func:`save` wrote, or a PyTorch ``torch.save`` file (module doc).

    ``map_location``: where tensors go -- ``'cpu'`` (default), ``'cuda'``, ``'cuda:1'``, a device,
    a dict ``{saved location: target}`` or a function ``(array, saved_location) -> array/Tensor``
    (None: keep it on the CPU). ``device=`` is an older name for it. ``weights_only`` is accepted
    for PyTorch compatibility; loading is always restricted to tensors, numbers, strings and
    containers (a refused object raises ``UnsafeCheckpointError``, naming it).
    A flat safetensors file gives an ``OrderedDict`` of Tensors (file order).
    """
    if kwargs:
        raise TypeError(f"minicnn.load: unexpected keyword argument(s) {sorted(kwargs)}")
    place = _placer(map_location if map_location is not None else device)
    data, where = files.read_bytes(f, "minicnn.load")
    kind = files.sniff(data)
    if kind == "safetensors":
        arrays, meta = files.read_safetensors(data, where)
        if _OBJECT_KEY not in meta:
            return OrderedDict((k, place(a, "cpu")) for k, a in arrays.items())
        payload = _json(meta[_OBJECT_KEY], where, "minicnn.load", "the saved object's structure")
        try:
            return nested.decode(payload["object"], arrays, lambda a, rg: _tensor(place(a, "cpu"), rg))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"minicnn.load: {where}: the structure in its metadata does not match its tensors "
                f"({type(e).__name__}: {e}); the file is damaged"
            ) from None
    if kind == "zip":
        return torch_format.load_zip(data, where, place)
    if kind == "pickle":
        return torch_format.load_legacy(data, where, place)
    raise CheckpointError(
        f"minicnn.load: {where} is not a checkpoint minicnn can read (truncated or corrupt file?): expected "
        f"a safetensors file (minicnn.save) or a PyTorch torch.save file; it starts with {data[:16]!r}"
    )


def _tensor(t, requires_grad):
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


def _json(text, where, who, what):
    try:
        return json.loads(text)
    except ValueError as e:
        raise CheckpointError(
            f"{who}: {where}: {what} (JSON in the file's metadata) is damaged: {e}; the file was changed or "
            "corrupted after it was written"
        ) from None


def load_metadata(path) -> dict:
    """The ``{str: str}`` metadata stored in a safetensors file's header."""
    data, where = files.read_bytes(path, "minicnn.load_metadata")
    return files.read_metadata(data, where)


def _read(path, who):
    data, where = files.read_bytes(path, who)
    if files.sniff(data) != "safetensors":
        raise CheckpointError(
            f"{who}: {where} is not a minicnn training-state file (not safetensors; truncated or corrupt?)"
        )
    arrays, meta = files.read_safetensors(data, where)
    return arrays, meta, where


# ---------------------------------------------------------------------------- training state
def _encode(obj, path, arrays):
    """Nested optimizer/scheduler state -> JSON, its arrays into ``arrays`` (see nested.Encoder)."""
    return nested.Encoder("save_training_state", arrays).encode(obj, path)


def _decode(obj, arrays):
    return nested.decode(obj, arrays, lambda a, rg: _tensor(Tensor._make(a), rg))


def save_training_state(path, model, optimizer=None, scheduler=None, epoch=None, extra=None) -> None:
    """One safetensors file with everything needed to resume training exactly.

    Stores the model's state dict (keys ``model.<name>``), ``optimizer.state_dict()``,
    ``scheduler.state_dict()``, ``epoch``, ``minicnn.random.get_rng_state()`` and ``extra``
    (JSON-able values and arrays, e.g. the loss history).
    """
    from minicnn import random as _random

    arrays = {f"model.{k}": nested.host_array(v, k) for k, v in model.state_dict().items()}
    state = {
        "version": _FORMAT_VERSION,
        "epoch": epoch,
        "rng": _random.get_rng_state(),
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", arrays),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", arrays),
        "extra": _encode(extra, "extra", arrays),
    }
    data = files.safetensors_bytes(arrays, {_STATE_KEY: json.dumps(state)}, "save_training_state")
    files.durable_write(path, data, "save_training_state")


def load_training_state(path, model, optimizer=None, scheduler=None, restore_rng=True) -> dict:
    """Restore what ``save_training_state`` wrote into ``model`` (and ``optimizer``/``scheduler``).

    Also restores minicnn's RNG state (unless ``restore_rng=False``). Returns
    ``{"epoch": ..., "extra": ...}``.
    """
    from minicnn import random as _random

    who = "load_training_state"
    arrays, metadata, where = _read(path, who)
    if _STATE_KEY not in metadata:
        raise RuntimeError(
            f"{who}: {os.fspath(path)!r} holds no training state (it was written by "
            "minicnn.save or another tool); load its weights with minicnn.load instead"
        )
    state = _json(metadata[_STATE_KEY], where, who, "the training state")
    required = ("epoch", "rng", "optimizer", "scheduler", "extra")
    missing = [k for k in required if k not in state] if isinstance(state, dict) else list(required)
    if missing:
        raise CheckpointError(
            f"{who}: {where}: the training state in its metadata lacks {missing}; the file is damaged"
        )
    model_state = {k[len("model.") :]: a for k, a in arrays.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    if optimizer is not None:
        if state["optimizer"] is None:
            raise RuntimeError(f"{who}: {os.fspath(path)!r} has no optimizer state")
        optimizer.load_state_dict(_decode(state["optimizer"], arrays))
    if scheduler is not None:
        if state["scheduler"] is None:
            raise RuntimeError(f"{who}: {os.fspath(path)!r} has no scheduler state")
        scheduler.load_state_dict(_decode(state["scheduler"], arrays))
    if restore_rng:
        _random.set_rng_state(state["rng"])
    return {"epoch": state["epoch"], "extra": _decode(state["extra"], arrays)}
