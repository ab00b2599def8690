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

The passes over memory are loop nests compiled by Numba, one (sample, channel) plane per ``prange``
iteration (each thread owns its planes: nothing to merge, no race in backward's overlapping adds).
Each transform applies the 1-D matrix first down the columns of a row of tiles (a loop along the
image row: contiguous, it vectorises), then along the rows (a loop over the tiles of that row). The
1-D transforms are the explicit adds of ``bt4``/``bt6`` etc. The filter transforms are tiny
(O*C*9 numbers) and run in NumPy in float64. The GEMMs are NumPy's ``matmul`` (BLAS).
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from minicnn._memory import MMAP_THRESHOLD

# ---------------------------------------------------------------------------- the transform matrices
# Points 0, 1, -1 (F(2,3)) and 0, 1, -1, 2, -2 (F(4,3)), plus "infinity" (Lavin & Gray 2016).
# The kernels below apply them as explicit adds; these arrays are the reference for the tests and the
# docs, and the filter transforms use G (float64).
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
ENABLED = True  # False: every conv2d runs the im2col twin (to compare, or to get its bit-for-bit results)
LOOP_DTYPES = (np.float32, np.float64)
CHUNKS = 256  # prange iterations per pass: each takes a run of planes and allocates its small buffers once


def choose(g, dtype):
    """The Winograd tile size m (2 or 4) for this call, or 0 for the im2col twin.

    Only 3x3 kernels, stride 1, padding 1 on every side, dilation 1, groups 1, a non-empty batch.
    The rule is measured (docs/kernels.md): see ``MIN_CHANNELS`` and ``F4_MIN_SIZE``."""
    if not ENABLED or dtype not in LOOP_DTYPES or g.N == 0:
        return 0
    if (g.KH, g.KW) != (3, 3) or g.stride != (1, 1) or g.dilation != (1, 1) or g.groups != 1:
        return 0
    if tuple(g.pads) != (1, 1, 1, 1):
        return 0
    if g.C < MIN_CHANNELS:  # few input channels (a first layer): the GEMMs are too thin to gain
        return 0
    return 4 if min(g.H, g.W) >= F4_MIN_SIZE else 2


MIN_CHANNELS = 16
F4_MIN_SIZE = 8


# ---------------------------------------------------------------------------- 1-D transforms
# Each applies one transform matrix to one vector, written out as adds. ``type(d0)(4)`` keeps the
# constants in the data's dtype (a Python 4 would promote float32 to float64).
@njit
def bt4(d0, d1, d2, d3):
    """B^T d for F(2,3): 4 -> 4."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit
def b4(v0, v1, v2, v3):
    """B v (the transpose of ``bt4``): 4 -> 4."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit
def at4(m0, m1, m2, m3):
    """A^T m for F(2,3): 4 -> 2."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit
def a4(y0, y1):
    """A y (the transpose of ``at4``): 2 -> 4."""
    return y0, y0 + y1, y0 - y1, -y1


@njit
def bt6(d0, d1, d2, d3, d4, d5):
    """B^T d for F(4,3): 6 -> 6."""
    f = type(d0)
    return (
        f(4) * d0 - f(5) * d2 + d4,
        d3 + d4 - f(4) * (d1 + d2),
        d4 - d3 + f(4) * (d1 - d2),
        d4 - d2 + f(2) * (d3 - d1),
        d4 - d2 - f(2) * (d3 - d1),
        f(4) * d1 - f(5) * d3 + d5,
    )


@njit
def b6(v0, v1, v2, v3, v4, v5):
    """B v (the transpose of ``bt6``): 6 -> 6."""
    f = type(v0)
    return (
        f(4) * v0,
        f(4) * (v2 - v1 + v5) + f(2) * (v4 - v3),
        -f(5) * v0 - f(4) * (v1 + v2) - v3 - v4,
        v1 - v2 + f(2) * (v3 - v4) - f(5) * v5,
        v0 + v1 + v2 + v3 + v4,
        v5,
    )


@njit
def at6(m0, m1, m2, m3, m4, m5):
    """A^T m for F(4,3): 6 -> 4."""
    f = type(m0)
    return (
        m0 + m1 + m2 + m3 + m4,
        m1 - m2 + f(2) * (m3 - m4),
        m1 + m2 + f(4) * (m3 + m4),
        m1 - m2 + f(8) * (m3 - m4) + m5,
    )


@njit
def a6(y0, y1, y2, y3):
    """A y (the transpose of ``at6``): 4 -> 6."""
    f = type(y0)
    p, q = y0 + y2, y1 + y3
    r, s = y0 + f(4) * y2, f(2) * y1 + f(8) * y3
    return y0, p + q, p - q, r + s, r - s, y3


# ---------------------------------------------------------------------------- F(2x2, 3x3) passes
# Each pass works on one (sample, channel) plane at a time, in "tile-major" order: d[i, j, p] is
# pixel (i, j) of tile p = th*TW + tw, so every transform is a loop over the plane's P tiles with
# unit-stride loads and stores (it vectorises), and V[xi, c, t0:t0+P] is written contiguously.
@njit(parallel=True, cache=True)
def f2_input_transform(x, V):
    """V[4k+l, c, t] = (B^T d B)[k, l] for the 4x4 tile d of x (zero padding 1) under output tile t.
    Returns the number of non-finite input values (the caller then takes the im2col path)."""
    N, C, H, W = x.shape
    TH, TW = (H + 1) // 2, (W + 1) // 2
    P = TH * TW
    bad = 0
    planes = N * C
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):  # a run of (sample, channel) planes, its buffers allocated once
        xp = np.zeros((2 * TH + 2, 2 * TW + 2), x.dtype)  # the plane with its zero border
        d = np.empty((4, 4, P), x.dtype)  # the plane's input tiles, tile-major
        z = np.empty((4, 4, P), x.dtype)
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            c, n = nc // N, nc % N  # n fastest: consecutive planes write V[xi, c] contiguously
            nonfinite = 0
            for h in range(H):
                for w in range(W):
                    v = x[n, c, h, w]
                    nonfinite += not np.isfinite(v)
                    xp[h + 1, w + 1] = v
            bad += nonfinite
            for i in range(4):  # gather the overlapping 4x4 tiles (stride 2)
                for j in range(4):
                    for th in range(TH):
                        for tw in range(TW):
                            d[i, j, th * TW + tw] = xp[2 * th + i, 2 * tw + j]
            for j in range(4):  # B^T down the columns of every tile
                for p in range(P):
                    z[0, j, p], z[1, j, p], z[2, j, p], z[3, j, p] = bt4(
                        d[0, j, p], d[1, j, p], d[2, j, p], d[3, j, p]
                    )
            t0 = n * P
            for k in range(4):  # then along the rows, into V
                for p in range(P):
                    v0, v1, v2, v3 = bt4(z[k, 0, p], z[k, 1, p], z[k, 2, p], z[k, 3, p])
                    V[4 * k, c, t0 + p] = v0
                    V[4 * k + 1, c, t0 + p] = v1
                    V[4 * k + 2, c, t0 + p] = v2
                    V[4 * k + 3, c, t0 + p] = v3
    return bad


@njit(parallel=True, cache=True)
def f2_output_transform(M, bias, out):
    """out[n, o, 2th+i, 2tw+j] = (A^T M[:, o, t] A)[i, j] + bias[o], the tiles cropped at the border."""
    N, O, H, W = out.shape
    TH, TW = (H + 1) // 2, (W + 1) // 2
    P = TH * TW
    planes = N * O
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        s = np.empty((4, 2, P), M.dtype)
        y = np.empty((2, 2, P), M.dtype)  # the plane's output tiles, tile-major
        yp = np.empty((2 * TH, 2 * TW), M.dtype)  # the plane, uncropped
        for no in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            o, n = no // N, no % N  # n fastest: consecutive planes read M[xi, o] contiguously
            t0 = n * P
            for k in range(4):  # A^T along the rows of every tile
                for p in range(P):
                    s[k, 0, p], s[k, 1, p] = at4(
                        M[4 * k, o, t0 + p],
                        M[4 * k + 1, o, t0 + p],
                        M[4 * k + 2, o, t0 + p],
                        M[4 * k + 3, o, t0 + p],
                    )
            for j in range(2):  # then down the columns
                for p in range(P):
                    y[0, j, p], y[1, j, p] = at4(s[0, j, p], s[1, j, p], s[2, j, p], s[3, j, p])
            for i in range(2):  # the tiles into the plane
                for j in range(2):
                    for th in range(TH):
                        for tw in range(TW):
                            yp[2 * th + i, 2 * tw + j] = y[i, j, th * TW + tw]
            b = bias[o]
            for h in range(H):  # cropped, plus the bias
                for w in range(W):
                    out[n, o, h, w] = yp[h, w] + b


@njit(parallel=True, cache=True)
def f2_grad_output_transform(gy, dM):
    """dM[:, o, t] = A dy A^T for the 2x2 tile dy of the upstream gradient gy (zero beyond the border):
    the adjoint of ``f2_output_transform``. Returns the number of non-finite values in gy."""
    N, O, H, W = gy.shape
    TH, TW = (H + 1) // 2, (W + 1) // 2
    P = TH * TW
    bad = 0
    planes = N * O
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        gp = np.zeros((2 * TH, 2 * TW), gy.dtype)  # the plane, zero beyond the border
        dy = np.empty((2, 2, P), gy.dtype)
        q = np.empty((4, 2, P), gy.dtype)
        for no in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            o, n = no // N, no % N
            nonfinite = 0
            for h in range(H):
                for w in range(W):
                    v = gy[n, o, h, w]
                    nonfinite += not np.isfinite(v)
                    gp[h, w] = v
            bad += nonfinite
            for i in range(2):  # the 2x2 gradient tiles, tile-major
                for j in range(2):
                    for th in range(TH):
                        for tw in range(TW):
                            dy[i, j, th * TW + tw] = gp[2 * th + i, 2 * tw + j]
            for j in range(2):  # A down the columns: 2 rows -> 4
                for p in range(P):
                    q[0, j, p], q[1, j, p], q[2, j, p], q[3, j, p] = a4(dy[0, j, p], dy[1, j, p])
            t0 = n * P
            for k in range(4):  # then A along the rows, into dM
                for p in range(P):
                    m0, m1, m2, m3 = a4(q[k, 0, p], q[k, 1, p])
                    dM[4 * k, o, t0 + p] = m0
                    dM[4 * k + 1, o, t0 + p] = m1
                    dM[4 * k + 2, o, t0 + p] = m2
                    dM[4 * k + 3, o, t0 + p] = m3
    return bad


@njit(parallel=True, cache=True)
def f2_grad_input_transform(dV, dx):
    """dx = the sum over tiles of B dV[:, c, t] B^T, each 4x4 tile added where the input tile was
    read (neighbouring tiles overlap by 2 pixels; what falls on the padding is dropped): the adjoint
    of ``f2_input_transform``."""
    N, C, H, W = dx.shape
    TH, TW = (H + 1) // 2, (W + 1) // 2
    P = TH * TW
    planes = N * C
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):  # each plane in one thread: the overlapping += cannot race
        dxp = np.empty((2 * TH + 2, 2 * TW + 2), dx.dtype)
        f = np.empty((4, 4, P), dx.dtype)
        dd = np.empty((4, 4, P), dx.dtype)
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            c, n = nc // N, nc % N
            t0 = n * P
            for k in range(4):  # B along the rows of every tile
                for p in range(P):
                    f[k, 0, p], f[k, 1, p], f[k, 2, p], f[k, 3, p] = b4(
                        dV[4 * k, c, t0 + p],
                        dV[4 * k + 1, c, t0 + p],
                        dV[4 * k + 2, c, t0 + p],
                        dV[4 * k + 3, c, t0 + p],
                    )
            for j in range(4):  # then B down the columns
                for p in range(P):
                    dd[0, j, p], dd[1, j, p], dd[2, j, p], dd[3, j, p] = b4(
                        f[0, j, p], f[1, j, p], f[2, j, p], f[3, j, p]
                    )
            dxp[:] = 0
            for i in range(4):  # each tile added where it was read (stride 2: they overlap)
                for j in range(4):
                    for th in range(TH):
                        for tw in range(TW):
                            dxp[2 * th + i, 2 * tw + j] += dd[i, j, th * TW + tw]
            for h in range(H):  # the padding's share dropped
                for w in range(W):
                    dx[n, c, h, w] = dxp[h + 1, w + 1]


# ---------------------------------------------------------------------------- F(4x4, 3x3) passes
# The same four passes with 6x6 input tiles at stride 4, 4x4 output tiles, and bt6/b6/at6/a6.
@njit(parallel=True, cache=True)
def f4_input_transform(x, V):
    """V[6k+l, c, t] = (B^T d B)[k, l] for the 6x6 tile d of x (zero padding 1) under output tile t.
    Returns the number of non-finite input values."""
    N, C, H, W = x.shape
    TH, TW = (H + 3) // 4, (W + 3) // 4
    P = TH * TW
    bad = 0
    planes = N * C
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        xp = np.zeros((4 * TH + 2, 4 * TW + 2), x.dtype)
        d = np.empty((6, 6, P), x.dtype)
        z = np.empty((6, 6, P), x.dtype)
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            c, n = nc // N, nc % N
            nonfinite = 0
            for h in range(H):
                for w in range(W):
                    v = x[n, c, h, w]
                    nonfinite += not np.isfinite(v)
                    xp[h + 1, w + 1] = v
            bad += nonfinite
            for i in range(6):
                for j in range(6):
                    for th in range(TH):
                        for tw in range(TW):
                            d[i, j, th * TW + tw] = xp[4 * th + i, 4 * tw + j]
            for j in range(6):
                for p in range(P):
                    z[0, j, p], z[1, j, p], z[2, j, p], z[3, j, p], z[4, j, p], z[5, j, p] = bt6(
                        d[0, j, p], d[1, j, p], d[2, j, p], d[3, j, p], d[4, j, p], d[5, j, p]
                    )
            t0 = n * P
            for k in range(6):
                for p in range(P):
                    v0, v1, v2, v3, v4, v5 = bt6(
                        z[k, 0, p], z[k, 1, p], z[k, 2, p], z[k, 3, p], z[k, 4, p], z[k, 5, p]
                    )
                    V[6 * k, c, t0 + p] = v0
                    V[6 * k + 1, c, t0 + p] = v1
                    V[6 * k + 2, c, t0 + p] = v2
                    V[6 * k + 3, c, t0 + p] = v3
                    V[6 * k + 4, c, t0 + p] = v4
                    V[6 * k + 5, c, t0 + p] = v5
    return bad


@njit(parallel=True, cache=True)
def f4_output_transform(M, bias, out):
    """out[n, o, 4th+i, 4tw+j] = (A^T M[:, o, t] A)[i, j] + bias[o], the tiles cropped at the border."""
    N, O, H, W = out.shape
    TH, TW = (H + 3) // 4, (W + 3) // 4
    P = TH * TW
    planes = N * O
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        s = np.empty((6, 4, P), M.dtype)
        y = np.empty((4, 4, P), M.dtype)
        yp = np.empty((4 * TH, 4 * TW), M.dtype)
        for no in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            o, n = no // N, no % N
            t0 = n * P
            for k in range(6):
                for p in range(P):
                    s[k, 0, p], s[k, 1, p], s[k, 2, p], s[k, 3, p] = at6(
                        M[6 * k, o, t0 + p], M[6 * k + 1, o, t0 + p], M[6 * k + 2, o, t0 + p],
                        M[6 * k + 3, o, t0 + p], M[6 * k + 4, o, t0 + p], M[6 * k + 5, o, t0 + p],
                    )  # fmt: skip
            for j in range(4):
                for p in range(P):
                    y[0, j, p], y[1, j, p], y[2, j, p], y[3, j, p] = at6(
                        s[0, j, p], s[1, j, p], s[2, j, p], s[3, j, p], s[4, j, p], s[5, j, p]
                    )
            for i in range(4):
                for j in range(4):
                    for th in range(TH):
                        for tw in range(TW):
                            yp[4 * th + i, 4 * tw + j] = y[i, j, th * TW + tw]
            b = bias[o]
            for h in range(H):
                for w in range(W):
                    out[n, o, h, w] = yp[h, w] + b


@njit(parallel=True, cache=True)
def f4_grad_output_transform(gy, dM):
    """dM[:, o, t] = A dy A^T for the 4x4 tile dy of gy (zero beyond the border). Returns the number
    of non-finite values in gy."""
    N, O, H, W = gy.shape
    TH, TW = (H + 3) // 4, (W + 3) // 4
    P = TH * TW
    bad = 0
    planes = N * O
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        gp = np.zeros((4 * TH, 4 * TW), gy.dtype)
        dy = np.empty((4, 4, P), gy.dtype)
        q = np.empty((6, 4, P), gy.dtype)
        for no in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            o, n = no // N, no % N
            nonfinite = 0
            for h in range(H):
                for w in range(W):
                    v = gy[n, o, h, w]
                    nonfinite += not np.isfinite(v)
                    gp[h, w] = v
            bad += nonfinite
            for i in range(4):
                for j in range(4):
                    for th in range(TH):
                        for tw in range(TW):
                            dy[i, j, th * TW + tw] = gp[4 * th + i, 4 * tw + j]
            for j in range(4):
                for p in range(P):
                    q[0, j, p], q[1, j, p], q[2, j, p], q[3, j, p], q[4, j, p], q[5, j, p] = a6(
                        dy[0, j, p], dy[1, j, p], dy[2, j, p], dy[3, j, p]
                    )
            t0 = n * P
            for k in range(6):
                for p in range(P):
                    m0, m1, m2, m3, m4, m5 = a6(q[k, 0, p], q[k, 1, p], q[k, 2, p], q[k, 3, p])
                    dM[6 * k, o, t0 + p] = m0
                    dM[6 * k + 1, o, t0 + p] = m1
                    dM[6 * k + 2, o, t0 + p] = m2
                    dM[6 * k + 3, o, t0 + p] = m3
                    dM[6 * k + 4, o, t0 + p] = m4
                    dM[6 * k + 5, o, t0 + p] = m5
    return bad


@njit(parallel=True, cache=True)
def f4_grad_input_transform(dV, dx):
    """dx = the sum over tiles of B dV[:, c, t] B^T, each 6x6 tile added where it was read
    (neighbours overlap by 2 pixels; the padding's share is dropped)."""
    N, C, H, W = dx.shape
    TH, TW = (H + 3) // 4, (W + 3) // 4
    P = TH * TW
    planes = N * C
    chunks = min(planes, CHUNKS)
    for chunk in prange(chunks):
        dxp = np.empty((4 * TH + 2, 4 * TW + 2), dx.dtype)
        f = np.empty((6, 6, P), dx.dtype)
        dd = np.empty((6, 6, P), dx.dtype)
        for nc in range(chunk * planes // chunks, (chunk + 1) * planes // chunks):
            c, n = nc // N, nc % N
            t0 = n * P
            for k in range(6):
                for p in range(P):
                    f[k, 0, p], f[k, 1, p], f[k, 2, p], f[k, 3, p], f[k, 4, p], f[k, 5, p] = b6(
                        dV[6 * k, c, t0 + p], dV[6 * k + 1, c, t0 + p], dV[6 * k + 2, c, t0 + p],
                        dV[6 * k + 3, c, t0 + p], dV[6 * k + 4, c, t0 + p], dV[6 * k + 5, c, t0 + p],
                    )  # fmt: skip
            for j in range(6):
                for p in range(P):
                    dd[0, j, p], dd[1, j, p], dd[2, j, p], dd[3, j, p], dd[4, j, p], dd[5, j, p] = b6(
                        f[0, j, p], f[1, j, p], f[2, j, p], f[3, j, p], f[4, j, p], f[5, j, p]
                    )
            dxp[:] = 0
            for i in range(6):
                for j in range(6):
                    for th in range(TH):
                        for tw in range(TW):
                            dxp[4 * th + i, 4 * tw + j] += dd[i, j, th * TW + tw]
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = dxp[h + 1, w + 1]


PASSES = {  # m -> (input transform, output transform, grad-output transform, grad-input transform)
    2: (f2_input_transform, f2_output_transform, f2_grad_output_transform, f2_grad_input_transform),
    4: (f4_input_transform, f4_output_transform, f4_grad_output_transform, f4_grad_input_transform),
}


# ---------------------------------------------------------------------------- filter transforms (NumPy)
def filter_transform(weight, m):
    """U (a*a, O, C) = G w[o, c] G^T for every filter, in float64, stored in the weight's dtype."""
    O, C = weight.shape[:2]
    a = m + 2
    u = G[m] @ weight.astype(np.float64) @ G[m].T  # (O, C, a, a)
    return np.ascontiguousarray(u.reshape(O, C, a * a).transpose(2, 0, 1), dtype=weight.dtype)


def filter_transform_adjoint(dU, m):
    """dW (O, C, 3, 3) = G^T dU[:, o, c] G: the adjoint of ``filter_transform`` (float64 inside)."""
    a2, O, C = dU.shape
    a = m + 2
    du = dU.astype(np.float64).transpose(1, 2, 0).reshape(O, C, a, a)
    return (G[m].T @ du @ G[m]).astype(dU.dtype)


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
def forward(x, weight, bias, g, m, keep=False):
    """conv2d(x, weight, bias, padding=1) by F(m x m, 3x3). Returns (out, U, V): V is the input
    transform, kept for the weight gradient when ``keep`` and it comes from malloc's heap (as the im2col
    twin keeps its columns), else None. Returns None when x or the weight holds inf or NaN:
    Winograd's transforms mix neighbouring pixels (inf - inf = NaN), so non-finite values would spread
    further than in PyTorch's convolution; the caller then takes the im2col path, which spreads them
    exactly as PyTorch does."""
    if not np.isfinite(weight).all():
        return None
    input_transform, output_transform = PASSES[m][0], PASSES[m][1]
    a2, T = (m + 2) ** 2, _tiles(g, m)
    U = filter_transform(weight, m)
    keep = keep and a2 * g.C * T * x.itemsize <= MMAP_THRESHOLD
    V = np.empty((a2, g.C, T), x.dtype) if keep else buffers.get(0, (a2, g.C, T), x.dtype)
    if input_transform(np.ascontiguousarray(x), V):
        return None
    M = buffers.get(1, (a2, g.O, T), x.dtype)
    np.matmul(U, V, out=M)  # a*a GEMMs (O, C) @ (C, T)
    out = np.empty((g.N, g.O, g.H, g.W), dtype=x.dtype)
    b = np.zeros(g.O, x.dtype) if bias is None else np.ascontiguousarray(bias)
    output_transform(M, b, out)
    return out, U, V if keep else None


def backward(x, U, V, grad_output, g, m, need_dx, need_dw):
    """(dx, dW) of ``forward`` (None where not needed; V: the forward's kept input transform or None),
    or None when grad_output holds inf or NaN (the caller then takes the im2col path)."""
    input_transform, _, grad_output_transform, grad_input_transform = PASSES[m]
    a2, T = (m + 2) ** 2, _tiles(g, m)
    dM = buffers.get(1, (a2, g.O, T), grad_output.dtype)
    if grad_output_transform(np.ascontiguousarray(grad_output), dM):
        return None
    dx = dw = None
    if need_dx:
        dV = buffers.get(0, (a2, g.C, T), dM.dtype)
        np.matmul(U.transpose(0, 2, 1), dM, out=dV)  # dV[xi] = U[xi]^T @ dM[xi]
        dx = np.empty((g.N, g.C, g.H, g.W), dtype=dM.dtype)
        grad_input_transform(dV, dx)
    if need_dw:
        if V is None:  # rebuilt (after dx: in the same buffer)
            V = buffers.get(0, (a2, g.C, T), dM.dtype)
            input_transform(np.ascontiguousarray(x), V)
        dU = np.matmul(dM, V.transpose(0, 2, 1))  # dU[xi] = dM[xi] @ V[xi]^T: summed over every tile
        dw = filter_transform_adjoint(dU, m)
    return dx, dw
