"""The GEMMs shared out over threads (minicnn/kernels/gemm.py) against ``np.matmul``, and the Linear
twin (minicnn/kernels/linear.py) against the textbook Linear.

Every share of ``matmul`` is the same BLAS call on the same operands as one ``np.matmul`` over
the whole batch makes, so it must equal ``np.matmul`` bit for bit, whatever the number of shares.
``matmul2d`` hands BLAS smaller products (a block of rows or columns), for which OpenBLAS may pick
other kernels (its small-matrix ones) that add in another order, and ``sum_of_products`` adds the
shares' sums in another order than the textbook's ``.sum(0)``: both to rounding (float64 1e-12,
float32 1e-5, tighter than the suite's parity tolerances). The thread counts are forced with
threadpoolctl (2 and 3 shares also on a 1-core machine), and each test checks the BLAS thread count
is the user's again afterwards.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from minicnn.kernels import gemm
from minicnn.kernels import linear as klinear
from minicnn.ops import linear as textbook
from parity_tests.harness import assert_close, rng_for

threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl finds the BLAS libraries")
if not threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers:
    pytest.skip("threadpoolctl finds no BLAS library in this NumPy", allow_module_level=True)

RTOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(autouse=True)
def tier():
    """Overrides conftest's fixture: these tests call the functions directly."""
    yield "both"


def blas_threads():
    controllers = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
    return [c.num_threads for c in controllers]


@pytest.fixture(params=[1, 2, 3], ids=lambda t: f"{t}threads")
def threads(request):
    """The user's BLAS thread count (and so the number of shares) for the test; checks that it is
    the same after the calls as before them."""
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        before = blas_threads()
        yield request.param
        assert blas_threads() == before, "the BLAS thread count was not restored"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((1, 16, 27), (7, 1, 27, 30)),  # conv forward: a broadcast weight (G, O, K), odd batch
        ((2, 5, 9), (1, 2, 9, 13)),  # a batch of 1, two groups
        ((36, 17, 33), (36, 33, 41)),  # Winograd: a stacked a (positions, O, C)
        ((3, 4, 4), (3, 4, 5)),  # fewer products than some thread counts make shares
    ],
)
def test_batched_matmul_equals_numpy_bit_for_bit(a_shape, b_shape, dtype, threads):
    rng = rng_for("gemm-batched", a_shape, b_shape, dtype)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    expected = np.matmul(a, b)
    out = np.full(expected.shape, np.nan, dtype)
    assert gemm.matmul(a, b, out) is out
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("m, k, n", [(64, 300, 10), (10, 64, 301), (1, 5, 1), (2, 3, 7), (33, 1, 33)])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul2d_equals_numpy(m, k, n, dtype, transposed, threads):
    rng = rng_for("gemm-2d", m, k, n, dtype, transposed)
    a = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if transposed else (k, n)).astype(dtype)
    a, b = (a.T, b.T) if transposed else (a, b)  # transposed views, as Linear passes them
    assert_close(gemm.matmul2d(a, b), np.matmul(a, b), RTOL[dtype], "matmul2d")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_sum_of_products_equals_textbook_sum(n, dtype, threads):
    rng = rng_for("gemm-sum", n, dtype)
    a = rng.standard_normal((n, 2, 18, 25)).astype(dtype)
    b = rng.standard_normal((n, 2, 25, 7)).astype(dtype)
    total = gemm.sum_of_products(a, b)
    assert total.shape == (2, 18, 7) and total.dtype == np.dtype(dtype)
    assert_close(total, np.matmul(a, b).sum(axis=0), RTOL[dtype], "sum of products")


def test_split_off_is_plain_numpy(monkeypatch, threads):
    monkeypatch.setattr(gemm, "SPLIT", False)
    rng = rng_for("gemm-off")
    a, b = rng.standard_normal((4, 6, 5)), rng.standard_normal((4, 5, 3))
    np.testing.assert_array_equal(gemm.matmul(a, b, np.empty((4, 6, 3))), np.matmul(a, b))


def test_calls_from_several_user_threads_at_once():
    """Two user threads multiplying at the same time: both results right, and the BLAS thread
    count restored once the last call ends."""
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        rng = rng_for("gemm-threads")
        pairs = [(rng.standard_normal((8, 40, 50)), rng.standard_normal((8, 50, 60))) for _ in range(2)]
        results, errors = [None, None], []

        def work(i):
            try:
                a, b = pairs[i]
                for _ in range(20):
                    results[i] = gemm.matmul(a, b, np.empty((8, 40, 60)))
            except Exception as e:  # reported below
                errors.append(e)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors, errors
        for (a, b), r in zip(pairs, results):
            np.testing.assert_array_equal(r, np.matmul(a, b))
        assert blas_threads() == before


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("x_shape, out_features", [((64, 3136), 10), ((3, 5, 7), 4), ((1, 2), 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_twin_equals_textbook(x_shape, out_features, bias, dtype, threads):
    """Output and gradients to rounding (the products by blocks, see above); db the same sum."""
    rng = rng_for("linear-twin", x_shape, out_features, bias, dtype)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((out_features, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(out_features).astype(dtype) if bias else None
    g = rng.standard_normal(x_shape[:-1] + (out_features,)).astype(dtype)
    results = []
    for cls in (klinear.Linear, textbook.Linear):
        op = cls()
        op.needs_input_grad = (True, True, bias)
        results.append((op.forward(x, w, b), op.backward(g)))
    (k_out, k_grads), (t_out, t_grads) = results
    assert_close(k_out, t_out, RTOL[dtype], "output")
    for name, kg, tg in zip(("dx", "dW", "db"), k_grads, t_grads):
        if tg is None:
            assert kg is None, name
        else:
            assert_close(kg, tg, RTOL[dtype], name)



@pytest.mark.parametrize("count", [0, 1, 2, 3, 7])
def test_loop_shares_cover_the_range_once_in_order(count):
    """``loop_shares`` (the Winograd passes' threads): contiguous shares that cover [0, count) once."""
    seen = []
    shares = gemm.loop_shares(count, lambda lo, hi: (lo, hi, seen.extend(range(lo, hi))))
    bounds = [(lo, hi) for lo, hi, _ in shares]
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert sorted(seen) == list(range(count))
