"""2-D max and average pooling (fixed and adaptive windows), with their backward passes.

The textbook tier: whole-array code on ``xp`` (NumPy or CuPy), the math of docs/backprop/pooling.md.
For one kernel offset (i, j), the pixels that the windows read form one strided slice of the padded
input, with the output's shape (``window``). So both passes loop over the KH*KW offsets, never over
pixels: forward combines the slices (running max, sum), backward adds the gradient back into them
(their adjoint, as col2im). Sizes and checks: ``PoolGeometry`` (ops/_geometry.py). On NumPy arrays
the compiled twins of minicnn/kernels/pooling.py run instead (docs/kernels.md).
"""

from __future__ import annotations

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.ops._geometry import PoolGeometry, _is_int, adaptive_output_size


def window(a, g, i, j):
    """The (N, C, OH, OW) strided slice of the padded array ``a`` that kernel offset (i, j) reads."""
    (sh, sw), (dh, dw) = g.stride, g.dilation
    return a[:, :, i * dh : i * dh + sh * g.OH : sh, j * dw : j * dw + sw * g.OW : sw]


def pad(x, g, value):
    """x padded with ``value`` to (N, C, Hp, Wp): at the top/left, and at the bottom/right as far as
    the windows reach (ceil_mode windows may hang past the padding)."""
    (ph, pw) = g.padding
    widths = ((0, 0), (0, 0), (ph, g.Hp - g.H - ph), (pw, g.Wp - g.W - pw))
    return get_array_module(x).pad(x, widths, constant_values=value)


def crop(dxpad, g):
    """The gradient of the input pixels (the padding is a constant: its gradient is dropped)."""
    (ph, pw) = g.padding
    return get_array_module(dxpad).ascontiguousarray(dxpad[:, :, ph : ph + g.H, pw : pw + g.W])


