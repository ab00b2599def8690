"""Memory that ops reuse between calls: scratch buffers (like oneDNN's "scratchpad") and a pool
of output arrays (like PyTorch's caching allocator on the GPU).

Why. Allocating large arrays anew every call is not free on the CPU: a large NumPy array is
often fresh memory from the operating system, and the first write to every 4 KiB page of it is a
page fault. Inside a training step that was measured at several ms per convolution.

Scratch buffers (``scratch``). An op's *internal* buffers (conv's padded input and im2col
matrix, ...) are dead when the call returns, so the op keeps them under a key and reuses them on
its next call. Rules for callers:
* the key must contain everything the buffer's *contents* depend on beyond its shape (e.g. the
  padding, when the caller relies on a zero border that it never writes);
* ``zero=True`` zero-fills the buffer when it is created, not when it is reused: the caller must
  never write the parts it relies on being zero;
* a buffer is valid until the op's next call with the same key, so never return it or keep a view
  of it in the graph.

Buffers are per thread (two threads running models never share one). The cache holds at most
``MAX_BYTES``; past that it is emptied and refilled, so an unusual mix of shapes costs speed,
never unbounded memory. ``clear()`` frees everything (e.g. before measuring memory).

Outputs (``empty``). An op's output and its input gradient must be memory nobody else uses, but
it need not be *new* memory. A training step makes the same activation-sized arrays every time
(conv, batch-norm, ReLU and pooling outputs and their gradients, ~60 MB per MNIST step), and
glibc's malloc hands large blocks back to the operating system when they are freed: measured,
~6,500 page faults per MNIST CNN step (~26 MB of fresh pages), ~10 ms of the step. ``empty``
keeps blocks of memory in a pool and hands a block out again, as an array of any shape and
dtype, once nothing but the pool refers to it: the array handed out is a view of the block, and
every NumPy view keeps a reference to the block (``view.base``), so "its reference count is the
pool's own" means no tensor, view, graph node or user variable can still see its memory. The
smallest idle block that fits is taken, if it is at most twice the size asked for. Only arrays
of ``POOL_MIN_BYTES`` or more are pooled (malloc keeps smaller blocks), only on NumPy (CuPy has
its own memory pool), at most ``POOL_MAX_BYTES`` in all (past that, idle blocks are dropped,
then new arrays are not pooled).
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
        _local.pool, _local.pool_bytes = [], 0
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


def _idle_refs():
    """The count _refs sees, inside a function's ``for block in blocks: _refs(block)`` loop (the
    only way this module calls it), for an array that only the list refers to. Measured with
    that same code rather than written down (the list, the loop variable, the parameter,
    getrefcount's argument: 4 on CPython 3.11), so an interpreter that counts references on the
    stack differently still agrees."""
    blocks = [np.empty(1)]
    for block in blocks:
        return _refs(block)


_IDLE_REFS = _idle_refs()


def empty(xp, shape, dtype):
    """An uninitialised ``xp`` array for an op's output or input gradient, from the pool when an
    idle block of memory fits (see the module's doc). The caller must overwrite all of it,
    exactly as with ``xp.empty``."""
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if xp is not np or nbytes < POOL_MIN_BYTES:
        return xp.empty(shape, dtype=dtype)
    c = _cache()
    block = _best_idle(c.pool, nbytes)
    if block is None:
        if c.pool_bytes + nbytes > POOL_MAX_BYTES:
            _drop_idle(c)
        block = np.empty(nbytes, dtype=np.uint8)
        if c.pool_bytes + nbytes <= POOL_MAX_BYTES:
            c.pool.append(block)
            c.pool_bytes += nbytes
    # a view of the block: it (and every view made from it) refers to the block, so the
    # block stays busy for as long as anything can see this array
    return block[:nbytes].view(dtype).reshape(shape)


def _best_idle(blocks, nbytes):
    """The smallest idle block of ``nbytes`` to ``2 * nbytes`` bytes (at most half of it unused,
    so a small array that lives long never holds on to a large block), or None."""
    best = None
    for block in blocks:
        if nbytes <= block.nbytes <= 2 * nbytes and _refs(block) <= _IDLE_REFS:
            if best is None or block.nbytes < best.nbytes:
                best = block
    return best


def _drop_idle(c):
    """Forget every idle block (the busy ones stay until they are idle too)."""
    busy = []
    for block in c.pool:
        if _refs(block) > _IDLE_REFS:
            busy.append(block)
    c.pool[:] = busy
    c.pool_bytes = sum(block.nbytes for block in busy)


def clear():
    """Drop every cached buffer and pooled output array of this thread."""
    c = _cache()
    c.buffers.clear()
    c.nbytes = 0
    c.pool.clear()
    c.pool_bytes = 0
