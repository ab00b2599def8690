"""minicnn.data: loaders read tiny files written here (no network, no shared data), batches, augmentation.

How the torchvision integrity checks are handled (each test says which it uses):

* MNIST: ``torchvision.datasets.MNIST._check_exists`` only checks that the *extracted* raw files
  exist (no md5), exactly as on every load after the first. Tests that write those raw files
  therefore use torchvision unpatched. Tests of the ``.gz`` path (offline extraction with
  ``download=True``) must get past the md5 of the official archives: there, and only there,
  ``MNIST.resources`` is monkeypatched to the md5 of our tiny archives.
* CIFAR-10: torchvision md5-checks the python pickles on every load; that test replaces
  ``torchvision.datasets.cifar.check_integrity`` by a plain existence check (monkeypatch).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest

import minicnn as mc
from minicnn.data import (
    CIFAR10,
    MNIST,
    ArraysDataset,
    Compose,
    DataError,
    DataLoader,
    FashionMNIST,
    ImageFolder,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    channel_stats,
    class_balance,
    sample_grid,
)

tv_datasets = pytest.importorskip("torchvision.datasets")


# ============================================================================ file writers
def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX (MNIST) file: magic 0x0000080<ndim>, big-endian dims, then the uint8 bytes."""
    head = struct.pack(">I", 0x800 + arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def tiny_mnist(seed=0, n_train=12, n_test=5):
    rng = np.random.default_rng(seed)
    x_tr = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y_tr = (np.arange(n_train) % 10).astype(np.uint8)
    x_te = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_te = rng.integers(0, 10, size=n_test).astype(np.uint8)
    return {"train-images-idx3-ubyte": x_tr, "train-labels-idx1-ubyte": y_tr,
            "t10k-images-idx3-ubyte": x_te, "t10k-labels-idx1-ubyte": y_te}  # fmt: skip


def write_mnist_raw(root, folder="MNIST", seed=0):
    """Extracted IDX files, as torchvision leaves them after the first load."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = tiny_mnist(seed)
    for name, arr in arrays.items():
        (raw / name).write_bytes(idx_bytes(arr))
    return arrays


def write_mnist_gz(root, monkeypatch, folder="MNIST", seed=0):
    """Only the .gz archives; patch torchvision's md5 table to their md5 (this test only)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = tiny_mnist(seed)
    resources = []
    for name, arr in arrays.items():
        (raw / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))
        resources.append((f"{name}.gz", hashlib.md5((raw / f"{name}.gz").read_bytes()).hexdigest()))
    monkeypatch.setattr(getattr(tv_datasets, folder), "resources", resources)
    return arrays


# ============================================================================ MNIST
def test_mnist_from_extracted_idx_files(tmp_path):
    arrays = write_mnist_raw(tmp_path)
    train = MNIST(tmp_path, train=True, download=False)
    test = MNIST(tmp_path, train=False)
    assert train.data.dtype == np.uint8 and train.data.shape == (12, 28, 28)
    assert train.targets.dtype == np.int64 and train.targets.shape == (12,)
    np.testing.assert_array_equal(train.data, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train.targets, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(test.data, arrays["t10k-images-idx3-ubyte"])
    assert (
        len(test) == 5 and train.image_shape == (1, 28, 28) and train.classes == [str(i) for i in range(10)]
    )
    image, label = train[3]
    np.testing.assert_array_equal(image, arrays["train-images-idx3-ubyte"][3])
    assert label == 3


def test_mnist_gz_extracted_offline_with_download_true(tmp_path, monkeypatch):
    arrays = write_mnist_gz(tmp_path, monkeypatch)
    ds = MNIST(tmp_path, train=False, download=True)  # md5 matches -> no download, just extraction
    np.testing.assert_array_equal(ds.data, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.targets, arrays["t10k-labels-idx1-ubyte"])
    assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_fashion_mnist_read_only_root_is_copied_to_cache(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared"
    arrays = write_mnist_gz(shared, monkeypatch, folder="FashionMNIST", seed=1)
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "cache"))
    raw = shared / "FashionMNIST" / "raw"
    os.chmod(raw, 0o555)
    try:
        ds = FashionMNIST(shared, train=True)
    finally:
        os.chmod(raw, 0o755)
    assert "read-only" in capsys.readouterr().out
    np.testing.assert_array_equal(ds.data, arrays["train-images-idx3-ubyte"])
    assert ds.classes[0] == "T-shirt/top"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{k}.gz" for k in arrays)  # untouched
    assert (tmp_path / "cache" / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_mnist_corrupt_idx_file_is_one_clear_error(tmp_path):
    write_mnist_raw(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"truncated or corrupt.*header announces shape \(12, 28, 28\)"):
        MNIST(tmp_path, train=True)
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(DataError, match="not an IDX images file"):
        MNIST(tmp_path, train=True)


def test_mnist_missing_files_no_network_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"not found in .*MNIST/raw and download=False") as info:
        MNIST(tmp_path / "nowhere", download=False)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "\n" not in str(info.value)

    def offline(self):  # what torchvision raises with no network (urllib's error, shortened)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ..., got: <urlopen error>")

    monkeypatch.setattr(tv_datasets.MNIST, "download", offline)
    with pytest.raises(DataError, match=r"download failed \(no network\?\)") as info:
        MNIST(tmp_path / "nowhere", download=True)
    assert info.value.__suppress_context__  # no chained torchvision/urllib traceback


