"""Image datasets as whole uint8 arrays: MNIST, Fashion-MNIST, CIFAR-10, an image folder, a ``.npz``.

Every dataset here is loaded ONCE into memory:

* ``dataset.data``: uint8 images, ``(N, H, W)`` for greyscale or ``(N, H, W, C)`` for colour
  (the layout torchvision and Keras use on disk);
* ``dataset.targets``: int64 class indices, shape ``(N,)``;
* ``dataset.classes``: the class names.

There is no per-sample Python code on the training path: :class:`minicnn.data.DataLoader`
slices whole batches out of these arrays, and converts them to float on the device.

Like torchvision's, each dataset takes ``transform=`` and ``target_transform=``; with a
transform, ``ds[i]`` gives ``(transform(PIL image), target_transform(label))`` as torchvision
does (without one, ``(uint8 array, int)``). A transform made of ``ToTensor``, ``Normalize``,
``RandomCrop`` and ``RandomHorizontalFlip`` still runs batched in the DataLoader.

MNIST, Fashion-MNIST and CIFAR-10 go through ``torchvision.datasets`` (same ``root`` layout
and ``download`` behaviour): ``MNIST(root)`` reads ``root/MNIST/raw/``. With ``download=True``
and no network, torchvision still uses local ``.gz`` archives whose md5 matches the official
one. When ``root`` is read-only and the archives are not extracted yet, they are copied once
to a writable cache (``$MINICNN_CACHE``, default ``~/.cache/minicnn``) and a line says so.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np

from minicnn.data.dataset import Dataset

__all__ = [
    "ArraysDataset",
    "MNIST",
    "FashionMNIST",
    "CIFAR10",
    "ImageFolder",
    "DataError",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DataError(RuntimeError):
    """A dataset could not be found or read. The message says where and what to do."""


def cache_dir() -> Path:
    """Writable folder for dataset copies: ``$MINICNN_CACHE`` or ``~/.cache/minicnn``."""
    return Path(os.environ.get("MINICNN_CACHE", Path.home() / ".cache" / "minicnn")).expanduser()


def _writable(folder: Path) -> bool:
    """Writable for us AND meant to be: root ignores permission bits, so a folder with no
    write bit (``dr-xr-xr-x``, a shared read-only dataset) counts as read-only too."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def _check_transforms(name, transform, target_transform):
    for what, t in (("transform", transform), ("target_transform", target_transform)):
        if t is not None and not callable(t):
            hint = (
                " (the third positional argument is transform=, as in torchvision: pass download= by keyword)"
                if isinstance(t, bool)
                else ""
            )
            raise TypeError(f"{name}: {what} must be callable (e.g. ToTensor()), got {t!r}{hint}")


