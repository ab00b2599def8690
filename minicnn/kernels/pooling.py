"""Pooling's compiled twins: max and average pooling, forward and backward, as loop nests.

Each kernel makes one pass over memory where the textbook (``minicnn/ops/pooling.py``) makes a
few per kernel offset: the forward reads each window once and writes its result (and, for max
pooling, its arg-max) once; the backward zeroes one (n, c) plane of dx and adds the gradient of
each window into it while the plane is in the cache. The padding is folded in (a position outside
the input is skipped), so nothing is padded or cropped. ``prange`` runs the (n, c) planes in
parallel: each plane belongs to one thread, so the ``+=`` of overlapping windows cannot race.
Adaptive average pooling has no twin (its averaging matrices are BLAS GEMMs already).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minicnn.kernels import twin
from minicnn.ops import pooling as textbook
from minicnn.ops._geometry import PoolGeometry

LOOP_DTYPES = (np.float32, np.float64)  # the dtypes the loops are compiled for


@njit(parallel=True, cache=True)
def max_pool2d_forward_loops(x, KH, KW, sh, sw, ph, pw, dh, dw, out, arg):
    """Equals ``ops.pooling.max_pool2d_forward`` (bit for bit, arg-max included): PyTorch's scan of
    each window from its first pixel inside the input, replacing the maximum by a strictly greater
    value or a NaN. Written as its two outcomes: the first strict maximum, or, in a window that holds
    a NaN (rare: noticed on the way, then a second look), the last NaN. (Why: one comparison per
    pixel on the common path instead of "greater or NaN" measured faster.) Fills ``out`` and ``arg``."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for oh in range(OH):
            i0 = 0  # the window's first kernel row inside the input
            while oh * sh - ph + i0 * dh < 0:
                i0 += 1
            for ow in range(OW):
                j0 = 0  # ... and its first kernel column inside the input
                while ow * sw - pw + j0 * dw < 0:
                    j0 += 1
                best = x.dtype.type(-np.inf)
                at = i0 * KW + j0
                has_nan = False
                for i in range(i0, KH):  # the window's pixels inside the input, row by row
                    h = oh * sh - ph + i * dh
                    if h >= H:
                        break
                    for j in range(j0, KW):
                        w = ow * sw - pw + j * dw
                        if w >= W:
                            break
                        v = x[n, c, h, w]
                        has_nan |= v != v
                        if v > best:  # strictly greater: ties keep the first maximum
                            best = v
                            at = i * KW + j
                if has_nan:  # a NaN replaces anything, so the window's last NaN wins
                    for i in range(i0, KH):
                        h = oh * sh - ph + i * dh
                        if h >= H:
                            break
                        for j in range(j0, KW):
                            w = ow * sw - pw + j * dw
                            if w >= W:
                                break
                            if x[n, c, h, w] != x[n, c, h, w]:
                                best = x[n, c, h, w]
                                at = i * KW + j
                out[n, c, oh, ow] = best
                arg[n, c, oh, ow] = at


@njit(parallel=True, cache=True)
def max_pool2d_backward_loops(grad, arg, KH, KW, sh, sw, ph, pw, dh, dw, dx):
    """Equals ``ops.pooling.max_pool2d_backward``: each window's gradient is added to the pixel that
    won it. (Bit for bit unless a pixel won three or more overlapping windows: the textbook adds
    them kernel offset by kernel offset, this loop window by window.) Fills ``dx`` (N, C, H, W).
    The winner's offset a = i*KW + j becomes a row and a column through two small tables made once,
    rather than a // KW and a % KW per window (an integer division per window: the tables measured
    about 25% faster on the models' 2x2 pooling)."""
    N, C, H, W = dx.shape
    OH, OW = grad.shape[2], grad.shape[3]
    row = np.empty(KH * KW, dtype=np.int64)  # offset a = i*KW + j -> i*dh and j*dw
    col = np.empty(KH * KW, dtype=np.int64)
    for i in range(KH):
        for j in range(KW):
            row[i * KW + j] = i * dh
            col[i * KW + j] = j * dw
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for h in range(H):
            for w in range(W):
                dx[n, c, h, w] = 0
        for oh in range(OH):
            for ow in range(OW):
                a = arg[n, c, oh, ow]
                h = oh * sh - ph + row[a]
                w = ow * sw - pw + col[a]
                if 0 <= h < H and 0 <= w < W:  # (a window with no pixel inside the input has none)
                    dx[n, c, h, w] += grad[n, c, oh, ow]


