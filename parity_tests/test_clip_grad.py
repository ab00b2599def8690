"""nn.utils.clip_grad_norm_ / clip_grad_value_ against torch.nn.utils: the returned norm, the clipped
gradients (values and dtype), every norm type, float64 and float32, and training through them."""

import warnings

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import nn, optim
from parity_tests.harness import assert_close, rng_for

SHAPES = [(3, 4), (7,), (2, 3, 5), (1,)]
NORM_TYPES = [2.0, 1.0, float("inf"), "inf", 3.0, 0.5, 0.0, -float("inf")]


def _pair(key, dtype, device, scale=3.0, none=(1,)):
    """minicnn and torch parameters with equal gradients (the parameters listed in ``none`` have none)."""
    rng = rng_for("clip", key)
    mine, ref = [], []
    for i, shape in enumerate(SHAPES):
        value = rng.standard_normal(shape).astype(dtype)
        p = mc.tensor(value.copy(), device=device, requires_grad=True)
        t = torch.from_numpy(value.copy()).requires_grad_()
        if i not in none:
            g = (scale * rng.standard_normal(shape)).astype(dtype)
            p.grad = mc.tensor(g.copy(), device=device)
            t.grad = torch.from_numpy(g.copy())
        mine.append(p)
        ref.append(t)
    return mine, ref


def _check_grads(mine, ref, rtol, what):
    for i, (p, t) in enumerate(zip(mine, ref)):
        assert (p.grad is None) == (t.grad is None)
        if p.grad is not None:
            assert p.grad.dtype == np.dtype(str(t.grad.dtype).replace("torch.", ""))
            assert_close(p.grad.numpy(), t.grad.numpy(), rtol, f"{what}: grad {i}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=str)
@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipping, and a norm already below max_norm
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype, device):
    mine, ref = _pair((norm_type, max_norm, dtype), dtype, device)
    arrays = [p.grad.array if p.grad is not None else None for p in mine]
    versions = [p.grad._version if p.grad is not None else None for p in mine]
    total = nn.utils.clip_grad_norm_(mine, max_norm, norm_type=norm_type)
    th_total = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=norm_type, foreach=False)
    rtol = 1e-12 if dtype == "float64" else 2e-6
    assert isinstance(total, mc.Tensor) and total.shape == () and total.device == mc.device(device)
    assert total.dtype == np.dtype(dtype)
    assert_close(total.numpy(), th_total.numpy(), rtol, "total norm")
    _check_grads(mine, ref, rtol, f"norm {norm_type}")
    for p, array, version in zip(mine, arrays, versions):
        if p.grad is not None:  # in place, and recorded as an in-place change
            assert p.grad.array is array and p.grad._version > version


def test_clip_grad_norm_single_tensor_empty_and_mixed_dtypes(device):
    p = mc.tensor(np.ones(4), device=device, requires_grad=True)
    p.grad = mc.tensor(np.full(4, 2.0), device=device)
    t = torch.ones(4, dtype=torch.float64, requires_grad=True)
    t.grad = torch.full((4,), 2.0, dtype=torch.float64)
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == torch.nn.utils.clip_grad_norm_(t, 1.0).item() == 4.0
    np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-15)

    empty = nn.utils.clip_grad_norm_([], 1.0)  # torch: tensor(0.)
    assert empty.item() == 0.0 and empty.dtype == np.float32
    with pytest.warns(UserWarning, match="empty generator"):
        nn.utils.clip_grad_norm_((q for q in []), 1.0)
    no_grad = mc.tensor(np.ones(3), device=device, requires_grad=True)
    assert nn.utils.clip_grad_norm_([no_grad], 1.0).item() == 0.0 and no_grad.grad is None

    # float32 and float64 gradients together: the norm is float64, each grad keeps its dtype
    mine, ref = _pair("mixed", "float32", device, none=())
    mine[0] = mc.tensor(mine[0].numpy().astype(np.float64), device=device, requires_grad=True)
    ref[0] = ref[0].detach().double().requires_grad_()
    mine[0].grad = mc.tensor(np.full((3, 4), 0.7), device=device)
    ref[0].grad = torch.full((3, 4), 0.7, dtype=torch.float64)
    total = nn.utils.clip_grad_norm_(mine, 0.1)
    th_total = torch.nn.utils.clip_grad_norm_(ref, 0.1, foreach=False)
    assert total.dtype == np.float64 and th_total.dtype == torch.float64
    assert_close(total.numpy(), th_total.numpy(), 1e-6, "mixed total norm")
    _check_grads(mine, ref, 1e-6, "mixed dtypes")


