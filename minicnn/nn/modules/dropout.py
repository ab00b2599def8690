"""``Dropout`` and ``Dropout2d``: zero elements (or whole channels) with probability p while training,
scale the rest by 1/(1-p)."""

from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_tensor


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: dropout probability has to be between 0 and 1, but got {p}"
            )
        self.p, self.inplace = p, inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Training: out = x * mask / (1 - p), mask ~ Bernoulli(1 - p) from minicnn's seeded generator.
    Evaluation (``model.eval()``): out = x. ``inplace=True`` writes the result into the input."""

    def forward(self, input):
        check_tensor(self, input)
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels: training: out[n, c] = x[n, c] * mask[n, c] / (1 - p), one
    Bernoulli(1 - p) draw per (sample, channel); evaluation: out = x. Input (N, C, H, W); a 3-D
    input is read as (N, C, L) with a warning, as PyTorch 2.x does."""

    def forward(self, input):
        check_tensor(self, input)
        return F.dropout2d(input, self.p, self.training, self.inplace)
