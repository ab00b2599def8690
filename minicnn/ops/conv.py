"""2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM, with its backward pass.

The derivation, with the shape of every intermediate, is in ``docs/backprop/conv.md``.

Layout choice. For a chunk of ``m`` samples, ``im2col`` copies every receptive field into

    cols  (C*KH*KW, m*OH*OW)       row = one (channel, kernel row, kernel column)
                                   column = one output pixel of one sample

built with one copy from a strided view of the (padded) input; no Python loop over pixels. Then

    out_chunk = W (O, C*KH*KW) @ cols          -> (O, m*OH*OW): ONE big GEMM per chunk,

and a small transposed copy (done while the chunk is in the cache) puts it in (N, O, OH, OW)
order. With groups, the C*KH*KW rows split into ``groups`` blocks and the GEMM is batched over
the groups.

Speed. On the CPU the batch is processed in chunks of a few MiB of ``cols``: the buffers are
allocated once per call and reused by every chunk, the data stays in the cache between the im2col
copy and the GEMM, and there are few BLAS calls (each call synchronises BLAS's threads, which is
costly on a busy machine). Backward recomputes ``cols`` chunk by chunk instead of keeping a matrix
KH*KW times the input's size alive between the passes. On a GPU (CuPy) the whole batch is one chunk.
"""

from __future__ import annotations

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module

# Target size of one chunk's ``cols`` on the CPU: large enough for few, efficient GEMM calls, small
# enough to stay in the cache (measured on the MNIST/CIFAR shapes: 4-16 MiB are all close).
_CHUNK_BYTES = 8 << 20


