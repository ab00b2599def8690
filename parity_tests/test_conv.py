"""conv2d vs PyTorch (output, grad input, grad weight, grad bias) over many random configurations,
vs a direct-loop oracle (parity_tests/reference.py), float64 finite differences, and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
from minicnn.nn import functional as F
from parity_tests import reference
from parity_tests.harness import DTYPES, assert_close, check_parity, gradcheck, rng_for

# PyTorch warns that its own 'same' padding with even kernels makes a padded copy: not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

SIZES = [1, 2, 3, 5, 7, 8, 11]  # includes 1 and primes


def random_config(seed):
    """A random valid conv2d configuration: (x shape, w shape, bias?, kwargs)."""
    rng = rng_for("conv2d-config", seed)
    kind = rng.choice(["plain", "plain", "grouped", "depthwise"])
    n = int(rng.choice([1, 2, 3]))
    if kind == "plain":
        groups, cin, cout = 1, int(rng.choice(SIZES[:5])), int(rng.choice(SIZES[:5]))
    elif kind == "grouped":
        groups = int(rng.choice([2, 3]))
        cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    else:  # depthwise: one filter (or a few) per input channel
        groups = cin = int(rng.choice([1, 2, 3, 5]))
        cout = cin * int(rng.integers(1, 3))
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad_kind = rng.choice(["int", "pair", "same", "valid"])
    stride = (1, 1) if pad_kind == "same" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    if pad_kind == "int":
        padding = int(rng.integers(0, 3))
        pads = (padding, padding)
    elif pad_kind == "pair":
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        pads = padding
    else:
        padding, pads = str(pad_kind), (0, 0)
    # input at least as large as the dilated kernel (minus padding), plus a random extra
    ekh, ekw = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    h = max(1, ekh - 2 * pads[0]) + int(rng.choice([0, 1, 2, 4, 6]))
    w = max(1, ekw - 2 * pads[1]) + int(rng.choice([0, 1, 3, 5]))
    kwargs = dict(stride=stride, padding=padding, dilation=dil, groups=groups)
    return (n, cin, h, w), (cout, cin // groups, kh, kw), bool(rng.integers(0, 2)), kwargs


def check_conv(inputs, kwargs, **options):
    """check_parity of conv2d(*inputs, **kwargs) against PyTorch's (options: dtype, device, grad)."""
    check_parity(lambda *a: F.conv2d(*a, **kwargs), lambda *a: TF.conv2d(*a, **kwargs), inputs, **options)


def _inputs(seed, xs, ws, bias):
    rng = rng_for("conv2d-inputs", seed)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    return arrays + ([rng.standard_normal(ws[0])] if bias else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(32))
def test_conv2d_random_configs_match_torch(seed, dtype, device):
    xs, ws, bias, kwargs = random_config(seed)
    inputs = _inputs(seed, xs, ws, bias)
    check_conv(inputs, kwargs, dtype=dtype, device=device)


@pytest.mark.parametrize(
    "xs, ws, kwargs",
    [
        ((2, 3, 9, 7), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0))),  # non-square everything
        ((2, 4, 6, 6), (4, 1, 3, 3), dict(padding=1, groups=4)),  # depthwise
        ((2, 3, 6, 5), (5, 3, 2, 2), dict(padding="same")),  # even kernel: extra pad bottom/right
        ((2, 3, 8, 8), (5, 3, 2, 3), dict(padding="same", dilation=(3, 2))),
        ((2, 3, 5, 4), (6, 3, 1, 1), {}),  # 1x1 (pointwise)
        ((2, 4, 5, 4), (6, 2, 1, 1), dict(groups=2)),  # 1x1, grouped
        ((2, 3, 7, 7), (4, 3, 1, 1), dict(stride=2)),  # 1x1 strided
        ((1, 1, 1, 1), (1, 1, 1, 1), {}),
        ((3, 2, 4, 4), (3, 2, 4, 4), dict(padding="valid")),  # kernel == input
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_edge_configs(xs, ws, kwargs, dtype, device):
    rng = rng_for("conv2d-edge", xs, ws, repr(kwargs))
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])]
    check_conv(inputs, kwargs, dtype=dtype, device=device)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=2, dilation=2), dict(groups=3)])
def test_conv2d_larger_batch(kwargs, device):
    """A batch of 7 samples (the random configurations use 1 to 3)."""
    xs, ws = (7, 3, 6, 5), (6, 1 if kwargs.get("groups") else 3, 3, 3)
    rng = rng_for("conv2d-chunks", repr(kwargs))
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(6)]
    check_conv(inputs, kwargs, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(8))
