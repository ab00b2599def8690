"""minicnn.data for PyTorch-style scripts: map-style datasets, default_collate, samplers, random_split,
worker processes/threads, per-sample torchvision transforms -- each checked against PyTorch/torchvision."""

from __future__ import annotations

import os
import struct
from collections import namedtuple

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import minicnn as mc
from minicnn.data import (
    MNIST,
    ArraysDataset,
    BatchSampler,
    Compose,
    ConcatDataset,
    DataLoader,
    Dataset,
    Generator,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    ToTensor,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)

tvt = pytest.importorskip("torchvision.transforms")


def as_torch(x):
    return torch.from_numpy(np.asarray(x))


def same(ours, ref):
    """A minicnn batch equals PyTorch's: same structure, dtypes and values."""
    if isinstance(ref, torch.Tensor):
        assert isinstance(ours, mc.Tensor), type(ours)
        assert ours.numpy().dtype == ref.numpy().dtype, (ours.numpy().dtype, ref.dtype)
        np.testing.assert_array_equal(ours.numpy(), ref.numpy())
    elif isinstance(ref, dict):
        assert type(ours) is type(ref) and list(ours) == list(ref)
        for k in ref:
            same(ours[k], ref[k])
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), (type(ours), type(ref))
        for a, b in zip(ours, ref):
            same(a, b)
    else:
        assert ours == ref


# ============================================================================ default_collate
Point = namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "make",
    [
        lambda i: (np.full((2, 3), i, np.float32), i),  # (array, int) -> [float32 stack, int64]
        lambda i: (float(i) / 2, i % 2 == 0),  # Python float -> float64, bool -> bool
        lambda i: np.float32(i) * 0.5,  # NumPy scalar keeps its dtype
        lambda i: {"image": np.arange(3, dtype=np.int16) + i, "label": i, "name": f"s{i}"},
        lambda i: [np.arange(2.0) * i, [i, i + 1]],  # nested lists
        lambda i: Point(np.float64(i), i),
    ],
)
def test_default_collate_matches_pytorch(make):
    samples = [make(i) for i in range(4)]
    same(default_collate(samples), tud.default_collate(samples))  # PyTorch collates NumPy samples too


def test_default_collate_tensors_and_errors():
    ts = [mc.tensor([[1.0, 2.0]]) * i for i in range(3)]
    out = default_collate(ts)
    assert isinstance(out, mc.Tensor) and out.shape == (3, 1, 2) and out.dtype == mc.float32
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors.*NoneType"):
        default_collate([None, None])
    with pytest.raises(RuntimeError, match=r"stack expects each array to be equal size.*\[3\] at entry 0"):
        default_collate([np.zeros(3), np.zeros(4)])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [1]])


# ============================================================================ map-style datasets
class Squares(Dataset):
    """A custom dataset: sample i is (an image-like array filled with i, label i % 3)."""

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((1, 2, 2), i, np.float32), i % 3


def batches_equal(ours, ref):
    ours, ref = list(ours), list(ref)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        same(a, b)


def test_custom_dataset_list_of_pairs_and_tensor_dataset_match_pytorch():
    for drop_last in (False, True):
        batches_equal(
            DataLoader(Squares(10), batch_size=4, drop_last=drop_last),
            tud.DataLoader(Squares(10), batch_size=4, drop_last=drop_last),
        )
    # workers, pinned memory, persistent workers: the same batches as PyTorch's plain loader
    batches_equal(
        DataLoader(Squares(10), batch_size=4, num_workers=2, pin_memory=True, persistent_workers=True),
        tud.DataLoader(Squares(10), batch_size=4),
    )
    pairs = [(np.arange(3.0) + i, i) for i in range(5)]  # a plain list of (x, y) pairs
    batches_equal(DataLoader(pairs, batch_size=2), tud.DataLoader(pairs, batch_size=2))
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    y = np.arange(7)
    ours = DataLoader(TensorDataset(mc.tensor(x), mc.tensor(y)), batch_size=3)
    ref = tud.DataLoader(tud.TensorDataset(as_torch(x), as_torch(y)), batch_size=3)
    batches_equal(ours, ref)
    assert len(ours) == len(ref) == 3
    # the gathered TensorDataset batches equal per-sample default_collate
    td = TensorDataset(mc.tensor(x), mc.tensor(y))
    batches_equal(DataLoader(td, batch_size=3, collate_fn=default_collate), ref)
    with pytest.raises(ValueError, match="size mismatch between tensors"):
        TensorDataset(mc.zeros(3, 2), mc.zeros(4))
    # batch_size=None: single samples, arrays converted to Tensors
    batches_equal(DataLoader(Squares(3), batch_size=None), tud.DataLoader(Squares(3), batch_size=None))


