"""The compiled twins of conv2d and pooling (minicnn/kernels/) against their textbook ops (minicnn/ops/),
directly, on sampled configurations, in float64 and float32.

Where both tiers add the same numbers in the same order the results must be equal bit for bit:
conv2d's output and input gradient (same im2col values, same BLAS calls, col2im adds each pixel's
gradients offset by offset in both), max pooling's output, indices and (non-overlapping windows)
gradient, average pooling's output and (non-overlapping) gradient. Elsewhere the order differs and
the parity tolerance applies: conv2d's weight gradient (summed sample by sample in the kernels,
over a batched product in the textbook) and bias gradient, and the pooling gradients of a pixel
that three or more overlapping windows route to (window by window vs offset by offset).
"""

from __future__ import annotations

import numpy as np
import pytest

import minicnn as mc
from minicnn import kernels
from minicnn.kernels import winograd
from minicnn.nn import functional as F
from parity_tests.harness import DTYPES, RTOL, assert_close, rng_for

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in sums with -inf/NaN inputs


@pytest.fixture(autouse=True)
def tier():
    """Overrides conftest's fixture: these tests switch the tiers themselves, so running them once
    per tier would only repeat them."""
    yield "both"


def run_both(fn, arrays, grad, upstream_seed):
    """fn(*tensors) on each tier: (output arrays, gradient arrays, grad_fn class) per tier."""
    results = {}
    for on in (False, True):
        with kernels.use_kernels(on):
            ts = [mc.tensor(a, requires_grad=r) for a, r in zip(arrays, grad)]
            outs = fn(*ts)
            outs = outs if isinstance(outs, tuple) else (outs,)
            u = rng_for("upstream", upstream_seed).standard_normal(outs[0].shape).astype(arrays[0].dtype)
            outs[0].backward(mc.tensor(u))
            results[on] = (
                [o.numpy() for o in outs],
                [t.grad.numpy() if t.grad is not None else None for t in ts],
                type(outs[0].grad_fn),
            )
    return results[False], results[True]


def assert_twin_ran(textbook_cls, kernel_cls):
    assert kernel_cls is not textbook_cls and issubclass(kernel_cls, textbook_cls), (textbook_cls, kernel_cls)


def assert_same(a, b, name, bitwise, dtype):
    if bitwise:
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: not bit for bit")
    else:
        assert_close(a, b, RTOL[dtype], name)


# ---------------------------------------------------------------------------- conv2d
def conv_config(seed):
    rng = rng_for("kernels-conv-config", seed)
    groups = int(rng.choice([1, 1, 1, 2, 3]))
    cin = groups * int(rng.integers(1, 5))
    cout = groups * int(rng.integers(1, 4))
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    dil = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = rng.choice(["same", "valid", "int", "pair"])
    stride = (1, 1) if padding == "same" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    pads = (0, 0)
    if padding == "int":
        padding = int(rng.integers(0, 4))
        pads = (padding, padding)
    elif padding == "pair":
        padding = pads = (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    else:
        padding = str(padding)
    h = max(1, dil[0] * (kh - 1) + 1 - 2 * pads[0]) + int(rng.integers(0, 9))
    w = max(1, dil[1] * (kw - 1) + 1 - 2 * pads[1]) + int(rng.integers(0, 9))
    n = int(rng.choice([0, 1, 2, 5]))
    kwargs = dict(stride=stride, padding=padding, dilation=dil, groups=groups)
    return (n, cin, h, w), (cout, cin // groups, kh, kw), bool(rng.integers(0, 2)), kwargs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(40))
def test_conv2d_kernels_equal_textbook(seed, dtype):
    xs, ws, bias, kwargs = conv_config(seed)
    rng = rng_for("kernels-conv-inputs", seed)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)] + [rng.standard_normal(ws[0])] * bias
    arrays = [a.astype(dtype) for a in arrays]
    if seed % 4 == 3:  # non-contiguous input
        arrays[0] = np.asfortranarray(arrays[0])
    grad = [seed % 5 != 0] + [True] * (len(arrays) - 1)  # some first layers: no input gradient
    (t_out, t_grads, t_cls), (k_out, k_grads, k_cls) = run_both(
        lambda *a: F.conv2d(*a, **kwargs), arrays, grad, ("conv", seed)
    )
    assert_twin_ran(t_cls, k_cls)
    assert_same(k_out[0], t_out[0], "output", True, dtype)
    for name, kg, tg, bitwise in zip(("dx", "dW", "db"), k_grads, t_grads, (True, False, False)):
        if tg is None:
            assert kg is None, name
        else:
            assert_same(kg, tg, name, bitwise, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "xs, ws, kwargs",
    [
        ((4, 1, 28, 28), (8, 1, 3, 3), dict(padding=1)),  # MNIST conv1
        ((3, 32, 14, 14), (16, 32, 3, 3), dict(padding=1)),  # MNIST conv2
        ((2, 16, 16, 16), (32, 16, 3, 3), dict(stride=2, padding=1)),  # a ResNet downsampling conv
        ((2, 16, 16, 16), (32, 16, 1, 1), dict(stride=2)),  # its 1x1 shortcut
        ((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=8)),  # depthwise
    ],
)
def test_conv2d_kernels_equal_textbook_model_shapes(xs, ws, kwargs, dtype, monkeypatch):
    # The im2col twin, bit for bit; Winograd (chosen for some of these shapes): test_kernels_winograd.py
    monkeypatch.setattr(winograd, "ENABLED", False)
    rng = rng_for("kernels-conv-models", xs, ws)
    arrays = [rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype),
              rng.standard_normal(ws[0]).astype(dtype)]  # fmt: skip
    (t_out, t_grads, t_cls), (k_out, k_grads, k_cls) = run_both(
        lambda *a: F.conv2d(*a, **kwargs), arrays, [True, True, True], ("conv-models", xs)
    )
    assert_twin_ran(t_cls, k_cls)
    assert_same(k_out[0], t_out[0], "output", True, dtype)
    assert_same(k_grads[0], t_grads[0], "dx", True, dtype)
    assert_same(k_grads[1], t_grads[1], "dW", False, dtype)
    assert_same(k_grads[2], t_grads[2], "db", False, dtype)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where", ["x", "weight"])
