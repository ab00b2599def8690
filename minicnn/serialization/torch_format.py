"""Read PyTorch's ``torch.save`` files without PyTorch and without running any code from them.

A ``torch.save`` file (zip format, PyTorch >= 1.6) is a zip archive: ``<name>/data.pkl`` is a
pickle of the saved object in which every tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` and every
storage a *persistent id* ``('storage', torch.FloatStorage, key, location, numel)`` whose bytes
are the zip record ``<name>/data/<key>``. The legacy format (``_use_new_zipfile_serialization=False``)
is a stream of pickles (magic number, protocol, system info, the object, the storage keys)
followed by each storage's element count (int64) and bytes.

Unpickling can call any function a file names, so a file from elsewhere could run code
(``os.system`` via ``__reduce__``). :class:`RestrictedUnpickler` admits only what
``torch.load(weights_only=True)`` admits: tensor/parameter rebuild functions, storage types,
dtypes, ``torch.Size``, ``torch.device``, ``collections.OrderedDict``/``Counter``, ``set``,
``bytearray``, ``complex``, ``_codecs.encode`` (bytes); each is replaced by a function of ours
that builds NumPy arrays. Any other global is refused *before* it could be called, with a
one-line error naming it; ``BUILD`` (setting attributes) is allowed only on ordered dicts (the
state dict's ``_metadata``). bfloat16 storages are upcast to float32 exactly.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections import Counter, OrderedDict

import numpy as np

from minicnn.serialization.files import CheckpointError, bf16_to_float32

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# storage class name -> element dtype ('bfloat16': uint16 bit patterns, upcast later)
_STORAGES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",
}
# torch dtype name (as pickled: GLOBAL 'torch float32') -> element dtype
_DTYPES = {
    "float64": "<f8",
    "float32": "<f4",
    "float16": "<f2",
    "bfloat16": "bfloat16",
    "int64": "<i8",
    "int32": "<i4",
    "int16": "<i2",
    "int8": "i1",
    "uint8": "u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "bool": "?",
    "complex64": "<c8",
    "complex128": "<c16",
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A PyTorch file asked for something minicnn refuses to build (it would mean running its code)."""


class _Marker:
    """A stand-in for a torch class or dtype named by the pickle; cannot be called or changed."""

    __slots__ = ("kind", "name", "dtype")

    def __init__(self, kind, name, dtype=None):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __setattr__(self, key, value):
        raise AttributeError("read-only")

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    __slots__ = ("array", "location", "bf16")

    def __init__(self, array, location, bf16):
        self.array, self.location, self.bf16 = array, location, bf16


def _np_dtype(spec):
    return np.dtype("<u2") if spec == "bfloat16" else np.dtype(spec)


def _int(x, what):
    if isinstance(x, bool) or not isinstance(x, int) or x < 0:
        raise pickle.UnpicklingError(f"{what} must be a non-negative int, got {x!r:.40}")
    return x


