"""Parity harness: run a minicnn op and its PyTorch twin on the same inputs and compare
the output and every gradient; plus a finite-difference gradient checker that uses no PyTorch.

Typical use::

    check_parity(lambda x, w: F.conv2d(x, w, stride=2),
                 lambda x, w: torch.nn.functional.conv2d(x, w, stride=2),
                 [rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 2))],
                 dtype="float64", device=device)

Tolerances: float64 rtol 1e-10, float32 rtol 1e-4; the absolute tolerance is rtol times the
largest magnitude of the reference, so values near zero are judged on the tensor's scale.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import minicnn as mc
from minicnn.backend import cuda_available

RTOL = {"float64": 1e-10, "float32": 1e-4}

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(
            not cuda_available(), reason="cuda: no GPU here (CuPy not installed or it sees no GPU)"
        ),
    ),
]
DTYPES = ["float64", "float32"]


def rng_for(*key) -> np.random.Generator:
    """A NumPy generator seeded from a key (test name, parameters); stable across processes."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_close(actual, expected, rtol, name="output"):
    """Compare arrays with ``rtol`` and ``atol = rtol * max|expected|``; shapes must match exactly."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != reference {expected.shape}"
    if expected.size == 0:
        return
    if expected.dtype == bool or expected.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return
    scale = float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0))
    atol = rtol * max(scale, 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name, equal_nan=True)


def _to_torch(x, dtype, requires_grad):
    import torch

    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            t = torch.from_numpy(x.astype(dtype))
            return t.requires_grad_(requires_grad)
        return torch.from_numpy(x)
    return x


def _to_minicnn(x, dtype, device, requires_grad):
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "f":
            return mc.tensor(x.astype(dtype), device=device, requires_grad=requires_grad)
        return mc.tensor(x, device=device)
    return x


def _outputs(out):
    return [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if o is not None]


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
    """Run ``mc_fn`` and ``torch_fn`` on the same ``inputs`` (NumPy arrays or plain values).

    Floating arrays become tensors that require a gradient (``grad`` = list of bools to choose);
    integer arrays (labels, indices) are passed as integer tensors; anything else is passed as is.
    The outputs are compared, then both are back-propagated with the same random upstream
    gradient (``upstream``: one array per output that requires a gradient, to choose it, e.g.
    with inf/NaN) and the gradients of every float input are compared.
    Returns ``(minicnn_outputs, torch_outputs)`` as lists of NumPy arrays.
    """
    import torch

    rtol = RTOL[dtype] if rtol is None else rtol
    if grad is None:
        grad = [isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in inputs]
    mc_in = [_to_minicnn(x, dtype, device, g) for x, g in zip(inputs, grad)]
    th_in = [_to_torch(x, dtype, g) for x, g in zip(inputs, grad)]

    mc_out = _outputs(mc_fn(*mc_in))
    th_out = _outputs(torch_fn(*th_in))
    assert len(mc_out) == len(th_out), f"{len(mc_out)} outputs vs PyTorch's {len(th_out)}"
    for i, (m, t) in enumerate(zip(mc_out, th_out)):
        assert m.device == mc.device(device), f"output {i} is on {m.device}, expected {device}"
        assert m.dtype.name == str(t.dtype).replace("torch.", ""), f"output {i}: dtype {m.dtype} vs {t.dtype}"
        assert_close(m.numpy(), t.detach().numpy(), rtol, f"output {i}")

    if check_grads and any(grad):
        rng = np.random.default_rng(seed)
        mc_total, th_total = None, None
        chosen = iter(upstream or [])
        for m, t in zip(mc_out, th_out):
            if not t.requires_grad:
                continue
            u = (next(chosen) if upstream else rng.standard_normal(t.shape)).astype(dtype)
            mc_term = (m * mc.tensor(u, device=device)).sum()
            th_term = (t * torch.from_numpy(u)).sum()
            mc_total = mc_term if mc_total is None else mc_total + mc_term
            th_total = th_term if th_total is None else th_total + th_term
        assert th_total is not None, "no output requires grad in PyTorch"
        mc_total.backward()
        th_total.backward()
        for i, (m, t, g) in enumerate(zip(mc_in, th_in, grad)):
            if not g:
                continue
            if t.grad is None:
                assert m.grad is None or not np.any(m.grad.numpy()), f"input {i}: PyTorch has no grad"
                continue
            assert m.grad is not None, f"input {i}: minicnn computed no gradient"
            assert m.grad.dtype == m.dtype, f"input {i}: grad dtype {m.grad.dtype} != {m.dtype}"
            assert_close(m.grad.numpy(), t.grad.numpy(), rtol, f"gradient of input {i}")
    return [m.numpy() for m in mc_out], [t.detach().numpy() for t in th_out]


def gradcheck(fn, inputs, *, eps=1e-6, rtol=1e-6, atol=1e-8, device="cpu", grad=None, seed=0):
    """Compare minicnn's gradients of ``sum(fn(*inputs) * u)`` (u random) with central differences.

    float64 only, no PyTorch. Every element of every float input is perturbed by +-eps.
    """
    if grad is None:
        grad = [isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in inputs]
    inputs = [
        x.astype(np.float64) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else x for x in inputs
    ]
    rng = np.random.default_rng(seed)

    def run(arrays, requires):
        ts = [_to_minicnn(x, "float64", device, r) for x, r in zip(arrays, requires)]
        return ts, _outputs(fn(*ts))

    ts, outs = run(inputs, grad)
    ups = [rng.standard_normal(o.shape) for o in outs]
    total = None
    for o, u in zip(outs, ups):
        term = (o * mc.tensor(u, device=device)).sum()
        total = term if total is None else total + term
    total.backward()

    def objective(arrays):
        with mc.no_grad():
            _, o2 = run(arrays, [False] * len(arrays))
        return sum(float((o.numpy() * u).sum()) for o, u in zip(o2, ups))

    for i, (x, g) in enumerate(zip(inputs, grad)):
        if not g:
            continue
        numeric = np.zeros_like(x)
        flat = x.reshape(-1)
        for j in range(flat.size):
            orig = flat[j]
            flat[j] = orig + eps
            f_plus = objective(inputs)
            flat[j] = orig - eps
            f_minus = objective(inputs)
            flat[j] = orig
            numeric.reshape(-1)[j] = (f_plus - f_minus) / (2 * eps)
        analytic = ts[i].grad.numpy() if ts[i].grad is not None else np.zeros_like(x)
        np.testing.assert_allclose(
            analytic, numeric, rtol=rtol, atol=atol, err_msg=f"finite-difference gradient of input {i}"
        )
