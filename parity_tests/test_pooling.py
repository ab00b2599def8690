"""max_pool2d, avg_pool2d, adaptive_avg_pool2d vs PyTorch over many random configurations; exact
arg-max tie-breaking (zeros after ReLU, integer values, NaN, -inf); the direct-loop oracle;
float64 finite differences; error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
from minicnn.nn import functional as F
from parity_tests import reference
from parity_tests.harness import DTYPES, assert_close, check_parity, gradcheck, rng_for


def random_pool_config(seed, with_dilation=True):
    """(x shape, kwargs) of a valid pooling call: padding <= kernel/2, output at least 1x1."""
    rng = rng_for("pool-config", seed)
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if with_dilation else (1, 1)
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    # At least `dilation` pixels per axis: a dilated window must not fall entirely in the padding
    # (PyTorch then routes its gradient outside the input plane, a degenerate case we do not copy).
    h = max(dilation[0], eh - 2 * padding[0]) + int(rng.choice([0, 1, 2, 3, 6]))
    w = max(dilation[1], ew - 2 * padding[1]) + int(rng.choice([0, 1, 4, 5]))
    shape = (int(rng.choice([1, 2, 3])), int(rng.choice([1, 2, 5])), h, w)
    kwargs = dict(kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=bool(rng.integers(0, 2)))
    if with_dilation:
        kwargs["dilation"] = dilation
    return shape, kwargs


# ---------------------------------------------------------------------------- max pooling
def check_max_pool(x, kwargs, **options):
    """check_parity of max_pool2d(x, return_indices=True, **kwargs) against PyTorch's: values,
    gradient, and the indices exactly (options: dtype, device, rtol)."""
    mc_out, th_out = check_parity(
        lambda a: F.max_pool2d(a, return_indices=True, **kwargs),
        lambda a: TF.max_pool2d(a, return_indices=True, **kwargs),
        [x],
        **options,
    )
    np.testing.assert_array_equal(mc_out[1], th_out[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(24))
def test_max_pool2d_random_configs(seed, dtype, device):
    shape, kwargs = random_pool_config(seed)
    x = rng_for("max-pool-x", seed).standard_normal(shape)
    check_max_pool(x, kwargs, dtype=dtype, device=device)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=2),  # tiling fast path
        dict(kernel_size=2, ceil_mode=True),  # odd sizes: ceil windows hang over the edge
        dict(kernel_size=3, stride=2, padding=1),  # overlapping (ResNet stem)
        dict(kernel_size=(3, 2), stride=(1, 2)),
        dict(kernel_size=3, stride=1, padding=1, dilation=2),
    ],
)
@pytest.mark.parametrize("values", ["relu", "integers", "constant"])
def test_max_pool2d_ties_match_torch_exactly(kwargs, values, device):
    """Many equal values per window: PyTorch routes the gradient to the FIRST maximum (row-major)."""
    rng = rng_for("max-pool-ties", repr(kwargs), values)
    if values == "relu":
        x = np.maximum(rng.standard_normal((2, 3, 9, 7)) - 0.8, 0.0)  # mostly all-zero windows
    elif values == "integers":
        x = rng.integers(-2, 3, size=(2, 3, 9, 7)).astype(np.float64)
    else:
        x = np.full((2, 3, 9, 7), 1.5)
    # A gradient routed to the wrong tied pixel would be off by a whole g; overlapping windows
    # may sum their shares in another order than PyTorch (last bit), hence not exactly 0.
    check_max_pool(x, kwargs, rtol=0.0 if kwargs.get("stride") is None else 1e-13, device=device)


@pytest.mark.nonfinite
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_max_pool2d_nan_and_inf(kwargs, device):
    """NaN counts as the maximum (PyTorch keeps the last NaN of a window); windows of -inf still
    send their gradient to a real pixel (the first one inside the input)."""
    rng = rng_for("max-pool-nan", repr(kwargs))
    x = rng.standard_normal((2, 2, 8, 6))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:, :, :3, :3] = -np.inf
    x[0, 0, 4:6, 2:4] = [[1.0, np.nan], [np.nan, 2.0]]
    check_max_pool(x, kwargs, rtol=0.0, device=device)


@pytest.mark.nonfinite
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 in the harness's sum(out * u)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs",
    [dict(kernel_size=2), dict(kernel_size=2, ceil_mode=True), dict(kernel_size=3, stride=2, padding=1)],
)
def test_max_pool2d_inf_and_nan_gradients(kwargs, dtype, device):
    """An inf/NaN upstream gradient reaches only each window's arg-max, as in PyTorch (g * hit
    would give NaN = inf * 0 at the window's other pixels)."""
    rng = rng_for("max-pool-nonfinite", repr(kwargs), dtype)
    x = rng.standard_normal((2, 3, 9, 8))
    out_shape = TF.max_pool2d(torch.from_numpy(x), **kwargs).shape
    u = rng.standard_normal(tuple(out_shape))
    u.reshape(-1)[::3] = np.inf
    u.reshape(-1)[1::5] = -np.inf
    u.reshape(-1)[2::7] = np.nan
    check_max_pool(x, kwargs, dtype=dtype, device=device, upstream=[u], rtol=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(12))