def test_mnist_truncated_gz_names_the_file_and_its_checksum(tmp_path, monkeypatch):
    write_mnist_gz(tmp_path, monkeypatch)
    gz = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    official = dict(tv_datasets.MNIST.resources)[gz.name]
    gz.write_bytes(gz.read_bytes()[:-50])  # an interrupted download

    def offline(self):  # torchvision, seeing the bad md5, would download it again: no network here
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tv_datasets.MNIST, "download", offline)
    got = hashlib.md5(gz.read_bytes()).hexdigest()
    with pytest.raises(
        DataError, match=rf"train-images-idx3-ubyte.gz is damaged .*md5 is {got}.*{official}"
    ) as info:
        MNIST(tmp_path, train=True)
    assert "no network" not in str(info.value) and "\n" not in str(info.value)


# ============================================================================ npz and CIFAR-10
def write_npz(path, channels_last=True, n_train=20, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    shape = (32, 32, 3) if channels_last else (28, 28)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.int64) % 10,
        "x_test": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=(n_test, 1)),  # Keras stores CIFAR labels as (N, 1)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


def test_arrays_dataset_from_npz_nhwc_and_nhw(tmp_path):
    a = write_npz(tmp_path / "c.npz")
    ds = ArraysDataset.from_npz(tmp_path / "c.npz", train=False)
    assert ds.data.shape == (6, 32, 32, 3) and ds.targets.shape == (6,) and ds.targets.dtype == np.int64
    np.testing.assert_array_equal(ds.targets, a["y_test"][:, 0])
    assert ds.image_shape == (3, 32, 32)
    g = write_npz(tmp_path / "g.npz", channels_last=False)
    ds = ArraysDataset.from_npz(tmp_path / "g.npz")
    np.testing.assert_array_equal(ds.data, g["x_train"])
    assert ds.image_shape == (1, 28, 28)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(
        DataError, match=r"expected x_train, y_train, x_test, y_test.*missing \['x_train', 'y_train'\]"
    ):
        ArraysDataset.from_npz(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        ArraysDataset.from_npz(tmp_path / "junk.npz")
    with pytest.raises(TypeError, match=r"uint8.*\(N, H, W\) or \(N, H, W, C\).*float32"):
        ArraysDataset(np.zeros((2, 4, 4), np.float32), [0, 1])
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(2,\)"):
        ArraysDataset(np.zeros((2, 4, 4), np.uint8), [0, 1, 2])


def test_npz_one_hot_labels_report_the_files_shape(tmp_path):
    x = np.zeros((4, 2, 2, 3), np.uint8)
    one_hot = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]
    np.savez(tmp_path / "oh.npz", x_train=x, y_train=one_hot, x_test=x, y_test=one_hot)
    with pytest.raises(
        DataError, match=r"y_train has shape \(4, 10\), expected class indices .*one-hot.*argmax"
    ):
        ArraysDataset.from_npz(tmp_path / "oh.npz")


def test_cifar10_from_npz_layouts(tmp_path):
    a = write_npz(tmp_path / "cifar10" / "cifar10_uint8.npz")
    by_folder = CIFAR10(tmp_path, train=True, download=False)
    by_file = CIFAR10(tmp_path / "cifar10" / "cifar10_uint8.npz", train=True)
    for ds in (by_folder, by_file):
        np.testing.assert_array_equal(ds.data, a["x_train"])
        np.testing.assert_array_equal(ds.targets, a["y_train"])
        assert ds.classes[0] == "airplane" and len(ds.classes) == 10


