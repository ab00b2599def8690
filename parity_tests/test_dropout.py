"""F.dropout / F.dropout2d. The random mask cannot match PyTorch's, so these tests check what defines
inverted dropout: the kept fraction is 1 - p, kept values are scaled by exactly 1 / (1 - p), the
backward reuses the forward mask, evaluation is the identity, and the seed makes masks reproducible."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity_tests.harness import DTYPES, assert_close, gradcheck, rng_for


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_statistics_scaling_and_backward(device, dtype, p):
    mc.manual_seed(1)
    rng = rng_for("dropout", p, dtype)
    x_np = rng.uniform(0.5, 2.0, (64, 3, 17, 11)).astype(dtype)  # no zeros: the mask is readable from out
    x = mc.tensor(x_np, device=device, requires_grad=True)
    out = F.dropout(x, p=p, training=True)
    assert out.dtype == x.dtype and out.shape == x.shape and out.device == x.device
    y = out.numpy()
    kept = y != 0
    n = kept.size
    # fraction kept ~ Binomial(n, 1 - p) / n: within 5 standard deviations
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    # kept values are x / (1 - p), the scale computed in the tensor's dtype
    scale = np.asarray(1.0 / (1.0 - p), dtype=dtype)
    assert_close(y[kept], x_np[kept] * scale, 1e-6 if dtype == "float32" else 1e-15, "kept values")
    # backward: the same mask times the same scale times the upstream gradient
    g = rng.standard_normal(x_np.shape).astype(dtype)
    out.backward(mc.tensor(g, device=device))
    assert_close(x.grad.numpy(), np.where(kept, g * scale, 0), 1e-6 if dtype == "float32" else 1e-15, "grad")


def test_dropout_mean_is_preserved(device):
    """Inverted dropout keeps E[out] = x: compare the mean with the input's (same statistics as torch's)."""
    mc.manual_seed(3)
    x = mc.ones(200_000, dtype=mc.float64, device=device)
    ours = F.dropout(x, p=0.3).numpy()
    theirs = torch.nn.functional.dropout(torch.ones(200_000, dtype=torch.float64), p=0.3).numpy()
    for y in (ours, theirs):
        assert abs(y.mean() - 1.0) < 5 * np.sqrt(0.3 / 0.7 / y.size)
    assert set(np.unique(ours)) == set(np.unique(theirs))  # both {0, 1/0.7}


def test_dropout_identity_cases(device):
    x = mc.randn(5, 4, device=device, requires_grad=True)
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0, training=True) is x
    assert F.dropout2d(mc.randn(2, 3, 4, 4, device=device), p=0.5, training=False).shape == (2, 3, 4, 4)


def test_dropout_p_one_gives_zeros_and_p_near_one_is_finite(device):
    x = mc.randn(50, 40, device=device, requires_grad=True)
    out = F.dropout(x, p=1.0)
    out.sum().backward()
    assert not np.any(out.numpy()) and not np.any(x.grad.numpy())
    mc.manual_seed(0)
    x = mc.randn(200, 200, device=device, requires_grad=True)
    out = F.dropout(x, p=0.999)
    out.sum().backward()
    assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(x.grad.numpy()))
    kept = out.numpy() != 0
    assert 0 < kept.sum() < 200  # about 40 of 40,000 kept
    assert_close(out.numpy()[kept], x.numpy()[kept] * np.float32(1 / (1 - 0.999)), 1e-5)


def test_dropout_reproducible_with_seed(device):
    x = mc.ones(1000, device=device)
    mc.manual_seed(123)
    a = F.dropout(x, p=0.5).numpy()
    b = F.dropout(x, p=0.5).numpy()
    mc.manual_seed(123)
    a2 = F.dropout(x, p=0.5).numpy()
    b2 = F.dropout(x, p=0.5).numpy()
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    assert np.any(a != b)  # consecutive calls draw new masks


def test_dropout_gradcheck(device):
    """With the generator reseeded before every evaluation the mask is fixed, so the op is linear in x."""
    rng = rng_for("dropout-gradcheck")
    x = rng.standard_normal((3, 4, 5))

    def fn(x):
        mc.manual_seed(7)
        return F.dropout(x, p=0.4)

    gradcheck(fn, [x], device=device)


@pytest.mark.parametrize("p", [0.25, 0.75])
def test_dropout2d_drops_whole_channels(device, p):
    mc.manual_seed(5)
    rng = rng_for("dropout2d", p)
    x_np = rng.uniform(0.5, 2.0, (32, 16, 5, 3))
    x = mc.tensor(x_np, device=device, requires_grad=True)
    out = F.dropout2d(x, p=p)
    y = out.numpy()
    kept = y != 0
    per_channel = kept.reshape(32, 16, -1)
    assert np.all(per_channel.all(axis=2) | ~per_channel.any(axis=2)), "a channel is partly dropped"
    channel_kept = per_channel[:, :, 0]
    assert abs(channel_kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / channel_kept.size)
    assert_close(y[kept], x_np[kept] / (1 - p), 1e-15)
    g = rng.standard_normal(x_np.shape)
    out.backward(mc.tensor(g, device=device))
    assert_close(x.grad.numpy(), np.where(kept, g / (1 - p), 0), 1e-15)


def test_dropout_errors(device):
    x = mc.randn(3, 4, device=device)
    for p in (-0.1, 1.5):
        with pytest.raises(
            ValueError, match=f"dropout: dropout probability has to be between 0 and 1, but got {p}"
        ):
            F.dropout(x, p=p)
    with pytest.raises(TypeError, match="dropout: p must be a float"):
        F.dropout(x, p="0.5")
    with pytest.raises(TypeError, match="floating-point tensor, got dtype int64"):
        F.dropout(mc.tensor(np.arange(4), device=device))
    with pytest.raises(
        ValueError, match=r"dropout2d: expected input of shape \(N, C, H, W\), got shape \(3, 4\)"
    ):
        F.dropout2d(x)


def test_dropout2d_layer_matches_torch(device):
    """nn.Dropout2d: PyTorch's repr and argument check; whole channels dropped while training, the
    identity in eval mode, and the mask reused by backward."""
    for p, inplace in [(0.5, False), (0.3, True)]:
        assert repr(mc.nn.Dropout2d(p, inplace)) == repr(torch.nn.Dropout2d(p, inplace))
    with pytest.raises(ValueError, match="Dropout2d: dropout probability has to be between 0 and 1, but got"):
        mc.nn.Dropout2d(2)
    mc.manual_seed(11)
    layer = mc.nn.Dropout2d(0.4)
    x_np = rng_for("dropout2d-layer").uniform(0.5, 2.0, (16, 8, 3, 5))
    x = mc.tensor(x_np, device=device, requires_grad=True)
    out = layer(x)
    kept = out.numpy() != 0
    per_channel = kept.reshape(16, 8, -1)
    assert np.all(per_channel.all(axis=2) | ~per_channel.any(axis=2))
    assert 0 < per_channel[:, :, 0].mean() < 1
    assert_close(out.numpy()[kept], x_np[kept] / 0.6, 1e-15)
    g = rng_for("dropout2d-layer-g").standard_normal(x_np.shape)
    out.backward(mc.tensor(g, device=device))
    assert_close(x.grad.numpy(), np.where(kept, g / 0.6, 0), 1e-15)
    layer.eval()
    assert layer(x) is x


def test_dropout2d_3d_input_is_n_c_l_with_a_warning(device):
    """As PyTorch 2.x: a 3-D input is read as (N, C, L) (whole (n, c) rows dropped), with a warning."""
    mc.manual_seed(2)
    x_np = rng_for("dropout2d-3d").uniform(0.5, 2.0, (20, 6, 9))
    with pytest.warns(UserWarning, match="dropout2d: Received a 3D input to dropout2d") as ours:
        out = mc.nn.Dropout2d(0.5)(mc.tensor(x_np, device=device)).numpy()
    with pytest.warns(UserWarning) as theirs:
        torch.nn.Dropout2d(0.5)(torch.from_numpy(x_np))
    assert [w.category for w in ours] == [w.category for w in theirs]
    kept = out != 0
    assert np.all(kept.all(axis=2) | ~kept.any(axis=2)) and 0 < kept.mean() < 1
    assert_close(out[kept], x_np[kept] * 2, 1e-15)


def test_dropout_inplace(device):
    """inplace=True writes the result into x and returns x (F and the layers), as PyTorch; in a graph
    the gradient still uses the mask."""
    x_np = rng_for("dropout-inplace").uniform(0.5, 2.0, (8, 4, 3, 3))
    for fn in (
        lambda t: F.dropout(t, 0.5, inplace=True),
        lambda t: F.dropout2d(t, 0.5, inplace=True),
        mc.nn.Dropout(0.5, inplace=True),
        mc.nn.Dropout2d(0.5, inplace=True),
    ):
        x = mc.tensor(x_np, device=device)
        v0 = x._version
        assert fn(x) is x and x._version == v0 + 1
        kept = x.numpy() != 0
        assert 0 < kept.mean() < 1
        assert_close(x.numpy()[kept], x_np[kept] * 2, 1e-15)
        a = mc.tensor(x_np, device=device, requires_grad=True)
        y = a * 1.0
        assert fn(y) is y
        y.sum().backward()
        assert_close(a.grad.numpy(), (y.numpy() != 0) * 2.0, 1e-15)
    x = mc.tensor(x_np, device=device)
    assert F.dropout(x, 0.5, training=False, inplace=True) is x and x._version == 0
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        F.dropout(mc.tensor(x_np, device=device, requires_grad=True), 0.5, inplace=True)


def test_dropout_empty_batch(device):
    for fn in (F.dropout, F.dropout2d):
        x = mc.zeros(0, 3, 4, 4, device=device, requires_grad=True)
        fn(x).sum().backward()
        assert x.grad.shape == (0, 3, 4, 4)