def test_subset_concat_and_random_split_follow_pytorch():
    ds = Squares(10)
    sub = Subset(ds, [7, 2, 5])
    assert len(sub) == 3 and sub[0][1] == 7 % 3
    cat = ds + Squares(4)
    assert isinstance(cat, ConcatDataset) and len(cat) == 14 and cat[11][0][0, 0, 0] == 1 and cat[-1][1] == 0
    for lengths in ([0.7, 0.2, 0.1], [0.5, 0.5], [3, 7], [1.0, 0.0]):
        with pytest.warns(UserWarning) if 0.0 in lengths else _nothing():
            ours = random_split(ds, lengths, generator=Generator().manual_seed(0))
        with pytest.warns(UserWarning) if 0.0 in lengths else _nothing():
            ref = tud.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in ref], lengths
        assert sorted(i for s in ours for i in s.indices) == list(range(10))
    again = random_split(ds, [0.5, 0.5], generator=Generator().manual_seed(0))
    assert again[0].indices == random_split(ds, [5, 5], generator=Generator().manual_seed(0))[0].indices
    mc.manual_seed(1)
    a = random_split(ds, [5, 5])[0].indices
    mc.manual_seed(1)
    assert random_split(ds, [5, 5])[0].indices == a
    with pytest.raises(
        ValueError, match=r"sum of input lengths \(9\) does not equal the length of the input"
    ):
        random_split(ds, [4, 5])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_shuffle_sampler_batch_sampler_generator():
    ds = Squares(11)
    mc.manual_seed(4)
    a = [y.tolist() for _, y in DataLoader(ds, batch_size=4, shuffle=True)]
    mc.manual_seed(4)
    assert [y.tolist() for _, y in DataLoader(ds, batch_size=4, shuffle=True)] == a
    labels = lambda loader: np.concatenate([x.numpy()[:, 0, 0, 0] for x, _ in loader]).astype(int).tolist()  # noqa: E731
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=Generator().manual_seed(3))
    e1, e2 = labels(loader), labels(loader)
    assert sorted(e1) == sorted(e2) == list(range(11)) and e1 != e2  # a fresh permutation per epoch
    assert labels(DataLoader(ds, batch_size=4, shuffle=True, generator=Generator().manual_seed(3))) == e1
    bs = BatchSampler(SequentialSampler(ds), 3, drop_last=True)
    assert list(bs) == list(tud.BatchSampler(tud.SequentialSampler(ds), 3, drop_last=True))
    loader = DataLoader(ds, batch_sampler=bs)
    assert len(loader) == 3 and labels(loader) == list(range(9))
    w = np.zeros(11)
    w[[2, 5]] = 1.0
    drawn = labels(DataLoader(ds, batch_size=5, sampler=WeightedRandomSampler(w, 20, generator=0)))
    assert len(drawn) == 20 and set(drawn) <= {2, 5}
    assert len(list(RandomSampler(ds, replacement=True, num_samples=30))) == 30
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_sampler=bs, batch_size=2)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="num_workers option should be a non-negative integer"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(TypeError, match="map-style dataset with __getitem__ and __len__"):
        DataLoader(5)


