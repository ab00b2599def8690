"""Parity of every basic op (minicnn.ops.basic) with PyTorch, plus float64 finite-difference gradchecks.

Each op is checked on the ``device`` fixture in float64 and float32: outputs and every input
gradient against PyTorch (``check_parity``), then its backward against central differences
(``gradcheck``, no PyTorch). Shapes include broadcasting, 0-d tensors, size-1 and prime sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minicnn as mc
from parity_tests.harness import DTYPES, check_parity, gradcheck, rng_for


def _normal(rng, shape):
    return np.asarray(rng.standard_normal(shape))  # shape () gives a 0-d array, not a NumPy scalar


def _positive(rng, shape):
    return np.asarray(rng.uniform(0.5, 2.0, shape))


def _away_from_zero(rng, shape):
    """Values in +-[0.5, 2]: safe divisors, and |x| is differentiable there."""
    return np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape))


# ====================================================================== elementwise binary ops
# name -> (minicnn fn, torch fn, sampler of the first operand, sampler of the second operand)
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, _normal, _normal),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, _normal, _normal),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, _normal, _normal),
    "div": (lambda a, b: a / b, lambda a, b: a / b, _normal, _away_from_zero),
    "pow": (lambda a, b: a**b, lambda a, b: a**b, _positive, _normal),
    "method_add": (lambda a, b: a.add(b), lambda a, b: a.add(b), _normal, _normal),
    "method_div": (lambda a, b: a.div(b), lambda a, b: a.div(b), _normal, _away_from_zero),
    "method_pow": (lambda a, b: a.pow(b), lambda a, b: a.pow(b), _positive, _normal),
}

BROADCAST_SHAPES = [
    ((3, 1, 5), (4, 1)),
    ((4, 1), (3, 1, 5)),
    ((2, 3), (2, 3)),
    ((), (2, 3)),  # 0-d tensor operand
    ((7,), ()),
    ((1,), (11,)),
    ((5, 1, 1), (1, 3, 2)),
    ((13, 7), (7,)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_broadcast(op, shapes, dtype, device):
    mc_fn, th_fn, sample_a, sample_b = BINARY[op]
    rng = rng_for("binary", op, shapes)
    check_parity(
        mc_fn, th_fn, [sample_a(rng, shapes[0]), sample_b(rng, shapes[1])], dtype=dtype, device=device
    )


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_binary_broadcast_random_shapes(dtype, device, data):
    op = data.draw(st.sampled_from(sorted(BINARY)), label="op")
    shapes = data.draw(
        mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=7),
        label="shapes",
    ).input_shapes
    seed = data.draw(st.integers(0, 2**16), label="seed")
    mc_fn, th_fn, sample_a, sample_b = BINARY[op]
    rng = np.random.default_rng(seed)
    check_parity(
        mc_fn, th_fn, [sample_a(rng, shapes[0]), sample_b(rng, shapes[1])], dtype=dtype, device=device
    )


# Python scalars (and NumPy scalars, which must not upcast float32) on either side.
SCALAR_OPS = {
    "x+2.5": (lambda x: x + 2.5, _normal),
    "2.5+x": (lambda x: 2.5 + x, _normal),
    "x-3": (lambda x: x - 3, _normal),
    "3-x": (lambda x: 3 - x, _normal),
    "x*-1.5": (lambda x: x * -1.5, _normal),
    "-1.5*x": (lambda x: -1.5 * x, _normal),
    "x/4": (lambda x: x / 4.0, _normal),
    "4/x": (lambda x: 4.0 / x, _away_from_zero),
    "x**2": (lambda x: x**2, _normal),
    "x**3": (lambda x: x**3, _normal),
    "x**-1": (lambda x: x**-1, _away_from_zero),
    "x**0": (lambda x: x**0, _normal),
    "x**0.5": (lambda x: x**0.5, _positive),
    "x**-1.5": (lambda x: x**-1.5, _positive),
    "2**x": (lambda x: 2.0**x, _normal),
    "0.5**x": (lambda x: 0.5**x, _normal),
    "x*np.float64": (lambda x: x * np.float64(1.25), _normal),
    "np.float64*x": (lambda x: np.float64(1.25) * x, _normal),
    "x+np.int64": (lambda x: x + np.int64(3), _normal),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (3, 5)], ids=str)
@pytest.mark.parametrize("op", list(SCALAR_OPS))
def test_scalar_operands(op, shape, dtype, device):
    fn, sample = SCALAR_OPS[op]
    check_parity(fn, fn, [sample(rng_for("scalar", op, shape), shape)], dtype=dtype, device=device)


# ====================================================================== elementwise unary ops
UNARY = {
    "neg": (lambda x: -x, lambda x: -x, _normal),
    "neg_method": (lambda x: x.neg(), lambda x: x.neg(), _normal),
    "exp": (lambda x: x.exp(), torch.exp, _normal),
    "exp_fn": (mc.exp, torch.exp, _normal),
    "log": (lambda x: x.log(), torch.log, _positive),
    "log_fn": (mc.log, torch.log, _positive),
    "sqrt": (lambda x: x.sqrt(), torch.sqrt, _positive),
    "sqrt_fn": (mc.sqrt, torch.sqrt, _positive),
    "abs": (lambda x: x.abs(), torch.abs, _away_from_zero),
    "pos": (lambda x: +x, lambda x: +x, _normal),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 1, 13)], ids=str)
@pytest.mark.parametrize("op", list(UNARY))
def test_unary(op, shape, dtype, device):
    mc_fn, th_fn, sample = UNARY[op]
    check_parity(mc_fn, th_fn, [sample(rng_for("unary", op, shape), shape)], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_abs_gradient_is_zero_at_zero(dtype, device):
    x = np.array([-2.0, -0.0, 0.0, 0.5, 0.0])
    check_parity(lambda t: t.abs(), torch.abs, [x], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_at_zero_base_and_zero_exponent(dtype, device):
    # 0 ** b with b >= 0: d/db is 0 in PyTorch (not nan); a ** 0: d/da is 0
    a = np.array([0.0, 0.0, 1.5, 2.0, 0.5])
    b = np.array([2.0, 0.0, 0.0, 1.5, 3.0])
    check_parity(lambda x, y: x**y, lambda x, y: x**y, [a, b], dtype=dtype, device=device)


# ====================================================================== matmul
MATMUL_SHAPES = [
    ((5,), (5,)),  # dot product -> 0-d
    ((5,), (5, 3)),
    ((3, 5), (5,)),
    ((3, 5), (5, 2)),
    ((7, 1), (1, 11)),
    ((2, 3, 5), (5, 4)),
    ((5,), (2, 5, 3)),
    ((2, 3, 5), (5,)),
    ((3, 1, 4, 5), (2, 5, 3)),  # batch dims broadcast: (3, 1) with (2,) -> (3, 2)
    ((1, 4, 5), (3, 5, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes, dtype, device):
    rng = rng_for("matmul", shapes)
    inputs = [rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])]
    check_parity(lambda a, b: a @ b, torch.matmul, inputs, dtype=dtype, device=device)
    check_parity(mc.matmul, torch.matmul, inputs, dtype=dtype, device=device, grad=[False, True])


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_matmul_random_shapes(dtype, device, data):
    sides = st.sampled_from([1, 2, 3, 5, 7])
    n, k, m = data.draw(sides, label="n"), data.draw(sides, label="k"), data.draw(sides, label="m")
    batch_a, batch_b = data.draw(
        mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3), label="batch"
    ).input_shapes
    a_shape = (k,) if data.draw(st.booleans(), label="a is 1-D") else batch_a + (n, k)
    b_shape = (k,) if data.draw(st.booleans(), label="b is 1-D") else batch_b + (k, m)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    inputs = [rng.standard_normal(a_shape), rng.standard_normal(b_shape)]
    check_parity(lambda a, b: a @ b, torch.matmul, inputs, dtype=dtype, device=device)


# ====================================================================== reductions
REDUCE_DIMS = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", REDUCE_DIMS, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_mean(op, dim, keepdim, dtype, device):
    x = rng_for(op, dim, keepdim).standard_normal((3, 4, 5))
    if dim is None and keepdim:
        pytest.skip("torch.sum(x, keepdim=True) requires a dim")

    def mc_fn(t):
        return getattr(t, op)(dim, keepdim)

    def th_fn(t):
        return getattr(t, op)() if dim is None else getattr(t, op)(dim, keepdim)

    check_parity(mc_fn, th_fn, [x], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_sum_mean_module_functions_and_0d(op, dtype, device):
    rng = rng_for("reduce-fn", op)
    mc_fn, th_fn = getattr(mc, op), getattr(torch, op)
    check_parity(lambda t: mc_fn(t, 1, True), lambda t: th_fn(t, 1, True), [rng.standard_normal((2, 7))],
                 dtype=dtype, device=device)  # fmt: skip
    # a 0-d tensor has dims 0 and -1, as in PyTorch
    check_parity(lambda t: mc_fn(t), lambda t: th_fn(t), [np.array(1.5)], dtype=dtype, device=device)
    check_parity(lambda t: mc_fn(t, -1), lambda t: th_fn(t, -1), [np.array(1.5)], dtype=dtype, device=device)


def _with_ties(rng, shape):
    """Small integers: many elements share the max/min, so gradients must be split."""
    return rng.integers(-2, 3, shape).astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_full_reduction_with_ties(op, dtype, device):
    x = _with_ties(rng_for("full", op), (4, 6))
    x.reshape(-1)[[3, 10, 17]] = 5.0 if op == "max" else -5.0  # three-way tie on the extreme
    check_parity(lambda t: getattr(t, op)(), lambda t: getattr(t, op)(), [x], dtype=dtype, device=device)
    mc_fn, th_fn = getattr(mc, op), getattr(torch, op)
    check_parity(mc_fn, th_fn, [x], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1, 2])
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_dim_values_and_indices(op, dim, keepdim, dtype, device):
    x = rng_for("dim", op, dim, keepdim).standard_normal((3, 5, 7))  # no ties: indices are unique

    def mc_fn(t):
        out = getattr(t, op)(dim, keepdim)
        assert out.values is out[0] and out.indices is out[1]
        return out

    check_parity(mc_fn, lambda t: getattr(t, op)(dim, keepdim), [x], dtype=dtype, device=device)
    mc_mod, th_mod = getattr(mc, op), getattr(torch, op)
    check_parity(lambda t: mc_mod(t, dim), lambda t: th_mod(t, dim), [x], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [None, 0, -1, (0, 2), (1, 2)], ids=str)
@pytest.mark.parametrize("op", ["amax", "amin"])
def test_amax_amin_with_ties(op, dim, keepdim, dtype, device):
    x = _with_ties(rng_for(op, dim, keepdim), (3, 4, 5))
    th_dim = () if dim is None else dim  # torch.amax: dim=() reduces everything

    def mc_fn(t):
        return getattr(t, op)(dim, keepdim)

    check_parity(mc_fn, lambda t: getattr(t, op)(th_dim, keepdim), [x], dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_reductions_random_shapes(dtype, device, data):
    sides = st.sampled_from([1, 2, 3, 5, 7])
    shape = tuple(data.draw(st.lists(sides, min_size=1, max_size=4), label="shape"))
    dims = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=len(shape)))
    dim = dims[0] if len(dims) == 1 else tuple(dims)
    if isinstance(dim, tuple) and len({d % len(shape) for d in dim}) < len(dim):
        dim = dims[0]  # PyTorch rejects repeated dims
    keepdim = data.draw(st.booleans(), label="keepdim")
    op = data.draw(st.sampled_from(["sum", "mean", "amax", "amin"]), label="op")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x = _with_ties(rng, shape) if op in ("amax", "amin") else rng.standard_normal(shape)
    check_parity(
        lambda t: getattr(t, op)(dim, keepdim),
        lambda t: getattr(t, op)(dim, keepdim),
        [x],
        dtype=dtype,
        device=device,
    )


# ====================================================================== shape ops
SHAPE_OPS = {
    "reshape": (lambda t: t.reshape(6, 10), lambda t: t.reshape(6, 10)),
    "reshape_tuple_-1": (lambda t: t.reshape((-1, 4)), lambda t: t.reshape((-1, 4))),
    "reshape_fn": (lambda t: mc.reshape(t, (5, -1)), lambda t: torch.reshape(t, (5, -1))),
    "view": (lambda t: t.view(3, 20), lambda t: t.view(3, 20)),
    "view_-1": (lambda t: t.view(-1), lambda t: t.view(-1)),
    "transpose": (lambda t: t.transpose(0, 2), lambda t: t.transpose(0, 2)),
    "transpose_neg": (lambda t: t.transpose(-1, 1), lambda t: t.transpose(-1, 1)),
    "transpose_fn": (lambda t: mc.transpose(t, 1, 0), lambda t: torch.transpose(t, 1, 0)),
    "permute": (lambda t: t.permute(2, 0, 1), lambda t: t.permute(2, 0, 1)),
    "permute_tuple_neg": (lambda t: t.permute((-1, 1, 0)), lambda t: t.permute((-1, 1, 0))),
    "permute_fn": (lambda t: mc.permute(t, (1, 2, 0)), lambda t: torch.permute(t, (1, 2, 0))),
    "flatten": (lambda t: t.flatten(), lambda t: t.flatten()),
    "flatten_1": (lambda t: t.flatten(1), lambda t: t.flatten(1)),
    "flatten_0_1": (lambda t: t.flatten(0, 1), lambda t: t.flatten(0, 1)),
    "flatten_fn_-2_-1": (lambda t: mc.flatten(t, -2, -1), lambda t: torch.flatten(t, -2, -1)),
    "unsqueeze_0": (lambda t: t.unsqueeze(0), lambda t: t.unsqueeze(0)),
    "unsqueeze_-1": (lambda t: t.unsqueeze(-1), lambda t: t.unsqueeze(-1)),
    "unsqueeze_fn_2": (lambda t: mc.unsqueeze(t, 2), lambda t: torch.unsqueeze(t, 2)),
    "squeeze_roundtrip": (lambda t: t.unsqueeze(1).squeeze(1), lambda t: t.unsqueeze(1).squeeze(1)),
    "squeeze_all": (lambda t: t[:, None, :1].squeeze(), lambda t: t[:, None, :1].squeeze()),
    "squeeze_noop": (lambda t: t.squeeze(0), lambda t: t.squeeze(0)),  # size 3: unchanged
    "squeeze_fn_-1": (lambda t: mc.squeeze(t[..., None], -1), lambda t: torch.squeeze(t[..., None], -1)),
    "expand": (lambda t: t[:, :1].expand(3, 4, 5), lambda t: t[:, :1].expand(3, 4, 5)),
    "expand_-1_new_dims": (lambda t: t[:, :1].expand(2, -1, 6, -1), lambda t: t[:, :1].expand(2, -1, 6, -1)),
    "expand_tuple": (lambda t: t[:1].expand((3, 4, 5)), lambda t: t[:1].expand((3, 4, 5))),
    "expand_fn": (lambda t: mc.expand(t[:1], 2, 3, 4, 5), lambda t: t[:1].expand(2, 3, 4, 5)),
    "T": (lambda t: t[0].T, lambda t: t[0].T),
    "clone": (lambda t: t.clone() * 2, lambda t: t.clone() * 2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(SHAPE_OPS))
def test_shape_ops(op, dtype, device):
    mc_fn, th_fn = SHAPE_OPS[op]
    check_parity(mc_fn, th_fn, [rng_for("shape", op).standard_normal((3, 4, 5))], dtype=dtype, device=device)


# ====================================================================== indexing
_MASK_2D = rng_for("mask2d").random((4, 5)) < 0.5
_MASK_3D = rng_for("mask3d").random((4, 5, 3)) < 0.3

# id -> (minicnn fn, torch fn); x has shape (4, 5, 3).
GETITEM = {
    "slice": (lambda t: t[1:3], lambda t: t[1:3]),
    "step_and_int": (lambda t: t[:, ::2, 1], lambda t: t[:, ::2, 1]),
    "negative_int": (lambda t: t[-1], lambda t: t[-1]),
    "all_ints_0d": (lambda t: t[2, -2, 1], lambda t: t[2, -2, 1]),
    "none_ellipsis": (lambda t: t[None, 1, ..., 0], lambda t: t[None, 1, ..., 0]),
    "ellipsis_slice": (lambda t: t[..., 1:], lambda t: t[..., 1:]),
    "negative_slice_bounds": (lambda t: t[-3:-1, :-2], lambda t: t[-3:-1, :-2]),
    # PyTorch has no negative steps: compare with flip
    "negative_step": (lambda t: t[::-1], lambda t: t.flip(0)),
    "negative_step_2": (lambda t: t[1, ::-2], lambda t: t[1].flip(0)[::2]),
    "int_list_repeated": (lambda t: t[[0, 0, 3, 1, 0]], lambda t: t[[0, 0, 3, 1, 0]]),
    "int_arrays_repeated_pairs": (
        lambda t: t[[0, 2, 2, 2], [1, 4, 4, 4]],
        lambda t: t[[0, 2, 2, 2], [1, 4, 4, 4]],
    ),
    "slice_then_int_array": (lambda t: t[:, [4, 4, 0], 1:], lambda t: t[:, [4, 4, 0], 1:]),
    "negative_int_array": (lambda t: t[np.array([-1, -1, 0])], lambda t: t[torch.tensor([-1, -1, 0])]),
    "bool_mask_2d": (lambda t: t[_MASK_2D], lambda t: t[torch.from_numpy(_MASK_2D)]),
    "bool_mask_full": (lambda t: t[_MASK_3D], lambda t: t[torch.from_numpy(_MASK_3D)]),
    "bool_mask_from_tensor": (lambda t: t[t > 0.2], lambda t: t[t > 0.2]),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(GETITEM))
def test_getitem(case, dtype, device):
    mc_fn, th_fn = GETITEM[case]
    check_parity(
        mc_fn, th_fn, [rng_for("getitem", case).standard_normal((4, 5, 3))], dtype=dtype, device=device
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_getitem_with_integer_tensor_with_repeats(dtype, device):
    x = rng_for("getitem-tensor").standard_normal((6, 2))
    idx = np.array([5, 1, 5, 5, 0])  # passed as an int64 tensor to both libraries
    check_parity(lambda t, i: t[i], lambda t, i: t[i], [x, idx], dtype=dtype, device=device)


# ====================================================================== cat / stack
CAT_CASES = [
    (0, [(2, 3), (5, 3), (1, 3)]),
    (1, [(2, 3, 4), (2, 1, 4), (2, 5, 4)]),
    (-1, [(3, 2), (3, 7)]),
    (2, [(2, 1, 3), (2, 1, 1)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CAT_CASES, ids=str)
def test_cat(case, dtype, device):
    dim, shapes = case
    rng = rng_for("cat", case)
    inputs = [rng.standard_normal(s) for s in shapes]
    check_parity(
        lambda *ts: mc.cat(ts, dim), lambda *ts: torch.cat(ts, dim), inputs, dtype=dtype, device=device
    )
    # only some inputs need a gradient
    grad = [i % 2 == 0 for i in range(len(inputs))]
    check_parity(
        lambda *ts: mc.cat(list(ts), dim=dim),
        lambda *ts: torch.cat(list(ts), dim=dim),
        inputs,
        dtype=dtype,
        device=device,
        grad=grad,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack(dim, dtype, device):
    rng = rng_for("stack", dim)
    inputs = [rng.standard_normal((3, 4)) for _ in range(3)]
    check_parity(
        lambda *ts: mc.stack(ts, dim), lambda *ts: torch.stack(ts, dim), inputs, dtype=dtype, device=device
    )


# ====================================================================== where / clamp / cast
WHERE_SHAPES = [
    ((3, 4), (3, 4), (3, 4)),
    ((3, 1), (1, 4), ()),
    ((5,), (2, 1), (1, 5)),
    ((), (2, 3), (2, 3)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", WHERE_SHAPES, ids=str)
def test_where(shapes, dtype, device):
    rng = rng_for("where", shapes)
    cond = np.asarray(rng.random(shapes[0]) < 0.5)
    inputs = [cond, rng.standard_normal(shapes[1]), rng.standard_normal(shapes[2])]
    check_parity(mc.where, torch.where, inputs, dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_where_with_scalar_and_condition_from_comparison(dtype, device):
    x = rng_for("where-scalar").standard_normal((4, 7))
    check_parity(
        lambda t: mc.where(t > 0, t, 0.0),
        lambda t: torch.where(t > 0, t, 0.0),
        [x],
        dtype=dtype,
        device=device,
    )
    check_parity(
        lambda t: mc.where(t < 0.3, -1.5, t * 2), lambda t: torch.where(t < 0.3, -1.5, t * 2), [x],
        dtype=dtype, device=device,
    )  # fmt: skip


CLAMP_BOUNDS = [(-0.5, None), (None, 1.0), (-0.5, 1.0), (1.0, 1.0), (2.0, 1.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds", CLAMP_BOUNDS, ids=str)
def test_clamp_values_exactly_at_bounds(bounds, dtype, device):
    lo, hi = bounds
    # half-integers hit both bounds exactly; there PyTorch (>= 2.14) gives a zero gradient
    x = rng_for("clamp", bounds).integers(-4, 5, (5, 6)) / 2.0
    assert np.any(x == -0.5) and np.any(x == 1.0)
    check_parity(lambda t: t.clamp(lo, hi), lambda t: t.clamp(lo, hi), [x], dtype=dtype, device=device)
    check_parity(
        lambda t: mc.clamp(t, min=lo, max=hi), lambda t: torch.clamp(t, min=lo, max=hi), [x],
        dtype=dtype, device=device,
    )  # fmt: skip
    check_parity(lambda t: t.clip(lo, hi), lambda t: t.clip(lo, hi), [x], dtype=dtype, device=device)


@pytest.mark.nonfinite
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf * 0 in the harness's sum(out * u)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bounds", CLAMP_BOUNDS, ids=str)
def test_clamp_with_inf_and_nan_gradients(bounds, dtype, device):
    """Outside the bounds the gradient is 0 even when the upstream gradient is inf or NaN."""
    lo, hi = bounds
    rng = rng_for("clamp-nonfinite", bounds)
    x = rng.integers(-4, 5, (5, 6)) / 2.0
    u = rng.standard_normal(x.shape)
    u.reshape(-1)[::3] = np.inf
    u.reshape(-1)[1::4] = np.nan
    clamp = lambda t: t.clamp(lo, hi)  # noqa: E731  (the same call on both libraries)
    check_parity(clamp, clamp, [x], dtype=dtype, device=device, upstream=[u])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", ["float32", "float64", "int64", "int32"])
def test_cast_with_to(target, dtype, device):
    x = rng_for("cast", target).standard_normal((3, 7)) * 3
    mc_fn = lambda t: t.to(getattr(mc, target))  # noqa: E731
    th_fn = lambda t: t.to(getattr(torch, target))  # noqa: E731
    if target.startswith("int"):
        # truncation toward zero; an integer result carries no gradient
        out, _ = check_parity(mc_fn, th_fn, [x], dtype=dtype, device=device, check_grads=False)
        assert out[0].dtype == np.dtype(target)
        t = mc.tensor(x, device=device, requires_grad=True)
        assert not t.to(getattr(mc, target)).requires_grad
    else:
        check_parity(mc_fn, th_fn, [x], dtype=dtype, device=device)
        other = "float64" if target == "float32" else "float32"
        # a round trip: the gradient flows back through both casts into the input's dtype
        check_parity(
            lambda t: t.to(getattr(mc, other)).exp().to(getattr(mc, target)),
            lambda t: t.to(getattr(torch, other)).exp().to(getattr(torch, target)),
            [x / 3],
            dtype=dtype,
            device=device,
            rtol=1e-4 if "float32" in (dtype, target, other) else None,
        )


@pytest.mark.parametrize("method", ["float", "double"])
def test_float_and_double_shortcuts(method, device):
    x = rng_for("cast-method", method).standard_normal((2, 3))
    check_parity(
        lambda t: getattr(t, method)(), lambda t: getattr(t, method)(), [x], dtype="float32", device=device
    )


# ================================================================ finite-difference gradchecks (float64)
def _gc_normal(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def _gc_positive(*shapes):
    return lambda rng: [rng.uniform(0.5, 2.0, s) for s in shapes]


def _gc_away(*shapes):
    return lambda rng: [_away_from_zero(rng, s) for s in shapes]


# id -> (minicnn fn, input maker); every input has at most 60 elements
GRADCHECK = {
    "add": (lambda a, b: a + b, _gc_normal((3, 1, 5), (4, 1))),
    "add_scalar_0d": (lambda a, b: a + b + 1.5, _gc_normal((), (2, 3))),
    "sub": (lambda a, b: a - b, _gc_normal((3, 1, 5), (4, 1))),
    "rsub_scalar": (lambda a: 2.0 - a, _gc_normal((7,))),
    "mul": (lambda a, b: a * b, _gc_normal((3, 1, 5), (4, 1))),
    "mul_self": (lambda a: a * a, _gc_normal((2, 3))),
    "div": (lambda a, b: a / b, lambda rng: [rng.standard_normal((3, 1, 5)), _away_from_zero(rng, (4, 1))]),
    "rdiv_scalar": (lambda a: 3.0 / a, _gc_away((2, 5))),
    "neg": (lambda a: -a, _gc_normal((3, 4))),
    "pow_tensor_scalar": (lambda a: a**3, _gc_normal((3, 4))),
    "pow_tensor_frac": (lambda a: a**-0.5, _gc_positive((3, 4))),
    "pow_scalar_tensor": (lambda a: 1.7**a, _gc_normal((3, 4))),
    "pow_tensor_tensor": (
        lambda a, b: a**b,
        lambda rng: [rng.uniform(0.5, 2, (3, 1, 4)), rng.standard_normal((2, 4))],
    ),
    "exp": (lambda a: a.exp(), _gc_normal((3, 5))),
    "log": (lambda a: a.log(), _gc_positive((3, 5))),
    "sqrt": (lambda a: a.sqrt(), _gc_positive((3, 5))),
    "abs": (lambda a: a.abs(), _gc_away((3, 5))),
    "matmul_1d_1d": (lambda a, b: a @ b, _gc_normal((5,), (5,))),
    "matmul_1d_2d": (lambda a, b: a @ b, _gc_normal((5,), (5, 3))),
    "matmul_2d_1d": (lambda a, b: a @ b, _gc_normal((3, 5), (5,))),
    "matmul_2d": (lambda a, b: a @ b, _gc_normal((3, 5), (5, 2))),
    "matmul_batched_broadcast": (lambda a, b: a @ b, _gc_normal((3, 1, 2, 4), (2, 4, 3))),
    "matmul_1d_batched": (lambda a, b: a @ b, _gc_normal((4,), (2, 4, 3))),
    "sum_all": (lambda a: a.sum(), _gc_normal((3, 4, 5))),
    "sum_dim_keepdim": (lambda a: a.sum(1, keepdim=True), _gc_normal((3, 4, 5))),
    "sum_tuple_neg": (lambda a: a.sum((-1, 0)), _gc_normal((3, 4, 5))),
    "mean_all": (lambda a: a.mean(), _gc_normal((3, 4, 5))),
    "mean_dim": (lambda a: a.mean(-1), _gc_normal((3, 4, 5))),
    "mean_tuple_keepdim": (lambda a: a.mean((0, 2), keepdim=True), _gc_normal((3, 4, 5))),
    "max_full": (lambda a: a.max(), _gc_normal((4, 6))),
    "min_full": (lambda a: a.min(), _gc_normal((4, 6))),
    "max_dim": (lambda a: a.max(1).values, _gc_normal((3, 5, 4))),
    "min_dim_keepdim": (lambda a: a.min(-1, keepdim=True).values, _gc_normal((3, 5, 4))),
    "amax": (lambda a: a.amax((0, 2)), _gc_normal((3, 5, 4))),
    "amin": (lambda a: a.amin(1, keepdim=True), _gc_normal((3, 5, 4))),
    "reshape": (lambda a: a.reshape(4, -1) * a.reshape(4, -1), _gc_normal((3, 4, 5))),
    "view": (lambda a: a.view(-1).exp(), _gc_normal((3, 4))),
    "transpose": (lambda a, b: a.transpose(0, 1) @ b, _gc_normal((4, 3), (4, 2))),
    "permute": (lambda a: a.permute(2, 0, 1) * a.permute(2, 0, 1)[0], _gc_normal((3, 4, 5))),
    "flatten": (lambda a: a.flatten(1, 2).exp(), _gc_normal((2, 3, 4, 2))),
    "unsqueeze_squeeze": (lambda a: (a.unsqueeze(1) * a.unsqueeze(0)).squeeze(), _gc_normal((5,))),
    "expand": (lambda a: a.expand(3, 4, 5) * a.expand(3, 4, 5).exp(), _gc_normal((4, 1))),
    "getitem_basic": (lambda a: a[1:, None, ..., ::2] * 2, _gc_normal((3, 4, 5))),
    "getitem_negative_step": (lambda a: a[::-1, 1] * a[:, -1], _gc_normal((4, 3))),
    "getitem_int_array_repeated": (lambda a: a[[0, 0, 2, 0]] ** 2, _gc_normal((3, 4))),
    "getitem_mixed": (lambda a: a[:, [3, 3, 1], 0] ** 2, _gc_normal((2, 4, 3))),
    "getitem_bool_mask": (lambda a: a[a.data > 0] ** 2, _gc_normal((4, 5))),
    "cat": (lambda a, b: mc.cat([a, b, a], 1), _gc_normal((2, 3), (2, 5))),
    "stack": (lambda a, b: mc.stack([a, b, a], -1), _gc_normal((2, 3), (2, 3))),
    "where": (lambda a, b: mc.where(a > b, a, b * b), _gc_normal((3, 4), (4,))),
    "clamp_both": (lambda a: a.clamp(-0.3, 0.4) * a, _gc_normal((4, 5))),
    "clamp_min": (lambda a: a.clamp(min=0.1).log(), _gc_normal((4, 5))),
    "clamp_max": (lambda a: a.clamp(max=-0.2), _gc_normal((4, 5))),
    "clone": (lambda a: a.clone() * a, _gc_normal((3, 3))),
}


@pytest.mark.parametrize("case", list(GRADCHECK))
def test_gradcheck(case, device):
    fn, make_inputs = GRADCHECK[case]
    inputs = make_inputs(rng_for("gradcheck", case))
    assert all(x.size <= 60 for x in inputs)
    gradcheck(fn, inputs, device=device)


def test_gradcheck_cast_round_trip(device):
    # float64 -> float32 -> float64 is the identity up to float32 rounding: use a wide step
    fn = lambda a: (a.to(mc.float32) * 3).to(mc.float64)  # noqa: E731
    gradcheck(fn, [rng_for("gc-cast").standard_normal((3, 4))], device=device, eps=1e-2, rtol=1e-4, atol=1e-4)