# ============================================================================ in-memory arrays
class ArraysDataset(Dataset):
    """Images and labels held as two arrays (see the module docstring for the layout).

    ``ds[i]`` returns ``(image uint8 array, label int)``, or with ``transform``/``target_transform``
    ``(transform(PIL image), target_transform(label))`` as torchvision; ``len(ds)`` the number of images.
    """

    def __init__(
        self, data, targets, classes=None, name="ArraysDataset", *, transform=None, target_transform=None
    ):
        _check_transforms(name, transform, target_transform)
        self.transform, self.target_transform = transform, target_transform
        data = np.asarray(data)
        targets = np.asarray(targets)
        if data.dtype != np.uint8:
            raise TypeError(
                f"{name}: images must be uint8 (0-255) in layout (N, H, W) or (N, H, W, C), "
                f"got dtype {data.dtype}. Scale float images with (x * 255).round().astype(np.uint8)."
            )
        if data.ndim not in (3, 4) or (data.ndim == 4 and data.shape[-1] not in (1, 3, 4)):
            raise ValueError(
                f"{name}: images must have layout (N, H, W) or (N, H, W, C) with C in 1, 3, 4 "
                f"(channels last), got shape {data.shape}"
            )
        if targets.ndim != 1 or targets.shape[0] != data.shape[0]:
            raise ValueError(
                f"{name}: labels must have shape (N,) = ({data.shape[0]},) to match the images, "
                f"got shape {targets.shape}"
            )
        if targets.dtype.kind not in "iu":
            raise TypeError(f"{name}: labels must be integer class indices, got dtype {targets.dtype}")
        if targets.size and targets.min() < 0:
            raise ValueError(f"{name}: labels must be class indices >= 0, found {int(targets.min())}")
        self.data = data
        self.targets = targets.astype(np.int64, copy=False)
        n_classes = int(self.targets.max()) + 1 if self.targets.size else 0
        self.classes = (
            [str(c) for c in classes] if classes is not None else [str(i) for i in range(n_classes)]
        )
        if len(self.classes) < n_classes:
            raise ValueError(f"{name}: {len(self.classes)} class names for labels up to {n_classes - 1}")
        self.name = name

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_npz(cls, path, train=True, name=None, *, transform=None, target_transform=None):
        """Load a Keras-style archive with ``x_train, y_train, x_test, y_test`` (and optional ``classes``).

        Labels are class indices of shape ``(N,)`` or ``(N, 1)``.
        """
        path = Path(path)
        name = name or path.name
        if not path.is_file():
            raise DataError(f"{name}: no such file {path}")
        split = "train" if train else "test"
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in (f"x_{split}", f"y_{split}") if k not in z.files]
                if missing:
                    raise DataError(
                        f"{name}: {path} has arrays {sorted(z.files)}, expected x_train, y_train, x_test, "
                        f"y_test (Keras layout); missing {missing}"
                    )
                x, y = z[f"x_{split}"], z[f"y_{split}"]
                classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
        except DataError:
            raise
        except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
            raise DataError(
                f"{name}: {path} is not a readable .npz archive ({type(e).__name__}: {e})"
            ) from None
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        elif y.ndim != 1:
            hint = (
                "; these look like one-hot labels: store y.argmax(1)"
                if y.ndim == 2 and y.shape[1] > 1 and set(np.unique(y).tolist()) <= {0, 1}
                else ""
            )
            raise DataError(
                f"{name}: {path}: y_{split} has shape {y.shape}, expected class indices of shape (N,) or "
                f"(N, 1){hint}"
            )
        return cls(x, y, classes=classes, name=name, transform=transform, target_transform=target_transform)

    # ------------------------------------------------------------------ container protocol
    def __len__(self):
        return int(self.data.shape[0])

    def __getitem__(self, index):
        if self.transform is None and self.target_transform is None:
            return self.data[index], int(self.targets[index])
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            from PIL import Image

            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            image = self.transform(Image.fromarray(image))  # 'L', 'RGB' or 'RGBA', as torchvision
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self):
        return (
            f"{self.name}(n={len(self)}, image_shape={self.image_shape} (C, H, W), "
            f"classes={len(self.classes)})"
        )

    @property
    def image_shape(self) -> tuple:
        """The shape of one image as the network sees it: (C, H, W)."""
        if self.data.ndim == 3:
            return (1, *self.data.shape[1:])
        return (self.data.shape[3], *self.data.shape[1:3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def subset(self, indices):
        """A new dataset with the images at ``indices`` (an int ``n``: the first ``n``); same transforms."""
        if isinstance(indices, (int, np.integer)):
            indices = slice(0, int(indices))
        return ArraysDataset(
            self.data[indices], self.targets[indices], self.classes, name=self.name,
            transform=self.transform, target_transform=self.target_transform,
        )  # fmt: skip

    def split(self, n_second, seed=0):
        """Two disjoint random subsets: ``(len - n_second images, n_second images)`` -- e.g. train/val."""
        if not 0 <= n_second <= len(self):
            raise ValueError(f"{self.name}.split: n_second must be in [0, {len(self)}], got {n_second}")
        perm = np.random.default_rng(seed).permutation(len(self))
        return self.subset(np.sort(perm[n_second:])), self.subset(np.sort(perm[:n_second]))


# ============================================================================ MNIST / Fashion-MNIST
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # uint8 data, 3-d images / 1-d labels


def _check_idx(path: Path, ndim: int, name: str) -> None:
    """Raise a one-line DataError unless ``path`` is a complete uint8 IDX file with ``ndim`` dims."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    what = "images" if ndim == 3 else "labels"
    fix = "Delete it (and its .gz if that is broken too) so it is extracted or downloaded again."
    if len(head) < 4 + 4 * ndim or struct.unpack(">I", head[:4])[0] != _IDX_MAGIC[ndim]:
        raise DataError(
            f"{name}: {path} is not an IDX {what} file (bad header: expected magic "
            f"0x{_IDX_MAGIC[ndim]:08x}). {fix}"
        )
    dims = struct.unpack(f">{ndim}I", head[4:])
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        raise DataError(
            f"{name}: {path} is truncated or corrupt: its header announces shape {dims} "
            f"({expected} bytes) but the file has {size} bytes. {fix}"
        )


class MNIST(ArraysDataset):
    """The MNIST digits: 60,000 train / 10,000 test images, uint8 (N, 28, 28), labels 0-9.

    ``root`` and ``download`` follow ``torchvision.datasets.MNIST``: files live in
    ``root/MNIST/raw/`` (the four ``*-ubyte.gz`` archives, extracted there on first use).
    """

    folder = "MNIST"
    url = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    class_names = [str(i) for i in range(10)]

    def __init__(self, root="./data", train=True, transform=None, target_transform=None, download=True):
        import torchvision.datasets as tvd

        tv_class = getattr(tvd, type(self).folder)
        name = type(self).__name__
        _check_transforms(name, transform, target_transform)
        root = Path(root).expanduser()
        root = self._readable_root(root, tv_class, name, download)
        raw = root / self.folder / "raw"
        for stem, nd in (("images-idx3-ubyte", 3), ("labels-idx1-ubyte", 1)):
            path = raw / f"{'train' if train else 't10k'}-{stem}"
            if path.is_file():
                _check_idx(path, nd, name)
        try:
            ds = tv_class(str(root), train=train, download=download)
        except Exception as e:
            damaged = self._damaged_archive(root, tv_class, name)
            raise DataError(damaged or self._not_found(root, name, download, e)) from None
        super().__init__(
            ds.data.numpy(), ds.targets.numpy(), self.class_names, name=name,
            transform=transform, target_transform=target_transform,
        )  # fmt: skip

    @classmethod
    def _files(cls, tv_class):
        return [fname for fname, _ in tv_class.resources]

    @classmethod
    def _readable_root(cls, root: Path, tv_class, name: str, download: bool) -> Path:
        """``root``, or a writable cache copy of its archives when ``root`` is read-only."""
        raw = root / cls.folder / "raw"
        gz = cls._files(tv_class)
        extracted = [raw / f[: -len(".gz")] for f in gz]
        if all(p.is_file() for p in extracted):
            return root  # torchvision only reads
        archives = [raw / f for f in gz]
        if not all(p.is_file() for p in archives) or _writable(raw):
            return root
        # Read-only folder with the archives only: extract them in a writable copy instead.
        cache_root = cache_dir() / "data"
        cache_raw = cache_root / cls.folder / "raw"
        cache_raw.mkdir(parents=True, exist_ok=True)
        copied = 0
        for src in archives:
            dst = cache_raw / src.name
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                shutil.copyfile(src, dst)
                copied += 1
        if copied:
            print(f"{name}: {raw} is read-only; copied its {copied} .gz archives to {cache_raw} (done once)")
        return cache_root

    @classmethod
    def _damaged_archive(cls, root: Path, tv_class, name: str) -> str | None:
        """A message naming the first local ``.gz`` archive whose md5 is not the official one, if any."""
        import hashlib

        raw = root / cls.folder / "raw"
        for fname, md5 in tv_class.resources:
            path = raw / fname
            if not path.is_file() or (raw / fname[: -len(".gz")]).is_file():
                continue
            digest = hashlib.md5()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
                    digest.update(block)
            got = digest.hexdigest()
            if got != md5:
                return (
                    f"{name}: {path} is damaged (truncated or corrupt download?): its md5 is {got}, "
                    f"the official archive's is {md5} ({path.stat().st_size} bytes here). Delete it so it is "
                    f"downloaded again, or replace it with the official file from {cls.url}{fname}."
                )
        return None

    @classmethod
    def _not_found(cls, root: Path, name: str, download: bool, err: Exception) -> str:
        import torchvision.datasets as tvd

        raw = root / cls.folder / "raw"
        files = ", ".join(cls._files(getattr(tvd, cls.folder)))
        how = (
            "the download failed (no network?)"
            if download
            else "download=False (pass download=True to fetch them)"
        )
        return (
            f"{name}: dataset not found in {raw} and {how}. Put the four official archives ({files}) "
            f"there, from {cls.url}, or point root/--data-dir at a folder that has "
            f"{cls.folder}/raw/. [{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}]"
        )


class FashionMNIST(MNIST):
    """Zalando's Fashion-MNIST: same format as MNIST (uint8 (N, 28, 28), 10 classes).

    Files live in ``root/FashionMNIST/raw/``.
    """

    folder = "FashionMNIST"
    url = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    class_names = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


# ============================================================================ CIFAR-10
class CIFAR10(ArraysDataset):
    """CIFAR-10: 50,000 train / 10,000 test colour images, uint8 (N, 32, 32, 3), 10 classes.

    ``root`` may be (tried in this order):

    * a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (Keras layout);
    * a folder with torchvision's ``cifar-10-batches-py/`` (the official python pickles,
      md5-checked by torchvision on every load);
    * a folder with ``cifar10/cifar10_uint8.npz`` or ``cifar10_uint8.npz``.

    With ``download=True`` and none of these, torchvision downloads the pickles into ``root``.
    """

    classes_default = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    npz_names = ("cifar10/cifar10_uint8.npz", "cifar10_uint8.npz")

    def __init__(self, root="./data", train=True, transform=None, target_transform=None, download=True):
        _check_transforms("CIFAR10", transform, target_transform)
        t = (transform, target_transform)
        root = Path(root).expanduser()
        if root.suffix == ".npz":
            self._from(ArraysDataset.from_npz(root, train=train, name="CIFAR10"), *t)
            return
        if (root / "cifar-10-batches-py").is_dir():
            self._from(self._torchvision(root, train, download=False), *t)
            return
        for rel in self.npz_names:
            if (root / rel).is_file():
                self._from(ArraysDataset.from_npz(root / rel, train=train, name="CIFAR10"), *t)
                return
        if download:
            self._from(self._torchvision(root, train, download=True), *t)
            return
        raise DataError(self._not_found(root, "download=False (pass download=True to fetch it)"))

    def _from(self, ds, transform, target_transform):
        classes = ds.classes if len(ds.classes) == 10 and ds.classes[0] != "0" else self.classes_default
        super().__init__(
            ds.data,
            ds.targets,
            classes,
            name="CIFAR10",
            transform=transform,
            target_transform=target_transform,
        )

    @classmethod
    def _torchvision(cls, root, train, download):
        import torchvision.datasets as tvd

        try:
            ds = tvd.CIFAR10(str(root), train=train, download=download)
        except Exception as e:
            how = "the download failed (no network?)" if download else "torchvision could not read it"
            msg = str(e).splitlines()[0] if str(e) else ""
            raise DataError(cls._not_found(root, f"{how} [{type(e).__name__}: {msg}]")) from None
        return ArraysDataset(ds.data, np.asarray(ds.targets, dtype=np.int64), ds.classes, name="CIFAR10")

    @classmethod
    def _not_found(cls, root, how):
        return (
            f"CIFAR10: dataset not found or unreadable in {root} and {how}. Expected either "
            f"{root / 'cifar-10-batches-py'}/ (torchvision's pickles, from "
            f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) or {root / cls.npz_names[0]} "
            f"(arrays x_train, y_train, x_test, y_test); or pass the .npz path itself as root."
        )


# ============================================================================ image folder
class ImageFolder(ArraysDataset):
    """Images sorted in one sub-folder per class (``root/cat/1.jpg``, ``root/dog/a.png`` ...).

    Every image is opened once with PIL, converted to ``mode`` ('RGB' -> (N, H, W, 3),
    'L' -> greyscale (N, H, W)) and resized to ``size=(H, W)`` (bilinear); without ``size``
    all images must have the same size. Classes are the
    sub-folder names in sorted order, as in ``torchvision.datasets.ImageFolder``. Hidden files
    (``.DS_Store``...) are skipped; any other non-image file is an error. A class folder with no
    image is an error naming it, as in torchvision, unless ``allow_empty=True`` (it stays a class).
    ``samples`` lists ``(path, class index)``.
    """

    def __init__(
        self, root, transform=None, target_transform=None, *, size=None, mode="RGB", allow_empty=False
    ):
        from PIL import Image, UnidentifiedImageError

        _check_transforms("ImageFolder", transform, target_transform)
        root = Path(root).expanduser()
        if mode not in ("RGB", "L"):
            raise ValueError(f"ImageFolder: mode must be 'RGB' or 'L' (greyscale), got {mode!r}")
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"ImageFolder: size must be (H, W) with positive ints, got {size}")
        if not root.is_dir():
            raise DataError(f"ImageFolder: {root} is not a folder (expected one sub-folder per class)")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DataError(
                f"ImageFolder: {root} has no class sub-folders; expected root/<class name>/<image files>"
            )
        images, labels, first, samples = [], [], None, []
        for label, cdir in enumerate(class_dirs):
            for path in sorted(cdir.rglob("*")):
                if path.is_dir() or any(part.startswith(".") for part in path.relative_to(root).parts):
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise DataError(
                        f"ImageFolder: {path} is not an image (extensions accepted: "
                        f"{', '.join(IMAGE_EXTENSIONS)}); move it out of the class folders"
                    )
                try:
                    with Image.open(path) as im:
                        im = im.convert(mode)
                        if size is None:  # no size given: every image must have the first one's size
                            size, first = (im.height, im.width), path
                        elif (im.height, im.width) != size and first is not None:
                            raise DataError(
                                f"ImageFolder: {path} is {im.height}x{im.width} but {first} is "
                                f"{size[0]}x{size[1]}; pass size=(H, W) to resize every image"
                            )
                        if (im.height, im.width) != size:
                            im = im.resize((size[1], size[0]), Image.BILINEAR)
                        images.append(np.asarray(im, dtype=np.uint8))
                except (UnidentifiedImageError, OSError) as e:
                    raise DataError(
                        f"ImageFolder: cannot read image {path} ({type(e).__name__}: {e})"
                    ) from None
                labels.append(label)
                samples.append((str(path), label))
        empty = [d.name for i, d in enumerate(class_dirs) if i not in set(labels)]
        if not images:
            raise DataError(
                f"ImageFolder: found no images in the class folders of {root} ({', '.join(empty)})"
            )
        if empty and not allow_empty:
            raise DataError(
                f"ImageFolder: found no images for the class(es) {', '.join(empty)} in {root}; add images "
                f"(extensions: {', '.join(IMAGE_EXTENSIONS)}), remove the folder(s), or pass "
                "allow_empty=True to keep them as classes"
            )
        super().__init__(
            np.stack(images), np.asarray(labels), [d.name for d in class_dirs], name="ImageFolder",
            transform=transform, target_transform=target_transform,
        )  # fmt: skip
        self.samples = samples
        self.imgs = samples
