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
def test_batch_norm_float32_large_batch(device, training):
    """A channel of 32*14*14 = 6272 values far from zero (mean 5, std 2): float32 sums must stay
    accurate (two-pass variance, float64 sums in the kernels) to PyTorch's 1e-4."""
    rng = rng_for("bn-large", training)
    shape = (32, 8, 14, 14)
    x = rng.standard_normal(shape) * 2.0 + 5.0
    rm, rv = rng.standard_normal(8) + 5.0, rng.uniform(2.0, 6.0, 8)
    w, b = rng.standard_normal(8), rng.standard_normal(8)
    check_parity(
        lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, training=training),
        lambda x, rm, rv, w, b: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=training),
        [x, rm, rv, w, b],
        grad=[True, False, False, True, True],
        dtype="float32",
        device=device,
    )


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_empty_batch(device, training):
    """N = 0: an empty output, zero gradients for weight and bias and, in training, running
    statistics left as they are, as PyTorch (which refuses only a single value per channel)."""
    rng = rng_for("bn-empty", training)
    rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    th_rm, th_rv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    mc_rm, mc_rv = mc.tensor(rm.copy(), device=device), mc.tensor(rv.copy(), device=device)
    for shape in [(0, 3), (0, 3, 4, 4), (2, 3, 0)]:
        check_parity(
            lambda x, w, b: F.batch_norm(x, mc_rm, mc_rv, w, b, training=training),
            lambda x, w, b: torch.nn.functional.batch_norm(x, th_rm, th_rv, w, b, training=training),
            [np.zeros(shape), rng.standard_normal(3), rng.standard_normal(3)],
            device=device,
        )
    assert_close(mc_rm.numpy(), th_rm.numpy(), 0.0, "running_mean")
    assert_close(mc_rv.numpy(), th_rv.numpy(), 0.0, "running_var")
    layer, ref = mc.nn.BatchNorm2d(3, momentum=None).to(device), torch.nn.BatchNorm2d(3, momentum=None)
    layer.train(training), ref.train(training)
    assert layer(mc.zeros(0, 3, 5, 5, device=device)).shape == ref(torch.zeros(0, 3, 5, 5)).shape
    assert layer.num_batches_tracked.item() == ref.num_batches_tracked.item()
    assert_close(layer.running_mean.numpy(), ref.running_mean.numpy(), 0.0, "layer running_mean")


def test_batch_norm_input_changed_in_place_before_backward_raises(device):
    """Backward reads x (the compiled tier does; PyTorch too): changing it in place in between
    raises on both tiers, rather than giving a wrong gradient."""
    x = mc.randn(4, 3, 5, device=device, requires_grad=True)
    h = x * 1.0
    y = F.batch_norm(h, None, None, training=True)
    with mc.no_grad():
        h.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_momentum_as_a_device_array(device, dtype):
    """The layers' cumulative average (momentum=None) hands the op 1 / num_batches_tracked as a 0-d
    array computed on the device: the same running statistics as the float, and no host sync."""
    from minicnn.ops.normalization import _batch_norm

    rng = rng_for("bn-momentum-array", dtype)
    x = mc.tensor(rng.standard_normal((6, 4, 3)).astype(dtype), device=device)
    stats = [(mc.zeros(4, dtype=dtype, device=device), mc.ones(4, dtype=dtype, device=device)) for _ in "ab"]
    factor = 1.0 / mc.tensor(np.array(3), device=device).array  # what the layer computes
    _batch_norm(x, *stats[0], None, None, True, factor, 1e-5)
    F.batch_norm(x, *stats[1], None, None, training=True, momentum=1 / 3)
    for a, b in zip(stats[0], stats[1]):  # the array is float64: the float32 updates round differently
        assert_close(a.numpy(), b.numpy(), 1e-6 if dtype == "float32" else 1e-15)


def test_batchnorm_layer_momentum_none_reads_no_counter_on_the_host(device, monkeypatch):
    """BatchNorm(momentum=None) computes 1 / num_batches_tracked where the counter lives; reading it
    with float() would make every training step wait for the GPU."""
    import minicnn.nn.modules.batchnorm as bn_layers

    seen = []
    real = bn_layers._batch_norm

    def spy(*args):
        seen.append(args[6])  # momentum
        return real(*args)

    monkeypatch.setattr(bn_layers, "_batch_norm", spy)
    layer = mc.nn.BatchNorm1d(3, momentum=None).to(device)
    for _ in range(3):
        layer(mc.randn(5, 3, device=device))
    assert all(hasattr(m, "dtype") for m in seen)  # computed by the array module, not a Python float
    np.testing.assert_allclose([float(m) for m in seen], [1.0, 1 / 2, 1 / 3], rtol=1e-7)


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
