"""``python -m minicnn.check``: the table and verdict, its exit codes, and its one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn import check
from minicnn.backend import cuda_available
from minicnn.testing.catalogue import CATALOGUE, GROUPS, Check

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def _run(*args, python_code=None):
    cmd = [sys.executable] + (["-c", python_code] if python_code else ["-m", "minicnn.check", *args])
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _rows(out: str) -> dict:
    """op -> the cells of its row in the printed table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("op "))
    rows = {}
    for line in lines[start + 2 :]:
        cells = line.split()
        if len(cells) != 5:
            break
        rows[cells[0]] = cells[1:]
    return rows


def test_quick_run_prints_the_table_and_passes(capsys):
    assert check.main(["--quick", "--ops", "conv2d,relu"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["conv2d", "relu"]
    for configs, fwd, grad, passed in rows.values():
        assert configs == str(check.QUICK) and passed == "yes"
        assert float(fwd) <= 1e-10 and float(grad) <= 1e-10  # float64: within the parity suite's rtol
    assert out.splitlines()[-1].startswith("minicnn.check: 2/2 ops match PyTorch ")
    assert " on cpu (kernels tier, float64) in " in out.splitlines()[-1]


def test_a_difference_fails_the_run_and_is_named(monkeypatch, capsys):
    def wrong(cfg, ctx):  # minicnn's side is off by 1e-3: a forward difference
        return ctx.compare(lambda t: t * 2.0, lambda t: t * 2.0 + 1e-3, (3, 4))

    monkeypatch.setitem(CATALOGUE, "relu", Check("relu", "functional", None, wrong, fixed=[dict(case=1)]))
    assert check.main(["--quick", "--ops", "relu,sigmoid", "--dtype", "float32"]) == 1
    out = capsys.readouterr().out
    rows = _rows(out)
    assert rows["relu"][0] == "1" and rows["relu"][-1] == "NO" and rows["sigmoid"][-1] == "yes"
    assert float(rows["relu"][1]) > 1e-4  # the forward error is reported, above float32's tolerance
    assert "FAILED relu [case=1]: compare_with_torch: output: worst element [" in out
    verdict = (
        r"minicnn\.check: 1/2 ops match PyTorch \S+ on cpu \(\w+ tier, float32\) in \d+ s; different: relu"
    )
    assert re.fullmatch(verdict, out.splitlines()[-1])


def test_unknown_op_is_a_one_line_error(capsys):
    assert check.main(["--ops", "conv2d,conv3d"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("minicnn.check: unknown op 'conv3d'; valid names: conv2d, max_pool2d, ")


def test_ops_accepts_groups_case_insensitively():
    chosen, problem = check._select("NN,relu", CATALOGUE, GROUPS)
    assert problem is None
    assert [c.name for c in chosen] == [n for n, c in CATALOGUE.items() if c.group == "nn"] + ["relu"]


def test_the_catalogue_covers_every_op_layer_loss_and_optimizer():
    required = (
        "conv2d max_pool2d avg_pool2d adaptive_avg_pool2d batch_norm dropout relu leaky_relu elu gelu silu "
        "sigmoid tanh softmax log_softmax linear cross_entropy nll_loss mse_loss add sub mul div pow matmul "
        "sum mean max reshape cat getitem nn.Conv2d nn.BatchNorm1d nn.BatchNorm2d nn.Linear optim.SGD "
        "optim.Adam optim.AdamW optim.RMSprop optim.lr_scheduler"
    ).split()
    assert set(required) <= set(CATALOGUE)


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line_and_exit_2():
    result = _run("--quick", "--device", "cuda")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    # the reason names what failed: "CuPy is not installed", or "CuPy is installed but failed: <error>"
    assert result.stderr.startswith("minicnn.check: no CUDA device: CuPy is ")
    assert "pip install cupy-cuda12x" in result.stderr


def test_without_torch_is_one_line_and_exit_2():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from minicnn.check import main\n"
        "sys.exit(main(['--quick', '--ops', 'relu']))\n"
    )
    result = _run(python_code=code)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("minicnn.check: PyTorch could not be imported (")
    assert "pip install torch" in result.stderr
