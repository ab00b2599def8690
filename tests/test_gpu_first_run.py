"""benchmarks/gpu_first_run.py, the first GPU run in one command: its plumbing, without a GPU and
without the shared data (the full dry run, `--device cpu --smoke`, needs the packed data: docs/gpu.md)."""

from __future__ import annotations

import gzip
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_data import write_npz

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip


@pytest.fixture
def first_run(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("gpu_first_run")


def _fake_source(root: Path):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).write_bytes(gzip.compress(name.encode()))
    write_npz(root / "cifar10" / "cifar10_uint8.npz", n_train=30, n_test=12)


def test_pack_data_writes_mnist_and_a_cifar_subset(tmp_path, first_run, capsys):
    _fake_source(tmp_path / "shared")
    info = first_run.pack_data(tmp_path / "pack", tmp_path / "shared", n_train=20, n_test=5)
    for name in MNIST_FILES:
        assert (tmp_path / "pack" / "MNIST" / "raw" / name).read_bytes() == (
            tmp_path / "shared" / "MNIST" / "raw" / name
        ).read_bytes()
    with np.load(tmp_path / "pack" / "cifar10" / "cifar10_uint8.npz") as z:
        assert z["x_train"].shape == (20, 32, 32, 3) and z["x_test"].shape == (5, 32, 32, 3)
    assert "sha256" in (tmp_path / "pack" / "README.txt").read_text()
    assert info["cifar_train"] == 20 and len(info["files"]) == 5
    assert "packed" in capsys.readouterr().out


def test_pack_data_names_a_missing_source(tmp_path, first_run):
    with pytest.raises(SystemExit, match="MNIST.*is missing"):
        first_run.pack_data(tmp_path / "pack", tmp_path / "nothing", 10, 10)


def test_without_packed_data_it_says_what_to_run(tmp_path, first_run, capsys):
    code = first_run.main(["--device", "cpu", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert code == 2 and "--pack-data" in capsys.readouterr().err


def test_a_stage_that_does_not_fit_the_budget_is_reported_not_run(tmp_path, first_run):
    out = tmp_path / "out"
    code = first_run.main(
        ["--device", "cpu", "--smoke", "--stages", "check", "--budget", "10", "--out", str(out)]
    )
    assert code == 0
    results = json.loads((out / "gpu_run.json").read_text())
    assert results["stages"]["check"]["status"] == "not run"
    assert "| check | not run |" in (out / "gpu_run.md").read_text()


def test_a_short_dry_run_writes_the_report(tmp_path, first_run):
    """env + check on the CPU, end to end: subprocesses, logs, gpu_run.json and gpu_run.md."""
    out = tmp_path / "out"
    code = first_run.main(["--device", "cpu", "--smoke", "--stages", "env,check", "--out", str(out)])
    assert code == 0, (out / "check.log").read_text()
    results = json.loads((out / "gpu_run.json").read_text())
    assert results["stages"]["env"]["minicnn"] and results["stages"]["check"]["status"] == "ok"
    assert results["stages"]["check"]["verdict"].startswith("minicnn.check: 3/3 ops match PyTorch")
    md = (out / "gpu_run.md").read_text()
    assert "DRY RUN on the CPU" in md and "python -m minicnn.check --device cpu --quick" in md
    assert sorted(p.name for p in out.iterdir()) == ["check.log", "gpu_run.json", "gpu_run.md"]


def test_the_report_shows_the_gpu_cases(first_run):
    def res(ms, mib):
        return {"median_s": ms / 1e3, "gpu_peak_mib": mib}

    results = {
        "date": "2027-01-01 00:00 UTC", "command": "python3 benchmarks/gpu_first_run.py --device cuda",
        "device": "cuda", "smoke": False, "budget_s": 540, "commit": "abc1234", "elapsed_s": 420,
        "stages": {
            "env": {"nvidia_smi": "NVIDIA H200, 580.1, 143771 MiB", "cupy": "14.2.0", "status": "ok"},
            "bench": {"status": "ok", "report": {"measured": True, "gemm": {
                "minicnn": {"gflops": 50000.0}, "torch": {"gflops": 51000.0}}, "gpu_cases": {
                "cifar b128": {"minicnn": res(4.0, 300), "torch": res(2.0, 200)},
                "resnet20 b512": {"minicnn": {"error": "exit 1: CUDARuntimeError"}, "torch": res(9.5, 900)},
            }}},
        },
    }  # fmt: skip
    md = first_run.markdown(results)
    assert "## GPU figures of 2027-01-01 00:00 UTC (first run)" in md and "NVIDIA H200" in md
    assert "| cifar | 128 | 4.00 | 2.00 | 2.00x | 300 | 200 |" in md
    assert "| resnet20 | 512 | error | 9.50 | - | - | 900 |" in md and "CUDARuntimeError" in md
    assert "SGEMM ceiling (float32 2048^3): minicnn/CuPy 50000 GFLOP/s, PyTorch 51000 GFLOP/s." in md
    not_measured = dict(
        results, stages={"bench": {"status": "ok", "report": {"measured": False, "why": "no GPU"}}}
    )
    assert "not measured: no GPU" in first_run.markdown(not_measured)


def test_stages_run_in_their_order_with_parity_last(first_run):
    assert first_run.STAGES[-1] == "parity" and first_run.STAGES[0] == "env"
    assert set(first_run.LIMITS) == set(first_run.STAGES) - {"env"}
    assert sys.executable  # the stages run with this interpreter