def test_conv2d_kernels_equal_textbook_non_finite(value, where):
    rng = rng_for("kernels-conv-nonfinite", str(value), where)
    x, w = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3))
    (x if where == "x" else w)[1, 2, 0, 2] = value
    (t_out, t_grads, _), (k_out, k_grads, _) = run_both(
        lambda *a: F.conv2d(*a, padding=1), [x, w], [True, True], ("conv-nonfinite", where)
    )
    np.testing.assert_array_equal(k_out[0], t_out[0])
    np.testing.assert_array_equal(k_grads[0], t_grads[0])
    np.testing.assert_array_equal(np.isnan(k_grads[1]), np.isnan(t_grads[1]))
    np.testing.assert_array_equal(np.isinf(k_grads[1]), np.isinf(t_grads[1]))


def test_conv2d_kernels_reuse_their_column_buffer_safely():
    """The columns buffer is reused from call to call: outputs and gradients never live in it."""
    from minicnn.kernels import conv as kconv

    rng = rng_for("kernels-conv-buffer")
    x = mc.tensor(rng.standard_normal((3, 4, 8, 8)).astype(np.float32), requires_grad=True)
    w = mc.tensor(rng.standard_normal((5, 4, 3, 3)).astype(np.float32), requires_grad=True)
    y1 = F.conv2d(x, w, padding=1)
    first = y1.numpy().copy()
    y2 = F.conv2d(x * 2, w, padding=1)  # reuses the buffer
    (y1.sum() + y2.sum()).backward()
    np.testing.assert_array_equal(y1.numpy(), first)
    buf = kconv.columns.buffer
    for a in (y1.array, y2.array, x.grad.array, w.grad.array):
        assert not np.shares_memory(a, buf)


# ---------------------------------------------------------------------------- pooling
def pool_config(seed, dilation=True):
    rng = rng_for("kernels-pool-config", seed)
    kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride = None if rng.random() < 0.3 else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    padding = (int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1)))
    dil = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if dilation else (1, 1)
    eh, ew = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    h = max(dil[0], eh - 2 * padding[0]) + int(rng.integers(0, 9))
    w = max(dil[1], ew - 2 * padding[1]) + int(rng.integers(0, 9))
    shape = (int(rng.choice([0, 1, 2, 3])), int(rng.choice([1, 2, 5])), h, w)
    kwargs = dict(kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=bool(rng.integers(0, 2)))
    if dilation:
        kwargs["dilation"] = dil
    sh, sw = (kh, kw) if stride is None else stride
    overlapping = sh < eh or sw < ew
    return shape, kwargs, overlapping


def pool_input(seed, shape, dtype):
    """Ties (small integers), NaN and -inf (whole -inf regions too), in some samples."""
    rng = rng_for("kernels-pool-x", seed)
    kind = seed % 4
    if kind == 0:
        x = rng.standard_normal(shape)
    elif kind == 1:
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
    else:
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.15] = -np.inf
        if kind == 3 and shape[0] > 0:
            x[0, :, : shape[2] // 2 + 1, : shape[3] // 2 + 1] = -np.inf
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(48))
def test_max_pool2d_kernels_equal_textbook(seed, dtype):
    shape, kwargs, overlapping = pool_config(seed)
    x = pool_input(seed, shape, dtype)
    (t_out, t_grads, t_cls), (k_out, k_grads, k_cls) = run_both(
        lambda a: F.max_pool2d(a, return_indices=True, **kwargs), [x], [True], ("max", seed)
    )
    assert_twin_ran(t_cls, k_cls)
    assert_same(k_out[0], t_out[0], "output", True, dtype)
    np.testing.assert_array_equal(k_out[1], t_out[1], err_msg="indices")
    assert k_out[1].dtype == np.int64
    assert_same(k_grads[0], t_grads[0], "dx", not overlapping, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(24))
