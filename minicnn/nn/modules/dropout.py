"""``Dropout``: zero each element with probability p while training, scale the rest by 1/(1-p)."""

from __future__ import annotations

from minicnn.nn import functional as F
from minicnn.nn.module import Module
from minicnn.nn.modules._utils import check_tensor


class Dropout(Module):
    """Training: out = x * mask / (1 - p), mask ~ Bernoulli(1 - p) from minicnn's seeded generator.
    Evaluation (``model.eval()``): out = x.

    ``inplace`` is accepted for PyTorch compatibility; minicnn always computes out of place
    (same values, the input is left untouched).
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"

    def forward(self, input):
        check_tensor(self, input)
        return F.dropout(input, self.p, self.training)
