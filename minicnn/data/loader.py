"""``DataLoader``: whole batches sliced out of a uint8 dataset, converted to float on the device.

How a batch is made (no per-sample Python code anywhere):

1. at the start of each epoch, one permutation of ``range(N)`` from the loader's seeded
   generator (``shuffle=True``), or ``range(N)``;
2. ``images[indices]``: one fancy-indexing gather of uint8 pixels, in layout (B, C, H, W);
3. ``.astype(float32) / 255`` on the device, so the pixels cross to the GPU as uint8 (4x less
   traffic) -- when the device is CUDA and the dataset fits, it is copied there once, up front;
4. the batch-level ``transform`` (crop, flip, normalise), also on the device.

The generator's state is part of :meth:`DataLoader.state_dict`, so a checkpointed run resumes
with exactly the batches (and augmentations) it would have seen.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import random as _random
from minicnn.backend import Device, cupy_module, to_device
from minicnn.data.transforms import Transform
from minicnn.tensor import Tensor

__all__ = ["DataLoader"]

# Copy a dataset to the GPU once only if it takes at most this share of the free GPU memory.
_GPU_SHARE = 0.5


class DataLoader:
    """Iterate over ``dataset`` in batches of ``(images, labels)`` minicnn Tensors on ``device``.

    ``images`` is float32 (``dtype``) in layout (N, C, H, W) with values ``pixel / 255`` in
    [0, 1] before ``transform``; ``labels`` is int64 (N,). Arguments follow
    ``torch.utils.data.DataLoader``; ``seed`` seeds the shuffling/augmentation generator (None:
    drawn from minicnn's generator, so ``minicnn.manual_seed`` makes it reproducible too).

    ``dataset`` is a :class:`~minicnn.data.ArraysDataset` (``MNIST``, ``CIFAR10``...) or any
    object with ``.data`` (uint8, (N, H, W) or (N, H, W, C)) and ``.targets`` (N,).
    """

    def __init__(
        self,
        dataset,
        batch_size=1,
        shuffle=False,
        drop_last=False,
        device="cpu",
        transform=None,
        seed=None,
        dtype=np.float32,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        try:
            self.device = Device(device)
        except (ValueError, TypeError) as e:
            raise ValueError(f"DataLoader: {e}") from None
        if not (hasattr(dataset, "data") and hasattr(dataset, "targets")):
            raise TypeError(
                "DataLoader: dataset must have .data (uint8 images (N, H, W) or (N, H, W, C)) and "
                f".targets (N,), like minicnn.data.MNIST; got {type(dataset).__name__}"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {type(transform).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.dtype = np.dtype(dtype)
        if seed is None:
            seed = int(_random.cpu_generator().integers(2**62))
        self.seed = int(seed)
        self.generator = np.random.default_rng(self.seed)

        images = np.asarray(dataset.data)
        if images.ndim == 3:  # greyscale (N, H, W) -> (N, 1, H, W), a free view
            images = images[:, None]
        elif images.ndim == 4:  # channels last (N, H, W, C) -> (N, C, H, W), one copy up front
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        else:
            raise ValueError(
                "DataLoader: dataset images must have layout (N, H, W) or (N, H, W, C), "
                f"got shape {images.shape}"
            )
        labels = np.asarray(dataset.targets).astype(np.int64, copy=False)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"DataLoader: {images.shape[0]} images but labels of shape {labels.shape}")
        self.images, self.labels = images, labels
        self.on_device = self.device.type == "cpu" or self._fits_on_gpu(images.nbytes + labels.nbytes)
        if self.on_device:
            self.images, self.labels = to_device(images, self.device), to_device(labels, self.device)

    def _fits_on_gpu(self, nbytes):
        cp = cupy_module()
        with cp.cuda.Device(self.device.index):
            free, _ = cp.cuda.runtime.memGetInfo()
        return nbytes <= _GPU_SHARE * free

    def __len__(self):
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = self.images.shape[0]
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self._batch(idx)

    def _batch(self, idx):
        if self.on_device:
            idx = to_device(idx, self.device)
            x, y = self.images[idx], self.labels[idx]
        else:  # dataset kept in host memory: gather there, send the uint8 batch
            x, y = to_device(self.images[idx], self.device), to_device(self.labels[idx], self.device)
        x = x.astype(self.dtype) / 255.0  # a Python float keeps float32 float32
        if self.transform is not None:
            if isinstance(self.transform, Transform):
                x = self.transform.apply(x, self.generator)
            else:
                x = self.transform(x)
        return Tensor._make(x), Tensor._make(y)

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """The shuffling/augmentation generator's state (JSON-serialisable)."""
        return {"seed": self.seed, "generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator = np.random.default_rng(self.seed)
        self.generator.bit_generator.state = state["generator"]

    def __repr__(self):
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, device='{self.device}', transform={self.transform!r})"
        )
