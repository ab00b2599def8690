"""``minicnn.nn``: layers with PyTorch's names and defaults, and ``functional`` (``F``)."""

from minicnn.nn import functional