def test_max_pool2d_without_grad(seed, dtype, device):
    """Under no_grad (and for inputs that need no gradient) max pooling skips the arg-max and
    takes only the window maxima: the values must still be PyTorch's exactly, NaN and -inf
    windows included."""
    shape, kwargs = random_pool_config(300 + seed)
    rng = rng_for("max-pool-no-grad", seed, dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.1] = -np.inf
    expected = TF.max_pool2d(torch.from_numpy(x), **kwargs).numpy()
    with mc.no_grad():
        got = F.max_pool2d(mc.tensor(x, device=device, requires_grad=True), **kwargs)
    assert not got.requires_grad
    plain = F.max_pool2d(mc.tensor(x, device=device), **kwargs)  # grad mode, but no input needs one
    for out in (got, plain):
        np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("seed", range(5))
def test_max_pool2d_oracle(seed, device):
    """The direct-loop oracle agrees with PyTorch (output, indices, gradient) and with minicnn."""
    shape, kwargs = random_pool_config(200 + seed)
    rng = rng_for("max-pool-oracle", seed)
    x = rng.integers(-3, 4, size=shape).astype(np.float64)  # ties everywhere
    g = rng.standard_normal
    out, idx = reference.max_pool2d(x, **kwargs)
    up = g(out.shape)
    dx = reference.max_pool2d_grad(x.shape, idx, up)
    tx = torch.from_numpy(x).requires_grad_()
    th, th_idx = TF.max_pool2d(tx, return_indices=True, **kwargs)
    th.backward(torch.from_numpy(up))
    assert_close(out, th.detach().numpy(), 0.0, "oracle vs torch")
    np.testing.assert_array_equal(idx, th_idx.numpy())
    assert_close(dx, tx.grad.numpy(), 1e-12, "oracle grad vs torch")
    mx = mc.tensor(x, device=device, requires_grad=True)
    mine, mine_idx = F.max_pool2d(mx, return_indices=True, **kwargs)
    mine.backward(mc.tensor(up, device=device))
    assert_close(mine.numpy(), out, 0.0, "minicnn vs oracle")
    np.testing.assert_array_equal(mine_idx.numpy(), idx)
    assert_close(mx.grad.numpy(), dx, 1e-12, "minicnn grad vs oracle")


def test_max_pool2d_finite_differences(device):
    x = rng_for("max-pool-fd").permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0  # distinct values
    gradcheck(lambda a: F.max_pool2d(a, 3, stride=2, padding=1), [x], device=device)


