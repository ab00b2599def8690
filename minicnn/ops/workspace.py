"""Memory that ops reuse between calls: scratch buffers (like oneDNN's "scratchpad") and a pool
of output arrays (like PyTorch's caching allocator on the GPU).

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

Outputs (``empty``). An op's output and its input gradient must be arrays nobody else uses, but
they need not be *new* memory. A training step makes the same activation-sized arrays every time
(conv, batch-norm, ReLU and pooling outputs and their gradients, ~60 MB per MNIST step), and
glibc's malloc hands large blocks back to the operating system when they are freed: measured,
~6,500 page faults per MNIST CNN step (~26 MB of fresh pages) and ~8,600 per CIFAR step,
~10 ms and ~20 ms of the step. ``empty`` keeps such arrays in a pool and hands one out again
once nothing but the pool refers to it: every NumPy view of an array keeps a reference to it
(``view.base``), so "its reference count is the pool's own" means no tensor, view, graph node or
user variable can still see its memory. Only arrays of ``POOL_MIN_BYTES`` or more are pooled
(malloc keeps smaller blocks), only on NumPy (CuPy has its own memory pool), at most
``POOL_MAX_BYTES`` in all (past that, idle arrays are dropped, then new arrays are not pooled).
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MAX_BYTES = 256 << 20
POOL_MIN_BYTES = 256 << 10
POOL_MAX_BYTES = 512 << 20

_local = threading.local()


def _cache():
    if not hasattr(_local, "buffers"):
        _local.buffers, _local.nbytes = {}, 0
        _local.pool, _local.pool_bytes = {}, 0
    return _local


def scratch(xp, key, shape, dtype, zero=False):
    """A reusable ``xp`` array of ``shape`` and ``dtype`` for ``key`` (see the module's rules)."""
    c = _cache()
    full_key = (xp.__name__, key, tuple(shape), str(dtype))
    buf = c.buffers.get(full_key)
    if buf is None:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if c.nbytes + nbytes > MAX_BYTES:  # start over (outputs are not affected)
            c.buffers.clear()
            c.nbytes = 0
        buf = xp.zeros(shape, dtype=dtype) if zero else xp.empty(shape, dtype=dtype)
        c.buffers[full_key] = buf
        c.nbytes += nbytes
    return buf


def _refs(arr):
    return sys.getrefcount(arr)


# The count _refs sees for an array that only a list refers to, when called as ``for arr in
# arrays: _refs(arr)``: the list, the loop variable, the parameter and getrefcount's argument.
# Measured once rather than written down, so an interpreter that counts differently agrees.
for _arr in [np.empty(1)]:
    _IDLE_REFS = _refs(_arr)
del _arr


def empty(xp, shape, dtype):
    """An uninitialised ``xp`` array for an op's output or input gradient, from the pool of idle
    arrays when one of this shape and dtype is free (see the module's doc). The caller must
    overwrite all of it, exactly as with ``xp.empty``."""
    shape = tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if xp is not np or nbytes < POOL_MIN_BYTES:
        return xp.empty(shape, dtype=dtype)
    c = _cache()
    arrays = c.pool.setdefault((shape, np.dtype(dtype)), [])
    for arr in arrays:
        if _refs(arr) <= _IDLE_REFS:  # idle: hand it out again
            return arr
    if c.pool_bytes + nbytes > POOL_MAX_BYTES:
        _drop_idle(c)
    arr = np.empty(shape, dtype=dtype)
    if c.pool_bytes + nbytes <= POOL_MAX_BYTES:
        arrays.append(arr)
        c.pool_bytes += nbytes
    return arr


def _drop_idle(c):
    """Forget every idle pooled array (the busy ones stay until they are idle too)."""
    for key, arrays in list(c.pool.items()):
        busy = []
        for arr in arrays:
            if _refs(arr) > _IDLE_REFS:
                busy.append(arr)
            else:
                c.pool_bytes -= arr.nbytes
        if busy:
            c.pool[key] = busy
        else:
            del c.pool[key]


def clear():
    """Drop every cached buffer and pooled output array of this thread."""
    c = _cache()
    c.buffers.clear()
    c.nbytes = 0
    c.pool.clear()
    c.pool_bytes = 0
