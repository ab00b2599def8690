"""Batch-level data augmentation, run on the device where the batch lives (NumPy or CuPy).

Each transform takes a whole float batch ``(N, C, H, W)`` and returns a new one; there is no
per-image Python loop. The random choices (crop offsets, flip coin tosses: N small numbers) are
drawn from a seeded NumPy generator -- the :class:`~minicnn.data.DataLoader` passes its own, so
an epoch's augmentation is reproducible and a resumed run continues bit for bit -- and moved to
the device; the pixel work itself runs on the device.

Names and defaults follow ``torchvision.transforms``::

    Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), Normalize(mean, std)])

A transform may also be any plain callable ``f(batch_array) -> batch_array``.
"""

from __future__ import annotations

import numpy as np

from minicnn import random as _random
from minicnn.backend import device_of, get_array_module, to_device

__all__ = ["Transform", "Compose", "RandomCrop", "RandomHorizontalFlip", "Normalize"]


def _check_batch(x, who):
    if x.ndim != 4:
        raise ValueError(
            f"{who}: expected a batch of images in layout (N, C, H, W), got shape {tuple(x.shape)}"
        )


class Transform:
    """Base class: ``transform(batch, generator=None)``; ``batch`` is an array or a minicnn Tensor."""

    def __call__(self, batch, generator=None):
        from minicnn.tensor import Tensor

        is_tensor = isinstance(batch, Tensor)
        x = batch.array if is_tensor else batch
        _check_batch(x, type(self).__name__)
        out = self.apply(x, generator if generator is not None else _random.cpu_generator())
        return Tensor._make(out) if is_tensor else out

    def apply(self, x, generator):  # pragma: no cover - every transform overrides it
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms one after the other."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def apply(self, x, generator):
        for t in self.transforms:
            x = t.apply(x, generator) if isinstance(t, Transform) else t(x)
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class RandomCrop(Transform):
    """Zero-pad each image by ``padding`` pixels, then cut a random ``size`` window (one per image).

    As ``torchvision.transforms.RandomCrop(size, padding)`` with the default constant (0) fill.
    ``size`` is an int (square) or (H, W).
    """

    def __init__(self, size, padding=0):
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        self.padding = int(padding)
        if len(self.size) != 2 or min(self.size) <= 0 or self.padding < 0:
            raise ValueError(
                f"RandomCrop: size must be positive (H, W) and padding >= 0, got {size}, {padding}"
            )

    def apply(self, x, generator):
        xp = get_array_module(x)
        n, _, h, w = x.shape
        p, (th, tw) = self.padding, self.size
        x = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else xp.ascontiguousarray(x)
        hp, wp = h + 2 * p, w + 2 * p
        if th > hp or tw > wp:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the padded image ({hp}, {wp}) "
                f"(image {h}x{w} + padding {p})"
            )
        # Top-left corner of each window, drawn on the CPU (N numbers), used on the device.
        top = to_device(generator.integers(0, hp - th + 1, size=n), device_of(x))
        left = to_device(generator.integers(0, wp - tw + 1, size=n), device_of(x))
        # windows[n, c, i, j] is the (th, tw) window whose top-left pixel is (i, j): a strided
        # view of the padded batch (a window steps like a pixel), no copy until it is indexed.
        # (as_strided exists in every NumPy and CuPy; sliding_window_view only in recent CuPy.)
        sn, sc, sh, sw = x.strides
        windows = xp.lib.stride_tricks.as_strided(
            x, shape=(n, x.shape[1], hp - th + 1, wp - tw + 1, th, tw), strides=(sn, sc, sh, sw, sh, sw)
        )
        return windows[xp.arange(n), :, top, left]  # (N, C, th, tw): one gather for the batch


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p`` (torchvision's ``RandomHorizontalFlip``)."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p}")
        self.p = float(p)

    def apply(self, x, generator):
        xp = get_array_module(x)
        flip = to_device(generator.random(x.shape[0]) < self.p, device_of(x))
        return xp.where(flip[:, None, None, None], x[..., ::-1], x)


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel (0-1 scale), as ``torchvision.transforms.Normalize``."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def apply(self, x, generator):
        xp = get_array_module(x)
        c = x.shape[1]
        if len(self.mean) not in (1, c):
            raise ValueError(
                f"Normalize: {len(self.mean)} mean/std values for a batch with {c} channel(s) "
                f"(layout (N, C, H, W), got shape {tuple(x.shape)})"
            )
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std