# ---------------------------------------------------------------------------- average pooling
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(24))
def test_avg_pool2d_random_configs(seed, dtype, device):
    shape, kwargs = random_pool_config(1000 + seed, with_dilation=False)
    rng = rng_for("avg-pool-x", seed)
    kwargs["count_include_pad"] = bool(rng.integers(0, 2))
    kwargs["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 7))
    x = rng.standard_normal(shape)
    check_parity(
        lambda a: F.avg_pool2d(a, **kwargs),
        lambda a: TF.avg_pool2d(a, **kwargs),
        [x],
        dtype=dtype,
        device=device,
    )


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),  # windows over the right padding
        dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True),
        dict(kernel_size=2, stride=2, ceil_mode=True),  # last window half outside, no padding
    ],
)
def test_avg_pool2d_divisor_rules_and_oracle(kwargs, count_include_pad, device):
    x = rng_for("avg-pool-oracle", repr(kwargs)).standard_normal((2, 2, 7, 8))
    expected = reference.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs)
    th = TF.avg_pool2d(torch.from_numpy(x), count_include_pad=count_include_pad, **kwargs)
    assert_close(expected, th.numpy(), 1e-12, "oracle vs torch")
    check_parity(
        lambda a: F.avg_pool2d(a, count_include_pad=count_include_pad, **kwargs),
        lambda a: TF.avg_pool2d(a, count_include_pad=count_include_pad, **kwargs),
        [x],
        device=device,
    )


def test_avg_pool2d_finite_differences(device):
    x = rng_for("avg-pool-fd").standard_normal((2, 2, 7, 6))
    gradcheck(lambda a: F.avg_pool2d(a, 3, stride=2, padding=1, ceil_mode=True), [x], device=device)


# ---------------------------------------------------------------------------- adaptive average pooling
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, output_size",
    [
        ((4, 6, 7, 5), 1),  # global average pooling
        ((2, 3, 8, 8), (4, 2)),  # divisible bins
        ((2, 3, 7, 11), (3, 5)),  # overlapping uneven bins
        ((2, 3, 5, 4), (7, 6)),  # output larger than input: repeated pixels
        ((1, 2, 9, 13), (None, 4)),
        ((3, 1, 1, 1), (2, 3)),
    ],
)
def test_adaptive_avg_pool2d(shape, output_size, dtype, device):
    x = rng_for("adaptive", shape).standard_normal(shape)
    check_parity(
        lambda a: F.adaptive_avg_pool2d(a, output_size),
        lambda a: TF.adaptive_avg_pool2d(a, output_size),
        [x],
        dtype=dtype,
        device=device,
    )


def test_adaptive_avg_pool2d_oracle_and_finite_differences(device):
    x = rng_for("adaptive-fd").standard_normal((2, 2, 7, 5))
    expected = reference.adaptive_avg_pool2d(x, (3, 4))
    assert_close(
        expected, TF.adaptive_avg_pool2d(torch.from_numpy(x), (3, 4)).numpy(), 1e-12, "oracle vs torch"
    )
    assert_close(
        F.adaptive_avg_pool2d(mc.tensor(x, device=device), (3, 4)).numpy(), expected, 1e-12, "minicnn"
    )
    gradcheck(lambda a: F.adaptive_avg_pool2d(a, (3, 4)), [x], device=device)


def test_pooling_float32_stays_float32(device):
    x = mc.randn(2, 3, 8, 8, device=device, requires_grad=True)
    y = (
        F.max_pool2d(x, 2)
        + F.avg_pool2d(x, 2, padding=1, stride=2)[:, :, :4, :4]
        + F.adaptive_avg_pool2d(x, 4)
    )
    y.sum().backward()
    assert y.dtype == mc.float32 and x.grad.dtype == mc.float32