def test_clip_grad_norm_nonfinite(device):
    mine, ref = _pair("nan", "float64", device, none=())
    mine[2].grad.array[0, 0, 0] = np.nan
    ref[2].grad[0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="norm of order 2.0 for gradients from `parameters` is non-finite"):
        nn.utils.clip_grad_norm_(mine, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(ref, 1.0, error_if_nonfinite=True)
    total = nn.utils.clip_grad_norm_(mine, 1.0)  # default: scaled by the NaN norm, as torch does
    th_total = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    assert np.isnan(total.item()) and np.isnan(th_total.item())
    for p, t in zip(mine, ref):
        np.testing.assert_array_equal(np.isnan(p.grad.numpy()), np.isnan(t.grad.numpy()))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("clip_value", [0.0, 0.5, 2.0, 100.0])
def test_clip_grad_value_matches_torch(clip_value, dtype, device):
    mine, ref = _pair(("value", clip_value, dtype), dtype, device)
    arrays = [p.grad.array if p.grad is not None else None for p in mine]
    assert nn.utils.clip_grad_value_(mine, clip_value) is None
    torch.nn.utils.clip_grad_value_(ref, clip_value, foreach=False)
    for p, t, array in zip(mine, ref, arrays):
        if p.grad is not None:
            assert p.grad.array is array
            np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


def test_get_total_norm_and_clip_grads_with_norm_match_torch(device):
    mine, ref = _pair("two-step", "float64", device, none=())
    total = nn.utils.get_total_norm([p.grad for p in mine], norm_type=3.0)
    th_total = torch.nn.utils.get_total_norm([t.grad for t in ref], norm_type=3.0)
    assert_close(total.numpy(), th_total.numpy(), 1e-12, "get_total_norm")
    nn.utils.clip_grads_with_norm_(mine, 1.0, total)
    torch.nn.utils.clip_grads_with_norm_(ref, 1.0, th_total)
    _check_grads(mine, ref, 1e-12, "clip_grads_with_norm_")
    with pytest.warns(FutureWarning, match="deprecated"):
        nn.utils.clip_grad_norm(mine, 1.0)


def test_training_with_clipping_matches_torch(device):
    """Gradients from backward(), clipped, then SGD with momentum: 20 steps give torch's weights."""
    rng = rng_for("clip training")
    x, y = rng.standard_normal((16, 5)), rng.standard_normal((16, 3))
    w0, b0 = 3 * rng.standard_normal((5, 3)), rng.standard_normal(3)
    w, b = (mc.tensor(a.copy(), device=device, requires_grad=True) for a in (w0, b0))
    tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (w0, b0))
    opt = optim.SGD([w, b], lr=0.1, momentum=0.9)
    th_opt = torch.optim.SGD([tw, tb], lr=0.1, momentum=0.9, foreach=False)
    xm, ym = mc.tensor(x, device=device), mc.tensor(y, device=device)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for step in range(20):
        opt.zero_grad()
        ((xm @ w + b - ym) ** 2).mean().backward()
        norm = nn.utils.clip_grad_norm_([w, b], 1.0) if step % 2 else nn.utils.clip_grad_value_([w, b], 0.3)
        opt.step()
        th_opt.zero_grad()
        ((xt @ tw + tb - yt) ** 2).mean().backward()
        if step % 2:
            th_norm = torch.nn.utils.clip_grad_norm_([tw, tb], 1.0)
            assert_close(norm.numpy(), th_norm.numpy(), 1e-12, f"norm at step {step}")
        else:
            torch.nn.utils.clip_grad_value_([tw, tb], 0.3)
        th_opt.step()
    assert_close(w.numpy(), tw.detach().numpy(), 1e-10, "weights")
    assert_close(b.numpy(), tb.detach().numpy(), 1e-10, "bias")


def test_bad_arguments_are_explained(device):
    mine, _ = _pair("bad", "float64", device)
    for call, error, match in [
        (lambda: nn.utils.clip_grad_norm_(mine, "one"), TypeError, "clip_grad_norm_: max_norm must be a"),
        (lambda: nn.utils.clip_grad_norm_(mine, None), TypeError, "max_norm must be a number, got NoneType"),
        (lambda: nn.utils.clip_grad_norm_(mine, -1.0), ValueError, "max_norm must be >= 0"),
        (lambda: nn.utils.clip_grad_norm_(mine, 1.0, norm_type="2nd"), TypeError, "norm_type must be a"),
        (lambda: nn.utils.clip_grad_norm_(5, 1.0), TypeError, "a Tensor or an iterable of Tensors"),
        (lambda: nn.utils.clip_grad_norm_([np.ones(3)], 1.0), TypeError, r"parameters\[0\] is a ndarray"),
        (lambda: nn.utils.clip_grad_value_(mine, -0.1), ValueError, "clip_value must be >= 0"),
        (lambda: nn.utils.clip_grad_value_(mine, "0.1x"), TypeError, "clip_value must be a number"),
    ]:
        with pytest.raises(error, match=match):
            call()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.utils.clip_grad_norm_(mine, mc.tensor(1.0), foreach=True)  # a 0-d Tensor max_norm, like torch