def test_conv2d_random_configs_many_channels(seed, dtype, device):
    """Random configurations with 32-70 input channels (long filters, as in the models' later layers)."""
    rng = rng_for("conv2d-many-channels", seed)
    groups = int(rng.choice([1, 1, 2]))
    cin = int(rng.choice([32, 64, 66, 70]))
    cout = groups * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    stride = (1, 1) if rng.random() < 0.6 else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (
        "same"
        if stride == (1, 1) and rng.random() < 0.3
        else (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
    )
    xs = (
        int(rng.integers(1, 4)),
        cin,
        dil[0] * (kh - 1) + int(rng.integers(1, 5)),
        dil[1] * (kw - 1) + int(rng.integers(1, 5)),
    )
    ws = (cout, cin // groups, kh, kw)
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(cout)]
    check_conv(
        inputs, dict(stride=stride, padding=padding, dilation=dil, groups=groups), dtype=dtype, device=device
    )


@pytest.mark.parametrize(
    "xs, ws, kwargs",
    [
        ((3, 4, 9, 7), (5, 4, 3, 3), dict(padding=1)),  # the models' case
        ((2, 3, 8, 8), (4, 3, 4, 2), dict(padding="same")),  # even kernel: extra row/col bottom/right
        ((2, 2, 9, 10), (3, 2, 3, 2), dict(padding=(2, 0), dilation=(2, 3))),
        ((2, 4, 6, 6), (4, 2, 3, 3), dict(padding=1, groups=2)),
        ((2, 3, 5, 4), (2, 3, 5, 4), {}),  # kernel = whole image: one output pixel
        ((1, 1, 1, 9), (1, 1, 1, 3), dict(padding=(0, 1))),
    ],
)
def test_conv2d_stride1_configs(xs, ws, kwargs, device):
    """Stride 1 with padding at the borders, dilation, groups, and a kernel as large as the image."""
    rng = rng_for("conv2d-rows", xs, ws, repr(kwargs))
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])]
    check_conv(inputs, kwargs, device=device)


@pytest.mark.parametrize(
    "xs, ws, kwargs, bias",
    [
        ((3, 64, 6, 5), (4, 64, 3, 3), dict(padding=1), True),  # the models' case
        ((2, 65, 7, 6), (3, 65, 2, 3), dict(stride=(2, 1), padding=(1, 0)), False),
        ((2, 64, 9, 8), (2, 64, 3, 2), dict(dilation=(2, 3), padding="same"), True),
        ((2, 70, 5, 5), (3, 70, 5, 5), dict(padding="valid"), True),  # one output pixel
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_64_and_more_channels(xs, ws, kwargs, bias, dtype, device):
    """64+ input channels, no groups: long filters with strides, dilation, 'same' and one output pixel."""
    rng = rng_for("conv2d-patches", xs, ws, repr(kwargs))
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws)] + (
        [rng.standard_normal(ws[0])] if bias else []
    )
    check_conv(inputs, kwargs, dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(16))
def test_conv2d_first_layer_random_configs(seed, dtype, device):
    """An input that needs no gradient (a first layer): only the weight and bias gradients are
    computed; random configurations, vs PyTorch."""
    xs, ws, bias, kwargs = random_config(1000 + seed)
    inputs = _inputs(1000 + seed, xs, ws, bias)
    check_conv(inputs, kwargs, dtype=dtype, device=device, grad=[False, True, True][: len(inputs)])


