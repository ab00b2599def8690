"""Winograd convolution for 3x3 kernels, stride 1, padding 1: the conv2d twin's fast algorithm.

Equals ``ops.conv.Conv2d`` (forward, input gradient, weight gradient) to rounding, not bit for bit:
the derivation, the transform matrices, the adjoints used in backward and the float32 error of each
tile size are in docs/backprop/winograd.md. ``kernels/conv.py`` asks ``choose`` which algorithm a
call gets (docs/kernels.md: the rule and the measurements behind it).

F(m x m, 3x3) cuts the output into m x m tiles. Output tile (th, tw) reads the (m+2) x (m+2) input
tile d whose top-left corner is padded pixel (m*th, m*tw), and with a = m + 2:

    U[xi, o, c] = (G g[o, c] G^T)[k, l]           filter transform, xi = a*k + l   (a*a, O, C)
    V[xi, c, t] = (B^T d[n, c, tile] B)[k, l]       input transform, t = (n, th, tw)  (a*a, C, T)
    M[xi]       = U[xi] @ V[xi]                      a*a GEMMs (O, C) @ (C, T): the channel sums
    y[n, o, tile] = A^T M[:, o, t] A                 output transform (+ bias), cropped at the border

Backward runs the same steps transposed (the adjoint of each linear map):

    dM[:, o, t] = A dy[n, o, tile] A^T              (the output transform's adjoint)
    dV[xi] = U[xi]^T @ dM[xi]  ->  dx += B dV B^T   (each input tile's gradient added where it was read)
    dU[xi] = dM[xi] @ V[xi]^T  ->  dW = G^T dU G    (summed over all tiles in the GEMM, then brought back)

The passes over memory are two loop nests compiled by Numba, shared by both tile sizes:
``tiles_to_transformed`` (the input transform, and backward's transposed output transform) and
``transformed_to_tiles`` (the output transform, and backward's transposed input transform). Each
``prange`` iteration owns one channel of a block of samples (nothing to merge, no race in
backward's overlapping adds), gathers its tiles tile-major, and applies the 1-D transform matrices
as sums of scaled rows along the tiles (unit stride: it vectorises). The filter transforms are
tiny (O*C*9 numbers) and run in NumPy in float64. The GEMMs are NumPy's ``matmul`` (BLAS).
"""

from __future__ import annotations

import os
import threading

import numpy as np
from numba import njit

from minicnn._memory import MMAP_THRESHOLD
from minicnn.kernels import gemm

# ---------------------------------------------------------------------------- the transform matrices
# Points 0, 1, -1 (F(2,3)) and 0, 1, -1, 2, -2 (F(4,3)), plus "infinity" (Lavin & Gray 2016).
# The passes get B^T, B, A^T, A in the data's dtype (small integers: exact); the filter transforms
# use G in float64.
BT = {
    2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64),
    4: np.array(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        dtype=np.float64,
    ),
}
G = {
    2: np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64),
    4: np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        dtype=np.float64,
    ),
}
AT = {
    2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64),
    4: np.array(
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=np.float64
    ),
}


# ---------------------------------------------------------------------------- which algorithm
# False (or MINICNN_WINOGRAD=0 in the environment): every conv2d runs the im2col twin, whose results
# equal the textbook's bit for bit (to compare, or to debug)
ENABLED = os.environ.get("MINICNN_WINOGRAD", "1").strip() != "0"
LOOP_DTYPES = (np.float32, np.float64)


def choose(g, dtype):
    """The Winograd tile size m (``TILE``: 4, or 2) for this call, or 0 for the im2col twin.

    Only 3x3 kernels, stride 1, padding 1 on every side, dilation 1, groups 1, float32/float64, and
    only where it measured faster than im2col (docs/kernels.md): at least ``MIN_CHANNELS`` input
    channels and images at least ``MIN_SIZE`` pixels on a side."""
    if not ENABLED or dtype not in LOOP_DTYPES or g.N == 0:
        return 0
    if (g.KH, g.KW) != (3, 3) or g.stride != (1, 1) or g.dilation != (1, 1) or g.groups != 1:
        return 0
    if tuple(g.pads) != (1, 1, 1, 1):
        return 0
    if g.C < MIN_CHANNELS or min(g.H, g.W) < MIN_SIZE:
        return 0
    return TILE


