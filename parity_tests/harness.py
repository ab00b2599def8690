"""The parity suite's configurations (devices, dtypes, seeded generators) and thin adapters over
``minicnn.testing``, where the one comparison implementation lives (also public: users call it on
their own ops, and ``python -m minicnn.check`` runs the whole catalogue through it).

Typical use::

    check_parity(lambda x, w: F.conv2d(x, w, stride=2),
                 lambda x, w: torch.nn.functional.conv2d(x, w, stride=2),
                 [rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 2))],
                 dtype="float64", device=device)

Tolerances (``minicnn.testing.RTOL``): float64 rtol 1e-10, float32 rtol 1e-4; the absolute tolerance
is rtol times the largest magnitude of the reference, so values near zero are judged on the tensor's scale.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import minicnn as mc
from minicnn import testing
from minicnn.testing import RTOL  # noqa: F401  (re-exported for the tests)

# 'cuda' runs on the real GPU when CuPy sees one, else on the CuPy stand-in (parity_tests/conftest.py's
# device fixture and parity_tests/cupy_standin.py); MINICNN_REQUIRE_CUDA=1 makes it fail without a GPU.
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda")]
DTYPES = ["float64", "float32"]


def rng_for(*key) -> np.random.Generator:
    """A NumPy generator seeded from a key (test name, parameters); stable across processes."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_close(actual, expected, rtol, name="output"):
    """``minicnn.testing.assert_close``: rtol and atol = rtol * max|expected|; shapes must match exactly."""
    testing.assert_close(actual, expected, rtol, name=name)


def check_parity(
    mc_fn,
    torch_fn,
    inputs,
    *,
    dtype="float64",
    device="cpu",
    grad=None,
    rtol=None,
    seed=0,
    check_grads=True,
    upstream=None,
):
    """``minicnn.testing.compare_with_torch(mc_fn, torch_fn, *inputs, ...)`` on NumPy arrays or plain values.

    Floating arrays become tensors that require a gradient (``grad`` = list of bools to choose);
    integer arrays (labels, indices) are passed as integer tensors; anything else is passed as is.
    ``upstream``: one array per output that requires a gradient (e.g. with inf/NaN).
    Returns ``(minicnn_outputs, torch_outputs)`` as lists of NumPy arrays.
    """
    if any(isinstance(x, tuple) for x in inputs):
        raise TypeError("check_parity: pass arrays, not tuples (compare_with_torch reads a tuple as a shape)")
    report = testing.compare_with_torch(
        mc_fn,
        torch_fn,
        *inputs,
        dtype=dtype,
        device=device,
        grad=grad,
        rtol=rtol,
        seed=seed,
        check_grads=check_grads,
        upstream=upstream,
    )
    return report.mine_outputs, report.torch_outputs


def gradcheck(fn, inputs, *, eps=1e-6, rtol=1e-6, atol=1e-8, device="cpu", grad=None, seed=0):
    """``minicnn.testing.gradcheck`` on NumPy inputs, with the suite's tighter rtol 1e-6, atol 1e-8.

    Floating arrays become float64 tensors on ``device`` that require a gradient (``grad`` to choose).
    """
    if grad is None:
        grad = [isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in inputs]
    tensors = []
    for x, g in zip(inputs, grad):
        if isinstance(x, np.ndarray):
            dtype = np.float64 if x.dtype.kind == "f" else None
            x = mc.tensor(x, dtype=dtype, device=device, requires_grad=bool(g))
        tensors.append(x)
    testing.gradcheck(fn, *tensors, eps=eps, atol=atol, rtol=rtol, seed=seed)
