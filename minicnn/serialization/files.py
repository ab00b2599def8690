"""Bytes on disk: durable writes, the safetensors format (read here, without its package), format sniffing.

**Durability.** A checkpoint is written to ``<path>.tmp``, flushed and fsynced, the folder is
fsynced, the file is renamed over ``<path>`` (atomic on POSIX), and the folder is fsynced again:
after a crash or power loss the path holds either the old checkpoint or the new one, whole.

**safetensors** (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length
``n``, ``n`` bytes of JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
"__metadata__": {str: str}}``, then the raw little-endian tensor bytes. Writing goes through the
``safetensors`` package (so a file is byte for byte what ``safetensors.numpy.save_file`` writes);
reading is done here, which lets bfloat16 tensors (no NumPy dtype) be upcast to float32 exactly.

Reading checks the header as the safetensors library does, and refuses a file that breaks a rule
with a one-line error naming the file and the tensors: each entry has a known dtype, a shape of
non-negative integers and two integer offsets whose difference is the shape's byte size; no name
appears twice; taken in the order of their offsets (the header's own order does not matter), the
tensors tile the data section exactly -- the first starts at byte 0, each starts where the one
before ends (no overlap, no gap), and the last ends at the end of the file.
"""

from __future__ import annotations

import errno
import json
import os
from collections import OrderedDict

import numpy as np

# safetensors dtype -> NumPy dtype (little-endian); BF16 is upcast to float32 after reading.
ST_DTYPES = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "C64": np.dtype("<c8"),
    "C128": np.dtype("<c16"),
    "BF16": np.dtype("<u2"),
}
_MAX_HEADER = 100_000_000  # as the safetensors library


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read: the message names the file and what is wrong."""


def bf16_to_float32(u16: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly (bfloat16 is the top half of a float32)."""
    return (u16.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------- writing
def _fsync_dir(directory):
    if os.name == "nt":  # pragma: no cover - no directory fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a folder: nothing more to do there
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def durable_write(path, data: bytes, who: str) -> None:
    """Write ``data`` to ``path`` atomically and durably (module doc); a file object is simply written."""
    if hasattr(path, "write"):
        path.write(data)
        return
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{who}: {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'model.safetensors')!r}"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"{who}: the folder {directory!r} does not exist; create it first (os.makedirs)"
        )
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(directory)
        os.replace(tmp, path)  # never leave a half-written checkpoint under the real name
        _fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def safetensors_bytes(arrays: dict, metadata: dict | None, who: str) -> bytes:
    try:
        import safetensors.numpy
    except ImportError as e:  # pragma: no cover - safetensors is in the dev extra
        raise ImportError(
            f"{who}: writing checkpoints needs the 'safetensors' package: pip install safetensors"
        ) from e
    if metadata is not None:
        bad = {
            k: type(v).__name__
            for k, v in metadata.items()
            if not (isinstance(k, str) and isinstance(v, str))
        }
        if bad:
            raise TypeError(f"{who}: metadata must map str to str, got non-str entries {bad}")
    return safetensors.numpy.save(arrays, metadata=metadata)


# ---------------------------------------------------------------------------- reading
def read_bytes(f, who: str) -> tuple[bytes, str]:
    """``(contents, name for messages)`` of a path or a binary file object."""
    if hasattr(f, "read"):
        data = f.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{who}: the file object must be opened in binary mode ('rb')")
        return bytes(data), repr(getattr(f, "name", "<file object>"))
    path = os.fspath(f)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{who}: {path!r} is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{who}: no checkpoint file at {path!r}")
    with open(path, "rb") as fh:
        return fh.read(), repr(path)


def sniff(data: bytes) -> str | None:
    """'safetensors', 'zip' (torch.save), 'pickle' (torch.save's legacy format) or None, from the bytes."""
    if len(data) >= 9 and data[8 : 8 + 64].lstrip(b" \t\r\n")[:1] == b"{":  # JSON may start with blanks
        return "safetensors"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return None


