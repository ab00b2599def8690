"""2-D transposed convolution (``torch.nn.functional.conv_transpose2d``): the adjoint of conv2d.

A transposed convolution is conv2d's input-gradient used as a layer: where conv2d maps an image of
size H to OH = (H + 2p - d(K-1) - 1) // s + 1, its transpose maps OH back up to
H = (OH - 1) s - 2p + d(K-1) + 1 + output_padding. With the weight W of shape
(C_in, C_out/groups, KH, KW) read as a conv2d weight from C_out to C_in channels (``O = C_in``):

    conv_transpose2d(x, W) = col2im(Wm^T @ x)         (conv2d's dL/dx with g = x: ops/conv.py),
                             on the full grid, then cropped to the output window (padding)
    dL/dx  = conv2d(g, W)   = Wm @ im2col(g)          (conv2d's forward)
    dL/dWm = sum_n x[n] @ im2col(g)[n]^T               (conv2d's dL/dW with g = x)
    dL/db  = g summed over N, H, W

So the three products are conv2d's three, in another order. Derivation:
docs/backprop/conv_transpose.md. The DCGAN generator upsamples 1x1 -> 64x64 with it.
"""

from __future__ import annotations

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.ops._geometry import ConvGeometry, _check_4d, _is_int, _pair
from minicnn.ops.conv import check_dtypes, col2im, im2col

OP = "conv_transpose2d"


def transpose_geometry(x_shape, w_shape, b_shape, stride, padding, output_padding, dilation, groups):
    """The conv2d geometry whose input gradient this transposed convolution is, checked with
    messages that name conv_transpose2d. Its input (N, C_out, H_out, W_out) is this op's output."""
    _check_4d(x_shape, "input", "(N, C_in, H, W)", OP)
    _check_4d(w_shape, "weight", "(in_channels, out_channels/groups, KH, KW)", OP)
    N, C_in, H, W = (int(s) for s in x_shape)
    Cw, Cg, KH, KW = (int(s) for s in w_shape)
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{OP}: groups must be a positive int, got {groups!r}")
    if Cw != C_in:
        raise ValueError(
            f"{OP}: the weight of shape {tuple(w_shape)} (in_channels, out_channels/groups, KH, KW) "
            f"expects {Cw} input channels, but the input of shape {tuple(x_shape)} has {C_in}"
        )
    if C_in % groups:
        raise ValueError(f"{OP}: in_channels ({C_in}) must be divisible by groups ({groups})")
    C_out = Cg * groups
    if b_shape is not None and tuple(b_shape) != (C_out,):
        raise ValueError(f"{OP}: bias must have shape (out_channels,) = ({C_out},), got {tuple(b_shape)}")
    (sh, sw), (ph, pw) = _pair(stride, "stride", OP), _pair(padding, "padding", OP)
    (oph, opw), (dh, dw) = _pair(output_padding, "output_padding", OP), _pair(dilation, "dilation", OP)
    if min(sh, sw, dh, dw) < 1 or min(ph, pw, oph, opw) < 0:
        raise ValueError(
            f"{OP}: stride and dilation must be positive, padding and output_padding non-negative"
        )
    if not (oph < max(sh, dh) and opw < max(sw, dw)):
        raise ValueError(
            f"{OP}: output_padding ({oph}, {opw}) must be smaller than stride ({sh}, {sw}) or dilation "
            f"({dh}, {dw})"
        )
    OH = (H - 1) * sh - 2 * ph + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - 2 * pw + dw * (KW - 1) + opw + 1
    if OH < 1 or OW < 1:
        raise ValueError(
            f"{OP}: the output would be {OH}x{OW} for input of shape {tuple(x_shape)}: the padding "
            f"({ph}, {pw}) is too large for this kernel ({KH}x{KW}) and stride ({sh}, {sw})"
        )
    # Work on the full, uncropped grid: every row/column a window writes to, (H - 1) s + d (KH - 1) + 1.
    # The conv2d without padding over it maps back to exactly H x W; the output is its window
    # [padding, padding + OH) (zero rows below it when output_padding reaches past the grid).
    Hf, Wf = (H - 1) * sh + dh * (KH - 1) + 1, (W - 1) * sw + dw * (KW - 1) + 1
    # (Its output size is (H, W): the full grid's size is conv2d's output-size formula, inverted.)
    g = ConvGeometry((N, C_out, Hf, Wf), (C_in, Cg, KH, KW), None, (sh, sw), 0, (dh, dw), groups)
    g.window = (ph, pw, OH, OW)
    return g


