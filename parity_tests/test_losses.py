"""cross_entropy, nll_loss and mse_loss vs PyTorch: every reduction, class weights, ignore_index,
label smoothing, probability targets, (N, C) and (N, C, d1, d2) layouts; gradchecks and errors."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for

TF = torch.nn.functional
REDUCTIONS = ["mean", "sum", "none"]
# logits shapes: (N, C), (N, C, d1), (N, C, d1, d2), with sizes 1 and primes
SHAPES = [(1, 1), (4, 3), (7, 5), (2, 3, 5), (3, 4, 2, 3), (1, 2, 1, 1)]


def _class_targets(rng, shape, ignore_index, with_ignored):
    n, c = shape[0], shape[1]
    t = rng.integers(0, c, (n,) + shape[2:])
    if with_ignored and t.size > 1:
        t.reshape(-1)[:: max(2, t.size // 3)] = ignore_index  # a few ignored samples, never all
    return t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_cross_entropy_class_targets(device, dtype, reduction, shape):
    """Random combinations of class weights, ignore_index and label smoothing for each shape/reduction."""
    for trial in range(4):
        rng = rng_for("ce", shape, reduction, dtype, trial)
        use_weight, smoothing = trial % 2 == 1, [0.0, 0.0, 0.1, 0.35][trial]
        ignore_index = int(rng.choice([-100, 1]))
        x = rng.standard_normal(shape) * 3
        t = _class_targets(rng, shape, ignore_index, with_ignored=trial >= 1)
        w = rng.uniform(0.2, 2.0, shape[1])
        kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=smoothing)
        if use_weight:
            check_parity(
                lambda x, t, w, kw_=kw: F.cross_entropy(x, t, weight=w, **kw_),
                lambda x, t, w, kw_=kw: TF.cross_entropy(x, t, weight=w, **kw_),
                [x, t, w],
                dtype=dtype,
                device=device,
                grad=[True, False, False],
            )
        else:
            check_parity(
                lambda x, t, kw_=kw: F.cross_entropy(x, t, **kw_),
                lambda x, t, kw_=kw: TF.cross_entropy(x, t, **kw_),
                [x, t],
                dtype=dtype,
                device=device,
            )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (1, 2, 2, 3)], ids=str)
def test_cross_entropy_probability_targets(device, dtype, reduction, shape):
    """Float targets of the input's shape are class probabilities; the target gets a gradient too."""
    for trial in range(3):
        rng = rng_for("ce-prob", shape, reduction, dtype, trial)
        x = rng.standard_normal(shape) * 2
        p = rng.random(shape)
        p /= p.sum(axis=1, keepdims=True)
        w = rng.uniform(0.2, 2.0, shape[1])
        smoothing = [0.0, 0.2, 0.05][trial]
        kw = dict(reduction=reduction, label_smoothing=smoothing)
        if trial == 2:
            check_parity(
                lambda x, p, w, kw_=kw: F.cross_entropy(x, p, weight=w, **kw_),
                lambda x, p, w, kw_=kw: TF.cross_entropy(x, p, weight=w, **kw_),
                [x, p, w],
                dtype=dtype,
                device=device,
                grad=[True, True, False],
            )
        else:
            check_parity(
                lambda x, p, kw_=kw: F.cross_entropy(x, p, **kw_),
                lambda x, p, kw_=kw: TF.cross_entropy(x, p, **kw_),
                [x, p],
                dtype=dtype,
                device=device,
            )


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_large_logits(device, dtype):
    rng = rng_for("ce-large", dtype)
    x = rng.standard_normal((6, 10)) * 1e4
    t = rng.integers(0, 10, 6)
    for smoothing in (0.0, 0.1):
        mc_out, _ = check_parity(
            lambda x, t, s=smoothing: F.cross_entropy(x, t, label_smoothing=s),
            lambda x, t, s=smoothing: TF.cross_entropy(x, t, label_smoothing=s),
            [x, t],
            dtype=dtype,
            device=device,
        )
        assert np.isfinite(mc_out[0]).all()


def test_cross_entropy_single_sample_and_all_ignored(device):
    rng = rng_for("ce-single")
    x = rng.standard_normal(5)
    for reduction in REDUCTIONS:
        check_parity(
            lambda x, t, r=reduction: F.cross_entropy(x, t, reduction=r),
            lambda x, t, r=reduction: TF.cross_entropy(x, t, reduction=r),
            [x, np.array(3)],
            device=device,
        )
    # every sample ignored: 'mean' is 0 / 0 = nan and the gradient is 0, as in PyTorch
    x = mc.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    ours = F.cross_entropy(x, mc.tensor(np.array([-100, -100]), device=device))
    ours.backward()
    xt = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    theirs = TF.cross_entropy(xt, torch.tensor([-100, -100]))
    theirs.backward()
    assert np.isnan(ours.item()) and np.isnan(theirs.item())
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


