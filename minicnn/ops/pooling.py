"""2-D max and average pooling (fixed and adaptive windows), with their backward passes.

The derivations are in ``docs/backprop/pooling.md``.

Every pooling window of output pixel (oh, ow) reads the padded input at rows
``oh*s + kh*d`` and columns ``ow*s + kw*d``. For one kernel offset (kh, kw) these positions
form a strided slice of the padded input with the shape of the output, so both passes loop
over the KH*KW kernel offsets only, never over pixels:

* forward: combine the KH*KW slices (running max / running sum);
* backward: add the upstream gradient back into the same KH*KW slices (windows that overlap
  receive a contribution from each window they belong to).

Fast path: non-overlapping windows (kernel == stride, no padding, no dilation) tile the input,
so every input pixel lies in at most one window: max-pool backward *writes* each of the KH*KW
strided slices once (no slice-adds), and skips the zero-fill when the windows cover the input.

Speed on the CPU: max pooling's KH*KW passes run over one slice of the batch at a time
(``batch_slices``, about 512 KB of input), so the slice stays in the L2 cache from one kernel
offset to the next instead of being re-read from memory KH*KW times. NumPy's strided loops are
slow per element, so the saving is large (measured in the comments of ``MaxPool2d``).
"""

from __future__ import annotations

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module, surely_finite
from minicnn.ops import workspace
from minicnn.ops.conv import _pair
from minicnn.ops.normalization import batch_slices


def _pool_out_size(op, size, k, s, p, d, ceil_mode):
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
        if ph > kh // 2 or pw > kw // 2:
            raise ValueError(
                f"{op}: padding should be at most half of the kernel size, but got padding=({ph}, {pw}) "
                f"for kernel_size=({kh}, {kw})"
            )
        OH = _pool_out_size(op, H, kh, sh, ph, dh, ceil_mode)
        OW = _pool_out_size(op, W, kw, sw, pw, dw, ceil_mode)
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
        # Non-overlapping windows that tile the input exactly (up to a cropped remainder).
        self.tiles = (
            (kh, kw) == (sh, sw)
            and (ph, pw) == (0, 0)
            and (dh, dw) == (1, 1)
            and (OH * kh <= H and OW * kw <= W)
        )

    def offsets(self):
        """(index, rows, cols) of every kernel offset: the slices of the padded input it reads."""
        (kh_, kw_), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        for kh in range(kh_):
            rows = slice(kh * dh, kh * dh + sh * (self.OH - 1) + 1, sh)
            for kw in range(kw_):
                yield kh * kw_ + kw, rows, slice(kw * dw, kw * dw + sw * (self.OW - 1) + 1, sw)

    def pad(self, x, value):
        """x padded with ``value`` to (N, C, Hp, Wp) (padding at the top/left, then whatever the
        windows need at the bottom/right); x itself when no padding is needed."""
        ph, pw = self.padding
        if (self.Hp, self.Wp) == (self.H, self.W):
            return x
        xp = get_array_module(x)
        out = xp.full((self.N, self.C, self.Hp, self.Wp), value, dtype=x.dtype)
        out[:, :, ph : ph + self.H, pw : pw + self.W] = x
        return out

    def crop(self, dxpad):
        """Undo ``pad`` on a gradient: the (N, C, H, W) interior, as its own contiguous array."""
        ph, pw = self.padding
        if (self.Hp, self.Wp) == (self.H, self.W):
            return dxpad
        return dxpad[:, :, ph : ph + self.H, pw : pw + self.W].copy()

    def tile_view(self, a):
        """(N, C, OH, KH, OW, KW) view of the part of ``a`` the tiling windows cover."""
        (kh, kw), OH, OW = self.kernel, self.OH, self.OW
        return a[:, :, : OH * kh, : OW * kw].reshape(self.N, self.C, OH, kh, OW, kw)


