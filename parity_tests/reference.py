"""Direct-loop reference implementations of conv2d and pooling: test oracles ONLY (slow on purpose).

Each function is the textbook definition written with explicit loops over output pixels, so
it shares no code and no trick with ``minicnn/ops/conv.py`` or ``minicnn/ops/pooling.py``.
They are themselves checked against PyTorch in the tests. NumPy float64 in, NumPy out.
"""

from __future__ import annotations

import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """out[n, o, i, j] = b[o] + sum_{c,p,q} w[o,c,p,q] * x[n, g*Cg + c, i*sh - pt + p*dh, j*sw - pl + q*dw]
    (g = the group of o; terms that fall in the zero padding are skipped)."""
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if padding == "valid":
        pt = pb = pl = pr = 0
    elif padding == "same":
        th, tw = dh * (KH - 1), dw * (KW - 1)
        pt, pb, pl, pr = th // 2, th - th // 2, tw // 2, tw - tw // 2
    else:
        ph, pw = _pair(padding)
        pt = pb = ph
        pl = pr = pw
    OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
    OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
    Og = O // groups
    out = np.zeros((N, O, OH, OW))
    for o in range(O):
        c0 = (o // Og) * Cg
        for i in range(OH):
            for j in range(OW):
                acc = np.zeros(N)
                for p in range(KH):
                    r = i * sh - pt + p * dh
                    if not 0 <= r < H:
                        continue
                    for q in range(KW):
                        s = j * sw - pl + q * dw
                        if 0 <= s < W:
                            acc += x[:, c0 : c0 + Cg, r, s] @ w[o, :, p, q]
                out[:, o, i, j] = acc + (0.0 if b is None else b[o])
    return out


def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(output, flat arg-max index into H*W, dL/dx for upstream gradient ``g`` as a function).

    Scans each window in row-major order: replace when val > max or val is NaN (PyTorch CPU).
    """
    N, C, H, W = x.shape
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    OH, OW = _pool_out(H, kh, sh, ph, dh, ceil_mode), _pool_out(W, kw, sw, pw, dw, ceil_mode)
    out = np.empty((N, C, OH, OW))
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    best, arg = -np.inf, None
                    for p in range(kh):
                        r = i * sh - ph + p * dh
                        for q in range(kw):
                            s = j * sw - pw + q * dw
                            if 0 <= r < H and 0 <= s < W:
                                v = x[n, c, r, s]
                                if arg is None or v > best or np.isnan(v):
                                    best, arg = v, r * W + s
                    out[n, c, i, j], idx[n, c, i, j] = best, arg
    return out, idx


def max_pool2d_grad(x_shape, idx, g):
    """dL/dx of max pooling: each upstream gradient goes to its window's arg-max."""
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for k, flat in enumerate(idx[n, c].ravel()):
                dx[n, c, flat] += g[n, c].ravel()[k]
    return dx.reshape(x_shape)


def avg_pool2d(
    x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """(output, divisor per output pixel), summing only the real (non-padding) pixels of each window."""
    N, C, H, W = x.shape
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    OH, OW = _pool_out(H, kh, sh, ph, 1, ceil_mode), _pool_out(W, kw, sw, pw, 1, ceil_mode)
    out = np.empty((N, C, OH, OW))
    div = np.empty((OH, OW))
    for i in range(OH):
        for j in range(OW):
            r0, s0 = i * sh - ph, j * sw - pw
            r1, s1 = min(r0 + kh, H + ph), min(s0 + kw, W + pw)
            pool = (r1 - r0) * (s1 - s0)
            r0c, s0c, r1c, s1c = max(r0, 0), max(s0, 0), min(r1, H), min(s1, W)
            if divisor_override is not None:
                div[i, j] = divisor_override
            else:
                div[i, j] = pool if count_include_pad else (r1c - r0c) * (s1c - s0c)
            out[:, :, i, j] = x[:, :, r0c:r1c, s0c:s1c].sum(axis=(2, 3)) / div[i, j]
    return out


def adaptive_avg_pool2d(x, output_size):
    """Mean over bins [floor(i*H/OH), ceil((i+1)*H/OH)) x [floor(j*W/OW), ceil((j+1)*W/OW))."""
    N, C, H, W = x.shape
    OH, OW = _pair(output_size)
    out = np.empty((N, C, OH, OW))
    for i in range(OH):
        r0, r1 = (i * H) // OH, -((-(i + 1) * H) // OH)
        for j in range(OW):
            s0, s1 = (j * W) // OW, -((-(j + 1) * W) // OW)
            out[:, :, i, j] = x[:, :, r0:r1, s0:s1].mean(axis=(2, 3))
    return out
