"""Imports every kernel module, so each registers its twins (``minicnn.kernels.twin``)."""