def test_cross_entropy_gradient_is_softmax_minus_onehot(device):
    """Without weights or smoothing, d(sum of losses)/dx = softmax(x) - onehot(target) (NumPy reference)."""
    rng = rng_for("ce-formula")
    x_np, t_np = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    x = mc.tensor(x_np, device=device, requires_grad=True)
    F.cross_entropy(x, mc.tensor(t_np, device=device), reduction="sum").backward()
    e = np.exp(x_np - x_np.max(axis=1, keepdims=True))
    expected = e / e.sum(axis=1, keepdims=True) - np.eye(4)[t_np]
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_gradcheck(device, smoothing, reduction):
    rng = rng_for("ce-gradcheck", smoothing, reduction)
    x = rng.standard_normal((3, 4, 2))
    t = mc.tensor(np.array([[0, 3], [-100, 1], [2, 2]]), device=device)
    w = mc.tensor(rng.uniform(0.5, 2.0, 4), device=device)
    gradcheck(
        lambda x: F.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=smoothing),
        [x],
        device=device,
    )
    p = rng.random((3, 4, 2))
    p /= p.sum(axis=1, keepdims=True)
    gradcheck(
        lambda x, p: F.cross_entropy(x, p, weight=w, reduction=reduction, label_smoothing=smoothing),
        [x, p],
        device=device,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 3), (1, 4), (2, 3, 4), (2, 4, 3, 2)], ids=str)
def test_nll_loss_parity(device, dtype, reduction, shape):
    for use_weight in (False, True):
        rng = rng_for("nll", shape, reduction, dtype, use_weight)
        logp = np.log(rng.uniform(0.01, 1.0, shape))
        t = _class_targets(rng, shape, -100, with_ignored=True)
        w = rng.uniform(0.2, 2.0, shape[1])
        if use_weight:
            check_parity(
                lambda x, t, w: F.nll_loss(x, t, weight=w, reduction=reduction),
                lambda x, t, w: TF.nll_loss(x, t, weight=w, reduction=reduction),
                [logp, t, w],
                dtype=dtype,
                device=device,
                grad=[True, False, False],
            )
        else:
            check_parity(
                lambda x, t: F.nll_loss(x, t, reduction=reduction),
                lambda x, t: TF.nll_loss(x, t, reduction=reduction),
                [logp, t],
                dtype=dtype,
                device=device,
            )


def test_nll_of_log_softmax_equals_cross_entropy(device):
    rng = rng_for("nll-ce")
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    check_parity(
        lambda x, t: F.nll_loss(F.log_softmax(x, 1), t),
        lambda x, t: TF.cross_entropy(x, t),
        [x, t],
        device=device,
    )


def test_nll_loss_gradcheck(device):
    rng = rng_for("nll-gradcheck")
    t = mc.tensor(np.array([1, -100, 0, 2]), device=device)
    w = mc.tensor(rng.uniform(0.5, 2.0, 3), device=device)
    gradcheck(lambda x: F.nll_loss(x, t, weight=w), [rng.standard_normal((4, 3))], device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 7), (2, 3, 4, 5)], ids=str)
def test_mse_loss_parity(device, dtype, reduction, shape):
    rng = rng_for("mse", shape, reduction, dtype)
    x, y = rng.standard_normal(shape), rng.standard_normal(shape)
    check_parity(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        lambda x, y: TF.mse_loss(x, y, reduction=reduction),
        [x, y],
        dtype=dtype,
        device=device,
    )


def test_mse_loss_gradcheck(device):
    rng = rng_for("mse-gradcheck")
    gradcheck(F.mse_loss, [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))], device=device)


