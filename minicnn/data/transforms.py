"""torchvision-style transforms, each usable on ONE image or on a whole BATCH.

Two call forms, one class (names, arguments and defaults follow ``torchvision.transforms``):

* **per sample**, as torchvision: ``t(image)`` on a PIL image (``RandomCrop``,
  ``RandomHorizontalFlip``, ``ToTensor``) or on a ``(C, H, W)`` Tensor/array (``RandomCrop``,
  ``RandomHorizontalFlip``, ``Normalize``). This is what a dataset's ``transform=`` receives::

      MNIST("./data", transform=Compose([ToTensor(), Normalize((0.1307,), (0.3081,))]))

* **per batch**, on the device: ``t(batch)`` on a float ``(N, C, H, W)`` array/Tensor, with one
  random draw *per image* (crop offsets, flip coin tosses: N small numbers from a NumPy
  generator, moved to the device) and no per-image Python loop. ``DataLoader(transform=...)``
  uses this form, and so does the loader's fast path for ``MNIST``/``CIFAR10``/... when their
  ``transform=`` is made only of these classes (see ``docs/data.md``).

Random numbers come from the ``generator`` argument, else from the generator the
:class:`~minicnn.data.DataLoader` installed for the batch being made (so augmentation is
reproducible with the loader's seed, whatever ``num_workers`` is), else from minicnn's
global generator (``minicnn.manual_seed``).

A transform may also be any plain callable ``f(x) -> x``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from minicnn import random as _random
from minicnn.backend import device_of, get_array_module, to_device

__all__ = [
    "Transform",
    "Compose",
    "ToTensor",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Lambda",
]

_local = threading.local()


def current_generator() -> np.random.Generator:
    """The generator random transforms draw from when none is passed (see the module doc)."""
    g = getattr(_local, "generator", None)
    return g if g is not None else _random.cpu_generator()


@contextmanager
def using_generator(generator):
    """Make ``generator`` this thread's source of random numbers for transforms (DataLoader workers)."""
    previous = getattr(_local, "generator", None)
    _local.generator = generator
    try:
        yield
    finally:
        _local.generator = previous


def _is_pil(x) -> bool:
    return type(x).__module__.startswith("PIL.")


class Transform:
    """Base class: ``transform(x, generator=None)`` on a PIL image, a (C, H, W) image or a (N, C, H, W) batch.

    Subclasses implement ``apply(batch_array, generator)`` (the batch form, NumPy or CuPy); the
    per-image form runs it on a batch of one. Geometric transforms also implement
    ``apply_pil(image, generator)``.
    """

    def __call__(self, x, generator=None):
        from minicnn.tensor import Tensor

        generator = generator if generator is not None else current_generator()
        if _is_pil(x):
            return self.apply_pil(x, generator)
        is_tensor = isinstance(x, Tensor)
        arr = x.array if is_tensor else x
        ndim = getattr(arr, "ndim", None)
        if ndim == 4:
            out = self.apply(arr, generator)
        elif ndim == 3:
            out = self.apply(arr[None], generator)[0]
        else:
            shape = tuple(arr.shape) if ndim is not None else type(x).__name__
            raise ValueError(
                f"{type(self).__name__}: expected an image in layout (C, H, W) or a batch of images in "
                f"layout (N, C, H, W), got {shape}"
            )
        return Tensor._make(out) if is_tensor else out

    def apply(self, x, generator):  # pragma: no cover - every transform overrides it
        raise NotImplementedError

    def apply_pil(self, image, generator):
        raise TypeError(
            f"{type(self).__name__} works on tensors (C, H, W) or batches (N, C, H, W), got a PIL image: "
            "put ToTensor() before it, as in torchvision"
        )

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply transforms one after the other (each in the form its input calls for)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, generator=None):
        generator = generator if generator is not None else current_generator()
        for t in self.transforms:
            x = t(x, generator) if isinstance(t, Transform) else t(x)
        return x

    def apply(self, x, generator):
        for t in self.transforms:
            x = t.apply(x, generator) if isinstance(t, Transform) else t(x)
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class Lambda(Transform):
    """Wrap a function ``f(x) -> x`` as a transform (``torchvision.transforms.Lambda``)."""

    def __init__(self, lambd):
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, x, generator=None):
        return self.lambd(x)

    def apply(self, x, generator):
        return self.lambd(x)


