"""benchmarks/run.py's per-conv-layer table (``--only convs``): the algorithm registry of the minicnn
worker runs what each name says and gives the textbook's numbers, and the table's ratios and GFLOP/s
are computed from the workers' medians. No timing is asserted (timings live in benchmarks/)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import minicnn as mc
from minicnn import kernels
from minicnn.ops import conv as textbook_conv
from minicnn.testing import RTOL, assert_close

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark modules, imported from benchmarks/ and forgotten afterwards: their top-level names
    (``_common``, ``run``) would otherwise shadow other folders' modules of the same name."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    modules = {"worker": "_minicnn_worker", "run": "run", "common": "_common"}
    yield SimpleNamespace(**{key: importlib.import_module(name) for key, name in modules.items()})
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", None) and str(BENCH) in sys.modules[name].__file__:
            del sys.modules[name]


def _conv_fwd_bwd(x, w, b, g):
    """out, dx, dW, db and the grad_fn class of F.conv2d(x, w, b, padding=1) under the current settings."""
    tx, tw, tb = (mc.tensor(a, requires_grad=True) for a in (x, w, b))
    out = mc.nn.functional.conv2d(tx, tw, tb, padding=1)
    cls = type(out.grad_fn)
    out.backward(mc.tensor(g))
    return [out.numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()], cls


@pytest.mark.skipif(not kernels.available(), reason="Numba is not installed: only the textbook runs")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_conv_algorithm_runs_and_equals_the_textbook(bench, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 9, 7)).astype(dtype)  # odd sizes, 16 channels (Winograd's minimum)
    w = rng.standard_normal((5, 16, 3, 3)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    g = rng.standard_normal((2, 5, 9, 7)).astype(dtype)
    with kernels.use_kernels(False):
        ref, ref_cls = _conv_fwd_bwd(x, w, b, g)
    assert ref_cls is textbook_conv.Conv2d
    algos = bench.worker.conv_algorithms(mc)
    assert {"kernels (chosen)", "im2col", "textbook"} <= set(algos)
    for name, make in algos.items():
        with make():
            got, cls = _conv_fwd_bwd(x, w, b, g)
        if name == "textbook":
            assert cls is textbook_conv.Conv2d, name
        else:
            assert cls is textbook_conv.Conv2d.compiled, name
        if name == "im2col":  # the twin's output and dx are the textbook's bit for bit (docs/kernels.md)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
        for part, a, r in zip(("out", "dx", "dW", "db"), got, ref):
            assert_close(a, r, RTOL[dtype], f"{name}: {part}")
    assert kernels.enabled()  # every entry restored the settings it changed


def test_conv_table_ratios_and_gflops(bench, monkeypatch, capsys):
    layers = bench.common.CONV_LAYERS
    # fake workers' medians: minicnn's im2col takes 2 ms and its textbook 4 ms on every layer, PyTorch 1 ms
    mine = {"im2col": {"median_s": 2e-3}, "textbook": {"median_s": 4e-3}}
    fake = {
        "minicnn": {"layers": {k: mine for k in layers}},
        "torch": {"layers": {k: {"PyTorch": {"median_s": 1e-3}} for k in layers}},
    }
    monkeypatch.setattr(bench.run, "run_pair", lambda task, env, torch_first: fake)
    args = SimpleNamespace(quick=False, warmup=1, repeats=3, threads=1)
    bench.run.section_convs(args, {}, "cpu")
    text = capsys.readouterr().out
    (n, cin, h, w), cout, first = layers["mnist conv2"]
    macs = n * cout * h * w * cin * 9
    row = next(line for line in text.splitlines() if line.startswith("mnist conv2"))
    cells = row.split()
    assert "im2col" in cells and "*" in cells  # the fastest of minicnn's algorithms is marked
    assert "2.00" in cells and "1.00" in cells and "2.00x" in cells  # minicnn ms, torch ms, ratio
    assert f"{6 * macs / 2e-3 / 1e9:.1f}" in cells  # forward + dx + dW: 6 x MACs
    textbook_row = text.splitlines()[text.splitlines().index(row) + 1]
    assert "textbook" in textbook_row and "4.00x" in textbook_row.split()
    first_row = next(line for line in text.splitlines() if line.startswith("mnist conv1"))
    (n, cin, h, w), cout, _ = layers["mnist conv1"]
    assert f"{4 * n * cout * h * w * cin * 9 / 2e-3 / 1e9:.1f}" in first_row.split()  # no dx: 4 x MACs
