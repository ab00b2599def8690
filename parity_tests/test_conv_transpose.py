"""conv_transpose2d and nn.ConvTranspose2d vs PyTorch: strides, padding, output_padding, dilation,
groups, bias or not, 1x1 inputs (the DCGAN generator's first layer), odd sizes; outputs and the
gradients of input, weight and bias in float64 and float32 on both devices; gradchecks; errors."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from minicnn import nn
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for

TF = torch.nn.functional

# (N, C_in, H, W), C_out, kernel, stride, padding, output_padding, dilation, groups
CONFIGS = [
    ((2, 3, 1, 1), 4, 4, 1, 0, 0, 1, 1),  # DCGAN: the latent vector to a 4x4 map
    ((2, 4, 4, 4), 2, 4, 2, 1, 0, 1, 1),  # DCGAN: doubling the size
    ((1, 2, 3, 5), 3, 3, 2, 1, 1, 1, 1),
    ((2, 4, 3, 3), 6, (2, 3), (3, 2), (1, 0), (2, 1), 1, 2),
    ((1, 3, 5, 4), 2, 3, 1, 2, 0, 2, 1),
    ((3, 6, 2, 3), 3, 1, 1, 0, 0, 1, 3),
    ((1, 1, 7, 2), 1, 5, 3, 2, 2, (1, 2), 1),
    ((1, 2, 3, 3), 2, 4, 1, 0, 1, 2, 1),  # output_padding 1 with stride 1 (allowed by dilation 2)
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_conv_transpose2d(device, dtype, config):
    shape, c_out, k, s, p, op, d, groups = config
    kh, kw = (k, k) if isinstance(k, int) else k
    kw_args = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
    for with_bias in (True, False):
        rng = rng_for("convT", config, dtype, with_bias)
        x = rng.standard_normal(shape)
        w = rng.standard_normal((shape[1], c_out // groups, kh, kw)) * 0.5
        if with_bias:
            check_parity(
                lambda x, w, b: F.conv_transpose2d(x, w, b, **kw_args),
                lambda x, w, b: TF.conv_transpose2d(x, w, b, **kw_args),
                [x, w, rng.standard_normal(c_out)],
                dtype=dtype,
                device=device,
            )
        else:
            check_parity(
                lambda x, w: F.conv_transpose2d(x, w, **kw_args),
                lambda x, w: TF.conv_transpose2d(x, w, **kw_args),
                [x, w],
                dtype=dtype,
                device=device,
            )


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_layer_matches_pytorchs(device, dtype):
    rng = rng_for("convT-layer", dtype)
    mine = nn.ConvTranspose2d(4, 3, 4, 2, 1, bias=False)
    theirs = torch.nn.ConvTranspose2d(4, 3, 4, 2, 1, bias=False)
    check_parity(mine.to(device), theirs, [rng.standard_normal((2, 4, 5, 5))], dtype=dtype, device=device)
    mine = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    check_parity(mine.to(device), theirs, [rng.standard_normal((1, 4, 3, 4))], dtype=dtype, device=device)


def test_default_initialisation_has_pytorchs_bounds():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = out_channels/groups * kH * kW, as PyTorch."""
    layer = nn.ConvTranspose2d(64, 32, 4, groups=2)
    bound = 1 / np.sqrt(16 * 4 * 4)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert tuple(layer.weight.shape) == tuple(torch.nn.ConvTranspose2d(64, 32, 4, groups=2).weight.shape)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    assert repr(layer) == repr(torch.nn.ConvTranspose2d(64, 32, 4, groups=2))


def test_gradcheck(device):
    rng = rng_for("convT-gradcheck")
    gradcheck(
        lambda x, w, b: F.conv_transpose2d(
            x, w, b, stride=2, padding=1, output_padding=1, groups=2, dilation=1
        ),
        [rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(2)],
        device=device,
    )
    gradcheck(
        lambda x, w: F.conv_transpose2d(x, w, stride=1, padding=1, dilation=2),
        [rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 2, 2))],
        device=device,
    )


def test_it_is_the_adjoint_of_conv2d(device):
    """<conv2d(y, W), x> = <y, conv_transpose2d(x, W)> for every x and y: the defining identity."""
    rng = rng_for("convT-adjoint")
    y = mc.tensor(rng.standard_normal((2, 3, 9, 8)), device=device)
    w = mc.tensor(rng.standard_normal((4, 3, 3, 3)), device=device)
    x = mc.tensor(rng.standard_normal((2, 4, 5, 4)), device=device)  # conv2d(y)'s shape
    lhs = (F.conv2d(y, w, stride=2, padding=1) * x).sum().item()
    rhs = (y * F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=(0, 1))).sum().item()
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_errors(device):
    x = mc.zeros(1, 4, 3, 3, device=device)
    w = mc.zeros(4, 2, 3, 3, device=device)
    with pytest.raises(
        ValueError, match=r"expects 4 input channels, but the input of shape \(1, 3, 3, 3\) has 3"
    ):
        F.conv_transpose2d(mc.zeros(1, 3, 3, 3, device=device), w)
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be smaller than stride \(2, 2\)"):
        F.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C_in, H, W\)"):
        F.conv_transpose2d(mc.zeros(4, 3, 3, device=device), w)
    with pytest.raises(ValueError, match=r"bias must have shape \(out_channels,\) = \(2,\)"):
        F.conv_transpose2d(x, w, mc.zeros(4, device=device))
    with pytest.raises(ValueError, match="the output would be"):
        F.conv_transpose2d(
            mc.zeros(1, 4, 1, 1, device=device), mc.zeros(4, 2, 1, 1, device=device), padding=1
        )
    with pytest.raises(ValueError, match="ConvTranspose2d: output_padding"):
        nn.ConvTranspose2d(4, 2, 3, stride=1, output_padding=1)