class RestrictedUnpickler(pickle._Unpickler):
    """``pickle``'s unpickler admitting only the globals of ``torch.load(weights_only=True)`` (module doc)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, where, storage, place):
        super().__init__(file, encoding="utf-8")
        self.where = where
        self._storage = storage  # (key, element dtype spec, location, numel, view) -> _Storage
        self._place = place  # (array, location) -> minicnn Tensor
        self._allowed = {
            "collections.OrderedDict": OrderedDict,
            "collections.Counter": Counter,
            "builtins.set": set,
            "__builtin__.set": set,
            "builtins.bytearray": bytearray,
            "__builtin__.bytearray": bytearray,
            "builtins.complex": complex,
            "__builtin__.complex": complex,
            "_codecs.encode": _encode_latin1,
            "torch.Size": _size,
            "torch.device": _device,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor_v2,
            "torch._utils._rebuild_tensor_v3": self._rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
            "torch._tensor._rebuild_from_type_v2": self._rebuild_from_type_v2,
            "torch.Tensor": _Marker("type", "Tensor"),
            "torch.nn.parameter.Parameter": _Marker("type", "nn.Parameter"),
        }

    # ------------------------------------------------------------------ the gate
    def find_class(self, module, name):
        full = f"{module}.{name}"
        if full in self._allowed:
            return self._allowed[full]
        if module in ("torch", "torch.storage") and name in _STORAGES:
            return _Marker("storage", name, _STORAGES[name])
        if module == "torch" and name in _DTYPES:
            from minicnn.dtypes import as_dtype

            return _Marker("dtype", name, _DTYPES[name]) if name == "bfloat16" else as_dtype(name)
        if module == "torch" and name.startswith(("float8", "float4", "qint", "quint", "bits", "complex32")):
            raise CheckpointError(
                f"minicnn.load: {self.where} holds tensors of dtype torch.{name}, which NumPy (so minicnn) "
                "cannot hold; convert them in PyTorch first (e.g. tensor.float())"
            )
        raise UnsafeCheckpointError(
            f"minicnn.load: {self.where} needs the Python object {full} to be rebuilt, which minicnn "
            "refuses: it reads tensors, numbers, strings and containers only, never code from a file "
            "(the rules of torch.load(weights_only=True)). Save model.state_dict() rather than the model, "
            "or load this file with PyTorch if you trust it"
        )

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) not in (OrderedDict, Counter):
            raise UnsafeCheckpointError(
                f"minicnn.load: {self.where} sets attributes on a {type(inst).__name__} (pickle BUILD), "
                "which minicnn refuses (only ordered dicts may carry attributes, as in "
                "torch.load(weights_only=True))"
            )
        if isinstance(state, tuple) and len(state) == 2:
            state = state[0] or {}
        if not isinstance(state, dict) or not all(
            isinstance(k, str) and not k.startswith("__") for k in state
        ):
            raise UnsafeCheckpointError(
                f"minicnn.load: {self.where} has an unexpected attribute state {state!r:.60}"
            )
        inst.__dict__.update(state)

    def _load_ext(self):
        raise UnsafeCheckpointError(
            f"minicnn.load: {self.where} uses pickle extension codes, which minicnn refuses"
        )

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.EXT1[0]] = dispatch[pickle.EXT2[0]] = dispatch[pickle.EXT4[0]] = _load_ext

    # ------------------------------------------------------------------ storages and tensors
    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        stype, key, location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not (isinstance(stype, _Marker) and stype.kind in ("storage", "dtype")):
            raise pickle.UnpicklingError(f"storage type {stype!r:.40} is not a storage class")
        if not (isinstance(key, str) and re.fullmatch(r"[\w.\-]+", key)) or not isinstance(location, str):
            raise pickle.UnpicklingError(f"bad storage key or location {key!r:.40}, {location!r:.40}")
        return self._storage(key, stype.dtype, location, _int(numel, "storage size"), view)

    def _tensor(self, storage, offset, size, stride, requires_grad, metadata=None, dtype=None):
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(f"a tensor's storage is a {type(storage).__name__}")
        offset = _int(offset, "storage offset")
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
            raise pickle.UnpicklingError(f"bad tensor size/stride {size!r:.40} {stride!r:.40}")
        size = tuple(_int(s, "tensor size") for s in size)
        stride = tuple(_int(s, "tensor stride") for s in stride)
        if storage.array is None:  # first pass over a legacy file: no bytes yet
            return None
        base, bf16 = storage.array, storage.bf16
        if dtype is not None:  # v3: an untyped (byte) storage read as ``dtype``
            spec = dtype.dtype if isinstance(dtype, _Marker) else np.dtype(dtype).str
            bf16 = spec == "bfloat16"
            base = base.view(np.uint8)
            base = base[: len(base) - len(base) % _np_dtype(spec).itemsize].view(_np_dtype(spec))
        numel = int(np.prod(size, dtype=np.int64))
        if numel == 0:
            out = np.empty(size, dtype=base.dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= len(base):
                raise pickle.UnpicklingError(
                    f"a tensor of size {size}, stride {stride}, offset {offset} reaches element {last} of a "
                    f"storage of {len(base)}"
                )
            view = np.lib.stride_tricks.as_strided(
                base[offset:], shape=size, strides=tuple(s * base.itemsize for s in stride), writeable=False
            )
            out = np.array(view, order="C")  # a copy: tensors sharing a storage do not share memory here
        if bf16:
            out = bf16_to_float32(out)
        if metadata:
            if not isinstance(metadata, dict):
                raise pickle.UnpicklingError("bad tensor metadata")
            if metadata.get("conj"):
                out = np.conj(out)
            if metadata.get("neg"):
                out = -out
        t = self._place(out, storage.location)
        if requires_grad is True and t.is_floating_point():
            t.requires_grad_(True)
        return t

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, storage_offset, size, stride, False)

    def _rebuild_tensor_v2(
        self, storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
    ):
        return self._tensor(storage, storage_offset, size, stride, requires_grad, metadata)

    def _rebuild_tensor_v3(
        self, storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
    ):
        from minicnn.dtypes import dtype as mc_dtype

        if not (isinstance(dtype, mc_dtype) or (isinstance(dtype, _Marker) and dtype.kind == "dtype")):
            raise pickle.UnpicklingError(f"bad tensor dtype {dtype!r:.40}")
        return self._tensor(storage, storage_offset, size, stride, requires_grad, metadata, dtype=dtype)

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        rebuilders = (
            self._rebuild_tensor,
            self._rebuild_tensor_v2,
            self._rebuild_tensor_v3,
            _rebuild_parameter,
        )
        if func not in rebuilders or not (isinstance(new_type, _Marker) and new_type.kind == "type"):
            raise UnsafeCheckpointError(
                f"minicnn.load: {self.where} holds a tensor subclass or an unknown rebuild function, which "
                "minicnn refuses"
            )
        if not isinstance(args, tuple):
            raise pickle.UnpicklingError("bad tensor rebuild arguments")
        return func(*args)  # Python attributes of the tensor (``state``) are dropped


def _encode_latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError("minicnn.load: _codecs.encode is admitted only for bytes (latin1)")
    return text.encode("latin1")


def _size(*args):
    from minicnn.dtypes import Size

    dims = args[0] if args else ()
    return Size(tuple(_int(d, "torch.Size dimension") for d in dims))


def _device(*args):
    from minicnn.backend import Device

    if not args or not isinstance(args[0], str):
        raise pickle.UnpicklingError("bad torch.device")
    spec = args[0] if len(args) == 1 or args[1] is None else f"{args[0]}:{_int(args[1], 'device index')}"
    return Device(spec)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    from minicnn.tensor import Tensor

    if data is None:  # first pass over a legacy file
        return None
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("a parameter's data is not a tensor")
    if requires_grad is True and data.is_floating_point():
        data.requires_grad_(True)
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


# ---------------------------------------------------------------------------- the two file formats
def _damaged(where, e):
    if isinstance(e, (UnsafeCheckpointError, CheckpointError)):
        return e
    msg = str(e).splitlines()[0] if str(e) else ""
    return CheckpointError(
        f"minicnn.load: {where} looks like a PyTorch file but cannot be read (truncated or corrupt?): "
        f"{type(e).__name__}: {msg}"
    )


def load_zip(data: bytes, where: str, place):
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _damaged(where, e) from None
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if not pkl:
        raise CheckpointError(
            f"minicnn.load: {where} is a zip archive but not a torch.save file (it has no data.pkl; "
            f"first entries: {names[:3]}). A .npz? Read it with numpy.load"
        )
    prefix = pkl[0][: -len("data.pkl")]
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise CheckpointError(
            f"minicnn.load: {where} is a TorchScript archive (torch.jit.save), which holds code; minicnn "
            "reads torch.save files only. In PyTorch: "
            "torch.save(torch.jit.load(path).state_dict(), 'weights.pt')"
        )
    byteorder = "little"
    if f"{prefix}byteorder" in names:
        byteorder = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
    cache = {}

    def storage(key, spec, location, numel, view):
        if key not in cache:
            dt = _np_dtype(spec).newbyteorder("<" if byteorder == "little" else ">")
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(
                    f"minicnn.load: {where} is incomplete: its storage record {record} is missing"
                )
            info = zf.getinfo(record)
            if info.file_size != numel * dt.itemsize:
                raise CheckpointError(
                    f"minicnn.load: {where} is truncated or corrupt: storage {record} has {info.file_size} "
                    f"bytes, {numel * dt.itemsize} expected"
                )
            arr = np.frombuffer(zf.read(record), dtype=dt).astype(dt.newbyteorder("="), copy=False)
            cache[key] = _Storage(arr, location, spec == "bfloat16")
        return cache[key]

    try:
        return RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), where, storage, place).load()
    except Exception as e:
        raise _damaged(where, e) from None


def load_legacy(data: bytes, where: str, place):
    f = io.BytesIO(data)

    def plain(what):
        def no_storage(*args):
            raise pickle.UnpicklingError(f"a storage in the {what}")

        return RestrictedUnpickler(f, where, no_storage, place).load()

    try:
        magic = plain("magic number")
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(
                f"minicnn.load: {where} is a pickle file but not a PyTorch checkpoint (no torch.save magic "
                "number); minicnn reads safetensors files and torch.save files only"
            )
        protocol = plain("protocol version")
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(
                f"minicnn.load: {where}: unknown legacy PyTorch protocol version {protocol!r}"
            )
        sys_info = plain("system info")
        little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        start = f.tell()
        # First pass: which storages (key -> spec, location, numel, view); no tensor is built.
        found = {}

        def record(key, spec, location, numel, view):
            found.setdefault(key, (spec, location, numel, view))
            return _Storage(None, location, False)

        RestrictedUnpickler(f, where, record, place).load()
        keys = plain("storage keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise pickle.UnpicklingError("bad storage key list")
        roots = {}
        for key in keys:
            root_spec = next((v[0] for k, v in found.items() if k == key or (v[3] and v[3][0] == key)), "u1")
            dt = _np_dtype(root_spec).newbyteorder("<" if little else ">")
            numel = int.from_bytes(f.read(8), "little" if little else "big", signed=True)
            raw = f.read(max(numel, 0) * dt.itemsize)
            if numel < 0 or len(raw) != numel * dt.itemsize:
                raise CheckpointError(f"minicnn.load: {where} is truncated: storage {key} is incomplete")
            roots[key] = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=False)

        def storage(key, spec, location, numel, view):
            if view:  # (root key, offset, size): a slice of another storage (very old files)
                root, offset, size = view
                arr = roots[root][_int(offset, "view offset") : offset + _int(size, "view size")]
            elif key in roots:
                arr = roots[key]
            else:
                raise CheckpointError(f"minicnn.load: {where} is incomplete: storage {key} is missing")
            return _Storage(arr, location, spec == "bfloat16")

        f.seek(start)
        return RestrictedUnpickler(f, where, storage, place).load()
    except Exception as e:
        raise _damaged(where, e) from None
