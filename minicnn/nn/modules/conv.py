"""``Conv2d``: 2-D convolution layer (the computation is ``F.conv2d``, minicnn/ops/conv.py)."""

from __future__ import annotations

import math

from minicnn.creation import empty
from minicnn.nn import functional as F
from minicnn.nn import init
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_input
from minicnn.nn.parameter import Parameter
from minicnn.ops._geometry import _is_int, window_args


class _ConvParameters(Module):
    """What Conv2d and ConvTranspose2d share: PyTorch's initialisation and printed form."""

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvParameters):
    """out[n, co] = bias[co] + sum_ci weight[co, ci] (cross-correlated with) x[n, ci].

    Same signature and defaults as ``torch.nn.Conv2d``. Weight shape
    ``(out_channels, in_channels // groups, kH, kW)``; default init U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for weight and bias (PyTorch's ``kaiming_uniform_(a=sqrt(5))``), fan_in = in/groups * kH * kW.
    ``padding`` may be an int, a pair, ``"valid"`` (0) or ``"same"`` (stride 1, and an odd
    ``dilation * (k - 1)`` is not supported: give the padding explicitly). Only ``padding_mode="zeros"``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not _is_int(value):
                raise TypeError(f"Conv2d: {name} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"Conv2d: {name} must be non-negative, got {value}")
        if not _is_int(groups) or groups <= 0:
            raise ValueError("Conv2d: groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"Conv2d: out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(
                f"Conv2d: padding_mode={padding_mode!r} is not supported by minicnn; only 'zeros' is "
                "(pad the input yourself for 'reflect', 'replicate' or 'circular')"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        # the same checks as F.conv2d's, now, rather than at the first forward (TypeError for 2.5 or "3")
        numeric_padding = 0 if isinstance(padding, str) else padding
        self.kernel_size, self.stride, pads, self.dilation = window_args(
            "Conv2d", kernel_size, stride, numeric_padding, dilation
        )
        self.groups, self.padding_mode = groups, padding_mode
        self.output_padding = (0, 0)
        if isinstance(padding, str):
            self.padding = padding
            self._padding = self._string_padding(padding)
        else:
            self.padding = self._padding = pads
        device = "cpu" if device is None else device
        self.weight = Parameter(
            empty(out_channels, in_channels // groups, *self.kernel_size, dtype=dtype, device=device)
        )
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _string_padding(self, padding):
        if padding == "valid":
            return (0, 0)
        if padding != "same":
            raise ValueError(f"Conv2d: invalid padding string {padding!r}, should be one of 'valid', 'same'")
        if self.stride != (1, 1):
            raise ValueError("Conv2d: padding='same' is not supported for strided convolutions")
        totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        if any(t % 2 for t in totals):
            raise ValueError(
                f"Conv2d: padding='same' with kernel_size={self.kernel_size} and dilation={self.dilation} "
                "needs uneven padding, which minicnn does not support; use an odd kernel size"
            )
        return tuple(t // 2 for t in totals)


    def forward(self, input):
        check_input(
            self,
            input,
            (4,),
            f"(N, {self.in_channels}, H, W)",
            channels=self.in_channels,
            hint=" (a single image needs a batch dimension: x.unsqueeze(0))" if input.ndim == 3 else "",
        )
        return F.conv2d(input, self.weight, self.bias, self.stride, self._padding, self.dilation, self.groups)
