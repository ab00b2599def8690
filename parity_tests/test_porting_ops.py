"""The ops issue 21 added for ported scripts, vs PyTorch on both devices, float64 and float32, with
gradients and gradchecks: scatter (value and src), maximum/minimum (ties split the gradient),
norm (p = 2, 1, 3, inf; an all-zero slice), roll, log1p."""

import numpy as np
import pytest
import torch

import minicnn as mc
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for


def _distinct_index(rng, shape, dim, size):
    """Integer indices of ``shape`` with no repeat along ``dim`` (a repeat has no defined winner)."""
    moved = list(shape)
    moved[dim], moved[-1] = moved[-1], moved[dim]
    idx = np.argsort(rng.random(tuple(moved[:-1]) + (size,)), axis=-1)[..., : moved[-1]]
    return np.ascontiguousarray(np.swapaxes(idx, dim, -1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_scatter(device, dtype, dim):
    rng = rng_for("scatter", dtype, dim)
    a = rng.standard_normal((3, 4, 5))
    shape = [2, 3, 4]
    idx = _distinct_index(rng, shape, dim % 3, a.shape[dim])
    src = rng.standard_normal(shape)
    check_parity(
        lambda a, s, i: a.scatter(dim, i, s),
        lambda a, s, i: a.scatter(dim, i, s),
        [a, src, idx],
        dtype=dtype,
        device=device,
    )
    check_parity(
        lambda a, i: mc.scatter(a, dim, i, value=-1.5),
        lambda a, i: torch.scatter(a, dim, i, value=-1.5),
        [a, idx],
        dtype=dtype,
        device=device,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum(device, dtype, fn):
    rng = rng_for("maxmin", dtype, fn)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    a[0, :2] = b[:2]  # ties: the gradient is split in half, as PyTorch
    check_parity(
        lambda x, y: getattr(mc, fn)(x, y),
        lambda x, y: getattr(torch, fn)(x, y),
        [a, b],
        dtype=dtype,
        device=device,
    )
    name = fn[:3]  # torch.max(a, b), torch.min(a, b)
    check_parity(
        lambda x, y: getattr(mc, name)(x, y),
        lambda x, y: getattr(torch, name)(x, y),
        [a, b],
        dtype=dtype,
        device=device,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2, "fro", 1, 3, float("inf")])
def test_norm(device, dtype, p):
    rng = rng_for("norm", dtype, str(p))
    a = rng.standard_normal((3, 4, 2))
    a[1] = 0.0  # an all-zero slice: gradient 0, as PyTorch
    for dim, keepdim in [(None, False), (1, True), (2, False), ((0, 2), True)]:
        if p == "fro" and dim is not None and not isinstance(dim, tuple):
            continue  # PyTorch: 'fro' over one dim is the 2-norm; covered by p=2
        check_parity(
            lambda x, d=dim, k=keepdim: x.norm(p, d, keepdim=k),
            lambda x, d=dim, k=keepdim: x.norm(p, d, keepdim=k),
            [a],
            dtype=dtype,
            device=device,
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_roll_and_log1p(device, dtype):
    rng = rng_for("roll", dtype)
    a = rng.standard_normal((3, 4, 5))
    for shifts, dims in [(1, 0), (-2, 1), (7, None), ((1, -3), (0, 2))]:
        check_parity(
            lambda x, s=shifts, d=dims: x.roll(s, d),
            lambda x, s=shifts, d=dims: x.roll(s, d),
            [a],
            dtype=dtype,
            device=device,
        )
    check_parity(
        lambda x: mc.log1p(x), lambda x: torch.log1p(x), [rng.uniform(-0.9, 5, 8)], dtype=dtype, device=device
    )


def test_gradchecks(device):
    rng = rng_for("porting-gradcheck")
    idx = mc.tensor(np.array([[2, 0, 1], [0, 1, 3]]), device=device)
    gradcheck(
        lambda a, s: a.scatter(1, idx, s),
        [rng.standard_normal((2, 4)), rng.standard_normal((2, 3))],
        device=device,
    )
    pair = [rng.standard_normal((3, 2)), rng.standard_normal(2)]
    gradcheck(lambda a, b: mc.maximum(a, b) * mc.minimum(a, b), pair, device=device)
    for p in (2, 1, 3):
        gradcheck(lambda a, p=p: a.norm(p, 1), [rng.standard_normal((3, 4)) + 0.5], device=device)
    gradcheck(lambda a: a.roll((1, 2), (0, 1)) * mc.tensor(np.arange(12.0).reshape(3, 4), device=device),
              [rng.standard_normal((3, 4))], device=device)  # fmt: skip
    gradcheck(lambda a: mc.log1p(a), [rng.uniform(-0.5, 2.0, 5)], device=device)
