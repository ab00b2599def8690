"""binary_cross_entropy and binary_cross_entropy_with_logits (and BCELoss, BCEWithLogitsLoss) vs
PyTorch: every reduction, element weights and pos_weight broadcast from smaller shapes, soft and 0/1
targets, gradients for the input and the target, p at exactly 0 and 1 (PyTorch's -100 log clamp and
1e-12 gradient floor), logits of +-1e4; gradchecks, empty inputs and the errors."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from minicnn import nn
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for

TF = torch.nn.functional
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(1,), (5,), (3, 7), (2, 3, 4, 5)]


def _targets(rng, shape, hard):
    return (rng.random(shape) > 0.5).astype(np.float64) if hard else rng.random(shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_binary_cross_entropy(device, dtype, reduction, shape):
    for trial in range(3):
        rng = rng_for("bce", shape, reduction, dtype, trial)
        p = rng.uniform(0.02, 0.98, shape)
        y = _targets(rng, shape, hard=trial == 0)
        if trial == 2:  # a weight per element of the last axis, broadcast over the rest
            w = rng.uniform(0.2, 2.0, shape[-1:])
            check_parity(
                lambda p, y, w: F.binary_cross_entropy(p, y, weight=w, reduction=reduction),
                lambda p, y, w: TF.binary_cross_entropy(p, y, weight=w, reduction=reduction),
                [p, y, w],
                dtype=dtype,
                device=device,
                grad=[True, True, False],
            )
        else:
            check_parity(
                lambda p, y: F.binary_cross_entropy(p, y, reduction=reduction),
                lambda p, y: TF.binary_cross_entropy(p, y, reduction=reduction),
                [p, y],
                dtype=dtype,
                device=device,
            )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_binary_cross_entropy_with_logits(device, dtype, reduction, shape):
    kw = dict(reduction=reduction)
    for trial in range(4):
        rng = rng_for("bcel", shape, reduction, dtype, trial)
        x = rng.standard_normal(shape) * 3
        y = _targets(rng, shape, hard=trial % 2 == 0)
        w = rng.uniform(0.2, 2.0, shape)  # a full-shape weight
        q = rng.uniform(0.1, 4.0, shape[-1:])  # pos_weight: one per class (last axis)
        ours = [
            lambda x, y: F.binary_cross_entropy_with_logits(x, y, **kw),
            lambda x, y, w: F.binary_cross_entropy_with_logits(x, y, weight=w, **kw),
            lambda x, y, q: F.binary_cross_entropy_with_logits(x, y, pos_weight=q, **kw),
            lambda x, y, w, q: F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q, **kw),
        ][trial]
        theirs = [
            lambda x, y: TF.binary_cross_entropy_with_logits(x, y, **kw),
            lambda x, y, w: TF.binary_cross_entropy_with_logits(x, y, weight=w, **kw),
            lambda x, y, q: TF.binary_cross_entropy_with_logits(x, y, pos_weight=q, **kw),
            lambda x, y, w, q: TF.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q, **kw),
        ][trial]
        inputs = [[x, y], [x, y, w], [x, y, q], [x, y, w, q]][trial]
        grad = [True, True] + [False] * (len(inputs) - 2)
        check_parity(ours, theirs, inputs, dtype=dtype, device=device, grad=grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_of_any_size_stay_finite(device, dtype):
    rng = rng_for("bcel-large", dtype)
    x = np.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])
    y = rng.random(7)
    q = np.full(7, 3.0)
    mine, _ = check_parity(
        lambda x, y, q: F.binary_cross_entropy_with_logits(x, y, pos_weight=q, reduction="none"),
        lambda x, y, q: TF.binary_cross_entropy_with_logits(x, y, pos_weight=q, reduction="none"),
        [x, y, q],
        dtype=dtype,
        device=device,
        grad=[True, True, False],
    )
    assert np.isfinite(mine[0]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_probabilities_of_exactly_0_and_1(device, dtype):
    """PyTorch clamps each log at -100 (a finite loss), floors p(1 - p) at float32's 1e-12 in the
    input's gradient (+-1e12) and leaves the target's gradient unclamped (+-inf): the same numbers here."""
    p_np = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype=dtype)
    y_np = np.array([1.0, 0.0, 0.0, 1.0, 0.3], dtype=dtype)
    p = mc.tensor(p_np, device=device, requires_grad=True)
    y = mc.tensor(y_np, device=device, requires_grad=True)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    loss.sum().backward()
    pt = torch.tensor(p_np, requires_grad=True)
    yt = torch.tensor(y_np, requires_grad=True)
    lt = TF.binary_cross_entropy(pt, yt, reduction="none")
    lt.sum().backward()
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(loss.numpy(), lt.detach().numpy(), rtol=rtol)
    np.testing.assert_allclose(p.grad.numpy(), pt.grad.numpy(), rtol=rtol)
    np.testing.assert_allclose(y.grad.numpy(), yt.grad.numpy(), rtol=rtol)  # inf == inf, -0 == 0
    assert loss.numpy()[0] == 100.0 and p.grad.numpy()[0] == -1 / np.float32(1e-12).astype(dtype)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(device, reduction):
    rng = rng_for("bce-gradcheck", reduction)
    w = mc.tensor(rng.uniform(0.5, 2.0, 4), device=device)
    q = mc.tensor(rng.uniform(0.5, 3.0, 4), device=device)
    p, y = rng.uniform(0.1, 0.9, (3, 4)), rng.random((3, 4))
    gradcheck(lambda p, y: F.binary_cross_entropy(p, y, weight=w, reduction=reduction), [p, y], device=device)
    x = rng.standard_normal((3, 4)) * 2
    gradcheck(
        lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q, reduction=reduction),
        [x, y],
        device=device,
    )


def test_gradients_are_the_docstrings_formulas(device):
    """dL/dx = s(x) - y for the plain logits loss, dL/dp = (p - y) / (p (1 - p)) (NumPy reference)."""
    rng = rng_for("bce-formula")
    x_np, y_np = rng.standard_normal((4, 3)), rng.random((4, 3))
    x = mc.tensor(x_np, device=device, requires_grad=True)
    F.binary_cross_entropy_with_logits(x, mc.tensor(y_np, device=device), reduction="sum").backward()
    np.testing.assert_allclose(x.grad.numpy(), 1 / (1 + np.exp(-x_np)) - y_np, rtol=1e-12, atol=1e-15)
    p_np = 1 / (1 + np.exp(-x_np))
    p = mc.tensor(p_np, device=device, requires_grad=True)
    F.binary_cross_entropy(p, mc.tensor(y_np, device=device), reduction="sum").backward()
    np.testing.assert_allclose(p.grad.numpy(), (p_np - y_np) / (p_np * (1 - p_np)), rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_the_layers_match_pytorchs(device, reduction):
    rng = rng_for("bce-layers", reduction)
    x, y = rng.standard_normal((6, 3)), rng.random((6, 3))
    w, q = rng.uniform(0.5, 2.0, 3), rng.uniform(0.5, 3.0, 3)
    mine = nn.BCEWithLogitsLoss(weight=mc.tensor(w), reduction=reduction, pos_weight=mc.tensor(q)).to(device)
    theirs = torch.nn.BCEWithLogitsLoss(
        weight=torch.tensor(w), reduction=reduction, pos_weight=torch.tensor(q)
    )
    check_parity(mine, theirs, [x, y], device=device)
    mine_bce = nn.BCELoss(weight=mc.tensor(w), reduction=reduction).to(device)
    theirs_bce = torch.nn.BCELoss(weight=torch.tensor(w), reduction=reduction)
    p = 1 / (1 + np.exp(-x))
    check_parity(lambda p, y: mine_bce(p, y), lambda p, y: theirs_bce(p, y), [p, y], device=device)
    assert dict(mine.named_buffers()).keys() == {"weight", "pos_weight"}


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_inputs(device, reduction):
    """No elements: 'mean' is 0 / 0 = nan, 'sum' 0, 'none' empty, as PyTorch."""
    empty = np.zeros((0, 3))
    for ours, theirs in [
        (F.binary_cross_entropy, TF.binary_cross_entropy),
        (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits),
    ]:
        check_parity(
            lambda x, y, f=ours: f(x, y, reduction=reduction),
            lambda x, y, f=theirs: f(x, y, reduction=reduction),
            [empty, empty],
            device=device,
        )


def test_errors(device):
    p = mc.full((2, 3), 0.5, device=device)
    y = mc.zeros(2, 3, device=device)
    if device == "cpu":  # on a GPU the range check would wait for the device every step
        with pytest.raises(ValueError, match=r"binary_cross_entropy: all elements of input should be betw"):
            F.binary_cross_entropy(p * 3, y)
        with pytest.raises(ValueError, match="found nan"):
            F.binary_cross_entropy(p * float("nan"), y)
    with pytest.raises(ValueError, match=r"target must have the input's shape \(2, 3\).*got \(2, 1\)"):
        F.binary_cross_entropy(p, mc.zeros(2, 1, device=device))
    with pytest.raises(ValueError, match=r"with_logits: target must have the input's shape"):
        F.binary_cross_entropy_with_logits(p, mc.zeros(3, device=device))
    with pytest.raises(TypeError, match="target has dtype int64 but the input has dtype float32"):
        F.binary_cross_entropy(p, mc.tensor(np.zeros((2, 3), dtype=np.int64), device=device))
    with pytest.raises(ValueError, match=r"weight of shape \(2,\) must broadcast to the input's shape"):
        F.binary_cross_entropy(p, y, weight=mc.ones(2, device=device))
    z = mc.zeros(3, device=device)
    with pytest.raises(
        ValueError, match=r"pos_weight of shape \(2, 3\) must broadcast to the input's shape \(3,"
    ):
        F.binary_cross_entropy_with_logits(z, z, pos_weight=p)
    with pytest.raises(RuntimeError, match="not differentiable with respect to weight"):
        F.binary_cross_entropy(p, y, weight=mc.ones(3, device=device, requires_grad=True))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.binary_cross_entropy_with_logits(p, y, reduction="avg")
    with pytest.raises(ValueError, match="size_average and reduce are deprecated"):
        F.binary_cross_entropy(p, y, size_average=True)
    with pytest.raises(TypeError, match="BCEWithLogitsLoss: pos_weight must be a minicnn Tensor"):
        nn.BCEWithLogitsLoss(pos_weight=[1.0, 2.0])
