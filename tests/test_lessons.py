"""The lesson scripts (examples/lessons/) run end to end on tiny synthetic data in ``--quick`` mode.

These tests prove the machinery works (data loading from the real on-disk formats, models,
training, tables, figures) -- not the lessons' conclusions, which need real data and longer
runs (see docs/lessons/). No network, no /work/shared: a fake MNIST (IDX files, as torchvision
extracts them) and a fake CIFAR-10 (the .npz layout) are written into tmp_path.
"""

from __future__ import annotations

import importlib
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

LESSONS = Path(__file__).resolve().parents[1] / "examples" / "lessons"
sys.path.insert(0, str(LESSONS))


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x0803 if arr.ndim == 3 else 0x0801
    return struct.pack(f">I{arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def _fake_images(rng, labels, shape):
    """Noise plus a class-dependent bright bar, so the classes are (weakly) learnable."""
    x = rng.integers(0, 60, size=(len(labels), *shape)).astype(np.int64)
    rows = 2 + 2 * labels  # the bar's row depends on the class
    x[np.arange(len(labels)), rows] += 180
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data root with MNIST/raw/*-ubyte (extracted IDX files) and cifar10/cifar10_uint8.npz."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder in ("MNIST", "FashionMNIST"):
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        for split, n in (("train", 600), ("t10k", 200)):
            labels = np.arange(n) % 10
            rng.shuffle(labels)
            (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx_bytes(_fake_images(rng, labels, (28, 28))))
            (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels.astype(np.uint8)))
    (root / "cifar10").mkdir()
    arrays = {}
    for split, n in (("train", 600), ("test", 200)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        arrays[f"x_{split}"] = _fake_images(rng, labels, (32, 32, 3))
        arrays[f"y_{split}"] = labels.astype(np.int64)
    np.savez(root / "cifar10" / "cifar10_uint8.npz", **arrays)
    return root


def run_lesson(module_name, data_dir, tmp_path, *extra):
    out = tmp_path / module_name
    mod = importlib.import_module(module_name)
    result = mod.main(["--quick", "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu", *extra])
    assert (out / "table.md").read_text().count("|") > 10
    return result, out


def test_l1_parameters(data_dir, tmp_path):
    result, _ = run_lesson("l1_parameters", data_dir, tmp_path)
    # Independent arithmetic: weights + biases of each layer.
    assert result["linear"] == 784 * 128 + 128
    assert result["conv"] == 32 * 9 + 32
    assert result["conv_rgb"] == 32 * 27 + 32
    assert result["dense_big"] == 32 * 32 * 3 * 1000 + 1000  # --quick: a 32x32x3 image
    assert result["mnist_cnn"] == (9 * 32 + 32) + 2 * 32 + (32 * 64 * 9 + 64) + 2 * 64 + (3136 * 10 + 10)
    assert result["conv_mult_adds_56"] == 4 * result["conv_mult_adds_28"]  # 4x the positions, same weights


def test_l5_receptive_field(data_dir, tmp_path):
    result, out = run_lesson("l5_receptive_field", data_dir, tmp_path)
    assert (out / "receptive_field.png").stat().st_size > 1000
    three = result["3 x conv3x3 (stride 1)"]
    assert three["r"] == 7 and three["measured"] == (7, 7)
    pooled = result["conv3x3, maxpool2 (stride 2), conv3x3, conv3x3"]
    assert pooled["r"] == 12 and pooled["j"] == 2 and pooled["measured"] == (12, 12)
    cnn = result["MNIST CNN (mnist_cnn(), conv part)"]
    # r by hand: conv3 (3), pool2 (+1*1 = 4, j=2), conv3 (+2*2 = 8), pool2 (+1*2 = 10, j=4)
    assert cnn["r"] == 10 and cnn["measured"] == (10, 10)
    assert tuple(cnn["first"]) == (cnn["expected_first"],) * 2
    # ReLU + max-pool: one image reaches at most the field; train-mode BatchNorm reaches everything.
    assert max(result["real_union_1"][:2]) <= 10
    assert result["real_train_mode"][0] > 10


def test_l3_minibatch(data_dir, tmp_path):
    result, out = run_lesson("l3_minibatch", data_dir, tmp_path)
    assert (out / "minibatch.png").is_file()
    # Same budget of epochs: 2 full-batch steps vs ceil(300 / 64) = 5 steps per epoch.
    assert result["full batch"]["steps"] == 2 and result["minibatch 64"]["steps"] == 10
    for key in ("sorted by label, no shuffle", "shuffled"):
        assert 0.0 <= result[key]["share_last"] <= 1.0
    huge = result["lr=10000.0"]
    # A caught divergence stops on a non-finite loss; a run that survived ends on a finite one.
    assert (huge["diverged_at"] is not None) == (not np.isfinite(huge["final_loss"]))


def test_l4_class_balance(data_dir, tmp_path):
    result, out = run_lesson("l4_class_balance", data_dir, tmp_path)
    assert (out / "class_balance.png").is_file()
    assert result["counts"] == [60] * 10  # the fake training set: 600 labels, 60 per class
    imbalanced = result["3 = 60%"]["per_class_train"]
    assert (
        imbalanced[3] == 60 and sum(imbalanced) == 96 and result["balanced"]["per_class_train"] == [10] * 10
    )
    assert len(result["balanced"]["recall"]) == 10


def test_l2_shift_matches_roll_with_a_black_border():
    from l2_translation import shift

    images = np.random.default_rng(1).integers(1, 256, size=(3, 6, 5)).astype(np.uint8)
    for dy, dx in ((0, 2), (0, -1), (3, 0), (-2, 0), (1, -1)):
        expected = np.roll(images, (dy, dx), axis=(1, 2))
        rows = slice(0, dy) if dy > 0 else slice(images.shape[1] + dy, None)
        cols = slice(0, dx) if dx > 0 else slice(images.shape[2] + dx, None)
        if dy:
            expected[:, rows] = 0
        if dx:
            expected[:, :, cols] = 0
        np.testing.assert_array_equal(shift(images, dy, dx), expected)


def test_l2_translation(data_dir, tmp_path):
    result, out = run_lesson("l2_translation", data_dir, tmp_path)
    assert (out / "translation.png").is_file()
    for name in ("MLP 784-256-10", "MNIST CNN"):
        acc = result[name]["acc"]
        assert sorted(acc) == [0, 1] and set(acc[1]) == {"right", "left", "down", "up"}
        assert result[name]["mean_acc"][1] == pytest.approx(np.mean(list(acc[1].values())))


def test_l9_residual(data_dir, tmp_path):
    result, out = run_lesson("l9_residual", data_dir, tmp_path)
    assert (out / "residual.png").is_file()
    # --quick: stem + 2 blocks of 2 convs + the classifier = 6 weight layers, all with a gradient.
    for name in ("plain", "residual"):
        norms = result[name]["grad_norms"]
        assert len(norms) == 6 and all(np.isfinite(norms))


def test_l6_batchnorm(data_dir, tmp_path):
    result, out = run_lesson("l6_batchnorm", data_dir, tmp_path)
    assert (out / "batchnorm.png").is_file()
    # eval() does not depend on the batch: the same accuracy in batches of 8 and of 500.
    assert result["eval(), batches of 8"] == result["eval(), batches of 500"]
    # From a reset, each train-mode pass moves the running mean 10% of the way to the batch mean.
    err = result["running_mean_error"]
    assert len(err) == 5 and err[-1] < err[0]


def test_l6_train_mode_without_updates_keeps_running_stats():
    import l6_batchnorm

    import minicnn as mc

    model = l6_batchnorm.small_cnn()
    x = mc.randn(4, 1, 28, 28)
    before = [bn.running_mean.numpy().copy() for bn in l6_batchnorm.batchnorms(model)]
    with l6_batchnorm.train_mode_without_updates(model):
        assert model.training
        model(x)
    assert not model.training
    for bn, b in zip(l6_batchnorm.batchnorms(model), before):
        np.testing.assert_array_equal(bn.running_mean.numpy(), b)
        assert bn.momentum == 0.1


def test_l7_overfitting(data_dir, tmp_path):
    result, out = run_lesson("l7_overfitting", data_dir, tmp_path)
    assert (out / "overfitting.png").is_file() and (out / "flips.png").is_file()
    for key in ("plain", "dropout 0.5", "weight decay 1e-3", "dropout + weight decay", "cifar crop + flip"):
        assert 0.0 <= result[key]["train_acc"] <= 1.0 and 0.0 <= result[key]["val_acc"] <= 1.0


def test_l8_first_layer(data_dir, tmp_path):
    result, out = run_lesson("l8_first_layer", data_dir, tmp_path)
    for name in ("mnist", "cifar10"):
        for f in (f"filters_{name}_initial.png", f"filters_{name}_trained.png", f"feature_maps_{name}.png"):
            assert (out / f).stat().st_size > 1000
    assert result["MNIST"]["relative_change"] > 0  # training moved the first-layer filters
