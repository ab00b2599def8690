"""The compiled kernels of batch norm and ReLU (minicnn/kernels/) against their textbook ops
(minicnn/ops/): bit for bit where both sum in the same order, to the parity tolerance where the
kernels' float64 sums differ from NumPy's; NaN, inf and -0.0; dtypes the kernels do not compile;
which tier runs. The comparisons with PyTorch are in test_batchnorm.py and test_activations.py,
which run on both tiers."""

import numpy as np
import pytest

import minicnn as mc
import minicnn.nn.functional as F
from minicnn import kernels
from minicnn.ops.activation import ReLU
from minicnn.ops.normalization import BatchNorm
from parity_tests.harness import DTYPES, RTOL, assert_close, rng_for

pytestmark = pytest.mark.skipif(not kernels.available(), reason=f"kernels: {kernels.unavailable_reason()}")

if kernels.available():
    from minicnn.kernels.activation import ReLU as ReLUKernels
    from minicnn.kernels.activation import relu_backward, relu_forward
    from minicnn.kernels.normalization import BatchNorm as BatchNormKernels
    from minicnn.kernels.normalization import (
        batch_norm_backward_dx,
        batch_norm_backward_sums,
        batch_norm_stats,
    )

BN_SHAPES = [(7, 5), (3, 4, 9), (4, 3, 5, 6), (2, 1, 1, 1), (16, 8, 7, 7)]


@pytest.fixture(autouse=True)
def tier():
    """Overrides conftest's fixture: these tests call both tiers' classes directly, so running them
    once per tier would only repeat them."""
    yield "both"


def _bn_inputs(shape, dtype, key):
    rng = rng_for("kernels-bn", shape, dtype, key)
    c = shape[1]
    x = (rng.standard_normal(shape) * 2.0 + 3.0).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)
    return x, g, w, b, rm, rv


def _run(cls, x, g, w, b, rm, rv, training, needs=(True, True, True)):
    """One forward and backward of op class ``cls`` on raw arrays; the running stats are copied."""
    fn = cls()
    fn.needs_input_grad = needs
    rm, rv = rm.copy(), rv.copy()
    out = fn.forward(x, w, b, rm, rv, training=training, momentum=0.3, eps=1e-3)
    return (out, *fn.backward(g), rm, rv)


