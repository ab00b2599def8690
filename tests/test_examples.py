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