# ============================================================================ max pooling
class MaxPool2d(Function):
    """out = max over each window.  The gradient flows only to the arg-max of each window:
    dL/dx[p] = sum of g over the windows whose arg-max is p (0 elsewhere). Ties go to the FIRST
    maximum in row-major window order, NaN counts as the maximum (the last NaN), as in PyTorch CPU.
    """

    def forward(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, indices_out=None):
        g = PoolGeometry("max_pool2d", x.shape, kernel_size, stride, padding, dilation, ceil_mode)
        xp = get_array_module(x)
        if not self.needs_input_grad[0] and indices_out is None:
            return self._max_only(g, xp, x)
        n_off = g.kernel[0] * g.kernel[1]
        idx_dtype = np.uint8 if n_off <= 255 else np.int32
        xpad = g.pad(x, -np.inf)
        best = workspace.empty(xp, (g.N, g.C, g.OH, g.OW), x.dtype)
        argmax = workspace.empty(xp, (g.N, g.C, g.OH, g.OW), idx_dtype)
        first = self._first_inside(g, xp).astype(idx_dtype)
        # Speed: the KH*KW passes run over one slice of the batch at a time, which stays in the
        # cache between passes (whole batch vs slices, same process: 4.7 -> 3.9 ms on
        # 64x32x28x28, 11.4 -> 7.4 ms on 128x32x32x32). NaN is rare, so the scan first ignores
        # it: np.maximum still propagates NaN into the max, and only a slice whose max has a
        # NaN is scanned again with the NaN rule for the arg-max. This replaces an isnan(x)
        # pass over the whole input (~0.5 ms on 64x32x28x28) by one over the 4x smaller output.
        # On a GPU the NaN test runs in the scan itself: asking first whether a slice has a NaN
        # would make the host wait for the device in every training step.
        on_gpu = xp is not np
        for s in batch_slices(xpad, xp):
            self._scan(g, xp, xpad[s], best[s], argmax[s], first, nan=on_gpu)
            if not on_gpu and bool(xp.isnan(best[s]).any()):
                self._scan(g, xp, xpad[s], best[s], argmax[s], first, nan=True)
        self.argmax, self.g, self.dtype = argmax, g, x.dtype
        if indices_out is not None:
            indices_out.append(self._flat_indices(argmax, g, xp))
        return best

    @staticmethod
    def _max_only(g, xp, x):
        """The window maxima without the arg-max, when no gradient is wanted (inference, no_grad):
        one np.maximum per kernel offset instead of four ufuncs (NaN still propagates). Measured
        on 64x32x28x28: 2.6 -> 1.4 ms; a fifth of an inference pass was the unused arg-max."""
        xpad = g.pad(x, -np.inf)
        best = workspace.empty(xp, (g.N, g.C, g.OH, g.OW), x.dtype)
        for s in batch_slices(xpad, xp):  # each slice stays in the cache over the KH*KW passes
            views = [xpad[s][:, :, rows, cols] for _, rows, cols in g.offsets()]
            out = best[s]
            out[...] = views[0]
            for v in views[1:]:
                xp.maximum(out, v, out=out)
        return best

    @staticmethod
    def _scan(g, xp, xpad, best, argmax, first, nan):
        """Running max and arg-max of the windows of ``xpad`` (one batch slice) into best, argmax.

        PyTorch scans each window in row-major order starting from -inf at the window's first
        pixel inside the input (``first``), and replaces the running max when val > max or val
        is NaN. Starting there matters only for windows whose values are all -inf. Plain ufuncs
        with out= buffers: the running max is np.maximum (NaN-propagating, like PyTorch's max);
        offsets are visited in increasing order, so the arg-max is the largest offset at which
        the value was taken: argmax = max(argmax, off * taken).
        """
        views = [xpad[:, :, rows, cols] for _, rows, cols in g.offsets()]
        best[...] = views[0]  # max(-inf, v) = v, and off * taken = 0 cannot raise argmax
        argmax[...] = first
        taken = xp.empty(best.shape, dtype=bool)
        hit = xp.empty(best.shape, dtype=argmax.dtype)
        for off, v in enumerate(views[1:], start=1):
            xp.greater(v, best, out=taken)
            if nan:
                taken |= xp.isnan(v)
            xp.maximum(best, v, out=best)
            xp.multiply(taken, argmax.dtype.type(off), out=hit)
            xp.maximum(argmax, hit, out=argmax)

    @staticmethod
    def _first_inside(g, xp):
        """(OH, OW) offset index of each window's first pixel inside the input (not padding)."""
        kw, (sh, sw), (ph, pw), (dh, dw) = g.kernel[1], g.stride, g.padding, g.dilation
        oh, ow = xp.arange(g.OH), xp.arange(g.OW)
        first_kh = xp.maximum(0, -(-(ph - oh * sh) // dh))  # ceil((ph - oh*sh) / dh), at least 0
        first_kw = xp.maximum(0, -(-(pw - ow * sw) // dw))
        return first_kh[:, None] * kw + first_kw[None, :]

    @staticmethod
    def _flat_indices(argmax, g, xp):
        """PyTorch's return_indices: the arg-max as a flat index into each (H, W) input plane."""
        (kw, (sh, sw), (ph, pw), (dh, dw)) = (g.kernel[1], g.stride, g.padding, g.dilation)
        a = argmax.astype(np.int64)
        row = xp.arange(g.OH).reshape(g.OH, 1) * sh - ph + (a // kw) * dh
        col = xp.arange(g.OW) * sw - pw + (a % kw) * dw
        return row * g.W + col

    def backward(self, grad_output):
        g, argmax = self.g, self.argmax
        xp = get_array_module(grad_output)
        # g * (argmax == off) is the fast way to route g, but inf * 0 is NaN where PyTorch's
        # gradient is 0: when g may hold inf/NaN, where() routes it exactly (slower).
        exact = not surely_finite(grad_output, xp)
        zero = xp.zeros((), dtype=grad_output.dtype)
        if g.tiles:
            # Each input pixel lies in at most one window: for each kernel offset, write
            # g * (argmax == offset) straight into the strided view of dx that offset reads.
            # When the windows cover the input exactly, these writes fill all of dx (no
            # zero-fill, ~0.3 ms on 64x32x28x28). One batch slice at a time, so the KH*KW
            # strided writes into the same cache lines hit the cache (whole batch vs slices:
            # 2.3 -> 1.8 ms on 64x32x28x28, 6.1 -> 4.9 ms on 128x32x32x32). The strided writes
            # themselves (NumPy does not vectorise them) are most of what is left.
            covered = g.OH * g.kernel[0] == g.H and g.OW * g.kernel[1] == g.W
            dx = workspace.empty(xp, (g.N, g.C, g.H, g.W), grad_output.dtype)
            if not covered:
                dx[...] = 0
            for s in batch_slices(dx, xp):
                dxs, gs, am = dx[s], grad_output[s], argmax[s]
                for off, rows, cols in g.offsets():
                    if exact:
                        dxs[:, :, rows, cols] = xp.where(am == off, gs, zero)
                    else:
                        xp.multiply(gs, am == off, out=dxs[:, :, rows, cols])
            return dx
        dxpad = xp.zeros((g.N, g.C, g.Hp, g.Wp), dtype=grad_output.dtype)
        for s in batch_slices(dxpad, xp):
            dxs, gs, am = dxpad[s], grad_output[s], argmax[s]
            for off, rows, cols in g.offsets():
                dxs[:, :, rows, cols] += xp.where(am == off, gs, zero) if exact else gs * (am == off)
        return g.crop(dxpad)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling over an (N, C, H, W) input, as ``torch.nn.functional.max_pool2d``.

    With ``return_indices=True`` also returns the int64 flat index (into H*W) of each maximum.
    """
    from minicnn.tensor import Tensor

    holder = [] if return_indices else None
    out = MaxPool2d.apply(
        input,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        indices_out=holder,
    )
    return (out, Tensor._make(holder[0])) if return_indices else out


# ============================================================================ average pooling
def _divisor(g, count_include_pad, divisor_override, xp, dtype):
    """(OH, OW) divisor of every window, with PyTorch's rules.

    A window [start, start+k) is first clipped to the padded input [-p, size+p): that length
    counts when count_include_pad; then clipped to the input [0, size): that length counts
    otherwise. (Only ceil_mode windows ever reach past the right padding.)
    """
    if divisor_override is not None:
        return xp.full((g.OH, g.OW), divisor_override, dtype=dtype)
    lengths = []
    for size, k, s, p, out in zip((g.H, g.W), g.kernel, g.stride, g.padding, (g.OH, g.OW)):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            lengths.append(end - start)
        else:
            lengths.append(np.minimum(end, size) - np.maximum(start, 0))
    return xp.asarray(np.outer(lengths[0], lengths[1]).astype(dtype))


class AvgPool2d(Function):
    """out = (sum over each window) / divisor.  Every input pixel of a window receives
    g / divisor from that window: dL/dx[p] = sum over the windows w containing p of g[w] / divisor[w].
    """

    def forward(
        self, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
        divisor_override=None,
    ):  # fmt: skip
        g = PoolGeometry("avg_pool2d", x.shape, kernel_size, stride, padding, 1, ceil_mode)
        if divisor_override is not None and (
            not isinstance(divisor_override, (int, np.integer)) or divisor_override == 0
        ):
            raise ValueError(f"avg_pool2d: divisor_override must be a non-zero int, got {divisor_override!r}")
        xp = get_array_module(x)
        xpad = g.pad(x, 0)
        total = None
        for _, rows, cols in g.offsets():
            v = xpad[:, :, rows, cols]
            total = v.copy() if total is None else xp.add(total, v, out=total)
        self.divisor = _divisor(g, count_include_pad, divisor_override, xp, x.dtype)
        self.g = g
        total /= self.divisor
        return total

    def backward(self, grad_output):
        g = self.g
        xp = get_array_module(grad_output)
        share = grad_output / self.divisor  # what each pixel of a window receives from it
        if g.tiles:
            dx = xp.zeros((g.N, g.C, g.H, g.W), dtype=grad_output.dtype)
            g.tile_view(dx)[...] = share[:, :, :, None, :, None]
            return dx
        dxpad = xp.zeros((g.N, g.C, g.Hp, g.Wp), dtype=grad_output.dtype)
        for _, rows, cols in g.offsets():
            dxpad[:, :, rows, cols] += share
        return g.crop(dxpad)


def avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
):
    """Average pooling over an (N, C, H, W) input, as ``torch.nn.functional.avg_pool2d``."""
    return AvgPool2d.apply(
        input,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


# ============================================================================ adaptive average pooling
def _adaptive_matrix(size, out, xp, dtype):
    """(out, size) averaging matrix: row i is 1/len over PyTorch's bin
    [floor(i*size/out), ceil((i+1)*size/out)), 0 elsewhere."""
    i = np.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return xp.asarray((inside / (end - start)[:, None]).astype(dtype))


class AdaptiveAvgPool2d(Function):
    """Average over PyTorch's adaptive bins. Along each axis that is a linear map, so
    out = Ah @ x @ Aw^T (Ah: (OH, H), Aw: (OW, W) averaging matrices) and dL/dx = Ah^T @ g @ Aw.
    Global pooling (1x1) is a plain mean: dL/dx = g / (H*W) everywhere.
    """

    def forward(self, x, output_size):
        if x.ndim != 4:
            raise ValueError(
                f"adaptive_avg_pool2d: expected input of shape (N, C, H, W) (4 dimensions), "
                f"got shape {tuple(x.shape)}"
            )
        N, C, H, W = x.shape
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2:  # None keeps that size
            output_size = (
                H if output_size[0] is None else output_size[0],
                W if output_size[1] is None else output_size[1],
            )
        OH, OW = _pair(output_size, "output_size", "adaptive_avg_pool2d")
        if OH < 1 or OW < 1:
            raise ValueError(f"adaptive_avg_pool2d: output_size must be positive, got {output_size!r}")
        xp = get_array_module(x)
        self.shape, self.out = x.shape, (OH, OW)
        if (OH, OW) == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True)
        self.ah = _adaptive_matrix(H, OH, xp, x.dtype)
        self.aw = _adaptive_matrix(W, OW, xp, x.dtype)
        return self.ah @ x @ self.aw.T

    def backward(self, grad_output):
        N, C, H, W = self.shape
        if self.out == (1, 1):
            xp = get_array_module(grad_output)
            dx = xp.empty(self.shape, dtype=grad_output.dtype)
            dx[...] = grad_output / (H * W)
            return dx
        return self.ah.T @ grad_output @ self.aw


def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling to ``output_size`` (int, pair, None = keep), as in PyTorch."""
    return AdaptiveAvgPool2d.apply(input, output_size=output_size)