# ---------------------------------------------------------------------------- error messages
@pytest.mark.parametrize(
    "fn, shape, kwargs, error, pattern",
    [
        (
            F.max_pool2d,
            (3, 8, 8),
            dict(kernel_size=2),
            ValueError,
            r"max_pool2d: expected input of shape \(N, C, H, W\)",
        ),
        (F.avg_pool2d, (8, 8), dict(kernel_size=2), ValueError, r"avg_pool2d: expected .*got shape \(8, 8\)"),
        (
            F.max_pool2d,
            (1, 1, 3, 3),
            dict(kernel_size=5),
            ValueError,
            r"window \(5x5.* larger than the padded input",
        ),
        (
            F.avg_pool2d,
            (1, 1, 3, 3),
            dict(kernel_size=6, padding=1),
            ValueError,
            r"larger than the padded input \(5x5\)",
        ),
        (
            F.max_pool2d,
            (1, 1, 8, 8),
            dict(kernel_size=3, padding=2),
            ValueError,
            r"padding should be at most half",
        ),
        (
            F.avg_pool2d,
            (1, 1, 8, 8),
            dict(kernel_size=2, stride=0),
            ValueError,
            r"avg_pool2d: stride must be positive",
        ),
        (
            F.max_pool2d,
            (1, 1, 8, 8),
            dict(kernel_size=(2, 2, 2)),
            TypeError,
            r"kernel_size must be an int or a pair",
        ),
        (
            F.max_pool2d,
            (1, 1, 8, 8),
            dict(kernel_size=2, dilation=0),
            ValueError,
            r"dilation must be positive",
        ),
        (
            F.adaptive_avg_pool2d,
            (4, 4),
            dict(output_size=2),
            ValueError,
            r"adaptive_avg_pool2d: expected input of",
        ),
        (
            F.adaptive_avg_pool2d,
            (1, 1, 4, 4),
            dict(output_size=0),
            ValueError,
            r"output_size must be positive",
        ),
    ],
)
def test_pooling_errors(fn, shape, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        fn(mc.zeros(*shape), **kwargs)


@pytest.mark.nonfinite
@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((5, 2, 8, 6), dict(kernel_size=2)),  # tiles covering the input: dx is not zero-filled
        ((5, 2, 9, 7), dict(kernel_size=2)),  # tiles with a cropped remainder
        ((5, 2, 8, 6), dict(kernel_size=3, stride=2, padding=1)),  # overlapping windows
    ],
)
def test_max_pool2d_nan_and_inf_in_some_samples(shape, kwargs, device):
    """NaN in one sample, -inf windows in another, ties everywhere: each sample follows its own rules."""
    rng = rng_for("max-pool-slices", shape, repr(kwargs))
    x = rng.integers(-2, 3, size=shape).astype(np.float64)  # ties
    x[1][rng.random(shape[1:]) < 0.2] = np.nan
    x[3, :, :4, :4] = -np.inf
    check_max_pool(x, kwargs, rtol=0.0 if kwargs.get("stride") is None else 1e-13, device=device)


@pytest.mark.parametrize(
    "fn, kwargs, error, pattern",
    [
        (F.max_pool2d, dict(kernel_size=2.5), TypeError, r"max_pool2d: kernel_size must be an int or"),
        (F.max_pool2d, dict(kernel_size="2"), TypeError, r"max_pool2d: kernel_size must be an int or"),
        (F.max_pool2d, dict(kernel_size=True), TypeError, r"max_pool2d: kernel_size must be an int or"),
        (F.max_pool2d, dict(kernel_size=2, stride=1.5), TypeError, r"max_pool2d: stride must be an int or a"),
        (F.max_pool2d, dict(kernel_size=2, padding=0.0), TypeError, r"max_pool2d: padding must be an int"),
        (F.max_pool2d, dict(kernel_size=0), ValueError, r"max_pool2d: kernel_size must be positive"),
        (F.avg_pool2d, dict(kernel_size=(2, 2.0)), TypeError, r"avg_pool2d: kernel_size must be an int or a"),
        (F.avg_pool2d, dict(kernel_size=2, stride="1"), TypeError, r"avg_pool2d: stride must be an int or a"),
        (F.avg_pool2d, dict(kernel_size=2, divisor_override=1.5), ValueError, r"divisor_override must be a"),
        (F.adaptive_avg_pool2d, dict(output_size=2.5), TypeError, r"adaptive_avg_pool2d: output_size must"),
        (F.adaptive_avg_pool2d, dict(output_size=("2", 2)), TypeError, r"output_size must be an int or a"),
    ],
)
def test_pooling_non_integer_arguments_raise(fn, kwargs, error, pattern):
    """As in PyTorch: a float, a string or a bool is refused, never truncated to an int."""
    with pytest.raises(error, match=pattern):
        fn(mc.zeros(1, 1, 8, 8), **kwargs)


