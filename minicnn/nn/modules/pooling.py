"""Pooling layers: ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d`` (ops in minicnn/ops/pooling.py)."""

from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_input
from minicnn.ops._geometry import adaptive_output_size, pool_args

_NCHW_HINT = " (a single image needs a batch dimension: x.unsqueeze(0))"


def _check_nchw(layer, input):
    check_input(layer, input, (4,), "(N, C, H, W)", hint=_NCHW_HINT if input.ndim == 3 else "")


class MaxPool2d(Module):
    """out[n, c, i, j] = max of x[n, c] over the (dilated) window at (i*stride, j*stride).

    ``stride`` defaults to ``kernel_size``, as in PyTorch.
    """

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False
    ):
        super().__init__()
        pool_args("MaxPool2d", kernel_size, stride, padding, dilation)  # F.max_pool2d's checks, now
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def forward(self, input):
        _check_nchw(self, input)
        extra = {"return_indices": True} if self.return_indices else {}
        return F.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            **extra,
        )


class AvgPool2d(Module):
    """out[n, c, i, j] = mean of x[n, c] over the window at (i*stride, j*stride).

    ``stride`` defaults to ``kernel_size``.
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        super().__init__()
        pool_args("AvgPool2d", kernel_size, stride, padding, 1)  # F.avg_pool2d's checks, now
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input):
        _check_nchw(self, input)
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (int or (H, W)); ``1`` gives global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        adaptive_output_size("AdaptiveAvgPool2d", output_size)  # F.adaptive_avg_pool2d's checks, now
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, input):
        _check_nchw(self, input)
        return F.adaptive_avg_pool2d(input, self.output_size)
