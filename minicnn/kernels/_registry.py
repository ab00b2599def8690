"""Imports every kernel module, so each registers its twins (``minicnn.kernels.twin``)."""

from minicnn.kernels import activation, conv, linear, normalization, pooling  # noqa: F401
