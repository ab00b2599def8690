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

Speed. On the CPU the batch is processed in chunks of a few MiB of ``cols``: the buffers come
from a workspace that keeps them between calls (``ops/workspace.py``: no fresh memory, hence no
page faults, per call), the data stays in the cache between the im2col copy and the GEMM, and there
are few BLAS calls. Backward rebuilds ``cols`` chunk by chunk instead of keeping a matrix KH*KW
times the input's size alive between the passes. On a GPU (CuPy) the whole batch is one chunk.

Four layouts share this code, all measured (docs/performance.md), chosen per call:

* ``_Im2Col``, the compact layout above: any stride, dilation and groups; the only one on CuPy;
* ``_Im2ColRows`` for the backward pass of a stride-1 convolution on NumPy: its columns run over
  whole padded input rows, so im2col and col2im move long contiguous runs instead of OW-long
  pieces (``_backward_layout``);
* ``_Patches`` for the forward pass of an ungrouped convolution with 64+ input channels on NumPy:
  a channels-last copy of the input, then one row of KH*KW*C values per output pixel, copied in
  runs of KW*C values (``_use_patches``);
* ``_PerSample`` for the forward pass and the weight-only backward pass (a first layer) of an
  ungrouped convolution with a short filter (C*KH*KW <= 48, e.g. 1 or 3 input channels) on
  NumPy: one small GEMM per sample that reads and writes the (N, C, H, W) arrays as they are
  (``_use_per_sample``).
