"""Imports every kernel module, so each registers its twins (``minicnn.kernels.twin``)."""

from minicnn.kernels import activation, conv, normalization, pooling  # noqa: F401
