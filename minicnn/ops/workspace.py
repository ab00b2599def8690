"""Scratch buffers that an op reuses from one call to the next (like oneDNN's "scratchpad").

Why. An op's *output* must be a fresh array (the graph keeps it), but its *internal* buffers
(conv's padded input and im2col matrix, ...) are dead when the call returns. Allocating them
anew every call is not free on the CPU: a large NumPy array is fresh memory from the operating
system, and the first write to every 4 KiB page of it is a page fault. Inside a training step that
was measured at several ms per convolution. Keeping the buffers between calls removes that cost.

Rules for callers:
* the key must contain everything the buffer's *contents* depend on beyond its shape (e.g. the
  padding, when the caller relies on a zero border that it never writes);
* ``zero=True`` zero-fills the buffer when it is created, not when it is reused: the caller must
  never write the parts it relies on being zero;
* a buffer is valid until the op's next call with the same key, so never return it or keep a view
  of it in the graph.

Buffers are per thread (two threads running models never share one). The cache holds at most
``MAX_BYTES``; past that it is emptied and refilled, so an unusual mix of shapes costs speed,
never unbounded memory. ``clear()`` frees everything (e.g. before measuring memory).
"""

from __future__ import annotations

import math
import threading

import numpy as np

MAX_BYTES = 256 << 20

_local = threading.local()


def _cache():
    if not hasattr(_local, "buffers"):
        _local.buffers, _local.nbytes = {}, 0
    return _local


def scratch(xp, key, shape, dtype, zero=False):
    """A reusable ``xp`` array of ``shape`` and ``dtype`` for ``key`` (see the module's rules)."""
    c = _cache()
    full_key = (xp.__name__, key, tuple(shape), str(dtype))
    buf = c.buffers.get(full_key)
    if buf is None:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if c.nbytes + nbytes > MAX_BYTES:
            clear()
        buf = xp.zeros(shape, dtype=dtype) if zero else xp.empty(shape, dtype=dtype)
        c.buffers[full_key] = buf
        c.nbytes += nbytes
    return buf


def clear():
    """Drop every cached buffer of this thread."""
    c = _cache()
    c.buffers.clear()
    c.nbytes = 0