def test_the_twins_are_registered():
    assert BatchNorm.compiled is BatchNormKernels and ReLU.compiled is ReLUKernels
    assert BatchNormKernels.__name__ == "BatchNorm" and ReLUKernels.__name__ == "ReLU"  # one name per op
    x = mc.randn(4, 3, 2, 2, requires_grad=True)
    for on, bn_cls, relu_cls in ((True, BatchNormKernels, ReLUKernels), (False, BatchNorm, ReLU)):
        with kernels.use_kernels(on):
            y = F.batch_norm(x, None, None, training=True)
            assert type(y.grad_fn) is bn_cls
            assert type(F.relu(y).grad_fn) is relu_cls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batch_norm_eval_equals_textbook_bitwise(dtype, shape):
    """Eval mode: the same constants (from the running stats) and the same element-wise order, so
    the output and dx are equal bit for bit; dγ and dβ are sums (another order)."""
    x, g, w, b, rm, rv = _bn_inputs(shape, dtype, "eval")
    ours = _run(BatchNormKernels, x, g, w, b, rm, rv, training=False)
    book = _run(BatchNorm, x, g, w, b, rm, rv, training=False)
    np.testing.assert_array_equal(ours[0], book[0])
    np.testing.assert_array_equal(ours[1], book[1])
    for name, a, e in zip(("dgamma", "dbeta"), ours[2:4], book[2:4]):
        assert_close(a, e, 1e-12 if dtype == "float64" else 1e-5, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_equals_textbook(dtype, shape, affine):
    """Training: the batch statistics are float64 sums in the kernels, so everything agrees to
    rounding (tighter than the PyTorch tolerance), running statistics included."""
    x, g, w, b, rm, rv = _bn_inputs(shape, dtype, "train")
    w, b = (w, b) if affine else (None, None)
    ours = _run(BatchNormKernels, x, g, w, b, rm, rv, training=True)
    book = _run(BatchNorm, x, g, w, b, rm, rv, training=True)
    for name, a, e in zip(("out", "dx", "dgamma", "dbeta", "running_mean", "running_var"), ours, book):
        assert a.dtype == e.dtype, name
        assert_close(a, e, RTOL[dtype] / 10, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_kernels_pass_by_pass(dtype):
    """Each kernel against the textbook line it equals. The dx kernel, given the textbook's own
    sums, equals the textbook's dx bit for bit."""
    shape = (6, 4, 5, 3)
    x, g, w, b, rm, rv = _bn_inputs(shape, dtype, "passes")
    x3, g3 = x.reshape(6, 4, 15), g.reshape(6, 4, 15)
    mean, var = batch_norm_stats(x3)
    assert mean.dtype == var.dtype == np.float64
    assert_close(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), 1e-13, "mean")
    assert_close(var, x.astype(np.float64).var(axis=(0, 2, 3)), 1e-12, "var")

    book = BatchNorm()
    book.needs_input_grad = (True, True, True)
    book.forward(x, w, b, rm.copy(), rv.copy(), training=True, eps=1e-3)
    dx, dgamma, dbeta = book.backward(g)
    mean = x.mean(axis=(0, 2, 3))  # the textbook's own mean and invstd, in x's dtype
    invstd = book.invstd
    sum_g, sum_g_xhat = batch_norm_backward_sums(g3, x3, mean, invstd)
    assert_close(sum_g, dbeta, RTOL[dtype] / 10, "sum_g")
    assert_close(sum_g_xhat, dgamma, RTOL[dtype] / 10, "sum_g_xhat")
    m = 6 * 15
    ours = batch_norm_backward_dx(g3, x3, mean, invstd, w * invstd / m, x.dtype.type(m), dbeta, dgamma)
    np.testing.assert_array_equal(ours.reshape(shape), dx)


@pytest.mark.nonfinite
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in the textbook
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nan_and_inf_stay_in_their_channel(training):
    """A NaN or inf poisons its own channel's statistics (training) or values, as in the textbook
    and PyTorch; the other channels are untouched."""
    x, g, w, b, rm, rv = _bn_inputs((4, 3, 5, 5), "float32", "nan")
    x[1, 0, 2, 2] = np.nan
    x[2, 2, 0, 1] = np.inf
    ours = _run(BatchNormKernels, x, g, w, b, rm, rv, training=training)
    book = _run(BatchNorm, x, g, w, b, rm, rv, training=training)

    def channel_1(a):
        return a[1] if a.ndim == 1 else a[:, 1]

    for a, e in zip(ours, book):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
        assert_close(channel_1(a), channel_1(e), 1e-5)
    if training:
        assert np.isnan(ours[0][:, 0]).all() and np.isnan(ours[0][:, 2]).all()


def test_batch_norm_noncontiguous_and_empty_inputs():
    x, g, w, b, rm, rv = _bn_inputs((5, 3, 4, 6), "float64", "layout")
    xt = np.swapaxes(x, 2, 3)  # a strided view
    ours = _run(BatchNormKernels, xt, np.swapaxes(g, 2, 3), w, b, rm, rv, training=True)
    book = _run(BatchNorm, xt, np.swapaxes(g, 2, 3), w, b, rm, rv, training=True)
    for a, e in zip(ours, book):
        assert_close(a, e, 1e-12)
    empty = np.zeros((0, 3, 4, 6))
    ours = _run(BatchNormKernels, empty, empty, w, b, rm, rv, training=False)
    assert ours[0].shape == ours[1].shape == (0, 3, 4, 6)
    np.testing.assert_array_equal(ours[2], np.zeros(3))


@pytest.mark.parametrize("dtype", ["float16"])
def test_dtypes_without_kernels_run_the_textbook(dtype):
    x, g, w, b, rm, rv = _bn_inputs((4, 3, 2, 2), dtype, "f16")
    ours = _run(BatchNormKernels, x, g, w, b, rm, rv, training=True)
    book = _run(BatchNorm, x, g, w, b, rm, rv, training=True)
    for a, e in zip(ours, book):
        np.testing.assert_array_equal(a, e)
    relu = ReLUKernels()
    np.testing.assert_array_equal(relu.forward(x), np.maximum(x, 0))
    assert relu.backward(g).dtype == np.float16


def _special_values(dtype, size):
    rng = rng_for("kernels-relu", dtype, size)
    x = rng.standard_normal(size).astype(dtype)
    specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-30], dtype=dtype)
    x[: len(specials)] = specials
    return x


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (4, 3, 6, 5), (0, 3)], ids=str)
def test_relu_equals_textbook_bitwise(dtype, shape):
    """Forward and backward equal the textbook bit for bit, with ±0, NaN, ±inf inputs and inf/NaN
    upstream gradients: 0 where x <= 0 whatever g is; g where x is NaN."""
    size = int(np.prod(shape))
    x = _special_values(dtype, max(size, 7))[:size].reshape(shape)
    g = rng_for("kernels-relu-g", dtype, shape).standard_normal(size).astype(dtype)
    g[::3], g[1::4], g[2::5] = np.inf, np.nan, -np.inf
    g = g.reshape(shape)
    ours, book = ReLUKernels(), ReLU()
    out, out_book = ours.forward(x), book.forward(x)
    assert out.shape == shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, out_book)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(out_book))  # -0.0 -> 0.0 in both
    np.testing.assert_array_equal(ours.backward(g), book.backward(g))


def test_relu_kernels_on_flat_arrays():
    x = np.array([-1.0, 0.0, -0.0, 2.0, np.nan, np.inf, -np.inf])
    out = relu_forward(x)
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 2.0, np.nan, np.inf, 0.0])
    g = np.array([np.inf, np.nan, 5.0, np.nan, 3.0, -np.inf, np.nan])
    np.testing.assert_array_equal(relu_backward(g, out), [0.0, 0.0, 0.0, np.nan, 3.0, -np.inf, 0.0])


def test_relu_noncontiguous_input():
    x = rng_for("relu-strided").standard_normal((6, 8)).astype(np.float32)[:, ::2]
    g = rng_for("relu-strided-g").standard_normal((8, 6)).astype(np.float32).T[:, ::2]
    ours, book = ReLUKernels(), ReLU()
    np.testing.assert_array_equal(ours.forward(x), book.forward(x))
    np.testing.assert_array_equal(ours.backward(g), book.backward(g))