def test_max_pool2d_2x2_kernel_equals_textbook(seed, dtype):
    """The 2x2 / stride 2 kernel (kernels.pooling.max_pool2d_2x2_forward_loops), which the twin takes
    for that geometry when every window is inside the input: ties, NaN, -inf, odd sizes (a last row
    or column no window reads), ceil_mode (odd sizes: the general kernel). Bit for bit."""
    from minicnn.kernels import pooling as kpool
    from minicnn.ops._geometry import PoolGeometry

    rng = rng_for("kernels-pool-2x2", seed)
    shape = tuple(int(v) for v in rng.integers((1, 1, 2, 2), (4, 4, 10, 10)))
    x = pool_input(seed, shape, dtype)
    ceil_mode = bool(seed % 3 == 0)
    g = PoolGeometry("max_pool2d", shape, 2, None, 0, 1, ceil_mode)
    assert kpool.is_2x2(g) == (not ceil_mode or (shape[2] % 2 == 0 and shape[3] % 2 == 0))
    (t_out, t_grads, _), (k_out, k_grads, _) = run_both(
        lambda a: F.max_pool2d(a, 2, ceil_mode=ceil_mode, return_indices=True), [x], [True], ("2x2", seed)
    )
    for a, b in zip(k_out + k_grads, t_out + t_grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.nonfinite
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(24))
def test_max_pool2d_kernels_equal_textbook_inf_nan_gradients(seed, dtype):
    """An inf/NaN upstream gradient reaches only each window's arg-max, in both tiers."""
    shape, kwargs, _ = pool_config(100 + seed)
    x = pool_input(seed, shape, dtype)
    results = []
    for on in (False, True):
        with kernels.use_kernels(on):
            t = mc.tensor(x, requires_grad=True)
            out = F.max_pool2d(t, **kwargs)
            u = rng_for("kernels-pool-u", seed).standard_normal(out.shape).astype(dtype)
            u.reshape(-1)[::3] = np.inf
            u.reshape(-1)[1::4] = np.nan
            out.backward(mc.tensor(u))
            results.append(t.grad.numpy())
    np.testing.assert_array_equal(np.isnan(results[1]), np.isnan(results[0]))
    np.testing.assert_array_equal(np.isinf(results[1]), np.isinf(results[0]))
    finite = np.isfinite(results[0])
    assert_close(results[1][finite], results[0][finite], RTOL[dtype], "finite part of dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(32))
def test_avg_pool2d_kernels_equal_textbook(seed, dtype):
    shape, kwargs, overlapping = pool_config(200 + seed, dilation=False)
    rng = rng_for("kernels-avg", seed)
    kwargs["count_include_pad"] = bool(rng.integers(0, 2))
    kwargs["divisor_override"] = None if rng.random() < 0.7 else int(rng.integers(1, 7))
    x = rng.standard_normal(shape).astype(dtype)
    (t_out, t_grads, t_cls), (k_out, k_grads, k_cls) = run_both(
        lambda a: F.avg_pool2d(a, **kwargs), [x], [True], ("avg", seed)
    )
    assert_twin_ran(t_cls, k_cls)
    assert_same(k_out[0], t_out[0], "output", True, dtype)
    assert_same(k_grads[0], t_grads[0], "dx", not overlapping, dtype)


@pytest.mark.parametrize("shape", [(64, 32, 28, 28), (16, 64, 14, 14), (8, 128, 8, 8)])
def test_max_pool2d_kernels_equal_textbook_model_shapes(shape):
    """The models' 2x2 pooling after ReLU (many all-zero windows): equal bit for bit, float32."""
    x = np.maximum(rng_for("kernels-pool-models", shape).standard_normal(shape) - 0.5, 0).astype(np.float32)
    (t_out, t_grads, _), (k_out, k_grads, _) = run_both(
        lambda a: F.max_pool2d(a, 2, return_indices=True), [x], [True], ("max-models", shape)
    )
    for a, b in zip(k_out + k_grads, t_out + t_grads):
        np.testing.assert_array_equal(a, b)


def test_float16_runs_the_textbook_code_in_the_kernels_tier():
    """The loops are compiled for float32 and float64; a float16 op in the kernels tier takes the
    textbook's code (its twin calls super()) and gives the textbook's results."""
    rng = rng_for("kernels-float16")
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float16)
    results = []
    for on in (False, True):
        with kernels.use_kernels(on):
            tx, tw = mc.tensor(x, requires_grad=True), mc.tensor(w, requires_grad=True)
            y = F.conv2d(tx, tw, padding=1)
            z = F.max_pool2d(y, 2) + F.avg_pool2d(y, 2)
            z.sum().backward()
            results.append([z.numpy(), tx.grad.numpy(), tw.grad.numpy()])
    for a, b in zip(*results):
        assert a.dtype == np.float16
        np.testing.assert_array_equal(a, b)