class ToTensor(Transform):
    """PIL image or uint8 ``(H, W[, C])`` array -> float ``(C, H, W)`` minicnn Tensor in [0, 1].

    As ``torchvision.transforms.ToTensor``: uint8 pixels are divided by 255 into the default
    float dtype (float32); arrays of other dtypes keep their values and dtype.

    The batch form (``apply``, as a loader's ``transform=``) takes what the two loader paths give:
    a float batch, already ``(N, C, H, W)`` in [0, 1] (the fast path), passes unchanged; a uint8
    batch is a stack of the arrays ToTensor takes one at a time, ``(N, H, W)`` or ``(N, H, W, C)``
    (the per-sample path's collated images), and becomes ``(N, C, H, W) / 255`` -- bit for bit
    what the fast path makes of the same images.
    """

    def __init__(self):
        pass

    def __call__(self, pic, generator=None):
        from minicnn.dtypes import default_float
        from minicnn.tensor import Tensor

        if _is_pil(pic):
            arr = np.asarray(pic)
            if arr.dtype == np.bool_:  # mode '1'
                arr = arr.astype(np.uint8) * 255
        elif isinstance(pic, np.ndarray):
            arr = pic
            if arr.ndim not in (2, 3):
                raise ValueError(
                    f"ToTensor: pic should be 2 or 3 dimensional (H, W) or (H, W, C), got shape {arr.shape}"
                )
        else:
            raise TypeError(
                f"ToTensor: pic should be a PIL Image or a NumPy array (H, W[, C]), got {type(pic).__name__}"
            )
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if arr.dtype == np.uint8:
            arr = arr.astype(default_float()) / 255.0
        return Tensor._make(arr)

    def apply(self, x, generator):
        from minicnn.dtypes import default_float

        if x.dtype != np.uint8:
            return x
        if x.ndim == 3:  # (N, H, W) greyscale -> (N, 1, H, W), a view
            x = x[:, None]
        elif x.ndim == 4:  # (N, H, W, C) -> (N, C, H, W), as the fast path lays its images out
            x = get_array_module(x).ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
            raise ValueError(
                "ToTensor: a uint8 batch must be (N, H, W) or (N, H, W, C) images, "
                f"got shape {tuple(x.shape)}"
            )
        return x.astype(default_float()) / 255.0

    def __repr__(self):
        return "ToTensor()"


