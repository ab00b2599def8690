"""Smoke tests of examples/*.py: each main() runs end to end on tiny synthetic files in tmp_path.

No network and no shared data: MNIST is written as extracted IDX files (what torchvision's
``_check_exists`` looks for, so no md5 is involved), CIFAR-10 as a Keras-layout ``.npz``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_data import write_mnist_raw, write_npz

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPORT = ["model.safetensors", "checkpoint.safetensors", "history.json", "history.csv", "curves.png",
          "filters.png", "confusion.png", "misclassified.png", "samples.png"]  # fmt: skip


@pytest.fixture
def example(monkeypatch):
    """Import an example script as a module (the scripts import their helper as ``common``)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module


def check_report(out: Path, epochs: int):
    for name in REPORT:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == list(range(1, epochs + 1))
    assert all(np.isfinite(history["train_loss"])) and all(0 <= a <= 1 for a in history["val_acc"])
    lines = (out / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(lines) == epochs + 1
    return history


def test_mnist_example_runs_and_resumes(tmp_path, example, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_mnist_raw(data)
    mnist = example("mnist_cnn")
    common = ["--data-dir", str(data), "--device", "cpu", "--batch-size", "4", "--limit-train", "8",
              "--out", str(out), "--no-progress"]  # fmt: skip
    acc = mnist.main([*common, "--epochs", "1"])
    text = capsys.readouterr().out
    assert "epoch 1/1: train loss" in text and "test accuracy:" in text
    assert 0.0 <= acc <= 1.0
    first = check_report(out, epochs=1)
    mnist.main([*common, "--epochs", "2", "--resume"])  # continues from the epoch-1 checkpoint
    text = capsys.readouterr().out
    assert "epoch 1/2" not in text and "epoch 2/2: train loss" in text  # epoch 1 is not trained again
    second = check_report(out, epochs=2)
    assert second["train_loss"][0] == first["train_loss"][0] and second["val_acc"][0] == first["val_acc"][0]


@pytest.mark.parametrize("script, extra", [("cifar10_cnn", []), ("cifar10_resnet", ["--depth", "8"])])
def test_cifar_examples_run(tmp_path, example, capsys, script, extra):
    write_npz(tmp_path / "data" / "cifar10" / "cifar10_uint8.npz", n_train=24, n_test=8)
    out = tmp_path / "out"
    argv = ["--data-dir", str(tmp_path / "data"), "--device", "cpu", "--epochs", "1",
            "--batch-size", "8", "--limit-train", "16", "--out", str(out), *extra]  # fmt: skip
    acc = example(script).main(argv)
    assert 0.0 <= acc <= 1.0 and "test accuracy:" in capsys.readouterr().out
    check_report(out, epochs=1)


def test_missing_data_is_one_line_error(tmp_path, example, capsys, monkeypatch):
    import torchvision.datasets

    def offline(self):  # no network in tests: fail the download as torchvision does offline
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error>")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    common = example("common")
    mnist = example("mnist_cnn")
    with pytest.raises(SystemExit) as info:
        common.run(
            mnist.main, ["--data-dir", str(tmp_path / "none"), "--device", "cpu", "--out", str(tmp_path)]
        )
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: MNIST: dataset not found in") and "\n" not in err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--limit-train", "-1", "must be >= 1, got -1"),  # used to train on all images but one
        ("--limit-train", "0", "must be >= 1, got 0"),
        ("--limit-test", "0", "must be >= 1, got 0"),
        ("--lr", "-1", "must be > 0, got -1"),
        ("--lr", "0", "must be > 0, got 0"),
        ("--lr", "nan", "expected a finite number, got 'nan'"),
        ("--lr", "fast", "expected a number, got 'fast'"),
        ("--epochs", "0", "must be >= 1, got 0"),
        ("--epochs", "1.5", "expected an integer, got '1.5'"),
        ("--batch-size", "-4", "must be >= 1, got -4"),
        ("--seed", str(2**64), f"must be in [-2**63, 2**64 - 1], got {2**64}"),
        ("--seed", "1e3", "expected an integer, got '1e3'"),
    ],
)
def test_bad_numeric_options_end_in_one_error_line(option, value, message, tmp_path, example, capsys):
    with pytest.raises(SystemExit) as info:
        example("mnist_cnn").main([option, value, "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.endswith(f"error: argument {option}: {message}"), last
    assert not (tmp_path / "out").exists()  # nothing was started


def test_bad_resnet_options_and_out_naming_a_file(tmp_path, example, capsys):
    for argv, message in [
        (["--depth", "21"], "argument --depth: must be 6n + 2 (8, 14, 20, 32, 44, 56, ...), got 21"),
        (["--width", "0"], "argument --width: must be >= 1, got 0"),
    ]:
        with pytest.raises(SystemExit) as info:
            example("cifar10_resnet").main(argv)
        assert info.value.code == 2 and capsys.readouterr().err.strip().endswith(f"error: {message}")
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "run1"):
        with pytest.raises(SystemExit) as info:
            example("mnist_cnn").main(["--out", str(out)])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().endswith(
            f"error: argument --out: {str(a_file)!r} is a file; --out must name a folder"
        )


def test_negative_seed_and_resume_without_checkpoint(tmp_path, example, capsys):
    """--seed -1 is accepted (as torch.manual_seed(-1)); --resume with no checkpoint says so, also
    with --no-progress."""
    import minicnn as mc

    data, out = tmp_path / "data", tmp_path / "out"
    write_mnist_raw(data)
    argv = ["--data-dir", str(data), "--device", "cpu", "--batch-size", "4", "--limit-train", "8",
            "--epochs", "1", "--out", str(out), "--no-progress", "--resume", "--seed", "-1"]  # fmt: skip
    acc = example("mnist_cnn").main(argv)
    assert 0.0 <= acc <= 1.0 and mc.initial_seed() == 2**64 - 1
    text = capsys.readouterr().out
    assert f"no checkpoint at {out / 'checkpoint.safetensors'} yet: starting from scratch" in text
    check_report(out, epochs=1)


def test_corrupt_checkpoint_is_one_error_line(tmp_path, example, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_mnist_raw(data)
    out.mkdir()
    checkpoint = out / "checkpoint.safetensors"
    checkpoint.write_bytes(b"\x13\x00\x00\x00\x00\x00\x00\x00{truncated")
    argv = ["--data-dir", str(data), "--device", "cpu", "--limit-train", "8", "--out", str(out), "--resume",
            "--no-progress"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        example("common").run(example("mnist_cnn").main, argv)
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: fit: cannot resume from {checkpoint}: ") and "\n" not in err


def test_too_few_images_for_one_batch_is_one_error_line(tmp_path, example, capsys):
    write_npz(tmp_path / "data" / "cifar10" / "cifar10_uint8.npz", n_train=24, n_test=8)
    argv = ["--data-dir", str(tmp_path / "data"), "--device", "cpu", "--batch-size", "8",
            "--limit-train", "5", "--out", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        example("cifar10_cnn").main(argv)
    assert str(info.value.code) == (
        "error: 5 training image(s) make no batch of --batch-size 8 (incomplete batches are dropped): "
        "lower --batch-size or raise --limit-train"
    )
