"""The Winograd path of the conv2d twin (minicnn/kernels/winograd.py) against the textbook conv2d
(minicnn/ops/conv.py), for every algorithm the chooser can pick: F(2x2,3x3) and F(4x4,3x3).

Winograd sums in another order than im2col and multiplies by the transforms' constants, so the
results agree to rounding, not bit for bit. Tolerances (rtol, with atol = rtol * max|textbook|):
float64 1e-12, tighter than the suite's 1e-10 (measured: at most 1e-14 here); float32 1e-4, the
suite's parity tolerance (measured errors against float64, docs/kernels.md: F(2x2) up to 9e-7, F(4x4)
up to 1e-5 at the models' shapes: F(4x4)'s transforms multiply by up to 8 and divide by 24, which
amplifies rounding; docs/backprop/winograd.md, section 6).
"""

from __future__ import annotations

import numpy as np
import pytest

import minicnn as mc
from minicnn import kernels
from minicnn.kernels import conv as kconv
from minicnn.kernels import winograd
from minicnn.nn import functional as F
from minicnn.ops import conv as textbook
from minicnn.ops._geometry import ConvGeometry
from parity_tests.harness import assert_close, rng_for

RTOL = {"float64": 1e-12, "float32": 1e-4}
TILES = [2, 4]


@pytest.fixture(autouse=True)
def tier():
    """Overrides conftest's fixture: these tests call both tiers' classes directly."""
    yield "both"


def run_op(cls, x, w, b, gy, needs):
    op = cls()
    op.needs_input_grad = needs
    out = op.forward(x, w, b, 1, 1, 1, 1)
    return op, out, op.backward(gy)


