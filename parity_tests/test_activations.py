"""Activations and (log-)softmax vs PyTorch: outputs and gradients (including at exactly 0 and for
logits of magnitude 1e4), finite-difference gradchecks, Tensor methods and error messages."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for

TF = torch.nn.functional

# name -> (minicnn function, torch function)
ELEMENTWISE = {
    "relu": (F.relu, TF.relu),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu),
    "leaky_relu_0.2": (lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2)),
    "elu": (F.elu, TF.elu),
    "elu_alpha_0.7": (lambda x: F.elu(x, alpha=0.7), lambda x: TF.elu(x, alpha=0.7)),
    "gelu": (F.gelu, TF.gelu),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda x: TF.gelu(x, approximate="tanh")),
    "silu": (F.silu, TF.silu),
    "sigmoid": (F.sigmoid, torch.sigmoid),
    "tanh": (F.tanh, torch.tanh),
}
SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (13, 1, 2)]


def _inputs(rng, shape, scale):
    x = rng.standard_normal(shape) * scale
    x.reshape(-1)[::3] = 0.0  # exact zeros: the gradient at the kink must match PyTorch's choice
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_parity(device, dtype, shape, name):
    rng = rng_for("act", name, shape, dtype)
    ours, theirs = ELEMENTWISE[name]
    for scale in (1.0, 30.0):  # 30: saturated sigmoid/tanh and exp under/overflow regions
        check_parity(ours, theirs, [_inputs(rng, shape, scale)], dtype=dtype, device=device)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_gradcheck(device, name):
    rng = rng_for("act-gradcheck", name)
    x = rng.standard_normal((3, 7))
    x += np.sign(x) * 0.05  # stay clear of the kink at 0 where finite differences are meaningless
    gradcheck(ELEMENTWISE[name][0], [x], device=device)


@pytest.mark.nonfinite
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 in the harness's sum(out * u)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_with_inf_and_nan_gradients(device, dtype):
    """An inf/NaN upstream gradient reaches dx only where x > 0, as in PyTorch (g * mask would
    give NaN = inf * 0 where x <= 0)."""
    rng = rng_for("relu-nonfinite", dtype)
    x = _inputs(rng, (4, 3, 5, 5), 1.0)
    u = rng.standard_normal(x.shape)
    u.reshape(-1)[::4] = np.inf
    u.reshape(-1)[1::7] = -np.inf
    u.reshape(-1)[2::5] = np.nan
    check_parity(F.relu, TF.relu, [x], dtype=dtype, device=device, upstream=[u])


def test_relu_grad_at_zero_is_zero(device):
    x = mc.tensor(np.zeros(4), device=device, requires_grad=True)
    F.relu(x).sum().backward()
    xt = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    TF.relu(xt).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1, 2])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_parity(device, dtype, dim, fn):
    rng = rng_for("softmax", fn, dim, dtype)
    shape = (3, 5, 7)
    for scale in (1.0, 1e4):  # 1e4: exp would overflow without the max shift
        x = rng.standard_normal(shape) * scale
        mc_out, _ = check_parity(
            lambda t: getattr(F, fn)(t, dim=dim),
            lambda t: getattr(TF, fn)(t, dim=dim),
            [x],
            dtype=dtype,
            device=device,
        )
        assert np.all(np.isfinite(mc_out[0]))


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_extreme_logits_and_1d(device, fn):
    # one huge logit, ties, big negatives: a naive exp(x) / sum(exp(x)) gives inf / nan here
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 5.0], [-3e4, -3e4, -3e4, -3e4]])
    check_parity(lambda t: getattr(F, fn)(t, 1), lambda t: getattr(TF, fn)(t, 1), [x], device=device)
    check_parity(lambda t: getattr(F, fn)(t, 0), lambda t: getattr(TF, fn)(t, 0), [x[0]], device=device)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_gradcheck(device, fn, dim):
    x = rng_for("softmax-gradcheck", fn, dim).standard_normal((4, 5))
    gradcheck(lambda t: getattr(F, fn)(t, dim), [x], device=device)


def test_tensor_methods(device):
    x = rng_for("methods").standard_normal((4, 6))
    check_parity(lambda t: t.relu(), lambda t: t.relu(), [x], device=device)
    check_parity(lambda t: t.sigmoid(), lambda t: t.sigmoid(), [x], device=device)
    check_parity(lambda t: t.tanh(), lambda t: t.tanh(), [x], device=device)
    check_parity(lambda t: t.softmax(1), lambda t: t.softmax(1), [x], device=device)
    check_parity(lambda t: t.log_softmax(0), lambda t: t.log_softmax(0), [x], device=device)


def test_softmax_dtype_argument_and_implicit_dim(device):
    x = rng_for("softmax-dtype").standard_normal((3, 4)).astype(np.float32)
    check_parity(
        lambda t: F.softmax(t, dim=1, dtype=mc.float64),
        lambda t: TF.softmax(t, dim=1, dtype=torch.float64),
        [x],
        dtype="float32",
        device=device,
    )
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        ours = F.softmax(mc.tensor(x, device=device))
    with pytest.warns(UserWarning):
        theirs = TF.softmax(torch.from_numpy(x))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_activation_errors(device):
    ints = mc.tensor(np.arange(4), device=device)
    with pytest.raises(TypeError, match="relu: input must be a floating-point tensor, got dtype int64"):
        F.relu(ints)
    with pytest.raises(TypeError, match="sigmoid: input must be a minicnn Tensor, got ndarray"):
        F.sigmoid(np.zeros(3))
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(mc.zeros(3, device=device), approximate="erf")
    with pytest.raises(IndexError, match="softmax: dim 2 is out of range for a tensor with 2 dimension"):
        F.softmax(mc.zeros(3, 4, device=device), dim=2)


INPLACE = {  # PyTorch's activations with an inplace flag: (minicnn, torch) functions of (x, inplace)
    "relu": (lambda x, i: F.relu(x, inplace=i), lambda x, i: TF.relu(x, inplace=i)),
    "leaky_relu": (
        lambda x, i: F.leaky_relu(x, 0.2, inplace=i),
        lambda x, i: TF.leaky_relu(x, 0.2, inplace=i),
    ),
    "elu": (lambda x, i: F.elu(x, 0.7, inplace=i), lambda x, i: TF.elu(x, 0.7, inplace=i)),
    "silu": (lambda x, i: F.silu(x, inplace=i), lambda x, i: TF.silu(x, inplace=i)),
}
LAYERS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "silu": "SiLU"}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_activations(device, name):
    """inplace=True overwrites x and returns it, as PyTorch: plain tensors, tensors inside a graph
    (the gradient flows through the in-place op) and the error for a leaf that requires grad."""
    ours, theirs = INPLACE[name]
    x_np = _inputs(rng_for("inplace", name), (3, 4, 5), 2.0)
    x, xt = mc.tensor(x_np, device=device), torch.from_numpy(x_np.copy())
    v0 = x._version
    assert ours(x, True) is x and x._version == v0 + 1
    np.testing.assert_allclose(x.numpy(), theirs(xt, True).numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.numpy(), ours(mc.tensor(x_np, device=device), False).numpy(), rtol=0)

    # inside a graph: y = 3 * a, then y is overwritten; gradients flow through the in-place op
    a, at = mc.tensor(x_np, device=device, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    y, yt = a * 3.0, at * 3.0
    out, outt = ours(y, True), theirs(yt, True)
    assert out is y
    u = rng_for("inplace-u", name).standard_normal(x_np.shape)
    (out * mc.tensor(u, device=device)).sum().backward()
    (outt * torch.from_numpy(u)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), at.grad.numpy(), rtol=1e-12, atol=1e-15)

    leaf = mc.tensor(x_np, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        ours(leaf, True)

    layer = getattr(mc.nn, LAYERS[name])(inplace=True) if name in ("relu", "silu") else None
    if layer is not None:  # the layers pass the flag on (their repr says so, as PyTorch's)
        x = mc.tensor(x_np, device=device)
        assert layer(x) is x and repr(layer) == repr(getattr(torch.nn, LAYERS[name])(inplace=True))
    layer = getattr(mc.nn, LAYERS[name])()
    x = mc.tensor(x_np, device=device)
    assert layer(x) is not x and np.array_equal(x.numpy(), x_np)  # the default leaves x alone


def test_inplace_layers_leaky_relu_and_elu(device):
    x_np = _inputs(rng_for("inplace-layers"), (4, 6), 1.0)
    for ours, theirs in [
        (mc.nn.LeakyReLU(0.1, inplace=True), torch.nn.LeakyReLU(0.1, inplace=True)),
        (mc.nn.ELU(0.5, inplace=True), torch.nn.ELU(0.5, inplace=True)),
    ]:
        x, xt = mc.tensor(x_np, device=device), torch.from_numpy(x_np.copy())
        assert ours(x) is x and repr(ours) == repr(theirs)
        np.testing.assert_allclose(x.numpy(), theirs(xt).numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_empty_batch(device, name):
    check_parity(*ELEMENTWISE[name], [np.zeros((0, 3, 4))], device=device)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_empty_batch(device, fn, dim):
    """An empty batch, reduced over it (dim=0) or over the classes (dim=1): empty results, as PyTorch."""
    check_parity(
        lambda t: getattr(F, fn)(t, dim), lambda t: getattr(TF, fn)(t, dim), [np.zeros((0, 5))], device=device
    )