class ConvTranspose2d(Function):
    """out = col2im(Wm^T @ x) + b   (conv2d's input gradient, with x in the role of g).
    dL/dx = Wm @ im2col(g),  dL/dWm = sum_n x[n] @ im2col(g)[n]^T,  dL/db = g summed over N, H, W.
    Derivation: docs/backprop/conv_transpose.md."""

    saved_inputs = (0, 1)

    def forward(self, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        check_dtypes(x, weight, bias)
        g = transpose_geometry(x.shape, weight.shape, None if bias is None else bias.shape,
                               stride, padding, output_padding, dilation, groups)  # fmt: skip
        self.x, self.weight, self.g, self.has_bias = x, weight, g, bias is not None
        G, L = g.groups, g.OH * g.OW  # (OH, OW) of the conv2d = (H, W) of x
        xm = x.reshape(g.N, G, g.O // G, L)
        wm = weight.reshape(G, g.O // G, g.K)
        cols = wm.swapaxes(1, 2) @ xm  # (N, G, K, L) = Wm^T @ x[n]
        full = col2im(cols.reshape(g.N, g.C * g.KH * g.KW, L), g)  # (N, C_out, Hf, Wf)
        ph, pw, OH, OW = g.window
        if ph + OH > g.H or pw + OW > g.W:  # output_padding past the grid: rows nothing writes to
            pads = ((0, 0), (0, 0), (0, max(ph + OH - g.H, 0)), (0, max(pw + OW - g.W, 0)))
            full = get_array_module(full).pad(full, pads)
        out = get_array_module(full).ascontiguousarray(full[:, :, ph : ph + OH, pw : pw + OW])
        if bias is not None:
            out += bias.reshape(g.C, 1, 1)
        return out

    def backward(self, grad_output):
        g = self.g
        G, L = g.groups, g.OH * g.OW
        ph, pw, OH, OW = g.window  # g back on the full grid: zeros outside the output's window
        xp = get_array_module(grad_output)
        g_full = xp.zeros((g.N, g.C, g.H, g.W), dtype=grad_output.dtype)
        rows, cols_ = min(OH, g.H - ph), min(OW, g.W - pw)
        g_full[:, :, ph : ph + rows, pw : pw + cols_] = grad_output[:, :, :rows, :cols_]
        cols = im2col(g_full, g).reshape(g.N, G, g.K, L)
        dx = dw = db = None
        if self.needs_input_grad[0]:
            wm = self.weight.reshape(G, g.O // G, g.K)
            dx = (wm @ cols).reshape(self.x.shape)  # conv2d(g, W)
        if self.needs_input_grad[1]:
            xm = self.x.reshape(g.N, G, g.O // G, L)
            dw = (xm @ cols.swapaxes(2, 3)).sum(axis=0).reshape(self.weight.shape)
        if self.has_bias and self.needs_input_grad[2]:
            db = grad_output.sum(axis=(0, 2, 3))
        return dx, dw, db


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """2-D transposed convolution of an (N, C_in, H, W) input, as ``torch.nn.functional.conv_transpose2d``
    (same argument order: ``output_padding`` before ``groups`` before ``dilation``)."""
    return ConvTranspose2d.apply(
        input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    )  # fmt: skip
