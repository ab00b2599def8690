"""F.batch_norm vs torch.nn.functional.batch_norm: outputs, every gradient, and the running statistics
after several training steps; plus finite-difference gradchecks and the error messages."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity_tests.harness import DTYPES, RTOL, assert_close, check_parity, gradcheck, rng_for

# (N, C), (N, C, L) and (N, C, H, W) shapes, with sizes 1 and primes
SHAPES = [(2, 3), (7, 5), (1, 3, 5), (4, 1, 7), (3, 2, 1, 1), (2, 3, 5, 7), (5, 1, 3, 2), (1, 4, 3, 3)]
STEPS = 3  # training calls per test, so running statistics are updated several times


def _configs():
    out = []
    for i, shape in enumerate(SHAPES):
        for training in (True, False):
            # cycle through affine on/off and tracked/untracked statistics across shapes
            affine = (i + training) % 2 == 0 or len(shape) == 4
            track = training is False or i % 3 != 0
            out.append(
                pytest.param(shape, training, affine, track, id=f"{shape}-train{training:d}-aff{affine:d}")
            )
    return out


def _bn_fns(training, affine, track, momentum, eps):
    """minicnn and torch functions that run STEPS batch-norm calls and return every output."""

    def make(fn, lib_box):
        def run(x, rm, rv, w, b):
            lib_box["stats"] = (rm, rv)
            rm, rv = (rm, rv) if track else (None, None)
            w, b = (w, b) if affine else (None, None)
            return tuple(
                fn(x[i], rm, rv, w, b, training=training, momentum=momentum, eps=eps) for i in range(STEPS)
            )

        return run

    mc_box, th_box = {}, {}
    return make(F.batch_norm, mc_box), make(torch.nn.functional.batch_norm, th_box), mc_box, th_box


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,training,affine,track", _configs())
def test_batch_norm_parity(device, dtype, shape, training, affine, track):
    rng = rng_for("bn", shape, training, affine, track, dtype)
    c = shape[1]
    x = rng.standard_normal((STEPS,) + shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    momentum, eps = float(rng.choice([0.1, 0.3, 1.0])), float(rng.choice([1e-5, 1e-3]))
    mc_fn, th_fn, mc_box, th_box = _bn_fns(training, affine, track, momentum, eps)
    check_parity(
        mc_fn, th_fn, [x, rm, rv, w, b], dtype=dtype, device=device, grad=[True, False, False, affine, affine]
    )
    tol = RTOL[dtype]
    for name, m, t in zip(("running_mean", "running_var"), mc_box["stats"], th_box["stats"]):
        assert_close(m.numpy(), t.numpy(), tol, name)
        if not (training and track):  # eval mode and untracked stats leave them untouched
            assert_close(m.numpy(), (rm if name == "running_mean" else rv).astype(dtype), 0.0, name)


def test_batch_norm_running_var_is_unbiased(device):
    x = mc.tensor(np.array([[1.0], [2.0], [4.0]]), device=device)
    rm, rv = mc.zeros(1, dtype=mc.float64, device=device), mc.ones(1, dtype=mc.float64, device=device)
    F.batch_norm(x, rm, rv, training=True, momentum=1.0)
    data = np.array([1.0, 2.0, 4.0])
    assert_close(rm.numpy(), [data.mean()], 1e-15)
    assert_close(rv.numpy(), [data.var(ddof=1)], 1e-15)


def test_batch_norm_float32_stays_float32(device):
    x = mc.randn(4, 3, 5, 5, device=device, requires_grad=True)
    w = mc.ones(3, device=device, requires_grad=True)
    rm, rv = mc.zeros(3, device=device), mc.ones(3, device=device)
    y = F.batch_norm(x, rm, rv, w, None, training=True)
    y.sum().backward()
    assert y.dtype == mc.float32 and x.grad.dtype == mc.float32 and w.grad.dtype == mc.float32
    assert rm.dtype == mc.float32 and rv.dtype == mc.float32


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 2, 3)])
def test_batch_norm_gradcheck(device, training, shape):
    rng = rng_for("bn-gradcheck", shape, training)
    c = shape[1]
    x = rng.standard_normal(shape)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    w, b = rng.standard_normal(c), rng.standard_normal(c)

    def fn(x, w, b):
        # fresh copies each call: finite differences must not see the running stats drift
        rmt, rvt = mc.tensor(rm.copy(), device=device), mc.tensor(rv.copy(), device=device)
        return F.batch_norm(x, rmt, rvt, w, b, training=training, eps=1e-3)

    gradcheck(fn, [x, w, b], device=device)


def test_batch_norm_errors(device):
    def t(*shape):
        return mc.zeros(*shape, device=device)

    with pytest.raises(ValueError, match=r"batch_norm: expected input of shape \(N, C\).*got shape \(4,\)"):
        F.batch_norm(t(4), t(4), t(4), training=True)
    with pytest.raises(ValueError, match=r"C=5 channels, so running_mean must have shape \(5,\), got \(3,\)"):
        F.batch_norm(t(4, 5), t(3), t(3), training=True)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*so weight must have shape \(3,\), got \(4,\)"):
        F.batch_norm(t(2, 3, 4, 4), t(3), t(3), t(4), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(t(1, 3), t(3), t(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(t(1, 3, 1, 1), None, None, training=True)
    F.batch_norm(t(1, 3, 1, 1), t(3), mc.ones(3, device=device), training=False)  # fine in eval mode
    with pytest.raises(RuntimeError, match="must be given in evaluation mode"):
        F.batch_norm(t(4, 3), None, None, training=False)
    with pytest.raises(TypeError, match="momentum must be a float factor.*1 / num_batches_tracked"):
        F.batch_norm(t(4, 3), t(3), t(3), training=True, momentum=None)
    with pytest.raises(TypeError, match="weight has dtype float64 but the input has dtype float32"):
        F.batch_norm(t(4, 3), t(3), t(3), mc.zeros(3, dtype=mc.float64, device=device), training=True)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_batch_slices(device, training, monkeypatch):
    """The backward's element-wise passes run over slices of the batch (one sample per slice
    here): the result must not depend on the slicing, in float64 to 1e-12."""
    import minicnn.ops.normalization as bn_mod

    monkeypatch.setattr(bn_mod, "SLICE_BYTES", 1)
    rng = rng_for("bn-slices", training)
    shape = (5, 3, 4, 6)
    x = rng.standard_normal(shape) * 2.0 + 3.0
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    check_parity(
        lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=training),
        lambda x, rm, rv, w, b: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=training),
        [x, rm, rv, w, b],
        grad=[True, False, False, True, True],
        rtol=1e-12,
        device=device,
    )


def test_batch_norm_eval_backward_uses_the_statistics_of_its_forward(device):
    """Backward recomputes x - running_mean: a training call that updates the running statistics
    in place between an eval forward and its backward must not change that backward."""
    rng = rng_for("bn-eval-snapshot")
    x = mc.tensor(rng.standard_normal((4, 3, 5, 5)), device=device)
    w = mc.tensor(rng.standard_normal(3), device=device, requires_grad=True)
    rm = mc.tensor(rng.standard_normal(3), device=device)
    rv = mc.tensor(rng.uniform(0.5, 2.0, 3), device=device)
    rm0, rv0 = rm.numpy().copy(), rv.numpy().copy()
    y = F.batch_norm(x, rm, rv, w, None, training=False)
    F.batch_norm(x * 3.0 + 1.0, rm, rv, None, None, training=True, momentum=0.5)  # moves rm, rv
    y.sum().backward()
    xhat = (x.numpy() - rm0[:, None, None]) / np.sqrt(rv0[:, None, None] + 1e-5)
    assert_close(w.grad.numpy(), xhat.sum(axis=(0, 2, 3)), 1e-12, "dweight")