def _corrupt(where, why):
    return CheckpointError(
        f"minicnn.load: {where} is not a valid safetensors checkpoint (truncated or corrupt file?): {why}"
    )


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs):
    """``json.loads`` hook: a key given twice is an error (Python's json would keep the last one)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def parse_header(data: bytes, where: str) -> tuple[dict, int]:
    """``(header dict, offset of the data section)``."""
    if len(data) < 8:
        raise _corrupt(where, f"the file has only {len(data)} bytes")
    n = int.from_bytes(data[:8], "little")
    if n > _MAX_HEADER or 8 + n > len(data):
        raise _corrupt(
            where, f"its first 8 bytes announce a {n}-byte header but the file has {len(data)} bytes"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as e:
        raise _corrupt(where, f"its JSON header names {e.args[0]!r} twice") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise _corrupt(where, f"its JSON header does not parse ({e})") from None
    if not isinstance(header, dict):
        raise _corrupt(where, "its JSON header is not an object")
    return header, 8 + n


def read_metadata(data: bytes, where: str) -> dict:
    meta = parse_header(data, where)[0].get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise _corrupt(where, "its __metadata__ is not a map of strings to strings")
    return meta


def read_safetensors(data: bytes, where: str) -> tuple[OrderedDict, dict]:
    """``(arrays in file order, metadata)``; bfloat16 -> float32. Arrays are writable views of one buffer."""
    header, start = parse_header(data, where)
    meta = read_metadata(data, where)
    buffer = bytearray(data[start:])
    size = len(buffer)
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
            ok = all(_is_count(v) for v in (*shape, begin, end))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _corrupt(where, f"the header entry of tensor {name!r} is malformed: {info!r:.200}")
        if dtype_name not in ST_DTYPES:
            raise CheckpointError(
                f"minicnn.load: {where}: tensor {name!r} has dtype {dtype_name}, which NumPy (so minicnn) "
                f"cannot hold; supported: {', '.join(ST_DTYPES)} (BF16 is read as float32). Convert it in "
                "PyTorch first, e.g. tensor.float()"
            )
        dtype = ST_DTYPES[dtype_name]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end or end - begin != expected:
            raise _corrupt(
                where, f"tensor {name!r} of shape {shape} {dtype_name} has data offsets [{begin}, {end}]"
            )
        if end > size:
            raise _corrupt(
                where,
                f"tensor {name!r} needs bytes up to {end} of the data section but the file has only {size} "
                f"(the file is {start + size} bytes, at least {start + end} expected)",
            )
        entries.append((begin, end, name, dtype_name, dtype, shape))
    entries.sort()
    _check_tiling([(name, begin, end) for begin, end, name, *_ in entries], size, where)
    arrays = OrderedDict()
    for begin, end, name, dtype_name, dtype, shape in entries:
        if end == begin:
            a = np.empty(shape, dtype=dtype)
        else:
            a = np.frombuffer(buffer, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin)
            a = a.reshape(shape)
        arrays[name] = bf16_to_float32(a) if dtype_name == "BF16" else a
    return arrays, meta


def _is_count(v) -> bool:
    """A JSON non-negative integer (``True`` is not one, though Python's bool is an int)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_tiling(spans, size, where):
    """``spans``: ``(name, begin, end)`` sorted by offsets. They must cover ``[0, size)`` of the data
    section exactly, one after the other, as the safetensors library requires."""
    position, previous = 0, None
    for name, begin, end in spans:
        if begin < position:
            raise _corrupt(
                where,
                f"tensors {previous[0]!r} (bytes [{previous[1]}, {previous[2]}]) and {name!r} "
                f"(bytes [{begin}, {end}]) overlap in the data section",
            )
        if begin > position:
            after = f"after tensor {previous[0]!r}" if previous else "at the start of the data section"
            raise _corrupt(
                where,
                f"bytes [{position}, {begin}] {after} belong to no tensor: tensor {name!r} starts at {begin}",
            )
        position, previous = end, (name, begin, end)
    if position != size:
        last = f"the last tensor, {previous[0]!r}, ends" if previous else "with no tensor listed, they end"
        raise _corrupt(
            where,
            f"the data section has {size} bytes but {last} at byte {position}: "
            f"{size - position} bytes belong to no tensor",
        )
