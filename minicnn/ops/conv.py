"""2-D convolution (cross-correlation, as in PyTorch) by im2col + GEMM, with its backward pass.

The textbook tier: whole-array code on ``xp`` (NumPy or CuPy), exactly the math that
``docs/backprop/conv.md`` derives. For one sample ``n`` and one group:

    cols[n]  (C*KH*KW, OH*OW)    column = the receptive field of one output pixel (im2col)
    out[n]   (O, OH*OW) = Wm (O, C*KH*KW) @ cols[n] + b
    dWm      = sum_n g[n] @ cols[n]^T,   dcols[n] = Wm^T @ g[n],   dx = col2im(dcols)

``matmul`` batches these products over the samples and the groups: one call each. Sizes and
argument checks: ``ConvGeometry`` (ops/_geometry.py). On NumPy arrays the compiled twin in
``minicnn/kernels/conv.py`` runs instead (docs/kernels.md).
"""

from __future__ import annotations

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.ops._geometry import ConvGeometry


def im2col(x, g):
    """cols (N, C*KH*KW, OH*OW): cols[n, (c, i, j), (oh, ow)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw],
    where xpad is x with its zero padding.

    The windows are one strided view of xpad, (N, C, KH, KW, OH, OW): moving one step along i
    moves dh rows in memory, along oh sh rows, and so on. No data moves until the reshape copies
    the view into the contiguous cols."""
    xp = get_array_module(x)
    top, bottom, left, right = g.pads
    xpad = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    sn, sc, s_h, s_w = xpad.strides
    (sh, sw), (dh, dw) = g.stride, g.dilation
    windows = xp.lib.stride_tricks.as_strided(
        xpad,
        shape=(g.N, g.C, g.KH, g.KW, g.OH, g.OW),
        strides=(sn, sc, s_h * dh, s_w * dw, s_h * sh, s_w * sw),
    )
    return windows.reshape(g.N, g.C * g.KH * g.KW, g.OH * g.OW)


def col2im(dcols, g):
    """dx (N, C, H, W) from dcols (N, C*KH*KW, OH*OW): the adjoint of im2col.

    Every entry of cols is a copy of one input pixel, so each pixel receives the sum of the
    gradients of its copies. For one kernel offset (i, j) the pixels that the OH*OW windows read
    form one strided slice of xpad, and within it no pixel repeats: one slice-add per offset.
    Overlapping windows (stride < kernel) put several offsets on one pixel, and the adds sum them.
    The gradient that lands on the padding is dropped (the padding is a constant)."""
    xp = get_array_module(dcols)
    top, bottom, left, right = g.pads
    (sh, sw), (dh, dw) = g.stride, g.dilation
    d = dcols.reshape(g.N, g.C, g.KH, g.KW, g.OH, g.OW)
    dxpad = xp.zeros((g.N, g.C, g.Hp, g.Wp), dtype=dcols.dtype)
    for i in range(g.KH):
        for j in range(g.KW):
            dxpad[:, :, i * dh : i * dh + sh * g.OH : sh, j * dw : j * dw + sw * g.OW : sw] += d[:, :, i, j]
    return xp.ascontiguousarray(dxpad[:, :, top : top + g.H, left : left + g.W])


def check_dtypes(x, weight, bias):
    if x.dtype.kind != "f":
        raise TypeError(f"conv2d: expected a floating-point input, got dtype {x.dtype}; use x.float()")
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(
            f"conv2d: input ({x.dtype}), weight ({weight.dtype})"
            + (f" and bias ({bias.dtype})" if bias is not None else "")
            + " must have the same dtype; convert with .float() / .double() / .to(dtype)"
        )


class Conv2d(Function):
    """out[n, o] = sum_{c, kh, kw} W[o, c, kh, kw] * xpad[n, c, oh*s + kh*d, ow*s + kw*d] + b[o].

    As matrices (per sample, per group): out = Wm @ cols, with cols = im2col(x). Hence
    dL/dWm = sum_n g[n] @ cols[n]^T,  dL/dcols = Wm^T @ g[n]  (then col2im -> dL/dx),
    dL/db = g summed over N, OH, OW.  Derivation: docs/backprop/conv.md.
    """

    saved_inputs = (0, 1)  # backward rebuilds cols from x, and multiplies by the weight

    def forward(self, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        check_dtypes(x, weight, bias)
        g = ConvGeometry(x.shape, weight.shape, None if bias is None else bias.shape,
                         stride, padding, dilation, groups)  # fmt: skip
        self.x, self.weight, self.g, self.has_bias = x, weight, g, bias is not None
        G, L = g.groups, g.OH * g.OW
        cols = im2col(x, g).reshape(g.N, G, g.K, L)
        wm = weight.reshape(G, g.O // G, g.K)
        out = (wm @ cols).reshape(g.N, g.O, g.OH, g.OW)  # (N, G, O/G, L): one GEMM per sample and group
        if bias is not None:
            out += bias.reshape(g.O, 1, 1)
        return out

    def backward(self, grad_output):
        g = self.g
        G, L = g.groups, g.OH * g.OW
        gm = grad_output.reshape(g.N, G, g.O // G, L)
        dx = dw = db = None
        if self.needs_input_grad[0]:
            wm = self.weight.reshape(G, g.O // G, g.K)
            dcols = wm.swapaxes(1, 2) @ gm  # (N, G, K, L) = Wm^T @ g[n]
            dx = col2im(dcols.reshape(g.N, g.C * g.KH * g.KW, L), g)
        if self.needs_input_grad[1]:
            cols = im2col(self.x, g).reshape(g.N, G, g.K, L)
            dw = (gm @ cols.swapaxes(2, 3)).sum(axis=0).reshape(self.weight.shape)  # sum_n g[n] @ cols[n]^T
        if self.has_bias and self.needs_input_grad[2]:
            db = grad_output.sum(axis=(0, 2, 3))
        return dx, dw, db


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over an (N, C, H, W) input, as ``torch.nn.functional.conv2d``."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