# ============================================================================ max pooling
def first_inside(g, xp):
    """(OH, OW) offset index i*KW + j of each window's first pixel inside the input."""
    kw, (sh, sw), (ph, pw), (dh, dw) = g.kernel[1], g.stride, g.padding, g.dilation
    i = xp.maximum(0, -((xp.arange(g.OH) * sh - ph) // dh))  # ceil((ph - oh*sh) / dh), at least 0
    j = xp.maximum(0, -((xp.arange(g.OW) * sw - pw) // dw))
    return (i[:, None] * kw + j[None, :]).astype(xp.int32)


def max_pool2d_forward(x, g):
    """out (N, C, OH, OW): the maximum of each window; arg: the offset i*KW + j that holds it.

    PyTorch's scan: each window starts at -inf with its first pixel inside the input, and a pixel
    replaces the maximum when it is strictly greater, or NaN. So ties go to the first maximum (in
    row-major window order), a NaN wins (the last NaN), and a window of -inf picks its first pixel
    inside the input. The padding is -inf, which never replaces anything."""
    xp = get_array_module(x)
    xpad = pad(x, g, -xp.inf)
    out = xp.full((g.N, g.C, g.OH, g.OW), -xp.inf, dtype=x.dtype)
    arg = xp.broadcast_to(first_inside(g, xp), out.shape)
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            v = window(xpad, g, i, j)
            take = (v > out) | xp.isnan(v)
            out = xp.where(take, v, out)
            arg = xp.where(take, xp.int32(i * g.kernel[1] + j), arg)
    return out, arg


def max_pool2d_backward(grad, arg, g):
    """dx: each window's gradient goes to the pixel that won it (0 to the others: where(), not a
    multiply, so that an inf or NaN gradient reaches no other pixel); a pixel that won several
    overlapping windows receives their sum."""
    xp = get_array_module(grad)
    dxpad = xp.zeros((g.N, g.C, g.Hp, g.Wp), dtype=grad.dtype)
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            window(dxpad, g, i, j)[...] += xp.where(arg == i * g.kernel[1] + j, grad, 0)
    return crop(dxpad, g)


def flat_indices(arg, g):
    """PyTorch's return_indices: the arg-max as a flat int64 index row*W + col into each input plane."""
    xp = get_array_module(arg)
    kw, (sh, sw), (ph, pw), (dh, dw) = g.kernel[1], g.stride, g.padding, g.dilation
    a = arg.astype(xp.int64)
    row = xp.arange(g.OH).reshape(g.OH, 1) * sh - ph + (a // kw) * dh
    col = xp.arange(g.OW) * sw - pw + (a % kw) * dw
    return row * g.W + col


class MaxPool2d(Function):
    """out = max over each window; dL/dx[p] = sum of g over the windows whose arg-max is p."""

    saved_inputs = ()  # backward reads the arg-max only

    def forward(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, indices_out=None):
        self.g = PoolGeometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        out, self.arg = max_pool2d_forward(x, self.g)
        if indices_out is not None:
            indices_out.append(flat_indices(self.arg, self.g))
        return out

    def backward(self, grad_output):
        return max_pool2d_backward(grad_output, self.arg, self.g)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling over an (N, C, H, W) input, as ``torch.nn.functional.max_pool2d``; with
    ``return_indices=True`` also the int64 flat index (into H*W) of each maximum."""
    from minicnn.tensor import Tensor

    holder = [] if return_indices else None
    out = MaxPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, ceil_mode=ceil_mode, indices_out=holder)  # fmt: skip
    return (out, Tensor._make(holder[0])) if return_indices else out


# ============================================================================ average pooling
def divisor(g, count_include_pad, divisor_override, xp, dtype):
    """(OH, OW) divisor of every window, with PyTorch's rules: a window [start, start + k) is first
    clipped to the padded input [-p, size + p) -- its length there counts when count_include_pad --
    then to the input [0, size) -- that length counts otherwise. (Only ceil_mode windows reach past
    the right padding.) ``divisor_override`` replaces both."""
    if divisor_override is not None:
        if not _is_int(divisor_override) or divisor_override == 0:
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int, got {divisor_override!r}")
        return xp.full((g.OH, g.OW), divisor_override, dtype=dtype)
    lengths = []
    for size, k, s, p, out in zip((g.H, g.W), g.kernel, g.stride, g.padding, (g.OH, g.OW)):
        start = xp.arange(out) * s - p
        end = xp.minimum(start + k, size + p)
        lengths.append(end - start if count_include_pad else xp.minimum(end, size) - xp.maximum(start, 0))
    return (lengths[0][:, None] * lengths[1][None, :]).astype(dtype)


def avg_pool2d_forward(x, g, div):
    """out = (sum of each window of the zero-padded input) / div."""
    xp = get_array_module(x)
    xpad = pad(x, g, 0)
    total = xp.zeros((g.N, g.C, g.OH, g.OW), dtype=x.dtype)
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            total += window(xpad, g, i, j)
    return total / div


def avg_pool2d_backward(grad, g, div):
    """Every pixel of a window receives g / div from it; overlapping windows add up."""
    xp = get_array_module(grad)
    share = grad / div
    dxpad = xp.zeros((g.N, g.C, g.Hp, g.Wp), dtype=grad.dtype)
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            window(dxpad, g, i, j)[...] += share
    return crop(dxpad, g)


class AvgPool2d(Function):
    """out = (sum over each window) / divisor.
    dL/dx[p] = sum over the windows w that hold p of g[w] / divisor[w]."""

    saved_inputs = ()  # backward needs only the sizes and the divisors

    def forward(self, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):  # fmt: skip
        self.g = PoolGeometry("avg_pool2d", x.shape, kernel_size, stride, padding, 1, ceil_mode)
        self.div = divisor(self.g, count_include_pad, divisor_override, get_array_module(x), x.dtype)
        return avg_pool2d_forward(x, self.g, self.div)

    def backward(self, grad_output):
        return avg_pool2d_backward(grad_output, self.g, self.div)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):  # fmt: skip
    """Average pooling over an (N, C, H, W) input, as ``torch.nn.functional.avg_pool2d``."""
    return AvgPool2d.apply(input, kernel_size=kernel_size, stride=stride, padding=padding,
                           ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                           divisor_override=divisor_override)  # fmt: skip


# ============================================================================ adaptive average pooling
def adaptive_matrix(size, out, xp, dtype):
    """(out, size) averaging matrix: row i is 1/len over PyTorch's bin
    [floor(i*size/out), ceil((i+1)*size/out)), 0 elsewhere."""
    i = xp.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    j = xp.arange(size)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive bins. Along each axis that is a linear map, so
    out = Ah @ x @ Aw^T (Ah: (OH, H), Aw: (OW, W) averaging matrices) and dL/dx = Ah^T @ g @ Aw.
    Global pooling (1x1) is a plain mean: dL/dx = g / (H*W) everywhere.
    """

    saved_inputs = ()  # backward needs only the sizes and the averaging matrices

    def forward(self, x, output_size):
        OH, OW = adaptive_output_size("adaptive_avg_pool2d", output_size, x.shape)
        xp = get_array_module(x)
        self.shape, self.out = x.shape, (OH, OW)
        if (OH, OW) == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True)
        self.ah = adaptive_matrix(x.shape[2], OH, xp, x.dtype)
        self.aw = adaptive_matrix(x.shape[3], OW, xp, x.dtype)
        return self.ah @ x @ self.aw.T

    def backward(self, grad_output):
        N, C, H, W = self.shape
        if self.out == (1, 1):
            xp = get_array_module(grad_output)
            return xp.broadcast_to(grad_output / (H * W), self.shape).copy()
        return self.ah.T @ grad_output @ self.aw


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling to ``output_size`` (int, pair, None = keep), as in PyTorch."""
    return AdaptiveAvgPool2d.apply(input, output_size=output_size)