# ============================================================================ argument checking
def _pair(value, name, op="conv2d"):
    """An int or a pair of ints -> a pair of ints (ValueError/TypeError that names ``op`` otherwise)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints (height, width), got {value!r}")


def _check_4d(shape, what, layout, op):
    if len(shape) != 4:
        raise ValueError(
            f"{op}: expected {what} of shape {layout} (4 dimensions), got shape {tuple(shape)}"
            + (" -- add a batch dimension with x.unsqueeze(0)" if len(shape) == 3 and what == "input" else "")
        )


class ConvGeometry:
    """Every size of one conv2d call, checked once with messages that speak to a learner.

    Padding is stored per side (top, bottom, left, right) because ``padding='same'`` with an
    even effective kernel pads one more row/column at the bottom/right, like PyTorch.
    """

    def __init__(self, x_shape, w_shape, b_shape, stride, padding, dilation, groups):
        op = "conv2d"
        _check_4d(x_shape, "input", "(N, C, H, W)", op)
        _check_4d(w_shape, "weight", "(out_channels, in_channels/groups, KH, KW)", op)
        N, C, H, W = (int(s) for s in x_shape)
        O, Cg, KH, KW = (int(s) for s in w_shape)
        if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        groups = int(groups)
        if C % groups or O % groups:
            raise ValueError(
                f"{op}: in_channels ({C}) and out_channels ({O}) must both be divisible by groups ({groups})"
            )
        if Cg * groups != C:
            raise ValueError(
                f"{op}: the weight of shape {tuple(w_shape)} expects in_channels = {Cg} x groups "
                f"({groups}) = {Cg * groups} input channels, but the input of shape {tuple(x_shape)} "
                f"(N, C, H, W) has C = {C}"
            )
        if b_shape is not None and tuple(b_shape) != (O,):
            raise ValueError(
                f"{op}: bias must have shape (out_channels,) = ({O},), got shape {tuple(b_shape)}"
            )
        sh, sw = _pair(stride, "stride")
        dh, dw = _pair(dilation, "dilation")
        if sh < 1 or sw < 1:
            raise ValueError(f"{op}: stride must be positive, got {stride!r}")
        if dh < 1 or dw < 1:
            raise ValueError(f"{op}: dilation must be positive, got {dilation!r}")
        ekh, ekw = dh * (KH - 1) + 1, dw * (KW - 1) + 1  # effective (dilated) kernel size
        if isinstance(padding, str):
            if padding == "valid":
                pads = (0, 0, 0, 0)
            elif padding == "same":
                if sh != 1 or sw != 1:
                    raise ValueError(
                        f"{op}: padding='same' is not supported for strided convolutions "
                        f"(got stride={stride!r}); use an explicit padding"
                    )
                # total padding = effective kernel - 1; the odd extra row/column goes bottom/right
                pads = (
                    (ekh - 1) // 2,
                    (ekh - 1) - (ekh - 1) // 2,
                    (ekw - 1) // 2,
                    (ekw - 1) - (ekw - 1) // 2,
                )
            else:
                raise ValueError(f"{op}: padding string must be 'same' or 'valid', got {padding!r}")
        else:
            ph, pw = _pair(padding, "padding")
            if ph < 0 or pw < 0:
                raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
            pads = (ph, ph, pw, pw)
        Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
        if ekh > Hp or ekw > Wp:
            raise ValueError(
                f"{op}: the kernel ({KH}x{KW}, dilation {dh}x{dw}: effectively {ekh}x{ekw}) is larger "
                f"than the padded input ({Hp}x{Wp}) for input of shape {tuple(x_shape)} (N, C, H, W)"
            )
        self.N, self.C, self.H, self.W, self.O, self.KH, self.KW = N, C, H, W, O, KH, KW
        self.groups, self.stride, self.dilation, self.pads = groups, (sh, sw), (dh, dw), pads
        self.Hp, self.Wp = Hp, Wp
        self.OH, self.OW = (Hp - ekh) // sh + 1, (Wp - ekw) // sw + 1
        self.K = Cg * KH * KW  # rows of one group's cols = length of one flattened filter

    def chunk_size(self, xp, itemsize):
        if xp is not np:
            return self.N
        per_sample = self.C * self.KH * self.KW * self.OH * self.OW * itemsize
        return max(1, min(self.N, _CHUNK_BYTES // max(per_sample, 1)))


# ============================================================================ im2col / col2im
def _window_view(xpad, g):
    """Strided view (n, C, KH, KW, OH, OW) of the padded input: [i, c, kh, kw, oh, ow] is
    xpad[i, c, oh*sh + kh*dh, ow*sw + kw*dw]. No data is copied."""
    xp = get_array_module(xpad)
    sn, sc, s_h, s_w = xpad.strides
    (sh, sw), (dh, dw) = g.stride, g.dilation
    return xp.lib.stride_tricks.as_strided(
        xpad,
        shape=(xpad.shape[0], g.C, g.KH, g.KW, g.OH, g.OW),
        strides=(sn, sc, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
    )


class _Im2Col:
    """im2col for chunks of the batch, into buffers allocated once and reused by every chunk."""

    def __init__(self, x, g, n):
        self.x, self.g = x, g
        xp = get_array_module(x)
        top, bottom, left, right = g.pads
        self.padded = any(g.pads)
        if self.padded:  # the border stays zero; each chunk only overwrites the interior
            self.xpad = xp.zeros((n, g.C, g.Hp, g.Wp), dtype=x.dtype)
            self.interior = (slice(None), slice(None), slice(top, top + g.H), slice(left, left + g.W))
        self.cols = xp.empty((g.C * g.KH * g.KW, n * g.OH * g.OW), dtype=x.dtype)

    def __call__(self, a, b):
        """cols (groups, K, (b-a)*OH*OW) of samples a..b-1 (a view into the reused buffer)."""
        g, m = self.g, b - a
        if self.padded:
            src = self.xpad[:m]
            src[self.interior] = self.x[a:b]
        else:
            src = self.x[a:b]
        cols = self.cols[:, : m * g.OH * g.OW]
        xp = get_array_module(cols)
        windows = _window_view(src, g).transpose(1, 2, 3, 0, 4, 5)  # (C, KH, KW, m, OH, OW)
        xp.copyto(cols.reshape(g.C, g.KH, g.KW, m, g.OH, g.OW), windows)
        return cols.reshape(g.groups, g.K, m * g.OH * g.OW)


def _col2im(dcols, dxpad, g):
    """Adjoint of im2col: dxpad[i, c, oh*sh + kh*dh, ow*sw + kw*dw] += dcols[c, kh, kw, i, oh, ow].

    One slice-add per kernel offset (KH*KW of them), each over the whole chunk. Overlapping
    windows (stride < kernel) make several offsets hit the same pixel: the adds sum them.
    """
    (sh, sw), (dh, dw) = g.stride, g.dilation
    d6 = dcols.reshape(g.C, g.KH, g.KW, dxpad.shape[0], g.OH, g.OW)
    dxpad[...] = 0
    for kh in range(g.KH):
        rows = slice(kh * dh, kh * dh + sh * (g.OH - 1) + 1, sh)
        for kw in range(g.KW):
            cols = slice(kw * dw, kw * dw + sw * (g.OW - 1) + 1, sw)
            dxpad[:, :, rows, cols] += d6[:, kh, kw].transpose(1, 0, 2, 3)


# ============================================================================ the op
class Conv2d(Function):
    """out[n, o] = sum_{c, kh, kw} W[o, c, kh, kw] * xpad[n, c, oh*s + kh*d, ow*s + kw*d] + b[o].

    As matrices (per sample, per group): out = Wm @ cols, with cols = im2col(x). Hence
    dL/dWm = sum_n g[n] @ cols[n]^T,  dL/dcols = Wm^T @ g[n]  (then col2im -> dL/dx),
    dL/db = g summed over N, OH, OW.  Derivation: docs/backprop/conv.md.
    """

    def forward(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        if x.dtype.kind != "f":
            raise TypeError(f"conv2d: expected a floating-point input, got dtype {x.dtype}; use x.float()")
        if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
            raise TypeError(
                f"conv2d: input ({x.dtype}), weight ({weight.dtype})"
                + (f" and bias ({bias.dtype})" if bias is not None else "")
                + " must have the same dtype; convert with .float() / .double() / .to(dtype)"
            )
        g = ConvGeometry(x.shape, weight.shape, None if bias is None else bias.shape,
                         stride, padding, dilation, groups)  # fmt: skip
        xp = get_array_module(x, weight)
        G, Og, L = g.groups, g.O // g.groups, g.OH * g.OW
        wm = weight.reshape(G, Og, g.K)
        out = xp.empty((g.N, g.O, L), dtype=x.dtype)
        n = g.chunk_size(xp, x.dtype.itemsize)
        im2col = _Im2Col(x, g, n)
        out_chunk = xp.empty((G, Og, n * L), dtype=x.dtype)
        for a in range(0, g.N, n):
            b = min(g.N, a + n)
            m = b - a
            res = xp.matmul(
                wm, im2col(a, b), out=out_chunk[:, :, : m * L]
            )  # (G, Og, m*L): one GEMM per group
            # (O, m, L) -> (m, O, L): a small transposed copy, while the chunk is in the cache
            xp.copyto(out[a:b], res.reshape(g.O, m, L).transpose(1, 0, 2))
            if bias is not None:
                out[a:b] += bias.reshape(1, g.O, 1)
        self.x, self.weight, self.g, self.has_bias = x, weight, g, bias is not None
        return out.reshape(g.N, g.O, g.OH, g.OW)

    def backward(self, grad_output):
        need_x, need_w = self.needs_input_grad[:2]
        need_b = self.has_bias and self.needs_input_grad[2]
        x, weight, g = self.x, self.weight, self.g
        xp = get_array_module(grad_output)
        G, Og, L = g.groups, g.O // g.groups, g.OH * g.OW
        gout = grad_output.reshape(g.N, g.O, L)
        wm = weight.reshape(G, Og, g.K)
        dx = dw = db = None
        n = g.chunk_size(xp, x.dtype.itemsize)
        g_chunk = xp.empty((g.O, n, L), dtype=x.dtype)  # the chunk's gradient as (O, m*L)
        if need_w:
            dw = xp.zeros((G, Og, g.K), dtype=x.dtype)
            dw_chunk = xp.empty((G, Og, g.K), dtype=x.dtype)
            im2col = _Im2Col(x, g, n)
        if need_x:
            dx = xp.empty(x.shape, dtype=x.dtype)
            dcols = xp.empty((G, g.K, n * L), dtype=x.dtype)
            top, left = g.pads[0], g.pads[2]
            dxpad = xp.empty((n, g.C, g.Hp, g.Wp), dtype=x.dtype) if any(g.pads) else None
            wmT = wm.transpose(0, 2, 1)  # (G, K, Og): a view, BLAS reads it transposed
        for a in range(0, g.N, n):
            b = min(g.N, a + n)
            m = b - a
            gc = g_chunk[:, :m]
            xp.copyto(gc, gout[a:b].transpose(1, 0, 2))
            gc = gc.reshape(G, Og, m * L)
            if need_w:  # dW += g_chunk @ cols^T  (summing over the chunk's samples and pixels)
                cols = im2col(a, b)
                dw += xp.matmul(gc, cols.transpose(0, 2, 1), out=dw_chunk)
            if need_x:  # dcols = W^T @ g_chunk, then col2im scatters it back onto the input pixels
                dc = xp.matmul(wmT, gc, out=dcols[:, :, : m * L])
                if dxpad is None:
                    _col2im(dc, dx[a:b], g)
                else:
                    _col2im(dc, dxpad[:m], g)
                    dx[a:b] = dxpad[:m, :, top : top + g.H, left : left + g.W]
        if need_b:
            db = grad_output.sum(axis=(0, 2, 3))
        return (
            dx,
            None if dw is None else dw.reshape(weight.shape),
            db,
        )


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over an (N, C, H, W) input, as ``torch.nn.functional.conv2d``."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
