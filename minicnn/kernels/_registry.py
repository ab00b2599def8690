"""Imports every kernel module, so each registers its twins (``minicnn.kernels.twin``)."""
from minicnn.kernels import conv, pooling  # noqa: F401
