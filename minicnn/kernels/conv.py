"""conv2d's compiled twin: im2col and col2im as loop nests, the GEMMs in BLAS as in the textbook.

``Conv2d`` below is ``minicnn.ops.conv.Conv2d`` with its two data movements, ``im2col`` and
``col2im``, replaced by the loops a textbook writes before it vectorises. They read and write the
(N, C, H, W) arrays directly and fold the zero padding in (an index outside the input reads 0,
and a gradient that falls there is not written): no padded copy of the input or of the gradient.
The columns keep the textbook's per-sample layout (N, C*KH*KW, OH*OW), so the forward GEMM
(batched over samples and groups) writes the (N, O, OH, OW) output where it belongs, and the
backward reads the upstream gradient where it is: no transposed copies. When the weight needs a
gradient, the forward's columns are kept for it if they are no larger than malloc's mmap threshold
(``KEEP_COLUMNS``); otherwise backward rebuilds them.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from minicnn._memory import MMAP_THRESHOLD
from minicnn.kernels import gemm, twin, winograd
from minicnn.ops import conv as textbook
from minicnn.ops._geometry import ConvGeometry


@njit(parallel=True, cache=True)
def im2col_loops(x, KH, KW, sh, sw, dh, dw, top, left, cols):
    """Equals ``ops.conv.im2col``: cols[n, (c, i, j), oh, ow] = x[n, c, h, w] with
    h = oh*sh + i*dh - top, w = ow*sw + j*dw - left, and 0 where (h, w) falls in the padding.
    Fills ``cols`` (N, C*KH*KW, OH, OW)."""
    N, C, H, W = x.shape
    OH, OW = cols.shape[2], cols.shape[3]
    for nc in prange(N * C):  # each (sample, channel) fills its own KH*KW rows
        n, c = nc // C, nc % C
        for i in range(KH):
            for j in range(KW):
                k = (c * KH + i) * KW + j
                for oh in range(OH):
                    h = oh * sh + i * dh - top
                    for ow in range(OW):
                        w = ow * sw + j * dw - left
                        if 0 <= h < H and 0 <= w < W:
                            cols[n, k, oh, ow] = x[n, c, h, w]
                        else:
                            cols[n, k, oh, ow] = 0


@njit(parallel=True, cache=True)
def col2im_loops(dcols, KH, KW, sh, sw, dh, dw, top, left, dx):
    """Equals ``ops.conv.col2im`` (bit for bit: each pixel adds its gradients in the same order,
    kernel offset by kernel offset): dx[n, c, h, w] = sum of dcols[n, (c, i, j), oh, ow] over the
    (i, j, oh, ow) with oh*sh + i*dh - top = h and ow*sw + j*dw - left = w. Fills ``dx`` (N, C, H, W).

    Written row by row: for a kernel offset (i, j), the ``ow`` whose ``w`` falls inside the image
    form one range [ow_lo, ow_hi), found once, so the inner loop is a plain add of a row of dcols
    into a row of dx (contiguous for stride 1), with no test per element. Its two indices are
    unsigned: Numba adds a "negative index counts from the end" check to every signed index it
    cannot prove >= 0, and that check keeps LLVM from vectorising the loop; here they are >= 0 by
    construction. (Why: the loop with an ``if 0 <= w < W`` per element vectorised only with masked
    loads and stores, 2-3x slower on AVX2 machines; docs/kernels.md.)"""
    N, C, H, W = dx.shape
    OH, OW = dcols.shape[2], dcols.shape[3]
    for nc in prange(N * C):  # each (sample, channel) plane belongs to one thread: the += cannot race
        n, c = nc // C, nc % C
        for h in range(H):
            for w in range(W):
                dx[n, c, h, w] = 0
        for i in range(KH):
            for j in range(KW):
                k = (c * KH + i) * KW + j
                w0 = j * dw - left  # w = ow*sw + w0
                ow_lo = 0  # the first ow with w >= 0 ...
                while ow_lo < OW and ow_lo * sw + w0 < 0:
                    ow_lo += 1
                ow_hi = OW  # ... and one past the last with w < W
                while ow_hi > ow_lo and (ow_hi - 1) * sw + w0 >= W:
                    ow_hi -= 1
                for oh in range(OH):
                    h = oh * sh + i * dh - top
                    if 0 <= h < H:
                        for ow in range(ow_lo, ow_hi):
                            dx[n, c, h, np.uint64(ow * sw + w0)] += dcols[n, k, oh, np.uint64(ow)]


@njit(parallel=True, cache=True)
def add_bias_loops(out, bias):
    """Equals the textbook's ``out += bias.reshape(O, 1, 1)`` (bit for bit: one addition per element)
    for ``out`` (N, O, L). (Why a loop: NumPy's broadcast add measured 4-5x slower on these shapes,
    e.g. (128, 32, 1024) float32: 2.0 vs 0.48 ms.)"""
    N, O, L = out.shape
    for no in prange(N * O):  # one (sample, channel) plane per iteration
        n, o = no // O, no % O
        b = bias[o]
        for i in range(L):
            out[n, o, i] += b


class _Columns(threading.local):
    """The one reused buffer of this module: the columns of one conv2d call (im2col's output in
    forward; dcols, then im2col's output, in backward). They never leave the call, so the buffer
    is free again when the call returns; one per thread. It grows to the largest size asked and
    is kept, because a fresh array of this size (9x the input for 3x3 kernels, tens of MB) costs
    a page fault per 4 KiB page on every call (docs/kernels.md). ``clear()`` frees it."""

    buffer = None

    def get(self, shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if self.buffer is None or self.buffer.nbytes < nbytes:
            self.buffer = None  # free the old one first
            self.buffer = np.empty(nbytes, dtype=np.uint8)
        return self.buffer[:nbytes].view(dtype).reshape(shape)

    def clear(self):
        self.buffer = None


LOOP_DTYPES = (np.float32, np.float64)  # the dtypes the loops are compiled for
columns = _Columns()
REUSE_COLUMNS = True  # False: a fresh array per call instead (to measure what the buffer saves)
# Training: the forward's columns are kept for the weight gradient when they come from malloc's heap
# (at most M_MMAP_THRESHOLD bytes, minicnn/_memory.py), so backward does not rebuild them. Larger
# ones would come from mmap and fault on every call: backward rebuilds those in the reused buffer.
KEEP_COLUMNS = True  # False: always rebuild (to measure what keeping saves)
KEEP_MAX = MMAP_THRESHOLD


def im2col(x, g, keep=False):
    """``ops.conv.im2col`` by the compiled loops: cols (N, C*KH*KW, OH*OW), in the reused buffer
    (``keep=True``: in a fresh array, which the caller may keep)."""
    shape = (g.N, g.C * g.KH * g.KW, g.OH, g.OW)
    cols = columns.get(shape, x.dtype) if REUSE_COLUMNS and not keep else np.empty(shape, x.dtype)
    im2col_loops(np.ascontiguousarray(x), g.KH, g.KW, *g.stride, *g.dilation, g.pads[0], g.pads[2], cols)
    return cols.reshape(g.N, g.C * g.KH * g.KW, g.OH * g.OW)


def col2im(dcols, g):
    """``ops.conv.col2im`` by the compiled loops: dx (N, C, H, W)."""
    dx = np.empty((g.N, g.C, g.H, g.W), dtype=dcols.dtype)
    d = np.ascontiguousarray(dcols).reshape(g.N, g.C * g.KH * g.KW, g.OH, g.OW)
    col2im_loops(d, g.KH, g.KW, *g.stride, *g.dilation, g.pads[0], g.pads[2], dx)
    return dx


@twin(textbook.Conv2d)
class Conv2d(textbook.Conv2d):
    """``ops.conv.Conv2d`` with compiled im2col and col2im; the same GEMMs."""

    def forward(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        self.loops = x.dtype in LOOP_DTYPES
        if not self.loops:  # (float16: no compiled loops; the textbook's code)
            return super().forward(x, weight, bias, stride, padding, dilation, groups)
        textbook.check_dtypes(x, weight, bias)
        g = ConvGeometry(x.shape, weight.shape, None if bias is None else bias.shape,
                         stride, padding, dilation, groups)  # fmt: skip
        self.x, self.weight, self.g, self.has_bias = x, weight, g, bias is not None
        # 3x3, stride 1, padding 1 with enough channels: Winograd (kernels/winograd.py, docs/kernels.md)
        self.winograd = winograd.choose(g, x.dtype)
        keep = KEEP_COLUMNS and self.needs_input_grad[1]
        done = winograd.forward(x, weight, bias, g, self.winograd, keep) if self.winograd else None
        if done is not None:  # (None: inf or NaN in x or the weight; im2col spreads them as PyTorch)
            out, self.winograd_U, self.winograd_V = done
            return out
        self.winograd = 0
        G, L = g.groups, g.OH * g.OW
        nbytes = g.N * g.C * g.KH * g.KW * L * x.itemsize
        keep = KEEP_COLUMNS and self.needs_input_grad[1] and nbytes <= KEEP_MAX  # for dW (see KEEP_COLUMNS)
        cols = im2col(x, g, keep).reshape(g.N, G, g.K, L)
        self.cols = cols if keep else None
        wm = weight.reshape(G, g.O // G, g.K)
        out = np.empty((g.N, G, g.O // G, L), dtype=x.dtype)
        gemm.matmul(wm, cols, out)  # one GEMM per sample and group, the samples shared out over threads
        out = out.reshape(g.N, g.O, L)
        if bias is not None:
            add_bias_loops(out, bias)
        return out.reshape(g.N, g.O, g.OH, g.OW)

    def backward(self, grad_output):
        if not self.loops:
            return super().backward(grad_output)
        g = self.g
        if self.winograd:
            n = self.needs_input_grad
            U, V = self.winograd_U, self.winograd_V
            done = winograd.backward(self.x, U, V, grad_output, g, self.winograd, n[0], n[1])
            if done is not None:  # (None: inf or NaN in grad_output: the im2col path below)
                db = None
                if self.has_bias and n[2]:
                    db = np.einsum("nol->o", grad_output.reshape(g.N, g.O, -1))
                return done[0], done[1], db
        self.cols = getattr(self, "cols", None)
        G, L = g.groups, g.OH * g.OW
        gm = np.ascontiguousarray(grad_output).reshape(g.N, G, g.O // G, L)
        dx = dw = db = None
        if self.needs_input_grad[0]:
            wm = self.weight.reshape(G, g.O // G, g.K)
            shape = (g.N, G, g.K, L)
            dcols = columns.get(shape, gm.dtype) if REUSE_COLUMNS else np.empty(shape, gm.dtype)
            gemm.matmul(wm.swapaxes(1, 2), gm, dcols)  # dcols[n] = Wm^T @ g[n]
            dx = col2im(dcols, g)
        if self.needs_input_grad[1]:
            cols = self.cols
            if cols is None:  # rebuilt (after col2im: in the same buffer)
                cols = im2col(self.x, g).reshape(g.N, G, g.K, L)
            # dWm^T = sum_n cols[n] @ g[n]^T, one sample at a time into one small sum (this orientation,
            # and no (N, O, K) array of products as in the textbook, measured faster)
            dwT = gemm.sum_of_products(cols, gm.swapaxes(2, 3))
            dw = dwT.swapaxes(1, 2).reshape(self.weight.shape)
        if self.has_bias and self.needs_input_grad[2]:
            db = np.einsum("nol->o", grad_output.reshape(g.N, g.O, L))  # the sum over N, OH, OW
        return dx, dw, db