def test_loss_errors(device):
    x = mc.zeros(3, 4, device=device)

    def ints(*values):
        return mc.tensor(np.array(values), device=device)

    if device == "cpu":  # on a GPU this check would be a host round trip every step: the DataLoader
        # checks the labels once, on the host, instead (docs/gpu.md); the shape checks below stay
        with pytest.raises(
            ValueError, match=r"cross_entropy: target contains class index 5, but the input has 4 classes"
        ):
            F.cross_entropy(x, ints(0, 5, 1))
        with pytest.raises(ValueError, match=r"valid indices are 0..3 \(or ignore_index=-100\)"):
            F.cross_entropy(x, ints(0, -1, 1))
        with pytest.raises(ValueError, match="nll_loss: target contains class index 4"):
            F.nll_loss(x, ints(4, 0, 0))
    with pytest.raises(ValueError, match=r"class-index target must have shape \(3,\), got \(2,\)"):
        F.cross_entropy(x, ints(0, 1))
    with pytest.raises(ValueError, match=r"class-index target must have shape \(2, 5\), got \(2, 4\)"):
        F.cross_entropy(
            mc.zeros(2, 3, 5, device=device), mc.tensor(np.zeros((2, 4), dtype=np.int64), device=device)
        )
    with pytest.raises(
        ValueError, match=r"floating-point target is read as class probabilities.*target.long\(\)"
    ):
        F.cross_entropy(x, mc.zeros(3, device=device))
    with pytest.raises(ValueError, match=r"weight must hold one value per class, shape \(4,\)"):
        F.cross_entropy(x, ints(0, 1, 2), weight=mc.ones(3, device=device))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(x, ints(0, 1, 2), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, ints(0, 1, 2), label_smoothing=1.5)
    with pytest.raises(
        TypeError, match="nll_loss: target must hold integer class indices, got dtype float32"
    ):
        F.nll_loss(x, mc.zeros(3, device=device))
    with pytest.raises(
        ValueError, match=r"mse_loss: input and target must have the same shape, got \(3, 4\) and \(4,\)"
    ):
        F.mse_loss(x, mc.zeros(4, device=device))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_on_an_empty_batch(device, reduction):
    """N = 0: 'mean' is 0 / 0 = nan, 'sum' is 0, 'none' is empty, and the gradients are empty, as PyTorch."""
    empty, labels, probs = np.zeros((0, 5)), np.zeros(0, dtype=np.int64), np.zeros((0, 5))
    cases = [
        (lambda x, t: F.cross_entropy(x, t, reduction=reduction), TF.cross_entropy, [empty, labels]),
        (lambda x, t: F.cross_entropy(x, t, reduction=reduction), TF.cross_entropy, [empty, probs]),
        (lambda x, t: F.nll_loss(x, t, reduction=reduction), TF.nll_loss, [empty, labels]),
        (lambda x, t: F.mse_loss(x, t, reduction=reduction), TF.mse_loss, [empty, np.zeros((0, 5))]),
        (
            lambda x, t: F.cross_entropy(x, t, reduction=reduction),
            TF.cross_entropy,
            [np.zeros((0, 3, 2)), np.zeros((0, 2), dtype=np.int64)],
        ),
    ]
    for ours, theirs, inputs in cases:
        check_parity(ours, lambda x, t, f=theirs: f(x, t, reduction=reduction), inputs, device=device)


def test_mean_gradient_scale_of_probability_targets_stays_on_the_host():
    """For probability targets the 'mean' denominator is the sample count, a host int: the scale is
    a plain division (the old code handed a Python bool to xp.where, which CuPy rejects)."""
    from minicnn.ops.loss import _grad_scale

    assert _grad_scale(np.float32(3.0), "mean", 4, xp=None) == np.float32(0.75)
    assert _grad_scale(np.float32(3.0), "mean", 0, xp=None) == np.float32(3.0)  # an empty batch


def test_class_index_check_is_host_only(device):
    """On the CPU a class index out of range raises (test_loss_errors). On a GPU the check would make
    every step wait for the device, so it is skipped there (labels are checked once, by the data
    pipeline): the ops clip the indices they gather with, so nothing is read out of bounds."""
    x = mc.zeros(3, 4, device=device, requires_grad=True)
    bad = mc.tensor(np.array([0, 7, -3]), device=device)
    if device == "cpu":
        with pytest.raises(ValueError, match="target contains class index 7"):
            F.cross_entropy(x, bad)
        return
    for loss in (F.cross_entropy(x, bad), F.nll_loss(x, bad)):
        loss.backward()
        assert np.isfinite(loss.item()) and np.all(np.isfinite(x.grad.numpy()))


def test_ops_clip_class_indices_out_of_range():
    """What the GPU path relies on, run on the CPU by calling the ops without the functions' check:
    indices out of range are clipped to 0..C-1, never read out of bounds."""
    from minicnn.ops.loss import CrossEntropy, NLLLoss

    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    x, bad = mc.tensor(logits, requires_grad=True), mc.tensor(np.array([5, -2]))
    ce = CrossEntropy.apply(x, bad, reduction="sum")
    nll = NLLLoss.apply(x, bad, reduction="sum")
    np.testing.assert_allclose(ce.item(), -np.log(0.7) - np.log(0.5), rtol=1e-12)  # as labels [2, 0]
    np.testing.assert_allclose(nll.item(), -logits[0, 2] - logits[1, 0], rtol=1e-12)
    (ce + nll).backward()
    assert np.all(np.isfinite(x.grad.numpy()))
