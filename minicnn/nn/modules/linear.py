"""``Linear``, ``Identity`` and ``Flatten``."""

from __future__ import annotations

import math

from minicnn.creation import empty
from minicnn.nn import functional as F
from minicnn.nn import init
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_tensor, layer_name
from minicnn.nn.parameter import Parameter


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to remove a layer). Arguments are ignored."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b over the last dimension: input ``(*, in_features)`` -> ``(*, out_features)``.

    ``weight`` has shape ``(out_features, in_features)``; weight and bias are initialised from
    U(-1/sqrt(in_features), 1/sqrt(in_features)) as in PyTorch.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        device = "cpu" if device is None else device
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )

    def forward(self, input):
        check_tensor(self, input)
        if input.ndim == 0 or input.shape[-1] != self.in_features:
            hint = " -- add nn.Flatten() before it" if input.ndim > 2 else ""
            raise ValueError(
                f"{layer_name(self)}: expected input of shape (N, {self.in_features}) "
                f"(or (*, {self.in_features})), got {tuple(input.shape)}{hint}"
            )
        return F.linear(input, self.weight, self.bias)


class Flatten(Module):
    """Flattens dims ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, input):
        check_tensor(self, input)
        return input.flatten(self.start_dim, self.end_dim)