"""

from __future__ import annotations

import numpy as np

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.ops import workspace

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
        # everything a scratch buffer's layout depends on (ops/workspace.py)
        self.key = (C, H, W, O, KH, KW, groups, self.stride, self.dilation, pads)

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
    """The compact column layout, for any stride and dilation: one column per output pixel,

        cols (C*KH*KW, m*OH*OW),    the chunk's gradient (O, m*OH*OW).

    Holds the buffers of one call (allocated once, reused by every chunk of ``n`` samples) and the
    four moves between the (N, C, H, W) arrays and the matrices the GEMMs use.

    Backward rebuilds ``cols`` rather than keeping the forward pass's: keeping it means a fresh
    array of 9x the input (3x3 kernels) per call, and on the measured machine writing fresh
    memory (page faults) cost more than the im2col copy it saves (docs/performance.md).
    """

    def __init__(self, x, g, n):
        self.x, self.g, self.n = x, g, n
        self.xp = get_array_module(x)
        self.L = self.columns_per_sample()
        self.padded = any(g.pads)
        self.source = _PaddedSource(x, g, n, type(self).__name__)
        self.interior = self.source.interior  # where the input sits in a padded plane
        self.cols = self.new_buffer("cols", g.C * g.KH * g.KW)
        # backward's buffers, made when first needed
        self.gmat = self.dcols = self.dxpad = None

    def columns_per_sample(self):
        return self.g.OH * self.g.OW

    def buffer(self, name, shape, zero=False):
        """A scratch buffer reused by the next call with the same geometry (ops/workspace.py)."""
        key = ("conv2d", type(self).__name__, name, self.g.key)
        return workspace.scratch(self.xp, key, shape, self.x.dtype, zero=zero)

    def new_buffer(self, name, rows):
        """A scratch (rows, n, L) buffer."""
        return self.buffer(name, (rows, self.n, self.L))

    def __call__(self, a, b):
        """cols (groups, K, m*L) of samples a..b-1 (a view into the reused buffer)."""
        g, m = self.g, b - a
        cols = self.cols[:, :m]
        windows = _window_view(self.source(a, b), g).transpose(1, 2, 3, 0, 4, 5)  # (C, KH, KW, m, OH, OW)
        self.xp.copyto(cols.reshape(g.C, g.KH, g.KW, m, g.OH, g.OW), windows)
        return cols.reshape(g.groups, g.K, m * self.L)

    def grad_matrix(self, grad_output, a, b):
        """The upstream gradient of samples a..b-1 as (groups, O/groups, m*L), for the GEMMs."""
        g, m = self.g, b - a
        if self.gmat is None:
            self.gmat = self.new_buffer("grad", g.O)
        self.xp.copyto(self.gmat[:, :m], grad_output[a:b].reshape(m, g.O, self.L).transpose(1, 0, 2))
        return self.gmat[:, :m].reshape(g.groups, g.O // g.groups, m * self.L)

    def output_view(self, res, m):
        """The GEMM result (groups, O/groups, m*L) seen as (m, O, OH, OW)."""
        g = self.g
        return res.reshape(g.O, m, g.OH, g.OW).transpose(1, 0, 2, 3)

    def input_grad(self, wm, gm, dx_chunk):
        """dx_chunk (m, C, H, W) = col2im(Wm^T @ gm): dcols for the whole chunk in one GEMM per
        group, then scattered back onto the input pixels."""
        g, m = self.g, gm.shape[-1] // self.L
        if self.dcols is None:
            self.dcols = self.buffer("dcols", (g.groups, g.K, self.n * self.L))
        dcols = self.xp.matmul(wm.transpose(0, 2, 1), gm, out=self.dcols[:, :, : m * self.L])
        if not self.padded:
            _col2im(dcols, dx_chunk, g)
            return
        if self.dxpad is None:
            self.dxpad = self.buffer("dxpad", (self.n, g.C, g.Hp, g.Wp))
        _col2im(dcols, self.dxpad[:m], g)
        dx_chunk[...] = self.dxpad[:m][self.interior]


class _PaddedSource:
    """Samples a..b-1 of the input, zero-padded: copied into the interior of a reused buffer
    whose border stays zero (the input itself when there is no padding)."""

    def __init__(self, x, g, n, layout):
        self.x = x
        top, bottom, left, right = g.pads
        self.interior = (slice(None), slice(None), slice(top, top + g.H), slice(left, left + g.W))
        self.xpad = None
        if any(g.pads):
            key = ("conv2d", layout, "xpad", g.key)
            self.xpad = workspace.scratch(get_array_module(x), key, (n, g.C, g.Hp, g.Wp), x.dtype, zero=True)

    def __call__(self, a, b):
        if self.xpad is None:
            return self.x[a:b]
        src = self.xpad[: b - a]
        src[self.interior] = self.x[a:b]
        return src


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


class _Im2ColRows(_Im2Col):
    """The stride-1 layout: one column per output row position (oh, w) for EVERY w < Wp,

        cols (C*KH*KW, m*OH*Wp),    the chunk's gradient (O, m*OH*Wp) with zeros at w >= OW.

    Why. With stride 1, the values kernel offset (kh, kw) reads for one (sample, channel) are the
    flat padded plane from position kh*dh*Wp + kw*dw on: ONE contiguous run of (OH-1)*Wp + OW
    values (the output rows are Wp apart in the input, exactly as in this layout). So im2col is
    C*KH*KW*m long contiguous copies and col2im C*KH*KW*m long contiguous adds, instead of NumPy
    walking OW-long pieces (14 values for MNIST's conv2), which costs more in loop overhead than in
    data. The price: Wp/OW more GEMM columns (16/14 for MNIST's conv2) whose outputs are dropped.

    The extra columns w >= OW read real input values from the row's right border (or the next
    row). Their gradient is 0, so they add 0 * (finite value) = 0 to dW and W^T @ 0 = 0 to the
    input gradient; only non-finite values (inf/NaN in x or W) could leak, so ``Conv2d.backward``
    then falls back to the compact layout. Used for backward only (``_backward_layout``): measured
    ~10 % faster there (MNIST conv2 backward 17.5 -> 15.4 ms, CIFAR conv2 39.1 -> 35.6 ms, quiet
    2-core CPU), but ~5 % slower for the forward pass, whose output copy it makes strided.
    """

    def columns_per_sample(self):
        return self.g.OH * self.g.Wp

    def new_buffer(self, name, rows):
        # Zeros: the last Wp - OW columns of each sample are never written and must read as 0.
        return self.buffer(name, (rows, self.n, self.L), zero=True)

    def _runs(self, plane_array, m):
        """View (C, KH, KW, m, span) of the flat planes of an (m, C, Hp, Wp) contiguous array:
        [c, kh, kw, i, t] is plane (i, c) at position kh*dh*Wp + kw*dw + t, t < span."""
        g = self.g
        isz = plane_array.itemsize
        sn, sc = plane_array.strides[:2]
        (dh, dw), span = g.dilation, (g.OH - 1) * g.Wp + g.OW
        return self.xp.lib.stride_tricks.as_strided(
            plane_array,
            shape=(g.C, g.KH, g.KW, m, span),
            strides=(sc, dh * g.Wp * isz, dw * isz, sn, isz),
        )

    def __call__(self, a, b):
        g, m = self.g, b - a
        span = (g.OH - 1) * g.Wp + g.OW
        src = self.xp.ascontiguousarray(self.source(a, b))
        self.xp.copyto(self.cols[:, :m, :span].reshape(g.C, g.KH, g.KW, m, span), self._runs(src, m))
        return self.cols[:, :m].reshape(g.groups, g.K, m * self.L)

    def grad_matrix(self, grad_output, a, b):
        g, m = self.g, b - a
        if self.gmat is None:
            self.gmat = self.new_buffer("grad", g.O)  # zeros at w >= OW stay zero
        dst = self.gmat[:, :m].reshape(g.O, m, g.OH, g.Wp)[..., : g.OW]
        self.xp.copyto(dst, grad_output[a:b].transpose(1, 0, 2, 3))
        return self.gmat[:, :m].reshape(g.groups, g.O // g.groups, m * self.L)

    def input_grad(self, wm, gm, dx_chunk):
        """As in the compact layout, but col2im adds long contiguous runs: offset (kh, kw)'s rows
        of dcols go back, for each (channel, sample), onto the flat padded plane from position
        kh*dh*Wp + kw*dw on (the same runs im2col read). The extra columns carry 0 (see above).
        (Measured against one small GEMM per kernel offset added at once: 7-10 % faster.)"""
        g, m = self.g, gm.shape[-1] // self.L
        span = (g.OH - 1) * g.Wp + g.OW
        if self.dcols is None:
            self.dcols = self.buffer("dcols", (g.groups, g.K, self.n * self.L))
        dcols = self.xp.matmul(wm.transpose(0, 2, 1), gm, out=self.dcols[:, :, : m * self.L])
        if self.padded:
            if self.dxpad is None:
                self.dxpad = self.buffer("dxpad", (self.n, g.C, g.Hp, g.Wp))
            dst = self.dxpad[:m]
        else:
            dst = dx_chunk
        dst[...] = 0
        runs = self._runs(dst, m)  # (C, KH, KW, m, span) view of dst
        d = dcols.reshape(g.C, g.KH, g.KW, m, self.L)[..., :span]
        for kh in range(g.KH):
            for kw in range(g.KW):
                runs[:, kh, kw] += d[:, kh, kw]
        if self.padded:
            dx_chunk[...] = dst[self.interior]


class _Patches:
    """The forward pass's layout when there are no groups: one ROW per output pixel,

        patches (m*OH*OW, KH*KW*C)   row = the receptive field of one output pixel, in
                                     (kernel row, kernel column, channel) order,
        out (O, m*OH*OW) = W @ patches^T,   W reordered once to (O, KH, KW, C).

    Why. The chunk is first copied channels-last, (m, Hp, Wp, C). In that order the KW*C values
    one kernel row of a window reads are contiguous, so im2col copies m*OH*OW*KH runs of KW*C
    values (96 for CIFAR's conv2) instead of C*KH*KW*m*OH runs of OW values (16) in the compact
    layout. The price is one transposed copy of the input into the channels-last buffer.
    Measured against the compact layout (forward, quiet 2-core CPU): CIFAR's conv3
    (128x64x8x8 -> 128) 12.1 -> 9.8 ms; with 32 channels only 0-5 % (CIFAR's and MNIST's conv2),
    and slower with 8 or 16 (short runs again), hence ``_use_patches``. (The summation order
    differs from the compact layout's, which in float32 changes the last bits.)
    """

    def __init__(self, x, g, n):
        self.x, self.g, self.n = x, g, n
        self.xp = get_array_module(x)
        top, bottom, left, right = g.pads
        self.interior = (slice(None), slice(top, top + g.H), slice(left, left + g.W), slice(None))
        key = ("conv2d", "patches", g.key)
        self.xpad = workspace.scratch(self.xp, key + ("xpad",), (n, g.Hp, g.Wp, g.C), x.dtype, zero=True)
        self.L = g.OH * g.OW
        self.patches = workspace.scratch(self.xp, key + ("patches",), (n * self.L, g.K), x.dtype)

    def __call__(self, a, b):
        """patches (m*OH*OW, KH*KW*C) of samples a..b-1 (a view into the reused buffer)."""
        g, m = self.g, b - a
        src = self.xpad[:m]
        src[self.interior] = self.x[a:b].transpose(0, 2, 3, 1)  # channels-last, zero border kept
        sn, s_h, s_w, sc = src.strides
        (sh, sw), (dh, dw) = g.stride, g.dilation
        windows = self.xp.lib.stride_tricks.as_strided(
            src,
            shape=(m, g.OH, g.OW, g.KH, g.KW, g.C),
            strides=(sn, s_h * sh, s_w * sw, s_h * dh, s_w * dw, sc),
        )
        patches = self.patches[: m * self.L]
        self.xp.copyto(patches.reshape(m, g.OH, g.OW, g.KH, g.KW, g.C), windows)
        return patches

    def forward(self, weight, bias, out):
        """out (N, O, OH, OW) = conv2d, chunk by chunk."""
        g, xp = self.g, self.xp
        wm = xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(g.O, g.K)  # (O, KH*KW*C)
        res = workspace.scratch(xp, ("conv2d", "patches", g.key, "out"), (g.O, self.n * self.L), self.x.dtype)
        for a in range(0, g.N, self.n):
            b = min(g.N, a + self.n)
            m = b - a
            # (O, m*OH*OW) = W @ patches^T: one GEMM (BLAS reads the transposed view with a flag),
            # in the orientation whose copy to (m, O, OH, OW) moves runs of OH*OW values
            chunk = xp.matmul(wm, self(a, b).T, out=res[:, : m * self.L])
            view = chunk.reshape(g.O, m, g.OH, g.OW).transpose(1, 0, 2, 3)  # (m, O, OH, OW)
            if bias is None:
                xp.copyto(out[a:b], view)
            else:
                xp.add(view, bias.reshape(1, g.O, 1, 1), out=out[a:b])
        return out


class _PerSample:
    """The layout for short filters: one (K, OH*OW) column matrix per sample,

        cols (m, K, OH*OW),    out[i] (O, OH*OW) = W (O, K) @ cols[i],
        dW = sum_i g[i] (O, OH*OW) @ cols[i]^T,

    as batched GEMMs (``np.matmul`` over the sample axis) on the output and the gradient in
    their own (N, O, OH, OW) memory. Why. With K = C*KH*KW small (9 for MNIST's first layer,
    27 for CIFAR's) the GEMMs are cheap and memory-bound, and what costs is moving data: the
    compact layout's transposed copy of the output (forward) and of the gradient (backward) is
    as large as the output itself. Here the GEMMs write the output where it belongs and read the
    gradient where it is. Measured against the compact layout (quiet 2-core CPU, float32): MNIST
    conv1 (64x1x28x28 -> 32) forward 1.60 -> 0.88 ms, weight gradient 2.36 -> 0.97 ms; CIFAR
    conv1 (128x3x32x32 -> 32) 6.36 -> 5.18 and 9.02 -> 5.68 ms; with K = 72 and more the many
    small GEMMs lose (hence ``_use_per_sample``). The input gradient, when wanted, keeps the
    other layouts (it needs col2im, which this layout does not make cheaper).
    """

    def __init__(self, x, g, n):
        self.x, self.g, self.n = x, g, n
        self.xp = get_array_module(x)
        self.source = _PaddedSource(x, g, n, "per-sample")
        self.L = g.OH * g.OW
        key = ("conv2d", "per-sample", g.key)
        self.cols = workspace.scratch(self.xp, key + ("cols",), (n, g.K, self.L), x.dtype)

    def __call__(self, a, b):
        """cols (m, K, OH*OW) of samples a..b-1 (a view into the reused buffer)."""
        g, m = self.g, b - a
        cols = self.cols[:m]
        windows = _window_view(self.source(a, b), g)  # (m, C, KH, KW, OH, OW)
        self.xp.copyto(cols.reshape(m, g.C, g.KH, g.KW, g.OH, g.OW), windows)
        return cols

    def forward(self, weight, bias, out):
        """out (N, O, OH, OW) = conv2d, chunk by chunk, one GEMM per sample."""
        g, xp = self.g, self.xp
        wm = weight.reshape(g.O, g.K)
        for a in range(0, g.N, self.n):
            b = min(g.N, a + self.n)
            res = xp.matmul(wm, self(a, b), out=out[a:b].reshape(b - a, g.O, self.L))
            if bias is not None:  # while the chunk is in the cache
                res += bias.reshape(1, g.O, 1)
        return out

    def weight_grad(self, grad_output):
        """dL/dW as (O, K): sum over samples of g[i] @ cols[i]^T, chunk by chunk."""
        g, xp = self.g, self.xp
        g3 = grad_output.reshape(g.N, g.O, self.L)
        dw = xp.zeros((g.O, g.K), dtype=self.x.dtype)
        for a in range(0, g.N, self.n):
            b = min(g.N, a + self.n)
            dw += xp.matmul(g3[a:b], self(a, b).transpose(0, 2, 1)).sum(axis=0)
        return dw


# ============================================================================ the op
def _use_per_sample(g, xp):
    """_PerSample for ungrouped convolutions with short filters (C*KH*KW <= 48) on NumPy, where
    it measured faster (first layers); the other layouts otherwise."""
    return xp is np and g.groups == 1 and g.K <= 48


def _use_patches(g, xp):
    """The forward layout: _Patches for ungrouped convolutions with at least 64 input channels
    on NumPy (where it measured clearly faster), the compact _Im2Col otherwise."""
    return xp is np and g.groups == 1 and g.C >= 64


def _backward_layout(g, xp, need_x):
    """The column layout of a backward pass. The stride-1 row layout (_Im2ColRows) is measured
    ~10 % faster when the input gradient is wanted (its col2im is where it wins); forward and
    weight-only backward (a first layer) use the compact layout, which was ~5 % faster there.
    On CuPy one kernel copies the whole batch either way, so the row layout's extra GEMM columns
    would cost without saving anything."""
    return _Im2ColRows if (xp is np and g.stride == (1, 1) and need_x) else _Im2Col


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
        n = g.chunk_size(xp, x.dtype.itemsize)
        out = workspace.empty(xp, (g.N, g.O, g.OH, g.OW), x.dtype)
        self.x, self.weight, self.g, self.has_bias = x, weight, g, bias is not None
        if _use_per_sample(g, xp):
            return _PerSample(x, g, n).forward(weight, bias, out)
        if _use_patches(g, xp):
            return _Patches(x, g, n).forward(weight, bias, out)
        im2col = _Im2Col(x, g, n)
        wm = weight.reshape(g.groups, g.O // g.groups, g.K)
        res = im2col.buffer("out", (g.groups, g.O // g.groups, n * im2col.L))
        for a in range(0, g.N, n):
            b = min(g.N, a + n)
            m = b - a
            chunk = xp.matmul(wm, im2col(a, b), out=res[:, :, : m * im2col.L])  # one GEMM per group
            # (O, m, ...) -> (m, O, OH, OW): a transposed copy while the chunk is in the cache,
            # with the bias added on the way
            if bias is None:
                xp.copyto(out[a:b], im2col.output_view(chunk, m))
            else:
                xp.add(im2col.output_view(chunk, m), bias.reshape(1, g.O, 1, 1), out=out[a:b])
        return out

    def backward(self, grad_output):
        need_x, need_w = self.needs_input_grad[:2]
        need_b = self.has_bias and self.needs_input_grad[2]
        xp = get_array_module(grad_output)
        if need_w and not need_x and _use_per_sample(self.g, xp):  # a first layer
            n = self.g.chunk_size(xp, self.x.dtype.itemsize)
            dx, dw = None, _PerSample(self.x, self.g, n).weight_grad(grad_output)
        else:
            layout = _backward_layout(self.g, xp, need_x)
            if layout is _Im2ColRows and not bool(xp.isfinite(self.weight).all()):
                layout = _Im2Col  # a non-finite weight would turn the extra columns' 0 gradient into NaN
            dx, dw = self._grads(grad_output, layout, need_x, need_w)
            if dw is not None and layout is _Im2ColRows and not bool(xp.isfinite(dw).all()):
                # an inf/NaN in x may have reached dW through an extra column (0 * inf): redo exactly
                dw = self._grads(grad_output, _Im2Col, False, True)[1]
        db = None
        if need_b:  # sum over N, OH, OW; einsum measured ~2x faster than .sum(axis=(0, 2, 3))
            db = xp.einsum("nol->o", grad_output.reshape(self.g.N, self.g.O, -1))
        return dx, None if dw is None else dw.reshape(self.weight.shape), db

    def _grads(self, grad_output, layout, need_x, need_w):
        """dL/dx and dL/dWm (groups, O/groups, K), chunk by chunk, in the given column layout."""
        x, g = self.x, self.g
        xp = get_array_module(grad_output)
        n = g.chunk_size(xp, x.dtype.itemsize)
        cols = layout(x, g, n)
        wm = self.weight.reshape(g.groups, g.O // g.groups, g.K)
        dx = workspace.empty(xp, x.shape, x.dtype) if need_x else None
        dwT = xp.zeros((g.groups, g.K, g.O // g.groups), dtype=x.dtype) if need_w else None
        dwT_chunk = xp.empty_like(dwT) if need_w else None
        for a in range(0, g.N, n):
            b = min(g.N, a + n)
            gm = cols.grad_matrix(grad_output, a, b)  # (groups, O/groups, m*L)
            if need_w:  # dW^T += cols @ g_chunk^T  (sums over the chunk's samples and pixels;
                # this orientation measured ~20 % faster than g_chunk @ cols^T)
                dwT += xp.matmul(cols(a, b), gm.transpose(0, 2, 1), out=dwT_chunk)
            if need_x:  # dcols = W^T @ g_chunk, scattered back onto the input pixels (col2im)
                cols.input_grad(wm, gm, dx[a:b])
        dw = None if dwT is None else dwT.transpose(0, 2, 1)
        return dx, dw


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over an (N, C, H, W) input, as ``torch.nn.functional.conv2d``."""
    return Conv2d.apply(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