@njit(parallel=True, cache=True)
def max_pool2d_2x2_forward_loops(x, out, arg):
    """Equals ``ops.pooling.max_pool2d_forward`` (bit for bit, arg-max included) for 2x2 windows with
    stride 2, no padding, dilation 1, every window inside the input: the models' pooling. PyTorch's
    scan (from -inf, a pixel replaces the maximum when strictly greater or NaN, in row-major window
    order) written, as in ``max_pool2d_forward_loops``, as its two outcomes: the first strict maximum
    of the four pixels (offsets 0 = (0, 0), 1 = (0, 1), 2 = (1, 0), 3 = (1, 1)), or, in a window that
    holds a NaN, the last NaN. (Starting from the first pixel equals starting from -inf: -inf > -inf
    is false, and the arg-max is 0 either way.) Fills ``out`` and ``arg``.

    Why this form: each ``if v > best`` is a plain "greater than" select, which LLVM compiles without
    branches (a packed max and blend in a vectorised row, ``maxss`` and ``cmov`` in scalar code); the
    NaN test is one rarely taken branch per window. Written as the scan's "greater or NaN" it was a
    branch per pixel in AVX2 code, mispredicted on real data: MNIST's pools 4-5x, CIFAR's first two 4-12x
    slower on AVX2 code (docs/kernels.md). Why a kernel of its own: with the window's size known, the
    loop body is straight-line code; the general kernel's loops with run-time bounds measured 2-5x slower."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for oh in range(OH):
            h = 2 * oh
            for ow in range(OW):
                w = 2 * ow
                v0 = x[n, c, h, w]
                v1 = x[n, c, h, w + 1]
                v2 = x[n, c, h + 1, w]
                v3 = x[n, c, h + 1, w + 1]
                best = v0  # the first strict maximum
                at = 0
                if v1 > best:
                    best = v1
                    at = 1
                if v2 > best:
                    best = v2
                    at = 2
                if v3 > best:
                    best = v3
                    at = 3
                if (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3):  # a NaN: the last one wins
                    if v0 != v0:
                        best = v0
                        at = 0
                    if v1 != v1:
                        best = v1
                        at = 1
                    if v2 != v2:
                        best = v2
                        at = 2
                    if v3 != v3:
                        best = v3
                        at = 3
                out[n, c, oh, ow] = best
                arg[n, c, oh, ow] = at


def is_2x2(g):
    """Whether the pooling geometry ``g`` is the one of ``max_pool2d_2x2_forward_loops``. (Its backward
    is the general kernel's: a 2x2 version measured only 10-30 % faster, not worth a second kernel.)"""
    return (g.kernel == (2, 2) and g.stride == (2, 2) and g.padding == (0, 0) and g.dilation == (1, 1)
            and 2 * g.OH <= g.H and 2 * g.OW <= g.W)  # fmt: skip


@njit(parallel=True, cache=True)
def avg_pool2d_forward_loops(x, KH, KW, sh, sw, ph, pw, div, out):
    """Equals ``ops.pooling.avg_pool2d_forward``: the sum of each window's pixels inside the input
    (the zero padding adds nothing), in the same order, divided by ``div`` (OH, OW). Fills ``out``."""
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for oh in range(OH):
            for ow in range(OW):
                total = x.dtype.type(0)
                for i in range(KH):
                    h = oh * sh - ph + i
                    if 0 <= h < H:
                        for j in range(KW):
                            w = ow * sw - pw + j
                            if 0 <= w < W:
                                total += x[n, c, h, w]
                out[n, c, oh, ow] = total / div[oh, ow]


@njit(parallel=True, cache=True)
def avg_pool2d_backward_loops(grad, KH, KW, sh, sw, ph, pw, div, dx):
    """Equals ``ops.pooling.avg_pool2d_backward``: every pixel of a window inside the input receives
    g / div from it (bit for bit unless three or more windows overlap on a pixel). Fills ``dx``."""
    N, C, H, W = dx.shape
    OH, OW = grad.shape[2], grad.shape[3]
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        for h in range(H):
            for w in range(W):
                dx[n, c, h, w] = 0
        for oh in range(OH):
            for ow in range(OW):
                share = grad[n, c, oh, ow] / div[oh, ow]
                for i in range(KH):
                    h = oh * sh - ph + i
                    if 0 <= h < H:
                        for j in range(KW):
                            w = ow * sw - pw + j
                            if 0 <= w < W:
                                dx[n, c, h, w] += share


@twin(textbook.MaxPool2d)
class MaxPool2d(textbook.MaxPool2d):
    """``ops.pooling.MaxPool2d`` by the compiled loops."""

    def forward(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, indices_out=None):
        self.loops = x.dtype in LOOP_DTYPES
        if not self.loops:  # (float16: no compiled loops; the textbook's code)
            return super().forward(x, kernel_size, stride, padding, dilation, ceil_mode, indices_out)
        g = self.g = PoolGeometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        out = np.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)
        self.arg = np.empty((g.N, g.C, g.OH, g.OW), dtype=np.int32)
        if is_2x2(g):
            max_pool2d_2x2_forward_loops(np.ascontiguousarray(x), out, self.arg)
        else:
            max_pool2d_forward_loops(np.ascontiguousarray(x), *g.loop_args(), out, self.arg)
        if indices_out is not None:
            indices_out.append(textbook.flat_indices(self.arg, g))
        return out

    def backward(self, grad_output):
        if not self.loops:
            return super().backward(grad_output)
        g = self.g
        dx = np.empty((g.N, g.C, g.H, g.W), dtype=grad_output.dtype)
        max_pool2d_backward_loops(np.ascontiguousarray(grad_output), self.arg, *g.loop_args(), dx)
        return dx


@twin(textbook.AvgPool2d)
class AvgPool2d(textbook.AvgPool2d):
    """``ops.pooling.AvgPool2d`` by the compiled loops."""

    def forward(self, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):  # fmt: skip
        self.loops = x.dtype in LOOP_DTYPES
        if not self.loops:  # (float16: no compiled loops; the textbook's code)
            return super().forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                   divisor_override)
        g = self.g = PoolGeometry("avg_pool2d", x.shape, kernel_size, stride, padding, 1, ceil_mode)
        self.div = textbook.divisor(g, count_include_pad, divisor_override, np, x.dtype)
        out = np.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)
        avg_pool2d_forward_loops(np.ascontiguousarray(x), *g.loop_args()[:6], self.div, out)
        return out

    def backward(self, grad_output):
        if not self.loops:
            return super().backward(grad_output)
        g = self.g
        dx = np.empty((g.N, g.C, g.H, g.W), dtype=grad_output.dtype)
        avg_pool2d_backward_loops(np.ascontiguousarray(grad_output), *g.loop_args()[:6], self.div, dx)
        return dx