# The rule, measured on 2 cores (docs/kernels.md), F(4x4) against im2col, forward + backward, after
# the GEMMs were shared out over threads (kernels/gemm.py) and the passes' indices made unsigned (so
# they vectorise): F(4x4) faster on every layer with 16 or more input channels that was measured,
# from C*O/(C+O) = 5 ((128, 16, 32, 32) -> 8: 21-22 vs 32-36 ms) to 128 ((32, 256, 8, 8) -> 256:
# 21-22 vs 52-54 ms), at batch 2-128 and on 4x4 to 32x32 images; level at batch 1 and on 2x2 images.
# im2col stays much faster on the first layers (1 and 3 input channels: 2.4 vs 11.3 ms on MNIST
# conv1). (Before those two changes the passes ran at 2-8 GB/s and F(4x4) won only at C*O/(C+O) >= 32
# with N*H*W >= 4096.) F(2x2) is slower than F(4x4) everywhere, but its float32 error is 10x smaller
# (docs/backprop/winograd.md): TILE = 2 selects it for the same layers.
TILE = 4
MIN_CHANNELS = 16
MIN_SIZE = 4


# ---------------------------------------------------------------------------- the two passes
# Two compiled kernels serve both tile sizes and all four transforms (a few kernels compile in a few
# seconds; eight explicit-add kernels took over 10 s of the cold start, docs/kernels.md). They are
# serial loops over a range of iterations that release the GIL, run in shares on minicnn's worker
# threads (``gemm.loop_shares``): the same loops under ``prange`` took 7.7 s to compile, these 3.1 s
# (the cold first step of the MNIST CNN, docs/kernels.md). Each iteration takes one channel plane of
# a block of samples, and works in "tile-major" order:
# d[i, j, t] is pixel (i, j) of tile t, so every transform is a loop over the block's tiles with
# unit-stride loads and stores (it vectorises), and a row V[xi, c, t0:t1] is written contiguously.
# A 1-D transform is a small matrix L applied as a sum of scaled rows, zero coefficients skipped.
def _blocks(N, H, W, m):
    """(B, nblocks): the passes take B samples at a time (about 512 tiles), in nblocks blocks."""
    P = (-(-H // m)) * (-(-W // m))
    B = max(1, min(N, 512 // P))
    return B, -(-N // B)


def tiles_to_transformed(src, L, m, off, dst):
    """dst[a*k + l, x, t] = (L d L^T)[k, l] for the r x r tile d of plane src[n, x] whose top-left
    pixel is (m*th - off, m*tw - off) (zero outside the plane), t = (n, th, tw); L is (a, r).
    Input transform: L = B^T (a x a), off = 1 (the padding). Upstream-gradient transform (the adjoint
    of the output transform): L = A (a x m), off = 0. Returns the number of non-finite values in src
    (the caller then takes the im2col path)."""
    N, X, H, W = src.shape
    B, nblocks = _blocks(N, H, W, m)

    def share(lo, hi):
        return tiles_to_transformed_loops(src, L, m, off, dst, B, lo, hi)

    return sum(gemm.loop_shares(X * nblocks, share))


@njit(cache=True, nogil=True)
def tiles_to_transformed_loops(src, L, m, off, dst, B, it0, it1):
    """``tiles_to_transformed`` for iterations [it0, it1): iteration it is channel it // nblocks of
    the block of B samples starting at (it % nblocks) * B."""
    N, X, H, W = src.shape
    a, r = L.shape
    TH, TW = (H + m - 1) // m, (W + m - 1) // m
    P = TH * TW
    nblocks = (N + B - 1) // B
    bad = 0
    for it in range(it0, it1):  # one channel of a block of samples: writes dst[:, x, its tiles]
        x, n0 = it // nblocks, (it % nblocks) * B
        n1 = min(N, n0 + B)
        BP = (n1 - n0) * P
        Hp, Wp = m * TH + r - m, m * TW + r - m
        planes = np.zeros((n1 - n0) * Hp * Wp, src.dtype)  # the block's planes, zero border and overhang
        corner = np.empty(BP, np.int64)  # where each tile's top-left pixel is in ``planes``
        d = np.empty((r, r, BP), src.dtype)
        z = np.empty((a, r, BP), src.dtype)
        row = np.empty(BP, src.dtype)
        nonfinite = 0
        for n in range(n0, n1):
            base = (n - n0) * Hp * Wp
            for h in range(H):
                for w in range(W):
                    v = src[n, x, h, w]
                    nonfinite += not np.isfinite(v)
                    planes[np.uint64(base + (h + off) * Wp + w + off)] = v
            for th in range(TH):
                for tw in range(TW):
                    corner[(n - n0) * P + th * TW + tw] = base + m * th * Wp + m * tw
        bad += nonfinite
        for i in range(r):  # gather the (overlapping) tiles, tile-major: one loop over all the block's tiles
            for j in range(r):
                for t in range(BP):
                    d[i, j, t] = planes[np.uint64(corner[t] + i * Wp + j)]
        z[:] = 0
        for k in range(a):  # L down the columns of every tile: z[k, j] = sum_i L[k, i] d[i, j]
            for i in range(r):
                c = L[k, i]
                if c != 0:
                    for j in range(r):
                        for t in range(BP):
                            z[k, j, t] += c * d[i, j, t]
        for k in range(a):  # then along the rows: dst[a*k + l] = sum_j L[l, j] z[k, j]
            for l in range(a):
                row[:] = 0
                for j in range(r):
                    c = L[l, j]
                    if c != 0:
                        for t in range(BP):
                            row[t] += c * z[k, j, t]
                drow = dst[a * k + l, x, n0 * P : n0 * P + BP]
                for t in range(BP):
                    drow[t] = row[t]
    return bad


def transformed_to_tiles(src, L, m, off, bias, dst):
    """dst[n, x] = the sum over tiles t of (L S L^T) placed with its top-left pixel at
    (m*th - off, m*tw - off), cropped to the plane, plus bias[x]; S[k, l] = src[a*k + l, x, t] and L
    is (s, a). Output transform: L = A^T (m x a), off = 0 (the tiles tile the plane). Input-gradient
    transform (the adjoint of the input transform): L = B (a x a), off = 1, zero bias: the a x a tiles
    overlap by 2 pixels and add up, and what falls on the padding is dropped."""
    N, X, H, W = dst.shape
    B, nblocks = _blocks(N, H, W, m)

    def share(lo, hi):
        transformed_to_tiles_loops(src, L, m, off, bias, dst, B, lo, hi)

    gemm.loop_shares(X * nblocks, share)


@njit(cache=True, nogil=True)
def transformed_to_tiles_loops(src, L, m, off, bias, dst, B, it0, it1):
    """``transformed_to_tiles`` for iterations [it0, it1), as in ``tiles_to_transformed_loops``."""
    N, X, H, W = dst.shape
    s, a = L.shape
    TH, TW = (H + m - 1) // m, (W + m - 1) // m
    P = TH * TW
    nblocks = (N + B - 1) // B
    for it in range(it0, it1):  # one channel of a block of samples: the overlapping += in one thread
        x, n0 = it // nblocks, (it % nblocks) * B
        n1 = min(N, n0 + B)
        BP = (n1 - n0) * P
        f = np.zeros((a, s, BP), src.dtype)
        y = np.zeros((s, s, BP), src.dtype)
        Hp, Wp = m * TH + s - m, m * TW + s - m
        planes = np.zeros((n1 - n0) * Hp * Wp, src.dtype)  # the block's planes, uncropped
        corner = np.empty(BP, np.int64)  # where each tile's top-left pixel goes in ``planes``
        for n in range(n0, n1):
            for th in range(TH):
                for tw in range(TW):
                    corner[(n - n0) * P + th * TW + tw] = (n - n0) * Hp * Wp + m * th * Wp + m * tw
        for k in range(a):  # L along the rows of every tile: f[k, j] = sum_l L[j, l] S[k, l]
            for l in range(a):
                srow = src[a * k + l, x, n0 * P : n0 * P + BP]  # (a view: its index t is never negative)
                for j in range(s):
                    c = L[j, l]
                    if c != 0:
                        for t in range(BP):
                            f[k, j, t] += c * srow[t]
        for i in range(s):  # then down the columns: y[i, j] = sum_k L[i, k] f[k, j]
            for k in range(a):
                c = L[i, k]
                if c != 0:
                    for j in range(s):
                        for t in range(BP):
                            y[i, j, t] += c * f[k, j, t]
        for i in range(s):  # each tile added where it belongs: one loop over all the block's tiles
            for j in range(s):
                for t in range(BP):
                    planes[np.uint64(corner[t] + i * Wp + j)] += y[i, j, t]
        b = bias[x]
        for n in range(n0, n1):
            base = (n - n0) * Hp * Wp
            for h in range(H):  # cropped (and the padding's share dropped), plus the bias
                for w in range(W):
                    dst[n, x, h, w] = planes[np.uint64(base + (h + off) * Wp + w + off)] + b


# ---------------------------------------------------------------------------- filter transforms
# O*C small 3x3 -> a x a products, in float64, each rounded once to the weight's dtype. As loops: the
# same products as two NumPy ``tensordot`` calls, without their transposed copies (CIFAR conv3's
# filter transform took 0.94-0.99 ms that way, most of it copying).
@njit(cache=True)
def filter_transform_loops(w, Gm, U):
    """U[a*k + l, o, c] = (G w[o, c] G^T)[k, l] for every filter, summed in float64. (One output
    channel per iteration; the input channel innermost, so each row U[a*k + l, o, :] is written
    contiguously.)"""
    O, C = w.shape[0], w.shape[1]
    a = Gm.shape[0]
    for o in range(O):
        gw = np.zeros((a, 3, C))  # G w[o, c], float64
        for k in range(a):
            for i in range(3):
                g = Gm[k, i]
                if g != 0:
                    for j in range(3):
                        for c in range(C):
                            gw[k, j, c] += g * w[o, c, i, j]
        for k in range(a):
            for l in range(a):
                for c in range(C):
                    v = 0.0
                    for j in range(3):
                        v += gw[k, j, c] * Gm[l, j]
                    U[a * k + l, o, c] = v


@njit(cache=True)
def filter_transform_adjoint_loops(dU, Gm, dw):
    """dw[o, c] = G^T dU[:, o, c] G, dU[a*k + l, o, c] read as an a x a matrix; summed in float64.
    (One output channel per iteration; the input channel innermost, so dU is read row by row.)"""
    O, C = dw.shape[0], dw.shape[1]
    a = Gm.shape[0]
    for o in range(O):
        gd = np.zeros((3, a, C))  # G^T dU[:, o, c], float64
        for p in range(3):
            for k in range(a):
                g = Gm[k, p]
                if g != 0:
                    for l in range(a):
                        for c in range(C):
                            gd[p, l, c] += g * dU[a * k + l, o, c]
        for p in range(3):
            for q in range(3):
                for c in range(C):
                    v = 0.0
                    for l in range(a):
                        v += gd[p, l, c] * Gm[l, q]
                    dw[o, c, p, q] = v


def filter_transform(weight, m):
    """U (a*a, O, C) = G w[o, c] G^T for every filter, in float64, stored in the weight's dtype."""
    a = m + 2
    U = np.empty((a * a, *weight.shape[:2]), weight.dtype)
    filter_transform_loops(np.ascontiguousarray(weight), G[m], U)
    return U


def filter_transform_adjoint(dU, m):
    """dW (O, C, 3, 3) = G^T dU[:, o, c] G: the adjoint of ``filter_transform`` (float64 inside)."""
    dw = np.empty((*dU.shape[1:], 3, 3), dU.dtype)
    filter_transform_adjoint_loops(np.ascontiguousarray(dU), G[m], dw)
    return dw


# ---------------------------------------------------------------------------- buffers
class _Buffers(threading.local):
    """Two reused buffers per thread for one call's transformed arrays: slot 0 the input side
    (V or dV, (a*a, C, T)), slot 1 the output side (M or dM, (a*a, O, T)). They never leave the
    call. As for the im2col columns (kernels/conv.py), a fresh array of this size would fault on
    every page at every call; ``clear()`` frees them (``minicnn.empty_cache()``)."""

    def __init__(self):
        self.slots = [None, None]

    def get(self, slot, shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = self.slots[slot]
        if buf is None or buf.nbytes < nbytes:
            self.slots[slot] = None  # free the old one first
            buf = self.slots[slot] = np.empty(nbytes, dtype=np.uint8)
        return buf[:nbytes].view(dtype).reshape(shape)

    def clear(self):
        self.slots = [None, None]


buffers = _Buffers()


def _tiles(g, m):
    return g.N * (-(-g.H // m)) * (-(-g.W // m))


# ---------------------------------------------------------------------------- forward and backward
def _matrices(m, dtype):
    """B^T, B, A^T and A of F(m x m, 3x3) in the data's dtype (their entries are small integers: exact)."""
    key = (m, np.dtype(dtype))
    if key not in _MATRICES:
        mats = (BT[m], BT[m].T, AT[m], AT[m].T)
        _MATRICES[key] = tuple(np.ascontiguousarray(L, dtype=dtype) for L in mats)
    return _MATRICES[key]


_MATRICES = {}


def forward(x, weight, bias, g, m, keep=False):
    """conv2d(x, weight, bias, padding=1) by F(m x m, 3x3). Returns (out, U, V): V is the input
    transform, kept for the weight gradient when ``keep`` and it comes from malloc's heap (as the im2col
    twin keeps its columns), else None. Returns None when x or the weight holds inf or NaN:
    Winograd's transforms mix neighbouring pixels (inf - inf = NaN), so non-finite values would spread
    further than in PyTorch's convolution; the caller then takes the im2col path, which spreads them
    exactly as PyTorch does."""
    if not np.isfinite(weight).all():
        return None
    Bt, _, At, _ = _matrices(m, x.dtype)
    a2, T = (m + 2) ** 2, _tiles(g, m)
    U = filter_transform(weight, m)
    keep = keep and a2 * g.C * T * x.itemsize <= MMAP_THRESHOLD
    V = np.empty((a2, g.C, T), x.dtype) if keep else buffers.get(0, (a2, g.C, T), x.dtype)
    if tiles_to_transformed(np.ascontiguousarray(x), Bt, m, 1, V):  # V = B^T d B
        return None
    M = buffers.get(1, (a2, g.O, T), x.dtype)
    gemm.matmul(U, V, M)  # a*a GEMMs (O, C) @ (C, T), shared out over threads
    out = np.empty((g.N, g.O, g.H, g.W), dtype=x.dtype)
    b = np.zeros(g.O, x.dtype) if bias is None else np.ascontiguousarray(bias)
    transformed_to_tiles(M, At, m, 0, b, out)  # y = A^T M A + b
    return out, U, V if keep else None


def backward(x, U, V, grad_output, g, m, need_dx, need_dw):
    """(dx, dW) of ``forward`` (None where not needed; V: the forward's kept input transform or None),
    or None when grad_output holds inf or NaN (the caller then takes the im2col path)."""
    Bt, B, _, A = _matrices(m, grad_output.dtype)
    a2, T = (m + 2) ** 2, _tiles(g, m)
    dM = buffers.get(1, (a2, g.O, T), grad_output.dtype)
    if tiles_to_transformed(np.ascontiguousarray(grad_output), A, m, 0, dM):  # dM = A dy A^T
        return None
    dx = dw = None
    if need_dx:
        dV = buffers.get(0, (a2, g.C, T), dM.dtype)
        gemm.matmul(U.transpose(0, 2, 1), dM, dV)  # dV[xi] = U[xi]^T @ dM[xi]
        dx = np.empty((g.N, g.C, g.H, g.W), dtype=dM.dtype)
        transformed_to_tiles(dV, B, m, 1, np.zeros(g.C, dM.dtype), dx)  # dx = sum of B dV B^T
    if need_dw:
        if V is None:  # rebuilt (after dx: in the same buffer)
            V = buffers.get(0, (a2, g.C, T), dM.dtype)
            tiles_to_transformed(np.ascontiguousarray(x), Bt, m, 1, V)
        dU = np.empty((a2, g.O, g.C), dM.dtype)
        gemm.matmul(dM, V.transpose(0, 2, 1), dU)  # dU[xi] = dM[xi] @ V[xi]^T: summed over every tile
        dw = filter_transform_adjoint(dU, m)
    return dx, dw