def test_cifar10_from_torchvision_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    images = {}
    for k, name in enumerate(names):
        x = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)  # (N, C, H, W)
        labels = [(k + i) % 10 for i in range(3)]
        images[name] = (x, labels)
        with open(folder / name, "wb") as f:  # the official layout: rows of 1024 R, 1024 G, 1024 B
            pickle.dump({"batch_label": name, "labels": labels, "data": x.reshape(3, 3072)}, f)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": classes, "num_cases_per_batch": 3}, f)
    # torchvision md5-checks the official pickles on every load: check existence only (this test only).
    monkeypatch.setattr(tv_datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    train = CIFAR10(tmp_path, train=True)
    test = CIFAR10(tmp_path, train=False)
    assert train.data.shape == (15, 32, 32, 3) and train.data.dtype == np.uint8
    expected = np.concatenate([images[n][0] for n in names[:5]]).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(train.data, expected)
    np.testing.assert_array_equal(train.targets, sum((images[n][1] for n in names[:5]), []))
    np.testing.assert_array_equal(test.data, images["test_batch"][0].transpose(0, 2, 3, 1))
    assert train.targets.dtype == np.int64 and train.classes == classes


def test_cifar10_missing_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*cifar10/cifar10_uint8.npz") as info:
        CIFAR10(tmp_path, download=False)
    assert "\n" not in str(info.value)


# ============================================================================ image folder
def write_image_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n, size in (("cat", 2, (10, 14)), ("dog", 3, (20, 20))):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png"
            )
    (root / "dog" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped


def test_image_folder_resizes_with_pil(tmp_path):
    from PIL import Image

    write_image_folder(tmp_path)
    ds = ImageFolder(tmp_path, size=(8, 12))
    assert ds.data.shape == (5, 8, 12, 3) and ds.data.dtype == np.uint8
    assert ds.classes == ["cat", "dog"] and ds.targets.tolist() == [0, 0, 1, 1, 1]
    with Image.open(tmp_path / "dog" / "1.png") as im:
        expected = np.asarray(im.convert("RGB").resize((12, 8), Image.BILINEAR))
    np.testing.assert_array_equal(ds.data[3], expected)
    grey = ImageFolder(tmp_path, size=16, mode="L")
    assert grey.data.shape == (5, 16, 16) and grey.image_shape == (1, 16, 16)


def test_image_folder_errors(tmp_path):
    write_image_folder(tmp_path / "a")
    with pytest.raises(DataError, match=r"is 20x20 but .*is 10x14; pass size=\(H, W\)"):
        ImageFolder(tmp_path / "a")
    (tmp_path / "a" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes.txt is not an image"):
        ImageFolder(tmp_path / "a", size=8)
    (tmp_path / "a" / "cat" / "notes.txt").unlink()
    (tmp_path / "a" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        ImageFolder(tmp_path / "a", size=8)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match=r"found no images in the class folders of .*empty \(cls\)"):
        ImageFolder(tmp_path / "empty", size=8)
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty" / "cls", size=8)


def test_image_folder_empty_class_is_named_unless_allowed(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "bird").mkdir()
    (tmp_path / "emu").mkdir()
    (tmp_path / "emu" / ".hidden").write_bytes(b"")
    with pytest.raises(
        DataError, match=r"found no images for the class\(es\) bird, emu in .*allow_empty=True"
    ):
        ImageFolder(tmp_path, size=8)
    ds = ImageFolder(tmp_path, size=8, allow_empty=True)
    assert ds.classes == ["bird", "cat", "dog", "emu"] and ds.targets.tolist() == [1, 1, 2, 2, 2]
    assert ds.samples[0] == (str(tmp_path / "cat" / "0.png"), 1)


# ============================================================================ DataLoader
def indexed_dataset(n=23, shape=(4, 5, 3)):
    """Sample i has label i, so a batch's labels say exactly which samples it holds."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return ArraysDataset(data, np.arange(n), classes=[f"c{i}" for i in range(n)])


def epoch_labels(loader):
    return np.concatenate([y.numpy() for _, y in loader])


def test_loader_batches_layout_dtype_and_values():
    ds = indexed_dataset()
    loader = DataLoader(ds, batch_size=5)
    batches = list(loader)
    assert len(loader) == len(batches) == 5 and [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x, y = batches[1]
    assert isinstance(x, mc.Tensor) and x.dtype == np.float32 and x.shape == (5, 3, 4, 5)
    assert y.dtype == np.int64 and y.numpy().tolist() == [5, 6, 7, 8, 9]
    np.testing.assert_array_equal(x.numpy(), ds.data[5:10].transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    grey = DataLoader(ArraysDataset(ds.data[..., 0], ds.targets), batch_size=4, dtype=np.float64)
    xg, _ = next(iter(grey))
    assert xg.shape == (4, 1, 4, 5) and xg.dtype == np.float64


def test_loader_drop_last_and_len():
    ds = indexed_dataset(23)
    assert len(DataLoader(ds, batch_size=5, drop_last=True)) == 4
    assert len(DataLoader(ds, batch_size=23, drop_last=True)) == 1
    assert len(DataLoader(ds, batch_size=30)) == 1 and len(DataLoader(ds, batch_size=30, drop_last=True)) == 0
    labels = epoch_labels(DataLoader(ds, batch_size=5, drop_last=True, shuffle=True, seed=0))
    assert labels.size == 20 and np.unique(labels).size == 20


def test_loader_shuffle_is_a_fresh_seeded_permutation_each_epoch():
    ds = indexed_dataset(23)
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    e1, e2, e3 = epoch_labels(loader), epoch_labels(loader), epoch_labels(loader)
    for e in (e1, e2, e3):  # every sample exactly once per epoch
        np.testing.assert_array_equal(np.sort(e), np.arange(23))
    assert not np.array_equal(e1, e2) and not np.array_equal(e2, e3)
    assert not np.array_equal(e1, np.arange(23))
    again = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    np.testing.assert_array_equal(epoch_labels(again), e1)
    np.testing.assert_array_equal(epoch_labels(again), e2)
    other = DataLoader(ds, batch_size=4, shuffle=True, seed=8)
    assert not np.array_equal(epoch_labels(other), e1)
    np.testing.assert_array_equal(epoch_labels(DataLoader(ds, batch_size=4)), np.arange(23))


def test_loader_seed_none_follows_manual_seed_and_state_dict_resumes():
    ds = indexed_dataset(23)
    mc.manual_seed(3)
    a = epoch_labels(DataLoader(ds, batch_size=4, shuffle=True))
    mc.manual_seed(3)
    np.testing.assert_array_equal(epoch_labels(DataLoader(ds, batch_size=4, shuffle=True)), a)

    aug = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip()])
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=1, transform=aug)
    list(loader)
    state = loader.state_dict()
    expected = [(x.numpy(), y.numpy()) for x, y in loader]
    resumed = DataLoader(ds, batch_size=4, shuffle=True, seed=999, transform=aug)
    resumed.load_state_dict(state)
    for (x, y), (ex, ey) in zip(resumed, expected, strict=True):
        np.testing.assert_array_equal(x.numpy(), ex)
        np.testing.assert_array_equal(y.numpy(), ey)


def test_loader_errors():
    ds = indexed_dataset()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"DataLoader: batch_size must be a positive integer"):
            DataLoader(ds, batch_size=bad)
    with pytest.raises(ValueError, match=r"DataLoader: unknown device 'tpu'"):
        DataLoader(ds, batch_size=2, device="tpu")
    with pytest.raises(TypeError, match=r"map-style dataset with __getitem__ and __len__ .* or have .data"):
        DataLoader(object(), batch_size=2)


# ============================================================================ augmentation
def test_random_crop_is_a_window_of_the_padded_image():
    rng = np.random.default_rng(0)
    x = rng.random((64, 2, 6, 7)).astype(np.float32) + 0.5  # > 0, so the zero padding is recognisable
    gen = np.random.default_rng(5)
    out = RandomCrop((6, 7), padding=2)(x, gen)
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for n in range(64):
        hits = [
            (i, j)
            for i in range(5)
            for j in range(5)
            if np.array_equal(out[n], padded[n, :, i : i + 6, j : j + 7])
        ]
        assert len(hits) == 1, f"image {n}: crop is not exactly one window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 12  # offsets vary per image (25 possible)
    # the offsets are those drawn from the generator, in order (top for all images, then left)
    g = np.random.default_rng(5)
    top, left = g.integers(0, 5, size=64), g.integers(0, 5, size=64)
    np.testing.assert_array_equal(
        out, np.stack([padded[n, :, top[n] : top[n] + 6, left[n] : left[n] + 7] for n in range(64)])
    )
    smaller = RandomCrop(3)(x, gen)  # no padding, smaller window
    assert smaller.shape == (64, 2, 3, 3)
    with pytest.raises(ValueError, match=r"crop size \(9, 9\) is larger than the padded image"):
        RandomCrop(9)(x, gen)
    with pytest.raises(ValueError, match=r"RandomCrop: expected an image in layout \(C, H, W\) or a batch"):
        RandomCrop(3)(x[0, 0], gen)
    one = RandomCrop((6, 7), padding=2)(x[5], np.random.default_rng(5))  # one image (C, H, W): one draw
    g = np.random.default_rng(5)
    t, l = g.integers(0, 5, size=1)[0], g.integers(0, 5, size=1)[0]
    np.testing.assert_array_equal(one, padded[5, :, t : t + 6, l : l + 7])


def test_random_horizontal_flip_is_an_exact_mirror():
    x = np.random.default_rng(0).random((200, 3, 4, 5)).astype(np.float32)
    out = RandomHorizontalFlip()(x, np.random.default_rng(1))
    flipped = np.array([np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)])
    kept = np.array([np.array_equal(o, xi) for o, xi in zip(out, x)])
    assert np.all(flipped ^ kept)
    assert 70 < flipped.sum() < 130  # p = 0.5
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x), x)
    t = mc.tensor(x)
    assert isinstance(RandomHorizontalFlip(p=1.0)(t), mc.Tensor)


def test_normalize_matches_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.transforms import Normalize as TVNormalize

    x = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    ours = Normalize(mean, std)(x)
    ref = TVNormalize(mean, std)(torch.from_numpy(x)).numpy()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"3 mean/std values for a batch with 1 channel"):
        Normalize(mean, std)(x[:, :1])


def test_loader_applies_compose_on_every_batch():
    ds = indexed_dataset(10, shape=(6, 6, 3))
    t = Compose([RandomCrop(6, padding=1), RandomHorizontalFlip(), Normalize((0.5,), (0.25,))])
    for x, _ in DataLoader(ds, batch_size=4, transform=t, seed=0):
        assert x.shape[1:] == (3, 6, 6) and x.dtype == np.float32
        assert x.numpy().min() >= -2.0 - 1e-6 and x.numpy().max() <= 2.0 + 1e-6
    plain = DataLoader(ds, batch_size=10, transform=lambda b: b * 2.0)
    x, _ = next(iter(plain))
    np.testing.assert_allclose(x.numpy(), ds.data.transpose(0, 3, 1, 2) / 255.0 * 2.0, rtol=1e-6)


# ============================================================================ checks
def test_class_balance(capsys):
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    ds = ArraysDataset(np.zeros((100, 2, 2), np.uint8), labels, classes=["a", "b", "c"])
    r = class_balance(ds)
    assert r["counts"] == [50, 30, 20] and r["percent"] == [50.0, 30.0, 20.0]
    assert r["ratio"] == 2.5 and r["imbalanced"]
    out = capsys.readouterr().out
    assert "IMBALANCED" in out and "b" in out and "30.00%" in out
    even = ArraysDataset(np.zeros((40, 2, 2), np.uint8), np.arange(40) % 4)
    r = class_balance(even, verbose=False)
    assert not r["imbalanced"] and r["counts"] == [10] * 4 and capsys.readouterr().out == ""


def test_channel_stats_matches_float64_numpy():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(30, 8, 8, 3), dtype=np.uint8)
    mean, std = channel_stats(ArraysDataset(data, np.zeros(30, int)))
    ref = data.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-12)
    g_mean, g_std = channel_stats(ArraysDataset(data[..., 0], np.zeros(30, int)))
    assert len(g_mean) == 1 and g_mean[0] == pytest.approx(ref[:, 0].mean(), rel=1e-12)


def test_sample_grid_png_greyscale_and_colour(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = ArraysDataset(rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), np.arange(30) % 10)
    fig = sample_grid(grey, n=9, path=tmp_path / "grey.png")
    with Image.open(tmp_path / "grey.png") as im:
        assert im.width > 200 and im.height > 200
    shown = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(shown) == 9 and all(img.get_array().shape == (28, 28) for img in shown)
    assert all(img.get_cmap().name == "gray" for img in shown)
    assert sorted(ax.get_title() for ax in fig.axes if ax.images) == sorted(
        str(grey.targets[i]) for i in np.sort(np.random.default_rng(0).choice(30, 9, replace=False))
    )
    colour = ArraysDataset(
        rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8), [0, 1, 2, 0, 1], ["x", "y", "z"]
    )
    fig = sample_grid(colour, n=25, path=tmp_path / "colour.png")
    assert [ax.images[0].get_array().shape for ax in fig.axes if ax.images] == [(8, 8, 3)] * 5