class RandomCrop(Transform):
    """Zero-pad each image by ``padding`` pixels, then cut a random ``size`` window (one per image).

    As ``torchvision.transforms.RandomCrop(size, padding)`` with the default constant (0) fill.
    ``size`` is an int (square) or (H, W). Works on PIL images, (C, H, W) images and batches.
    """

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        if padding is None:
            padding = 0
        if not np.isscalar(padding):
            raise ValueError(f"RandomCrop: padding must be one int (the same on every side), got {padding!r}")
        self.padding = int(padding)
        if len(self.size) != 2 or min(self.size) <= 0 or self.padding < 0:
            raise ValueError(
                f"RandomCrop: size must be positive (H, W) and padding >= 0, got {size}, {padding}"
            )
        if pad_if_needed or fill != 0 or padding_mode != "constant":
            raise NotImplementedError(
                "RandomCrop: only zero padding is implemented (pad_if_needed=False, fill=0, "
                "padding_mode='constant')"
            )

    def _offsets(self, h, w, n, generator):
        p, (th, tw) = self.padding, self.size
        hp, wp = h + 2 * p, w + 2 * p
        if th > hp or tw > wp:
            raise ValueError(
                f"RandomCrop: crop size {self.size} is larger than the padded image ({hp}, {wp}) "
                f"(image {h}x{w} + padding {p})"
            )
        # Top-left corner of each window: the tops of all images, then the lefts.
        return generator.integers(0, hp - th + 1, size=n), generator.integers(0, wp - tw + 1, size=n)

    def apply(self, x, generator):
        xp = get_array_module(x)
        n, _, h, w = x.shape
        p, (th, tw) = self.padding, self.size
        top, left = self._offsets(h, w, n, generator)
        top, left = to_device(top, device_of(x)), to_device(left, device_of(x))
        x = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else xp.ascontiguousarray(x)
        hp, wp = h + 2 * p, w + 2 * p
        # windows[n, c, i, j] is the (th, tw) window whose top-left pixel is (i, j): a strided
        # view of the padded batch (a window steps like a pixel), no copy until it is indexed.
        # (as_strided exists in every NumPy and CuPy; sliding_window_view only in recent CuPy.)
        sn, sc, sh, sw = x.strides
        windows = xp.lib.stride_tricks.as_strided(
            x, shape=(n, x.shape[1], hp - th + 1, wp - tw + 1, th, tw), strides=(sn, sc, sh, sw, sh, sw)
        )
        return windows[xp.arange(n), :, top, left]  # (N, C, th, tw): one gather for the batch

    def apply_pil(self, image, generator):
        p, (th, tw) = self.padding, self.size
        top, left = self._offsets(image.height, image.width, 1, generator)
        x0, y0 = int(left[0]) - p, int(top[0]) - p
        return image.crop((x0, y0, x0 + tw, y0 + th))  # PIL fills outside the image with zeros


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

    def apply_pil(self, image, generator):
        if generator.random(1)[0] < self.p:
            from PIL import Image

            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel (0-1 scale), as ``torchvision.transforms.Normalize``."""

    def __init__(self, mean, std, inplace=False):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: std must be positive, got {self.std}")

    def apply(self, x, generator):
        xp = get_array_module(x)
        if x.dtype.kind != "f":
            raise TypeError(
                f"Normalize: expected a float tensor (pixels in [0, 1], e.g. after ToTensor()), got {x.dtype}"
            )
        c = x.shape[1]
        if len(self.mean) not in (1, c):
            raise ValueError(
                f"Normalize: {len(self.mean)} mean/std values for a batch with {c} channel(s) "
                f"(layout (N, C, H, W), got shape {tuple(x.shape)})"
            )
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean!r}, std={self.std!r})"


# The transforms whose per-image and batch forms give the same numbers (random ones: the same
# distribution, drawn per image). The loader's fast path may run a dataset's transform=
# made of these as batch operations.
_GEOMETRIC = (RandomCrop, RandomHorizontalFlip)
_BATCHABLE = (RandomCrop, RandomHorizontalFlip, Normalize)


def batch_plan(transform):
    """The batch transforms equivalent to a per-sample ``transform``, or None if there are none.

    ``transform`` must be ``ToTensor()`` alone or a ``Compose`` of: geometric transforms
    (crop, flip) on the PIL image, one ``ToTensor()``, then crops, flips and ``Normalize``.
    The pixel scaling that ``ToTensor`` does is the loader's ``/ 255``.
    """
    items, stack = [], [transform]
    while stack:  # flatten nested Compose, in order
        t = stack.pop(0)
        if type(t) is Compose:
            stack = list(t.transforms) + stack
        else:
            items.append(t)
    kinds = [type(t) for t in items]
    if kinds.count(ToTensor) != 1:
        return None
    k = kinds.index(ToTensor)
    if not all(kind in _GEOMETRIC for kind in kinds[:k]) or not all(
        kind in _BATCHABLE for kind in kinds[k + 1 :]
    ):
        return None
    return items[:k] + items[k + 1 :]
