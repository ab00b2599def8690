"""Sizes and argument checks shared by convolution and pooling (ops/conv.py, ops/pooling.py, their
compiled twins in kernels/, and the layers in nn/modules/). Every message names the op or layer,
what it expected and what it got."""

from __future__ import annotations

import numpy as np


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _pair(value, name, op="conv2d"):
    """An int or a pair of ints -> a pair of ints; anything else (2.5, "3", True, (1, 2, 3)) is a
    TypeError that names ``op``, as PyTorch refuses it."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints (height, width), got {value!r}")


def _check_4d(shape, what, layout, op):
    if len(shape) != 4:
        raise ValueError(
            f"{op}: expected {what} of shape {layout} (4 dimensions), got shape {tuple(shape)}"
            + (" -- add a batch dimension with x.unsqueeze(0)" if len(shape) == 3 and what == "input" else "")
        )


def window_args(op, kernel_size, stride, padding, dilation):
    """Checked kernel, stride, padding and dilation pairs of a conv or pooling layer or call.
    ``stride=None`` (pooling) means the kernel size."""
    kh, kw = _pair(kernel_size, "kernel_size", op)
    sh, sw = (kh, kw) if stride is None or stride == () or stride == [] else _pair(stride, "stride", op)
    ph, pw = _pair(padding, "padding", op)
    dh, dw = _pair(dilation, "dilation", op)
    if kh < 1 or kw < 1:
        raise ValueError(f"{op}: kernel_size must be positive, got {kernel_size!r}")
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be positive, got {stride!r}")
    if dh < 1 or dw < 1:
        raise ValueError(f"{op}: dilation must be positive, got {dilation!r}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw)


def pool_args(op, kernel_size, stride, padding, dilation):
    """``window_args`` plus pooling's own rule (PyTorch's): padding at most half the kernel."""
    (kh, kw), stride, (ph, pw), dilation = window_args(op, kernel_size, stride, padding, dilation)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(
            f"{op}: padding should be at most half of the kernel size, but got padding=({ph}, {pw}) "
            f"for kernel_size=({kh}, {kw})"
        )
    return (kh, kw), stride, (ph, pw), dilation


def adaptive_output_size(op, output_size, x_shape=None):
    """The (OH, OW) of adaptive pooling: an int, or a pair of ints or None (None keeps the input's
    H or W). A layer, which has no input yet, passes no ``x_shape``: the rest is checked."""
    H, W = 1, 1
    if x_shape is not None:
        if len(x_shape) != 4:
            raise ValueError(
                f"{op}: expected input of shape (N, C, H, W) (4 dimensions), got shape {tuple(x_shape)}"
            )
        H, W = int(x_shape[2]), int(x_shape[3])
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = (H if output_size[0] is None else output_size[0],
                       W if output_size[1] is None else output_size[1])  # fmt: skip
    OH, OW = _pair(output_size, "output_size", op)
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: output_size must be positive, got {output_size!r}")
    return OH, OW


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
        if not _is_int(groups) or groups < 1:
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
        if KH < 1 or KW < 1:
            raise ValueError(
                f"{op}: kernel size should be greater than zero, but the weight of shape {tuple(w_shape)} "
                f"has a {KH}x{KW} kernel"
            )
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


def _pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size along one axis.

    ceil_mode rounds up, but the last window must start inside the input or the left padding.
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


class PoolGeometry:
    """Checked sizes of one pooling call (messages name the op and the expected layout)."""

    def __init__(self, op, x_shape, kernel_size, stride, padding, dilation, ceil_mode):
        if len(x_shape) != 4:
            raise ValueError(
                f"{op}: expected input of shape (N, C, H, W) (4 dimensions), got shape {tuple(x_shape)}"
            )
        N, C, H, W = (int(v) for v in x_shape)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pool_args(op, kernel_size, stride, padding, dilation)
        OH = _pool_out_size(H, kh, sh, ph, dh, ceil_mode)
        OW = _pool_out_size(W, kw, sw, pw, dw, ceil_mode)
        if OH < 1 or OW < 1:
            raise ValueError(
                f"{op}: the window ({kh}x{kw}, dilation {dh}x{dw}) is larger than the padded input "
                f"({H + 2 * ph}x{W + 2 * pw}) of the input of shape {tuple(x_shape)} (N, C, H, W): "
                f"the output would be {OH}x{OW}"
            )
        self.N, self.C, self.H, self.W, self.OH, self.OW = N, C, H, W, OH, OW
        self.kernel, self.stride, self.padding, self.dilation = (kh, kw), (sh, sw), (ph, pw), (dh, dw)
        # Padded size the windows need: ceil_mode windows may hang over the right padding.
        self.Hp = max(H + 2 * ph, (OH - 1) * sh + dh * (kh - 1) + 1)
        self.Wp = max(W + 2 * pw, (OW - 1) * sw + dw * (kw - 1) + 1)

    def loop_args(self):
        """The ints a compiled kernel takes: KH, KW, sh, sw, ph, pw, dh, dw."""
        return (*self.kernel, *self.stride, *self.padding, *self.dilation)
