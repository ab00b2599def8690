"""benchmarks/mnist_epoch.py: its PyTorch recipe is the MNIST example's model (same layers, same
parameter count as minicnn.models.mnist_cnn) and trains on the files it is given; a missing dataset
is a one-line error. On a tiny dataset written here in MNIST's real format (no shared data)."""

from __future__ import annotations

import gzip
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from minicnn import models
from tests.test_data import idx_bytes, tiny_mnist

pytest.importorskip("torchvision")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def mnist_epoch(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield importlib.import_module("mnist_epoch")
    sys.modules.pop("mnist_epoch", None)  # (a top-level name: not to shadow another folder's module)


def write_mnist_gz(root: Path, n_train=40, n_test=7):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, arr in tiny_mnist(0, n_train=n_train, n_test=n_test).items():
        (raw / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(arr)))


@pytest.mark.parametrize("torch_data", ["torchvision", "tensors"])
def test_torch_recipe_is_the_example_model_and_reads_the_given_files(tmp_path, mnist_epoch, torch_data):
    write_mnist_gz(tmp_path)
    args = SimpleNamespace(data_dir=str(tmp_path), epochs=1, threads=1, limit_train=30, torch_data=torch_data)
    result = mnist_epoch.run_torch(args)
    model = models.mnist_cnn()
    assert result["params"] == sum(p.numel() for p in model.parameters()) == 50_378
    assert result["layers"] == [type(m).__name__ for m in model]
    assert result["train_images"] == 30  # --limit-train reached the recipe
    assert result["acc"] * 7 == pytest.approx(round(result["acc"] * 7))  # a share of the 7 test images


def test_missing_dataset_is_a_one_line_error(tmp_path, mnist_epoch, capsys):
    with pytest.raises(SystemExit) as exc:
        mnist_epoch.main(["--data-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