@pytest.mark.parametrize(
    "xs, ws", [((5, 1, 28, 28), (8, 1, 3, 3)), ((3, 3, 32, 32), (6, 3, 3, 3)), ((2, 3, 17, 15), (4, 3, 7, 7))]
)
def test_conv2d_first_layer_model_shapes(xs, ws, device):
    """The models' first layers (MNIST: 1 channel, CIFAR: 3; a 7x7 stem) in float32 with padding,
    input without gradient, vs PyTorch."""
    rng = rng_for("conv2d-first-layer", xs, ws)
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])]
    check_conv(inputs, dict(padding=ws[2] // 2), dtype="float32", device=device, grad=[False, True, True])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf, 0 * inf: expected here
@pytest.mark.parametrize("where", ["x_last_column", "x_first_column", "weight"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv2d_non_finite_values_spread_like_torch(where, value, padding, device):
    """inf/NaN reach exactly the outputs and gradients they reach in PyTorch (0 * inf = NaN: the
    zero padding meets an inf weight in the GEMMs, as in PyTorch's)."""
    rng = rng_for("conv2d-nonfinite", where, str(value), padding)
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
    if where == "x_last_column":
        x[1, 0, 2, -1] = value
    elif where == "x_first_column":
        x[0, 1, 3, 0] = value
    else:
        w[1, 0, 2, 2] = value
    check_conv([x, w], dict(padding=padding), device=device)


@pytest.mark.parametrize("grad", [[False, True, True], [True, False, False], [True, True, False]])
def test_conv2d_only_some_inputs_need_grad(grad, device):
    rng = rng_for("conv2d-partial", grad)
    inputs = [rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]
    check_conv(inputs, dict(padding=1), grad=grad, device=device)


def test_conv2d_noncontiguous_input(device):
    rng = rng_for("conv2d-noncontig")
    x = rng.standard_normal((5, 2, 3, 6)).transpose(1, 3, 0, 2)  # (2, 6, 5, 3) strided view
    inputs = [x, rng.standard_normal((4, 6, 2, 2))]
    check_conv(inputs, dict(stride=(2, 1)), device=device)


@pytest.mark.parametrize("seed", range(6))
def test_reference_oracle_matches_torch_and_minicnn(seed, device):
    """The direct-loop oracle agrees with PyTorch, and minicnn agrees with the oracle."""
    xs, ws, bias, kwargs = random_config(100 + seed)
    x, w, *b = _inputs(100 + seed, xs, ws, bias)
    b = b[0] if b else None
    expected = reference.conv2d(x, w, b, **kwargs)
    th = TF.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kwargs
    )
    assert_close(expected, th.numpy(), 1e-12, "oracle vs torch")
    mb = None if b is None else mc.tensor(b, device=device)
    mine = F.conv2d(mc.tensor(x, device=device), mc.tensor(w, device=device), mb, **kwargs)
    assert_close(mine.numpy(), expected, 1e-12, "minicnn vs oracle")


@pytest.mark.parametrize(
    "xs, ws, kwargs",
    [
        ((2, 2, 5, 4), (3, 2, 3, 2), dict(stride=(2, 1), padding=1)),
        ((1, 4, 5, 5), (4, 2, 2, 2), dict(groups=2, dilation=2, padding="same")),
    ],
)
def test_conv2d_finite_differences(xs, ws, kwargs, device):
    rng = rng_for("conv2d-fd", xs)
    inputs = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])]
    gradcheck(lambda *a: F.conv2d(*a, **kwargs), inputs, device=device)


def test_conv2d_first_layer_finite_differences(device):
    """The weight and bias gradients of a first layer (input without gradient), against central
    differences."""
    rng = rng_for("conv2d-fd-first-layer")
    inputs = [rng.standard_normal((5, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]
    gradcheck(lambda *a: F.conv2d(*a, padding=1), inputs, device=device, grad=[False, True, True])


def test_conv2d_float32_stays_float32(device):
    x = mc.randn(2, 3, 8, 8, device=device, requires_grad=True)
    w = mc.randn(4, 3, 3, 3, device=device, requires_grad=True)
    b = mc.randn(4, device=device, requires_grad=True)
    y = F.conv2d(x, w, b, padding=1)
    y.sum().backward()
    assert y.dtype == mc.float32 and x.grad.dtype == w.grad.dtype == b.grad.dtype == mc.float32


# ---------------------------------------------------------------------------- error messages
@pytest.mark.parametrize(
    "xs, ws, kwargs, error, pattern",
    [
        (
            (3, 8, 8),
            (4, 3, 3, 3),
            {},
            ValueError,
            r"expected input of shape \(N, C, H, W\).*got shape \(3, 8, 8\)",
        ),
        (
            (2, 3, 8, 8),
            (4, 3, 3),
            {},
            ValueError,
            r"weight of shape \(out_channels, in_channels/groups, KH, KW\)",
        ),
        ((2, 5, 8, 8), (4, 3, 3, 3), {}, ValueError, r"in_channels = 3 .* has C = 5"),
        (
            (2, 4, 8, 8),
            (4, 3, 3, 3),
            dict(groups=2),
            ValueError,
            r"expects in_channels = 3 x groups \(2\) = 6",
        ),
        ((2, 3, 8, 8), (4, 1, 3, 3), dict(groups=2), ValueError, r"divisible by groups"),
        ((2, 3, 4, 4), (4, 3, 7, 3), {}, ValueError, r"kernel \(7x3.*larger than the padded input \(4x4\)"),
        ((2, 3, 4, 4), (4, 3, 3, 3), dict(dilation=2), ValueError, r"effectively 5x5\) is larger"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=0), ValueError, r"stride must be positive"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=1.5), TypeError, r"stride must be an int or a pair"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=-1), ValueError, r"padding must be non-negative"),
        ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="full"), ValueError, r"'same' or 'valid'"),
        (
            (2, 3, 8, 8),
            (4, 3, 3, 3),
            dict(padding="same", stride=2),
            ValueError,
            r"'same' is not supported for strided",
        ),
    ],
)
def test_conv2d_errors(xs, ws, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        F.conv2d(mc.zeros(*xs), mc.zeros(*ws), **kwargs)


def test_conv2d_bias_and_dtype_errors():
    x, w = mc.zeros(2, 3, 8, 8), mc.zeros(4, 3, 3, 3)
    with pytest.raises(
        ValueError, match=r"conv2d: bias must have shape \(out_channels,\) = \(4,\), got shape \(3,\)"
    ):
        F.conv2d(x, w, mc.zeros(3))
    with pytest.raises(TypeError, match=r"conv2d: input \(float64\), weight \(float32\).*same dtype"):
        F.conv2d(mc.zeros(2, 3, 8, 8, dtype=mc.float64), w)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(stride=(1, 1.0)), r"conv2d: stride must be an int or a pair of ints"),
        (dict(stride="2"), r"conv2d: stride must be an int or a pair of ints"),
        (dict(stride=True), r"conv2d: stride must be an int or a pair of ints"),
        (dict(padding=0.5), r"conv2d: padding must be an int or a pair of ints"),
        (dict(dilation=(2, 2, 2)), r"conv2d: dilation must be an int or a pair of ints"),
    ],
)
def test_conv2d_non_integer_arguments_raise_type_error(kwargs, pattern):
    """As in PyTorch: a float, a string or a bool is refused, never truncated to an int."""
    with pytest.raises(TypeError, match=pattern):
        F.conv2d(mc.zeros(2, 3, 8, 8), mc.zeros(4, 3, 3, 3), **kwargs)


