"""``ConvTranspose2d``: the learnable upsampling layer (the computation is ``F.conv_transpose2d``,
minicnn/ops/conv_transpose.py)."""

from __future__ import annotations

from minicnn.creation import empty
from minicnn.nn import functional as F
from minicnn.nn.modules._utils import check_input
from minicnn.nn.modules.conv import _ConvParameters
from minicnn.nn.parameter import Parameter
from minicnn.ops._geometry import _is_int, _pair, window_args


class ConvTranspose2d(_ConvParameters):
    """The adjoint of ``Conv2d``: H_out = (H - 1) stride - 2 padding + dilation (K - 1) + output_padding + 1.

    Same signature and defaults as ``torch.nn.ConvTranspose2d``. Weight shape
    ``(in_channels, out_channels // groups, kH, kW)``; default init as PyTorch's: U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with fan_in = out_channels/groups * kH * kW (PyTorch reads the weight's second
    axis as fan_in). Only ``padding_mode="zeros"``; ``forward(input)`` without ``output_size``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        output_padding=0,
        groups=1,
        bias=True,
        dilation=1,
        padding_mode="zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = "ConvTranspose2d"
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name}: {arg} must be a non-negative int, got {value!r}")
        if not _is_int(groups) or groups <= 0:
            raise ValueError(f"{name}: groups must be a positive integer")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
                f"by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.padding, self.dilation = window_args(
            name, kernel_size, stride, padding, dilation
        )
        self.output_padding = _pair(output_padding, "output_padding", name)
        if any(o >= max(s, d) for o, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(
                f"{name}: output_padding {self.output_padding} must be smaller than stride {self.stride} or "
                f"dilation {self.dilation}"
            )
        self.padding_mode = padding_mode
        device = "cpu" if device is None else device
        self.weight = Parameter(
            empty(in_channels, out_channels // groups, *self.kernel_size, dtype=dtype, device=device)
        )
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def forward(self, input, output_size=None):
        if output_size is not None:
            raise NotImplementedError(
                "ConvTranspose2d: output_size is not supported; give output_padding in the constructor"
            )
        check_input(self, input, (4,), f"(N, {self.in_channels}, H, W)", channels=self.in_channels)
        return F.conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding, self.output_padding, self.groups,
            self.dilation,
        )  # fmt: skip
