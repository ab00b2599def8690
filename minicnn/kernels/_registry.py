"""Imports every kernel module, so each registers its twins (``minicnn.kernels.twin``)."""

from minicnn.kernels import activation, normalization  # noqa: F401