def test_conv2d_empty_kernel_is_refused():
    with pytest.raises(ValueError, match=r"conv2d: kernel size should be greater than zero.*0x0 kernel"):
        F.conv2d(mc.zeros(2, 1, 5, 5), mc.zeros(4, 1, 0, 0))


@pytest.mark.parametrize(
    "args, kwargs, error, pattern",
    [
        ((1, 4, 2.5), {}, TypeError, r"Conv2d: kernel_size must be an int or a pair of ints.*got 2\.5"),
        ((1, 4, "3"), {}, TypeError, r"Conv2d: kernel_size must be an int or a pair of ints.*got '3'"),
        ((1, 4, (3, 2.0)), {}, TypeError, r"Conv2d: kernel_size must be an int or a pair"),
        ((1, 4, 3), dict(stride=1.5), TypeError, r"Conv2d: stride must be an int or a pair of ints"),
        ((1, 4, 3), dict(padding=1.5), TypeError, r"Conv2d: padding must be an int or a pair of ints"),
        ((1, 4, 3), dict(dilation="2"), TypeError, r"Conv2d: dilation must be an int or a pair of ints"),
        ((1.0, 4, 3), {}, TypeError, r"Conv2d: in_channels must be an int, got 1\.0"),
        ((1, "4", 3), {}, TypeError, r"Conv2d: out_channels must be an int"),
        ((1, 4, 0), {}, ValueError, r"Conv2d: kernel_size must be positive, got 0"),
        ((1, 4, (3, 0)), {}, ValueError, r"Conv2d: kernel_size must be positive"),
        ((1, 4, 3), dict(stride=0), ValueError, r"Conv2d: stride must be positive, got 0"),
        ((1, 4, 3), dict(padding=-1), ValueError, r"Conv2d: padding must be non-negative"),
        ((1, 4, 3), dict(dilation=(1, 0)), ValueError, r"Conv2d: dilation must be positive"),
        ((-1, 4, 3), {}, ValueError, r"Conv2d: in_channels must be non-negative"),
        ((4, 4, 3), dict(groups=0), ValueError, r"Conv2d: groups must be a positive integer"),
    ],
)
def test_conv2d_layer_arguments_are_checked_at_construction(args, kwargs, error, pattern):
    """Bad layer arguments fail when the layer is built, with the same checks as F.conv2d (a
    kernel of size 0 would otherwise give a layer whose output is only the bias)."""
    with pytest.raises(error, match=pattern):
        mc.nn.Conv2d(*args, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("grad", [[True, True, True], [False, True, True]])
def test_conv2d_empty_batch(grad, dtype, device):
    """N = 0: an empty output, an empty input gradient, and zero weight and bias gradients, as in PyTorch."""
    rng = rng_for("conv2d-empty")
    inputs = [np.zeros((0, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]
    check_conv(inputs, dict(padding=1, stride=(2, 1)), dtype=dtype, device=device, grad=grad)
