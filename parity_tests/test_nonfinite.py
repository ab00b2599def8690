"""NaN and ±inf inputs for every elementwise op and loss: minicnn's outputs and gradients against
PyTorch's, where PyTorch has one answer, and against minicnn's written rule where it has not.

PyTorch's result at a non-finite input can depend on its SIMD code path: which kernel
``ATEN_CPU_CAPABILITY`` selects (default, avx2, avx512), and whether the element falls in a full vector
or in the scalar tail of a tensor whose length is not a multiple of the vector width. Such a result is
not a rule, and a test against it fails on some machine. Each case found is in ``RULES`` below, with
the value minicnn defines (stated in the op's docstring and in docs/check.md, "NaN and inf"); every
other element is compared with PyTorch. The inputs run through several lengths (1, 3, 8, 17, 67) and
positions, so both the vector and the scalar paths are exercised. CI runs these tests (marker
``nonfinite``) once more under every capability the machine supports: ``python -m parity_tests.capabilities``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import minicnn as mc
import minicnn.nn.functional as F
from minicnn import testing
from parity_tests.harness import DTYPES, RTOL
from parity_tests.test_activations import ELEMENTWISE

pytestmark = [pytest.mark.nonfinite, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
TF = torch.nn.functional
LENGTHS = (1, 3, 8, 17, 67)
SPECIALS = (math.nan, math.inf, -math.inf)

# (op, "out" | "grad", the special input) -> minicnn's value at that element, where PyTorch's depends on
# its code path. Found with every ATEN_CPU_CAPABILITY on PyTorch 2.14 (see docs/check.md):
#  - ELU's gradient at NaN: 1 in PyTorch's scalar tail, NaN in its vector body. minicnn: NaN, as
#    every other smooth activation gives (alpha * exp(NaN) is NaN; 'x > 0' is false for NaN).
#  - GELU(+inf) in float32: +inf in the scalar tail (and in float64), NaN in the float32 vector body
#    (its polynomial erf meets inf * 0). minicnn: +inf, the limit of x * Phi(x).
RULES = {
    ("elu", "grad", "nan"): math.nan,
    ("elu_alpha_0.7", "grad", "nan"): math.nan,
    ("gelu", "out", "inf"): math.inf,
}

UNARY = {
    **ELEMENTWISE,  # the activations, as test_activations.py compares them
    "exp": (lambda x: x.exp(), torch.exp),
    "log": (lambda x: x.log(), torch.log),
    "sqrt": (lambda x: x.sqrt(), torch.sqrt),
    "abs": (lambda x: x.abs(), torch.abs),
    "neg": (lambda x: -x, torch.neg),
    "square": (lambda x: x**2, lambda x: x**2),
    "pow_0.5": (lambda x: x**0.5, lambda x: x**0.5),
    "clamp": (lambda x: x.clamp(-1.0, 1.0), lambda x: x.clamp(-1.0, 1.0)),
    "clamp_min": (lambda x: x.clamp(min=0.0), lambda x: x.clamp(min=0.0)),
    "softmax": (lambda x: F.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda x: torch.log_softmax(x, -1)),
}


def _key(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _run_mc(fn, arrays, device, upstream):
    xs = [mc.tensor(a, device=device, requires_grad=True) for a in arrays]
    out = fn(*xs)
    out.backward(mc.tensor(upstream, device=device))
    return out.numpy(), [x.grad.numpy() for x in xs]


def _run_torch(fn, arrays, upstream):
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*xs)
    out.backward(torch.tensor(upstream))
    return out.detach().numpy(), [x.grad.numpy() for x in xs]


def _cases(dtype):
    for n in LENGTHS:
        for pos in sorted({0, n // 2, n - 1}):
            for special in SPECIALS:
                x = np.linspace(-2.0, 2.0, n).astype(dtype)
                x[pos] = special
                yield n, pos, special, x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_nonfinite(device, dtype, name):
    """Every length, position and special value: outputs and gradients equal PyTorch's, except at the
    elements RULES defines, which equal the rule."""
    ours, theirs = UNARY[name]
    for n, pos, special, x in _cases(dtype):
        upstream = np.arange(1.0, n + 1.0).astype(dtype)
        out, (grad,) = _run_mc(ours, [x], device, upstream)
        ref_out, (ref_grad,) = _run_torch(theirs, [x], upstream)
        where = f"{name}, {dtype}, length {n}, {special} at {pos}"
        for what, mine, ref in (("out", out, ref_out), ("grad", grad, ref_grad)):
            expected = _with_rule(ref, name, what, special, pos)
            testing.assert_close(mine, expected, RTOL[dtype], name=f"{where}: {what}")


def _with_rule(ref, name, what, special, pos):
    """PyTorch's array with minicnn's rule written in at ``pos`` where RULES defines one."""
    rule = RULES.get((name, what, _key(special)))
    if rule is None:
        return ref
    ref = ref.copy()
    ref[pos] = rule
    return ref


# Losses: (minicnn, PyTorch, which inputs get the special value). Inputs: x (B, n) and its target.
LOSSES = {
    "mse_loss": (F.mse_loss, TF.mse_loss),
    "bce_with_logits": (F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits),
    "mse_loss_none": (
        lambda x, t: F.mse_loss(x, t, reduction="none"),
        lambda x, t: TF.mse_loss(x, t, reduction="none"),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("which", ["input", "target"])
def test_regression_loss_nonfinite(device, dtype, name, which):
    """A special value in the input or in the target (both require a gradient)."""
    ours, theirs = LOSSES[name]
    for n, pos, special, x in _cases(dtype):
        t = np.linspace(1.0, -1.0, n).astype(dtype)
        if which == "target":
            x, t = np.linspace(-2.0, 2.0, n).astype(dtype), x
        upstream = np.ones((n,) if name.endswith("none") else (), dtype)
        out, grads = _run_mc(ours, [x, t], device, upstream)
        ref_out, ref_grads = _run_torch(theirs, [x, t], upstream)
        where = f"{name}, {dtype}, length {n}, {special} at {pos} of the {which}"
        testing.assert_close(out, ref_out, RTOL[dtype], name=f"{where}: out")
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            testing.assert_close(g, r, RTOL[dtype], name=f"{where}: grad of input {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("on_target", [True, False], ids=["at-target-class", "at-other-class"])
def test_cross_entropy_nonfinite_logits(device, dtype, label_smoothing, on_target):
    """A special logit in the target's class or in another, for every length and position; and
    nll_loss on the same (log-probability) values."""
    for n, pos, special, row in _cases(dtype):
        x = np.stack([row, np.linspace(1.0, -1.0, n).astype(dtype), row[::-1].copy()])
        target = np.array([pos if on_target else (pos + 1) % n, 0, n - 1 - pos])
        where = f"{dtype}, {n} classes, {special} at {pos}, label_smoothing {label_smoothing}"
        mc_target, torch_target = mc.tensor(target, device=device), torch.tensor(target)
        pairs = {
            "cross_entropy": (
                lambda a, t=mc_target: F.cross_entropy(a, t, label_smoothing=label_smoothing),
                lambda a, t=torch_target: TF.cross_entropy(a, t, label_smoothing=label_smoothing),
            ),
            "nll_loss": (
                lambda a, t=mc_target: F.nll_loss(a, t),
                lambda a, t=torch_target: TF.nll_loss(a, t),
            ),
        }
        for label, (ours, theirs) in pairs.items():
            out, (grad,) = _run_mc(ours, [x], device, np.array(1.0, dtype))
            ref_out, (ref_grad,) = _run_torch(theirs, [x], np.array(1.0, dtype))
            testing.assert_close(out, ref_out, RTOL[dtype], name=f"{label}, {where}: out")
            testing.assert_close(grad, ref_grad, RTOL[dtype], name=f"{label}, {where}: grad")
