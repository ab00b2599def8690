"""The switch between the two tiers (minicnn/kernels/__init__.py, Function.apply): which class runs,
MINICNN_KERNELS=0, use_kernels() as a call and as a context manager, a missing Numba (the textbook
runs and minicnn says why, once), and NUMBA_DISABLE_JIT=1 (the kernels as plain Python)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn as mc
from minicnn import kernels
from minicnn.nn import functional as F

needs_numba = pytest.mark.skipif(not kernels.available(), reason=f"kernels: {kernels.unavailable_reason()}")


def _conv_op(x, w):
    out = F.conv2d(x, w, padding=1)
    return type(out.grad_fn)


def _run(code, **env):
    full = dict(os.environ)
    full.pop("MINICNN_KERNELS", None)
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


@needs_numba
def test_the_compiled_twin_runs_for_numpy_arrays_and_the_textbook_otherwise():
    x = mc.randn(2, 3, 5, 5, requires_grad=True)
    w = mc.randn(4, 3, 3, 3, requires_grad=True)
    with mc.use_kernels(True):
        kernel_cls = _conv_op(x, w)
    with mc.use_kernels(False):
        textbook_cls = _conv_op(x, w)
    assert kernel_cls.__module__ == "minicnn.kernels.conv" and textbook_cls.__module__ == "minicnn.ops.conv"
    assert issubclass(kernel_cls, textbook_cls) and kernel_cls.__name__ == textbook_cls.__name__
    assert textbook_cls.compiled is kernel_cls


@needs_numba
def test_use_kernels_as_a_call_and_as_a_context_manager():
    before = kernels.enabled()
    try:
        with mc.use_kernels(False):
            assert not kernels.enabled()
            with mc.use_kernels(True):
                assert kernels.enabled()
            assert not kernels.enabled()
        assert kernels.enabled() == before
        mc.use_kernels(False)  # for the rest of the program
        assert not kernels.enabled()
    finally:
        mc.use_kernels(before)


def test_minicnn_kernels_0_selects_the_textbook():
    code = (
        "import minicnn as mc\n"
        "from minicnn.nn import functional as F\n"
        "x = mc.randn(1, 1, 4, 4, requires_grad=True)\n"
        "print(mc.kernels.enabled(), type(F.max_pool2d(x, 2).grad_fn).__module__)"
    )
    out = _run(code, MINICNN_KERNELS="0")
    assert out.stdout.split() == ["False", "minicnn.ops.pooling"]


def test_without_numba_minicnn_imports_runs_the_textbook_and_says_why_once():
    code = (
        "import sys, warnings\n"
        "sys.modules['numba'] = None  # as if Numba could not be imported\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import minicnn as mc\n"
        "    import minicnn.kernels\n"
        "from minicnn import models, nn, optim\n"
        "model = models.mnist_cnn()\n"
        "opt = optim.SGD(model.parameters(), lr=0.1)\n"
        "loss = nn.functional.cross_entropy(model(mc.randn(4, 1, 28, 28)), mc.randint(0, 10, (4,)))\n"
        "loss.backward(); opt.step()\n"
        "msgs = [str(w.message) for w in caught if 'Numba' in str(w.message)]\n"
        "print(len(msgs)); print(msgs[0]); print(mc.kernels.enabled())\n"
        "try:\n"
        "    mc.use_kernels(True)\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
    )
    lines = _run(code).stdout.splitlines()
    assert lines[0] == "1"  # said once
    assert "Numba could not be imported" in lines[1] and "textbook tier" in lines[1]
    assert lines[2] == "False"
    assert lines[3].startswith("refused: minicnn.use_kernels(True): Numba could not be imported")


@needs_numba
def test_numba_disable_jit_runs_the_kernels_as_python_with_the_same_results():
    code = (
        "import numpy as np, minicnn as mc\n"
        "from minicnn.nn import functional as F\n"
        "rng = np.random.default_rng(0)\n"
        "x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3))\n"
        "def run(on):\n"
        "    with mc.use_kernels(on):\n"
        "        tx, tw = mc.tensor(x, requires_grad=True), mc.tensor(w, requires_grad=True)\n"
        "        y = F.max_pool2d(F.relu(F.conv2d(tx, tw, padding=1)), 2, ceil_mode=True)\n"
        "        (y * y).sum().backward()\n"
        "        values = np.concatenate([y.numpy().ravel(), tx.grad.numpy().ravel()])\n"
        "        return type(y.grad_fn).__module__, values\n"
        "(m1, a), (m0, b) = run(True), run(False)\n"
        "print(m1, m0, float(np.max(np.abs(a - b))))\n"
    )
    out = _run(code, NUMBA_DISABLE_JIT="1").stdout.split()
    assert out[:2] == ["minicnn.kernels.pooling", "minicnn.ops.pooling"]
    assert float(out[2]) < 1e-12


def test_the_kernels_tier_matches_the_textbook_on_a_model_step():
    """One training step of the MNIST CNN on each tier, from the same weights: equal losses and
    gradients to the parity tolerance (float64)."""
    if not kernels.available():
        pytest.skip(f"kernels: {kernels.unavailable_reason()}")
    from minicnn import models

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 28, 28))
    y = rng.integers(0, 10, 4)
    results = []
    mc.manual_seed(0)
    model = models.mnist_cnn().double()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for on in (True, False):
        model.load_state_dict(state)
        model.zero_grad()
        mc.manual_seed(1)  # the same dropout masks, if any
        with mc.use_kernels(on):
            loss = F.cross_entropy(model(mc.tensor(x)), mc.tensor(y))
            loss.backward()
        results.append((loss.item(), [p.grad.numpy().copy() for p in model.parameters()]))
    (l1, g1), (l0, g0) = results
    assert abs(l1 - l0) <= 1e-12 * abs(l0)
    for a, b in zip(g1, g0):  # (a conv bias before batch norm has a zero gradient: rounding noise)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


@needs_numba
def test_a_forked_child_runs_the_textbook_after_gnu_openmp_started():
    """GNU OpenMP cannot run parallel loops after a fork once its threads ran (Numba ends the child);
    a forked child of minicnn switches to the textbook tier instead and computes the same numbers.
    Run in a fresh interpreter: the parent uses the kernels, forks, and the child's conv + ReLU +
    backward come back through a pipe."""
    code = """
import os, sys, numpy as np, numba, minicnn as mc
import minicnn.nn.functional as F
from minicnn import kernels
layer = numba.threading_layer()
rng = np.random.default_rng(0)
x = mc.tensor(rng.standard_normal((2, 3, 9, 9)), requires_grad=True)
w = mc.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
def run():
    x.grad = w.grad = None
    F.relu(F.conv2d(x, w, padding=1)).sum().backward()
    return np.concatenate([x.grad.numpy().ravel(), w.grad.numpy().ravel()])
parent = run()
r, wr = os.pipe()
pid = os.fork()
if pid == 0:
    child = run()
    os.write(wr, np.array([kernels.enabled()], np.float64).tobytes() + child.tobytes())
    os._exit(0)
os.close(wr)
data = b""
while chunk := os.read(r, 1 << 16):
    data += chunk
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
got = np.frombuffer(data, np.float64)
print(layer, kernels.enabled(), got[0], np.abs(got[1:] - parent).max() / np.abs(parent).max())
"""
    out = _run(code).stdout.split()
    layer, parent_on, child_on, err = out[0], out[1], float(out[2]), float(out[3])
    assert parent_on == "True"
    if layer == "omp":
        assert child_on == 0.0  # the textbook tier in the child
    assert err < 1e-12  # the same gradients as the parent's kernels (float64)