@pytest.mark.parametrize(
    "layer, args, kwargs, error, pattern",
    [
        (mc.nn.MaxPool2d, (2.5,), {}, TypeError, r"MaxPool2d: kernel_size must be an int or a pair of ints"),
        (mc.nn.MaxPool2d, ("2",), {}, TypeError, r"MaxPool2d: kernel_size must be an int or a pair of ints"),
        (mc.nn.MaxPool2d, (2,), dict(stride=1.5), TypeError, r"MaxPool2d: stride must be an int or a pair"),
        (mc.nn.MaxPool2d, (0,), {}, ValueError, r"MaxPool2d: kernel_size must be positive"),
        (mc.nn.MaxPool2d, (2,), dict(stride=0), ValueError, r"MaxPool2d: stride must be positive"),
        (mc.nn.MaxPool2d, (2,), dict(dilation=0), ValueError, r"MaxPool2d: dilation must be positive"),
        (mc.nn.MaxPool2d, (2,), dict(padding=-1), ValueError, r"MaxPool2d: padding must be non-negative"),
        (mc.nn.MaxPool2d, (3,), dict(padding=2), ValueError, r"MaxPool2d: padding should be at most half"),
        (mc.nn.AvgPool2d, (2.0,), {}, TypeError, r"AvgPool2d: kernel_size must be an int or a pair of ints"),
        (mc.nn.AvgPool2d, ((2, 0),), {}, ValueError, r"AvgPool2d: kernel_size must be positive"),
        (mc.nn.AvgPool2d, (2,), dict(stride=(1, "1")), TypeError, r"AvgPool2d: stride must be an int or"),
        (mc.nn.AdaptiveAvgPool2d, (1.5,), {}, TypeError, r"AdaptiveAvgPool2d: output_size must be an int"),
        (mc.nn.AdaptiveAvgPool2d, ((0, None),), {}, ValueError, r"AdaptiveAvgPool2d: output_size must be"),
    ],
)
def test_pooling_layer_arguments_are_checked_at_construction(layer, args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        layer(*args, **kwargs)


def test_pooling_layers_keep_their_arguments():
    """Valid arguments are stored as given (PyTorch's repr), None in an adaptive size included."""
    assert mc.nn.MaxPool2d(2).stride == 2 and mc.nn.MaxPool2d((3, 2), stride=1).stride == 1
    assert mc.nn.AdaptiveAvgPool2d((None, 3)).output_size == (None, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "fn, torch_fn, kwargs",
    [
        (F.max_pool2d, TF.max_pool2d, dict(kernel_size=2)),
        (F.max_pool2d, TF.max_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (F.avg_pool2d, TF.avg_pool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, dict(output_size=(3, 2))),
        (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, dict(output_size=1)),
    ],
)
def test_pooling_empty_batch(fn, torch_fn, kwargs, dtype, device):
    """N = 0: empty outputs and empty input gradients, as in PyTorch."""
    check_parity(lambda a: fn(a, **kwargs), lambda a: torch_fn(a, **kwargs), [np.zeros((0, 2, 7, 6))],
                 dtype=dtype, device=device)  # fmt: skip


def test_max_pool2d_empty_batch_indices(device):
    out, idx = F.max_pool2d(mc.zeros(0, 2, 7, 6, device=device), 2, return_indices=True)
    assert out.shape == idx.shape == (0, 2, 3, 3) and idx.dtype == mc.int64
