"""The convolutions' GEMMs, a batch of small products shared out over threads, one BLAS thread each.
(The same worker threads run the Winograd passes: ``loop_shares``.)

A convolution's GEMMs come as a batch of small products: the im2col twin multiplies each sample's
columns, ``(O, C*9) @ (C*9, OH*OW)``, and Winograd one product per transform position. NumPy's
``matmul`` hands BLAS one product at a time, and OpenBLAS splits each small product over its
threads; on such sizes they wait for each other more than they work. Here the batch itself is
split: each thread takes a contiguous share of the products and runs them with a one-thread BLAS.
NumPy releases the GIL inside ``matmul``, so the shares run at the same time. Measured on the
2-core machine of docs/benchmarks.md (MNIST conv2's forward GEMM, 64 products (64, 288) @ (288,
196)): 3.57 ms with OpenBLAS's two threads in each product, 2.56 ms split here (docs/kernels.md).

``matmul``'s result is ``np.matmul``'s, bit for bit: every product is the same BLAS call on the
same operands. ``matmul2d`` (one product split into blocks of rows or columns) and
``sum_of_products`` (the shares' sums added at the end) agree with it to rounding.

The BLAS thread count is process-wide, so for the length of a call it is 1 in every BLAS library
of the process (threadpoolctl, which NumPy's and scikit-learn's users know, finds them), and the
count the user had comes back afterwards. The number of shares is that count: a user who limits
BLAS (``OPENBLAS_NUM_THREADS=1``, ``threadpool_limits``) limits this too. Without threadpoolctl,
or where it finds no BLAS, every call is a plain ``np.matmul``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SPLIT = os.environ.get("MINICNN_GEMM_SPLIT", "1") != "0"  # "0": plain np.matmul (BLAS's threads), to measure


class _Shares:
    """The BLAS libraries' controllers (found once) and the worker threads (made once)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.controllers = None  # threadpoolctl's controllers of the loaded BLAS libraries
        self.pool = None
        self.pool_size = 0
        self.depth = 0  # calls in progress (several user threads may run convolutions at once)
        self.saved = None  # the BLAS thread counts to restore when the last call ends

    def reset(self):  # in a forked child: the parent's worker threads do not exist there
        self.__init__()

    def _find(self):
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return []
        return list(ThreadpoolController().select(user_api="blas").lib_controllers)

    def begin(self) -> int:
        """Set BLAS to one thread and return how many shares to make (1: don't split)."""
        with self.lock:
            if self.controllers is None:
                self.controllers = self._find()
            if not self.controllers:
                return 1
            if self.depth == 0:
                self.saved = [c.num_threads for c in self.controllers]
                if max(self.saved) <= 1:
                    return 1
                for c in self.controllers:
                    c.set_num_threads(1)
            self.depth += 1
            threads = max(self.saved)
            self._ensure_pool(threads)
            return threads

    def _ensure_pool(self, threads):  # (called with the lock held)
        if self.pool_size < threads:
            if self.pool is not None:
                self.pool.shutdown(wait=False)
            self.pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="minicnn-gemm")
            self.pool_size = threads

    def pool_for(self, threads):
        with self.lock:
            self._ensure_pool(threads)
            return self.pool

    def end(self):
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                for c, n in zip(self.controllers, self.saved):
                    c.set_num_threads(n)


_shares = _Shares()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_shares.reset)


def _in_shares(count: int, threads: int, pool, job) -> list:
    """``[job(lo, hi) for each share]``: [0, count) in ``threads`` contiguous shares, the calling
    thread taking the first, the pool's threads the others."""
    bounds = [count * t // threads for t in range(threads + 1)]
    futures = [pool.submit(job, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    first = job(bounds[0], bounds[1])
    return [first] + [f.result() for f in futures]


def _run(count: int, job) -> list:
    """``[job(lo, hi) for each share]``: the products [0, count) in contiguous shares, one per BLAS
    thread the user has, each share's BLAS on one thread."""
    threads = _shares.begin() if SPLIT and count > 1 else 1
    if threads == 1:
        return [job(0, count)]
    try:
        return _in_shares(count, threads, _shares.pool, job)
    finally:
        _shares.end()


def loop_shares(count: int, job) -> list:
    """``[job(lo, hi) for each share]`` for a compiled loop that releases the GIL (``nogil=True``):
    [0, count) in as many shares as Numba has threads (``numba.get_num_threads()``), on the same
    worker threads as the GEMM shares. (For the Winograd passes, kernels/winograd.py: a serial
    kernel run this way compiles in 40 % of the time of the same loop under ``prange``.)"""
    import numba

    threads = min(count, numba.get_num_threads())
    if threads <= 1:
        return [job(0, count)]
    return _in_shares(count, threads, _shares.pool_for(threads), job)


def matmul(a, b, out):
    """``np.matmul(a, b, out=out)`` for ``b`` (B, ...) and ``out`` (B, ...) stacked along their first
    axis; ``a`` is stacked the same way or broadcast (no leading batch axis of size B)."""
    stacked = a.ndim == b.ndim and a.shape[0] == b.shape[0]

    def job(lo, hi):
        if lo < hi:
            np.matmul(a[lo:hi] if stacked else a, b[lo:hi], out=out[lo:hi])

    _run(b.shape[0], job)
    return out


def matmul2d(a, b, out=None):
    """``np.matmul(a, b, out=out)`` for 2-D ``a`` (M, K) and ``b`` (K, N): the rows of the product
    shared out over threads, or its columns when it has more of those. Equal to ``np.matmul`` to
    rounding, not always bit for bit: for a block of rows or columns OpenBLAS may pick other kernels
    (its small-matrix ones), which add in another order."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    by_rows = a.shape[0] >= b.shape[1]

    def job(lo, hi):
        if lo < hi:
            if by_rows:
                np.matmul(a[lo:hi], b, out=out[lo:hi])
            else:
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

    _run(a.shape[0] if by_rows else b.shape[1], job)
    return out


def sum_of_products(a, b):
    """``sum over n of a[n] @ b[n]`` (as ``np.matmul(a, b).sum(0)``, without the stack of products):
    each thread sums its share one product at a time, then the shares' sums are added."""

    def job(lo, hi):
        stack = np.broadcast_shapes(a.shape[1:-2], b.shape[1:-2])
        total = np.zeros(stack + (a.shape[-2], b.shape[-1]), a.dtype)
        product = np.empty_like(total)
        for n in range(lo, hi):
            total += np.matmul(a[n], b[n], out=product)
        return total

    shares = _run(a.shape[0], job)
    total = shares[0]
    for s in shares[1:]:
        total += s
    return total