def compare(xs, O, dtype, m, monkeypatch, bias=True, needs=(True, True, True), key=()):
    """Forces tile size m in the twin and compares output, dx, dW, db with the textbook's."""
    monkeypatch.setattr(winograd, "choose", lambda g, dt: m)
    rng = rng_for("winograd", xs, O, dtype, m, key)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal((O, xs[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype) if bias else None
    gy = rng.standard_normal((xs[0], O, xs[2], xs[3])).astype(dtype)
    needs = needs if bias else needs[:2] + (False,)
    k_op, k_out, k_grads = run_op(kconv.Conv2d, x, w, b, gy, needs)
    assert k_op.winograd == m  # the Winograd path ran
    t_op, t_out, t_grads = run_op(textbook.Conv2d, x, w, b, gy, needs)
    assert k_out.dtype == np.dtype(dtype) and k_out.shape == t_out.shape
    assert_close(k_out, t_out, RTOL[dtype], "output")
    for name, kg, tg in zip(("dx", "dW", "db"), k_grads, t_grads):
        if tg is None:
            assert kg is None, name
        else:
            assert kg.dtype == np.dtype(dtype) and kg.shape == tg.shape, name
            assert_close(kg, tg, RTOL[dtype], name)


GEOMETRIES = [
    (1, 3, 5, 5),  # batch of 1, 3 channels, odd size
    (2, 5, 7, 9),  # H != W, neither a multiple of the tile
    (3, 17, 6, 11),  # 17 channels: not a multiple of the vector width
    (2, 16, 8, 8),  # whole tiles for both sizes
    (1, 4, 1, 1),  # one pixel: one tile, almost all padding
    (2, 3, 2, 3),  # smaller than a 4x4 output tile
    (1, 33, 13, 4),
    (5, 6, 4, 14),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("xs", GEOMETRIES, ids=str)
def test_winograd_equals_textbook(xs, m, dtype, monkeypatch):
    compare(xs, O=3 + xs[1] % 4, dtype=dtype, m=m, monkeypatch=monkeypatch)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize(
    "xs, O",
    [((3, 32, 14, 14), 16), ((2, 32, 16, 16), 64), ((2, 64, 8, 8), 128), ((2, 128, 5, 7), 12)],
    ids=str,
)
def test_winograd_equals_textbook_model_shapes(xs, O, m, dtype, monkeypatch):
    """The models' layers (MNIST conv2, CIFAR conv2 and conv3, smaller batches) and 128 channels."""
    compare(xs, O, dtype, m, monkeypatch)


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize(
    "needs, bias",
    [
        ((False, True, True), True),
        ((True, False, False), True),
        ((True, True, False), False),
        ((False, True, False), False),
    ],
)
def test_winograd_only_some_gradients(needs, bias, m, monkeypatch):
    """A first layer (no dx), no weight gradient, no bias."""
    compare((2, 5, 6, 7), 4, "float64", m, monkeypatch, bias=bias, needs=needs, key=needs)


@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("keep", [True, False])
def test_winograd_kept_or_rebuilt_input_transform(keep, m, monkeypatch):
    """The weight gradient from the forward's kept input transform, or from one rebuilt in backward."""
    monkeypatch.setattr(kconv, "KEEP_COLUMNS", keep)
    compare((2, 6, 9, 5), 3, "float32", m, monkeypatch, key=keep)


@pytest.mark.parametrize("m", TILES)
def test_winograd_through_autograd_noncontiguous(m, monkeypatch):
    """F.conv2d on both tiers with a non-contiguous input and a non-contiguous upstream gradient."""
    monkeypatch.setattr(winograd, "choose", lambda g, dt: m)
    rng = rng_for("winograd-autograd", m)
    x = np.asfortranarray(rng.standard_normal((3, 6, 7, 5)))
    w, b = rng.standard_normal((4, 6, 3, 3)), rng.standard_normal(4)
    u = rng.standard_normal((3, 4, 5, 7)).transpose(0, 1, 3, 2)
    results = []
    for on in (False, True):
        with kernels.use_kernels(on):
            ts = [mc.tensor(a, requires_grad=True) for a in (x, w, b)]
            out = F.conv2d(*ts, padding=1)
            out.backward(mc.tensor(u))
            results.append([out.numpy()] + [t.grad.numpy() for t in ts])
    for name, k, t in zip(("output", "dx", "dW", "db"), results[1], results[0]):
        assert_close(k, t, RTOL["float64"], name)


def test_transform_matrices_compute_the_1d_correlation():
    """y = A^T [(G g) * (B^T d)] is the correlation y[i] = sum_k d[i + k] g[k], for F(2,3) and F(4,3)."""
    rng = rng_for("winograd-matrices")
    for m in TILES:
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        y = winograd.AT[m] @ ((winograd.G[m] @ g) * (winograd.BT[m] @ d))
        np.testing.assert_allclose(y, [d[i : i + 3] @ g for i in range(m)], rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m", TILES)
def test_passes_equal_the_matrix_formulas(m, dtype):
    """The compiled passes against the formulas written with NumPy, tile by tile: V = B^T d B (input
    transform), dM = A dy A^T (upstream gradient), y = A^T M A + b (output transform, cropped),
    dx = sum of B dV B^T at the tiles' places (input gradient, overlapping tiles added)."""
    rng = rng_for("winograd-passes", m, dtype)
    N, C, H, W = 2, 3, 5, 7
    a, TH, TW = m + 2, -(-H // m), -(-W // m)
    Bt, B, At, A = (
        np.asarray(L, dtype=dtype)
        for L in (winograd.BT[m], winograd.BT[m].T, winograd.AT[m], winograd.AT[m].T)
    )
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    V = np.empty((a * a, C, N * TH * TW), dtype)
    assert winograd.tiles_to_transformed(x, Bt, m, 1, V) == 0
    xp = np.zeros((N, C, m * TH + 2, m * TW + 2), dtype)
    xp[:, :, 1 : H + 1, 1 : W + 1] = x
    dM = np.empty((a * a, C, N * TH * TW), dtype)
    winograd.tiles_to_transformed(x, A, m, 0, dM)  # x standing in for an upstream gradient
    gp = np.zeros((N, C, m * TH, m * TW), dtype)
    gp[:, :, :H, :W] = x
    bias = rng.standard_normal(C).astype(dtype)
    y = np.empty_like(x)
    winograd.transformed_to_tiles(V, At, m, 0, bias, y)
    dx = np.empty_like(x)
    winograd.transformed_to_tiles(V, B, m, 1, np.zeros(C, dtype), dx)
    y_ref, dx_ref = np.zeros((N, C, m * TH, m * TW)), np.zeros((N, C, m * TH + 2, m * TW + 2))
    for n in range(N):
        for th in range(TH):
            for tw in range(TW):
                t = (n * TH + th) * TW + tw
                for c in range(C):
                    d = xp[n, c, m * th : m * th + a, m * tw : m * tw + a].astype(float)
                    assert_close(V[:, c, t], (Bt @ d @ Bt.T).ravel(), RTOL[dtype], "V")
                    dy = gp[n, c, m * th : m * th + m, m * tw : m * tw + m].astype(float)
                    assert_close(dM[:, c, t], (A @ dy @ A.T).ravel(), RTOL[dtype], "dM")
                    S = V[:, c, t].reshape(a, a).astype(float)
                    y_ref[n, c, m * th : m * th + m, m * tw : m * tw + m] = At @ S @ At.T + bias[c]
                    dx_ref[n, c, m * th : m * th + a, m * tw : m * tw + a] += B @ S @ B.T
    assert_close(y, y_ref[:, :, :H, :W], RTOL[dtype], "y")
    assert_close(dx, dx_ref[:, :, 1 : H + 1, 1 : W + 1], RTOL[dtype], "dx")


def test_filter_transform_adjoint():
    """<filter_transform(w), dU> = <w, filter_transform_adjoint(dU)> for random w and dU."""
    rng = rng_for("winograd-adjoint")
    for m in TILES:
        w = rng.standard_normal((3, 2, 3, 3))
        dU = rng.standard_normal(((m + 2) ** 2, 3, 2))
        lhs = np.sum(winograd.filter_transform(w, m) * dU)
        rhs = np.sum(w * winograd.filter_transform_adjoint(dU, m))
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def geometry(xs, ws, dtype="float32", **kw):
    args = dict(stride=1, padding=1, dilation=1, groups=1) | kw
    return ConvGeometry(
        xs, ws, None, args["stride"], args["padding"], args["dilation"], args["groups"]
    ), np.dtype(dtype)


@pytest.mark.parametrize(
    "xs, ws, kw, dtype, expected",
    [
        ((64, 32, 14, 14), (64, 32, 3, 3), {}, "float32", 4),  # MNIST conv2
        ((128, 32, 16, 16), (64, 32, 3, 3), {}, "float32", 4),  # CIFAR conv2
        ((128, 64, 8, 8), (128, 64, 3, 3), {}, "float32", 4),  # CIFAR conv3
        ((128, 64, 16, 16), (64, 64, 3, 3), {}, "float64", 4),
        ((128, 16, 32, 32), (16, 16, 3, 3), {}, "float32", 4),  # 16 input channels: on the bar
        ((128, 15, 32, 32), (16, 15, 3, 3), {}, "float32", 0),  # 15: below it
        ((1, 16, 4, 4), (8, 16, 3, 3), {}, "float64", 4),  # 4x4 images: on the bar
        ((2, 16, 3, 9), (8, 16, 3, 3), {}, "float32", 0),  # 3 rows: below it
        ((64, 1, 28, 28), (32, 1, 3, 3), {}, "float32", 0),  # MNIST conv1: im2col
        ((128, 3, 32, 32), (32, 3, 3, 3), {}, "float32", 0),  # CIFAR conv1: im2col
        ((8, 128, 16, 16), (128, 128, 3, 3), {}, "float32", 4),  # a small batch
        ((1024, 128, 2, 2), (128, 128, 3, 3), {}, "float32", 0),  # 2x2 images
        ((64, 128, 16, 16), (128, 128, 3, 3), dict(padding="same"), "float32", 4),  # = padding 1
        ((64, 128, 16, 16), (128, 128, 3, 3), dict(stride=2), "float32", 0),
        ((64, 128, 16, 16), (128, 128, 3, 3), dict(padding=0), "float32", 0),
        ((64, 128, 16, 16), (128, 128, 3, 3), dict(padding=(1, 2)), "float32", 0),
        ((64, 128, 16, 16), (128, 128, 3, 3), dict(dilation=2, padding=2), "float32", 0),
        ((64, 128, 16, 16), (128, 64, 3, 3), dict(groups=2), "float32", 0),
        ((64, 128, 16, 16), (128, 128, 5, 5), dict(padding=2), "float32", 0),
        ((64, 128, 16, 16), (128, 128, 3, 3), {}, "float16", 0),
        ((0, 128, 16, 16), (128, 128, 3, 3), {}, "float32", 0),
    ],
)
def test_choose(xs, ws, kw, dtype, expected, monkeypatch):
    """The chooser's rule (docs/kernels.md) on the models' layers and around its edges."""
    g, dt = geometry(xs, ws, dtype, **kw)
    assert winograd.choose(g, dt) == expected
    if expected:
        monkeypatch.setattr(winograd, "TILE", 2)
        assert winograd.choose(g, dt) == 2
    monkeypatch.setattr(winograd, "ENABLED", False)
    assert winograd.choose(g, dt) == 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("m", TILES)
@pytest.mark.parametrize("where", ["x", "weight", "upstream"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_values_fall_back_to_im2col(where, value, m, monkeypatch):
    """inf/NaN in the input, the weight or the upstream gradient: the twin takes the im2col path,
    whose results equal the textbook's (and PyTorch's) bit for bit, NaN and inf in the same places."""
    monkeypatch.setattr(winograd, "choose", lambda g, dt: m)
    rng = rng_for("winograd-nonfinite", where, str(value), m)
    x, w, b = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    gy = rng.standard_normal((2, 4, 6, 7))
    {"x": x, "weight": w, "upstream": gy}[where][1, 2, 0, 2] = value
    k_op, k_out, k_grads = run_op(kconv.Conv2d, x, w, b, gy, (True, True, True))
    _, t_out, t_grads = run_op(textbook.Conv2d, x, w, b, gy, (True, True, True))
    assert (k_op.winograd == 0) == (where != "upstream")  # forward fell back, or only backward did
    if where == "upstream":  # the forward ran Winograd
        assert_close(k_out, t_out, RTOL["float64"], "output")
    else:
        np.testing.assert_array_equal(k_out, t_out)
    np.testing.assert_array_equal(k_grads[0], t_grads[0])
    np.testing.assert_array_equal(np.isnan(k_grads[1]), np.isnan(t_grads[1]))
    np.testing.assert_array_equal(np.isinf(k_grads[1]), np.isinf(t_grads[1]))


def test_empty_cache_frees_the_buffers(monkeypatch):
    """minicnn.empty_cache() frees the Winograd buffers; the next call allocates them again."""
    compare((2, 4, 6, 6), 3, "float64", 4, monkeypatch, key="cache")
    assert any(b is not None for b in winograd.buffers.slots)
    mc.empty_cache()
    assert all(b is None for b in winograd.buffers.slots)
    compare((2, 4, 6, 6), 3, "float64", 4, monkeypatch, key="cache")
