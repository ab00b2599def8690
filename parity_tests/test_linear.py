"""F.linear vs torch.nn.functional.linear: outputs and the gradients of input, weight and bias."""

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for

# (input shape, out_features): (N, in), (N, *, in), a single 1-D sample, sizes 1 and primes
CASES = [((4, 3), 5), ((1, 1), 1), ((7, 13), 11), ((2, 3, 5), 4), ((2, 1, 3, 7), 2), ((6,), 3), ((0, 4), 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape,out_features", CASES, ids=str)
def test_linear_parity(device, dtype, bias, shape, out_features):
    rng = rng_for("linear", shape, out_features, bias, dtype)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((out_features, shape[-1]))
    b = rng.standard_normal(out_features)
    if bias:
        check_parity(F.linear, torch.nn.functional.linear, [x, w, b], dtype=dtype, device=device)
    else:
        check_parity(F.linear, torch.nn.functional.linear, [x, w], dtype=dtype, device=device)


def test_linear_only_weight_requires_grad(device):
    rng = rng_for("linear-frozen-input")
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    check_parity(F.linear, torch.nn.functional.linear, [x, w, b], device=device, grad=[False, True, False])
    check_parity(F.linear, torch.nn.functional.linear, [x, w, b], device=device, grad=[True, False, True])


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)])
def test_linear_gradcheck(device, shape):
    rng = rng_for("linear-gradcheck", shape)
    x, w, b = rng.standard_normal(shape), rng.standard_normal((5, 4)), rng.standard_normal(5)
    gradcheck(F.linear, [x, w, b], device=device)


def test_linear_errors(device):
    x = mc.zeros(8, 3, device=device)
    with pytest.raises(
        ValueError, match=r"linear: input of shape \(8, 3\) cannot be multiplied with weight of shape"
    ):
        F.linear(x, mc.zeros(5, 4, device=device))
    with pytest.raises(ValueError, match=r"in_features = weight.shape\[1\] = 4"):
        F.linear(x, mc.zeros(5, 4, device=device))
    with pytest.raises(
        ValueError, match=r"weight must have shape \(out_features, in_features\), got shape \(3,\)"
    ):
        F.linear(x, mc.zeros(3, device=device))
    with pytest.raises(ValueError, match=r"bias must have shape \(out_features,\) = \(5,\), got \(4,\)"):
        F.linear(x, mc.zeros(5, 3, device=device), mc.zeros(4, device=device))
    with pytest.raises(TypeError, match="weight has dtype float64 but the input has dtype float32"):
        F.linear(x, mc.zeros(5, 3, dtype=mc.float64, device=device))
    with pytest.raises(TypeError, match="input must be a minicnn Tensor, got ndarray"):
        F.linear(np.zeros((8, 3)), mc.zeros(5, 3, device=device))