def test_label_validation_names_the_bad_label_and_its_index():
    ds = ArraysDataset(np.zeros((6, 2, 2), np.uint8), [0, 1, 2, 0, 1, 2], classes=["a", "b", "c"])
    ds.targets[4] = 3  # changed after the dataset checked it
    with pytest.raises(
        ValueError, match=r"label 3 at index 4 is not a class index in \[0, 3\) \(3 classes\)"
    ):
        DataLoader(ds, batch_size=2)
    with pytest.raises(
        ValueError, match=r"label 3 at index 1 is not a class index"
    ):  # index within the subset
        DataLoader(Subset(ds, [0, 4]), batch_size=2)

    class Labelled(Squares):
        classes = ["x", "y"]
        targets = np.array([0, 1, 1, 2.5, 0, 1, 0, 1, 0, 1])

    with pytest.raises(ValueError, match=r"label 2\.5 at index 3 is not an integer class index"):
        DataLoader(Labelled(), batch_size=2)
    Labelled.targets = np.array([0, 1, 1, -1, 0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"label -1 at index 3 is not a class index in \[0, 2\)"):
        DataLoader(Labelled(), batch_size=2)


# ============================================================================ workers
class Noisy(Dataset):
    """Per-sample random augmentation from minicnn's transforms, and the worker that made it."""

    def __init__(self, n=12, fail_at=None):
        self.n, self.fail_at = n, fail_at
        self.t = Compose([RandomCrop(4, padding=1), RandomHorizontalFlip()])

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ValueError(f"sample {i} is broken")
        x = self.t(mc.tensor(np.arange(16, dtype=np.float32).reshape(1, 4, 4) + i))
        info = get_worker_info()
        return x, i, -1 if info is None else info.id, os.getpid()


@pytest.mark.parametrize("context", [None, "thread"])
def test_workers_give_the_same_batches_as_the_main_process(context):
    base = list(DataLoader(Noisy(), batch_size=3, shuffle=True, seed=5))
    loader = DataLoader(
        Noisy(), batch_size=3, shuffle=True, seed=5, num_workers=2, multiprocessing_context=context
    )
    got = list(loader)
    assert len(got) == len(base) == 4
    for (x0, i0, w0, _), (x1, i1, w1, _) in zip(base, got):
        np.testing.assert_array_equal(x0.numpy(), x1.numpy())  # same augmentation whatever the workers
        np.testing.assert_array_equal(i0.numpy(), i1.numpy())
        assert set(w0.tolist()) == {-1} and set(w1.tolist()) <= {0, 1}
    assert len({x.numpy().tobytes() for x, *_ in base}) == 4  # and it is random
    pids = {int(p) for *_, pp in got for p in pp.tolist()}
    assert (os.getpid() not in pids) if context is None else (pids == {os.getpid()})


def test_process_workers_errors_init_fn_and_persistence():
    loader = DataLoader(Noisy(fail_at=7), batch_size=3, num_workers=2)
    with pytest.raises(ValueError, match=r"sample 7 is broken \[in DataLoader worker process 0\]"):
        list(loader)
    with pytest.raises(ValueError, match="sample 7 is broken"):
        list(DataLoader(Noisy(fail_at=7), batch_size=3, num_workers=2, multiprocessing_context="thread"))

    seen = []
    loader = DataLoader(
        Noisy(), batch_size=2, num_workers=2, persistent_workers=True, worker_init_fn=seen.append,
        multiprocessing_context="thread",
    )  # fmt: skip
    first = [x.numpy() for x, *_ in loader]
    pool = loader._pool
    for _ in zip(range(2), loader):  # an epoch abandoned midway
        pass
    second = [x.numpy() for x, *_ in loader]
    assert loader._pool is pool and sorted(seen) == [0, 1]  # the same two workers throughout
    assert len(first) == len(second) == 6

    loader = DataLoader(Noisy(), batch_size=2, num_workers=2, persistent_workers=True)
    pids1 = {int(p) for *_, pp in loader for p in pp.tolist()}
    for _ in zip(range(1), loader):
        pass
    pids2 = {int(p) for *_, pp in loader for p in pp.tolist()}
    assert pids1 == pids2 and os.getpid() not in pids1
    loader._pool.shutdown()


# ============================================================================ torchvision-style transforms
def test_to_tensor_and_normalize_per_sample_match_torchvision():
    from PIL import Image

    rng = np.random.default_rng(0)
    for arr in (
        rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        rng.integers(0, 256, (5, 7), dtype=np.uint8),
    ):
        for pic in (arr, Image.fromarray(arr)):
            ours, ref = ToTensor()(pic), tvt.ToTensor()(pic)
            assert isinstance(ours, mc.Tensor) and ours.dtype == mc.float32
            np.testing.assert_array_equal(ours.numpy(), ref.numpy())
    f = rng.random((4, 4, 2)).astype(np.float64)  # not uint8: values and dtype kept
    np.testing.assert_array_equal(ToTensor()(f).numpy(), tvt.ToTensor()(f).numpy())
    x = rng.random((3, 5, 5)).astype(np.float32)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    np.testing.assert_allclose(
        Normalize(mean, std)(mc.tensor(x)).numpy(), tvt.Normalize(mean, std)(as_torch(x)).numpy(), rtol=1e-6
    )
    with pytest.raises(TypeError, match=r"Normalize works on tensors.*put ToTensor\(\) before it"):
        Normalize(mean, std)(Image.fromarray(arr))


def test_random_crop_and_flip_on_pil_images():
    from PIL import Image

    arr = np.random.default_rng(0).integers(1, 256, (6, 7, 3), dtype=np.uint8)  # no zeros
    img = Image.fromarray(arr)
    padded = np.pad(arr, ((2, 2), (2, 2), (0, 0)))
    gen = np.random.default_rng(1)
    corners = set()
    for _ in range(30):
        out = np.asarray(RandomCrop((6, 7), padding=2)(img, gen))
        hits = [
            (i, j) for i in range(5) for j in range(5) if np.array_equal(out, padded[i : i + 6, j : j + 7])
        ]
        assert len(hits) == 1
        corners.add(hits[0])
    assert len(corners) > 5
    np.testing.assert_array_equal(
        np.asarray(RandomHorizontalFlip(p=1.0)(img)), np.asarray(tvt.RandomHorizontalFlip(p=1.0)(img))
    )
    assert RandomHorizontalFlip(p=0.0)(img) is img


def idx(arr):
    return struct.pack(">I", 0x800 + arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_mnist(root, n=9):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, m in (("train", n), ("t10k", 4)):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            idx(rng.integers(0, 256, (m, 28, 28), dtype=np.uint8))
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx((np.arange(m) % 10).astype(np.uint8)))


def test_mnist_with_transform_reads_like_torchvision_and_batches_on_the_fast_path(tmp_path):
    import torchvision.datasets as tvd

    write_mnist(tmp_path)
    norm = (0.1307,), (0.3081,)
    ours = MNIST(
        tmp_path, train=True, download=False, transform=Compose([ToTensor(), Normalize(*norm)]),
        target_transform=lambda y: y + 100,
    )  # fmt: skip
    ref = tvd.MNIST(
        tmp_path, train=True, download=False, transform=tvt.Compose([tvt.ToTensor(), tvt.Normalize(*norm)]),
        target_transform=lambda y: y + 100,
    )  # fmt: skip
    for i in (0, 5):
        (x, y), (rx, ry) = ours[i], ref[i]
        assert isinstance(x, mc.Tensor) and x.shape == (1, 28, 28) and y == ry
        np.testing.assert_allclose(x.numpy(), rx.numpy(), rtol=1e-6, atol=1e-6)
    # The loader keeps the batched path for ToTensor + Normalize, with the same numbers as per sample:
    plain = MNIST(tmp_path, train=True, download=False, transform=Compose([ToTensor(), Normalize(*norm)]))
    fast = DataLoader(plain, batch_size=4)
    per_sample = DataLoader(plain, batch_size=4, collate_fn=default_collate)  # forces dataset[i]
    assert fast._fast and not per_sample._fast
    for (x1, y1), (x2, y2) in zip(fast, per_sample, strict=True):
        np.testing.assert_array_equal(x1.numpy(), x2.numpy())
        np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    torch_batches = list(tud.DataLoader(ref, batch_size=4))
    for (x1, _), (rx, _) in zip(fast, torch_batches, strict=True):
        np.testing.assert_allclose(x1.numpy(), rx.numpy(), rtol=1e-6, atol=1e-6)
    # A random crop + flip written as per-sample transforms still runs batched (values: crops of the image)
    crop_flip = Compose([RandomCrop(28, padding=2), RandomHorizontalFlip(), ToTensor()])
    aug = MNIST(tmp_path, train=True, download=False, transform=crop_flip)
    loader = DataLoader(aug, batch_size=9, seed=0)
    assert loader._fast
    ((x, _),) = list(loader)
    padded = np.pad(aug.data, ((0, 0), (2, 2), (2, 2))) / np.float32(255.0)
    for n in range(9):
        windows = [padded[n, i : i + 28, j : j + 28] for i in range(5) for j in range(5)]
        assert any(
            np.array_equal(x.numpy()[n, 0], w) or np.array_equal(x.numpy()[n, 0], w[:, ::-1]) for w in windows
        )
    # Anything else goes per sample, with the same results as the dataset's own __getitem__
    other = MNIST(tmp_path, train=True, download=False, transform=Compose([ToTensor(), lambda t: t * 2]))
    loader = DataLoader(other, batch_size=4)
    assert not loader._fast
    x, _ = next(iter(loader))
    np.testing.assert_array_equal(x.numpy()[1], other[1][0].numpy())
    with pytest.raises(TypeError, match="the third positional argument is transform="):
        MNIST(tmp_path, True, False)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28)], ids=["colour-HWC", "greyscale-HW"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_batch_transforms_equal_on_both_paths(shape, num_workers):
    """The same uint8 images as a list of (image, label) pairs (per-sample path: the collated batch is
    (N, H, W[, C]) uint8) and as an ArraysDataset (fast path: gathered (N, C, H, W), then / 255): the
    loader's ToTensor + Normalize give the same batches, bit for bit, and the torchvision recipe's values."""
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(70, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=70)
    channels = shape[2] if len(shape) == 3 else 1
    mean, std = tuple(np.linspace(0.4, 0.5, channels)), tuple(np.linspace(0.2, 0.3, channels))
    transform = Compose([ToTensor(), Normalize(mean, std)])
    pairs = [(images[i], int(labels[i])) for i in range(len(images))]
    per_sample = DataLoader(pairs, batch_size=64, transform=transform, num_workers=num_workers)
    fast = DataLoader(ArraysDataset(images, labels), batch_size=64, transform=transform)
    assert not per_sample._fast and fast._fast
    batches = list(zip(per_sample, fast))
    assert len(batches) == 2
    for (x_slow, y_slow), (x_fast, y_fast) in batches:
        assert x_slow.shape == (len(y_fast), channels, *shape[:2]) and x_slow.dtype == x_fast.dtype
        np.testing.assert_array_equal(x_slow.numpy(), x_fast.numpy())
        np.testing.assert_array_equal(y_slow.numpy(), y_fast.numpy())
    reference = tvt.Compose([tvt.ToTensor(), tvt.Normalize(mean, std)])
    first = torch.stack([reference(images[i]) for i in range(64)]).numpy()
    np.testing.assert_allclose(batches[0][0][0].numpy(), first, rtol=1e-6, atol=1e-6)


def test_loader_batch_totensor_refuses_other_uint8_layouts():
    expected = r"ToTensor: a uint8 batch must be \(N, H, W\) or \(N, H, W, C\).*\(2, 3\)"
    with pytest.raises(ValueError, match=expected):
        ToTensor().apply(np.zeros((2, 3), np.uint8), None)
