"""``BatchNorm1d`` and ``BatchNorm2d``: the layer keeps the running statistics, the batch_norm op computes.

Training: normalise with the batch mean/variance (over N and the spatial dims) and update
running_mean/var <- (1 - momentum) * running + momentum * batch (unbiased variance), as PyTorch.
``momentum=None`` gives a cumulative average: momentum = 1 / num_batches_tracked (a 0-d array
computed on the layer's device, handed to the op as is).
Evaluation: normalise with the running statistics.
"""

from __future__ import annotations

import numpy as np

from minicnn.autograd import no_grad
from minicnn.creation import ones, tensor, zeros
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_input, layer_name
from minicnn.nn.parameter import Parameter
from minicnn.ops.normalization import _batch_norm


class _BatchNorm(Module):
    _layouts: tuple = ()
    _expected: str = ""

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        device=None,
        dtype=None,
        *,
        bias=True,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        device = "cpu" if device is None else device
        # affine: learnable per-channel scale (weight, ones) and shift (bias, zeros; bias=False drops it).
        self.register_parameter(
            "weight", Parameter(ones(num_features, dtype=dtype, device=device)) if affine else None
        )
        use_bias = affine and bias
        self.register_parameter(
            "bias", Parameter(zeros(num_features, dtype=dtype, device=device)) if use_bias else None
        )
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=np.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            with no_grad():
                self.weight.fill_(1)
        if self.bias is not None:
            with no_grad():
                self.bias.zero_()

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )

    def forward(self, input):
        expected = self._expected.format(C=self.num_features)
        check_input(self, input, self._layouts, expected, channels=self.num_features)
        if self.training and input.numel() // self.num_features == 1:  # (0: an empty batch, allowed)
            raise ValueError(
                f"{layer_name(self)}: expected more than 1 value per channel when training, got input of "
                f"shape {tuple(input.shape)} (use a batch of at least 2, or call model.eval())"
            )
        factor = 0.0 if self.momentum is None else float(self.momentum)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average: 1 / num_batches_tracked, computed
                # where the counter lives (reading it on the host would wait for the GPU every step)
                factor = 1.0 / self.num_batches_tracked.array  # 0-d float64, as PyTorch's double
        # Batch statistics while training, or when there are no running statistics to use.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        return _batch_norm(
            input,
            self.running_mean if keep_running else None,
            self.running_var if keep_running else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, per channel C."""

    _layouts = (2, 3)
    _expected = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel C."""

    _layouts = (4,)
    _expected = "(N, {C}, H, W)"
