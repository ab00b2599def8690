"""The autograd engine: deep graphs, accumulation, grad modes, retain_graph, freed buffers, dtypes."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest

import minicnn as mc
from minicnn.autograd import Function


def _x(values, dtype=mc.float64):
    return mc.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


# ====================================================================== graph shape
def test_chain_of_10000_ops_backprops_without_recursion_error():
    x = _x(0.3)
    y = x
    for _ in range(5000):  # 10,000 ops: y -> y * 1.0001 -> + 0.5 -> ...
        y = y * 1.0001
        y = y + 0.5
    y.backward()
    # y = 1.0001**5000 * x + const, so dy/dx = 1.0001**5000
    np.testing.assert_allclose(x.grad.item(), math.pow(1.0001, 5000), rtol=1e-12)


def test_deep_chain_through_a_non_leaf_with_retain_grad():
    x = _x([1.0, 2.0])
    h = x * 2.0
    h.retain_grad()
    y = h
    for _ in range(3000):
        y = -y
    y.sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), [1.0, 1.0])  # (-1)**3000 = 1
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_diamond_graph_sums_the_gradients_of_every_path():
    x = _x([0.5, -1.0, 2.0])
    a = x.exp()
    out = (a * a + a + x * x).sum()  # a is used three times, x twice
    out.backward()
    e = np.exp(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), (2 * e + 1) * e + 2 * x.numpy(), rtol=1e-14)


def test_same_tensor_on_both_sides_of_an_op():
    x = _x([3.0, -2.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, -4.0])
    x.grad = None
    (x + x - x / x).sum().backward()  # d/dx (2x - 1) = 2
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0], rtol=1e-15)


# ====================================================================== leaves and .grad
def test_grad_is_a_tensor_of_the_leaf_dtype_and_shape_without_a_graph():
    for dtype in (mc.float32, mc.float64):
        x = _x(np.ones((2, 3)), dtype)
        (x * 2).sum().backward()
        assert isinstance(x.grad, mc.Tensor)
        assert x.grad.dtype == dtype and x.grad.shape == (2, 3)
        assert not x.grad.requires_grad and x.grad.grad_fn is None


def test_gradients_accumulate_across_backward_calls_like_pytorch():
    x = _x([1.0, 2.0])
    (x * 3).sum().backward()
    g1 = x.grad
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3 + 2.0, 3 + 4.0])
    assert x.grad is g1  # accumulated in place, as PyTorch does
    x.zero_grad_()
    assert x.grad is None


def test_first_gradient_does_not_alias_the_upstream_gradient():
    # expand's backward sums into a fresh array, sum's backward returns a broadcast view:
    # the leaf must own its .grad so a later accumulation does not write into shared memory
    x = _x([[1.0, 2.0]])
    y = x.expand(3, 2)
    y.sum().backward()
    y2 = x.sum()
    y2.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[4.0, 4.0]])


def test_non_leaf_has_no_grad_unless_retain_grad():
    x = _x([1.0, -2.0, 3.0])
    h = x * x
    k = h * 3
    k.retain_grad()
    (k * h).sum().backward()
    assert h.grad is None
    # out = 3 h^2, d out/dk = h, d out/dh = 6h
    np.testing.assert_allclose(k.grad.numpy(), (x * x).numpy())
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy() ** 2 * 2 * x.numpy())
    assert k.grad.dtype == k.dtype and not k.is_leaf and x.is_leaf


# ====================================================================== requires_grad, detach, grad modes
def test_requires_grad_propagates_only_from_inputs_that_require_it():
    x = _x([1.0])
    c = mc.tensor([2.0], dtype=mc.float64)
    assert (x * c).requires_grad and (c + x).grad_fn is not None
    assert not (c * c).requires_grad and (c * c).grad_fn is None
    assert (c * 2).is_leaf


def test_only_floating_tensors_can_require_grad():
    with pytest.raises(RuntimeError, match="only floating-point tensors can require gradients.*int64"):
        mc.tensor([1, 2], requires_grad=True)


def test_integer_results_carry_no_gradient():
    x = _x([1.7, -2.2])
    assert not x.to(mc.int64).requires_grad
    assert not (x > 0).requires_grad
    assert not x.argmax().requires_grad
    assert not x.max(0).indices.requires_grad


def test_detach_shares_data_but_cuts_the_graph():
    x = _x([1.0, 2.0])
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    y = x * x.detach()  # gradient only through the first factor
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0])
    assert x.detach().array is x.array


def test_no_grad_builds_no_graph_and_restores_the_mode():
    x = _x([1.0, 2.0])
    with mc.no_grad():
        assert not mc.is_grad_enabled()
        y = x * 2 + 1
        with mc.enable_grad():
            z = x * 2
    assert mc.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ValueError), mc.no_grad():
        raise ValueError("boom")
    assert mc.is_grad_enabled()


def test_no_grad_as_a_decorator_with_and_without_parentheses():
    x = _x([1.0])

    @mc.no_grad()
    def double(t):
        return t * 2

    @mc.no_grad
    def triple(t):
        """Docstring kept by functools.wraps."""
        return t * 3

    @mc.set_grad_enabled(False)
    def negate(t):
        return -t

    for fn in (double, triple, negate):
        out = fn(x)
        assert not out.requires_grad and out.grad_fn is None
    assert triple.__name__ == "triple" and "Docstring" in triple.__doc__
    assert mc.is_grad_enabled() and (x * 2).requires_grad


# ====================================================================== backward() arguments
def test_backward_on_a_non_scalar_needs_an_explicit_gradient():
    x = _x([1.0, 2.0, 3.0])
    y = x * 3
    with pytest.raises(RuntimeError, match=r"shape \(3,\) needs an explicit gradient"):
        y.backward()
    y.backward(mc.tensor([1.0, 0.5, 2.0], dtype=mc.float64))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 1.5, 6.0])


def test_backward_gradient_may_be_an_array_and_must_match_the_shape():
    x = _x(np.ones((2, 2)), mc.float32)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"gradient has shape \(4,\) but the tensor has shape \(2, 2\)"):
        y.backward(np.ones(4), retain_graph=True)
    y.backward(np.full((2, 2), 0.5))  # float64 array: converted to the tensor's dtype
    assert x.grad.dtype == mc.float32
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 2)))


def test_backward_of_a_leaf_fills_its_own_grad():
    x = _x(2.0)
    x.backward()
    assert x.grad.item() == 1.0


def test_second_backward_without_retain_graph_raises_a_clear_error():
    x = _x([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_that_doubles_the_grad():
    x = _x([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-15)
    np.testing.assert_allclose(first, np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0])), rtol=1e-14)


# ====================================================================== memory
def test_saved_buffers_are_freed_after_backward():
    x = mc.randn(10_000, dtype=mc.float64, requires_grad=True)
    h = x.exp()  # Exp saves its output; Sum keeps h as an input
    big = weakref.ref(h.array)
    exp_fn = weakref.ref(h.grad_fn)
    loss = h.sum()
    del h
    assert big() is not None  # the graph keeps it alive until backward
    loss.backward()
    assert big() is None, "the exp output saved for backward was not released (freed by refcount: no cycles)"
    assert exp_fn() is None, "the graph still references the Exp node after backward"
    assert loss.grad_fn.inputs is None


def test_retain_graph_keeps_saved_buffers():
    x = mc.randn(1_000, dtype=mc.float64, requires_grad=True)
    h = x.exp()
    big = weakref.ref(h.array)
    loss = h.sum()
    del h
    loss.backward(retain_graph=True)
    assert big() is not None
    loss.backward()
    assert big() is None


def test_no_grad_keeps_no_reference_to_inputs():
    x = mc.randn(1_000, requires_grad=True)
    with mc.no_grad():
        h = x.exp()
        y = h * 2
    big = weakref.ref(h.array)
    del h
    assert big() is None and y.grad_fn is None


# ====================================================================== dtypes
class _RecordGradDtype(Function):
    """out = a.   dL/da = g; records the dtype of g (what the engine hands to backward)."""

    seen = []

    def forward(self, a):
        return a

    def backward(self, g):
        _RecordGradDtype.seen.append(g.dtype)
        return g


FLOAT32_SCALAR_OPS = [
    lambda t: t * 2.5,
    lambda t: t + np.float64(1.0),
    lambda t: np.float64(2.0) * t,
    lambda t: t / np.float32(3.0),
    lambda t: np.float64(1.0) - t,
    lambda t: t ** np.float64(2.0),
    lambda t: 2.0**t,
    lambda t: np.float64(1.5) ** t,
    lambda t: t**0.5,
    lambda t: 1 - t,
    lambda t: mc.where(t > 0, t, 0.0),
    lambda t: mc.where(t > 0, np.float64(-1.0), t),
    lambda t: t.clamp(np.float64(-0.5), np.float64(0.5)),
    lambda t: t.mean(),
    lambda t: t.amax(),
    lambda t: t.max(0).values,
    lambda t: t @ t,
]


@pytest.mark.parametrize("op", range(len(FLOAT32_SCALAR_OPS)))
def test_float32_stays_float32_with_python_and_numpy_scalars(op):
    fn = FLOAT32_SCALAR_OPS[op]
    x = mc.tensor(
        np.abs(np.random.default_rng(op).standard_normal(5)) + 0.1, dtype=mc.float32, requires_grad=True
    )
    _RecordGradDtype.seen = []
    out = fn(_RecordGradDtype.apply(x))
    assert out.dtype == mc.float32, f"op {op} returned {out.dtype}"
    (out * 1.0).sum().backward()
    assert _RecordGradDtype.seen == [np.dtype("float32")], f"backward received {_RecordGradDtype.seen}"
    assert x.grad.dtype == mc.float32


def test_engine_hands_each_node_a_gradient_of_its_output_dtype():
    # PyTorch casts every gradient to its tensor's dtype; a float64 branch must not leak float64
    # gradients into the float32 part of the graph
    x = mc.tensor([1.0, 2.0], dtype=mc.float32, requires_grad=True)
    _RecordGradDtype.seen = []
    h = _RecordGradDtype.apply(x)
    (h * mc.tensor([1.0, 1.0], dtype=mc.float64)).sum().backward()
    assert _RecordGradDtype.seen == [np.dtype("float32")]


# ====================================================================== custom Function
class _Cube(Function):
    """out = a**3.   dL/da = g * 3 a**2."""

    def forward(self, a, scale=1.0):
        self.a = a
        return a**3 * scale

    def backward(self, g):
        return g * 3 * self.a**2


def test_a_custom_function_plugs_into_the_engine():
    x = _x([1.0, -2.0])
    y = _Cube.apply(x, scale=2.0)
    assert repr(y.grad_fn) == "<_CubeBackward>"
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 12.0])


class _WrongShape(Function):
    def forward(self, a):
        return a.sum()

    def backward(self, g):
        return g  # bug: should broadcast back to a's shape


def test_a_backward_returning_a_wrong_shape_is_reported_with_the_op_name():
    x = _x([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"_WrongShape.backward.*\(\).*\(2,\)"):
        _WrongShape.apply(x).backward()


def test_needs_input_grad_tells_which_inputs_need_a_gradient():
    seen = {}

    class Probe(Function):
        def forward(self, a, b):
            seen["forward"] = self.needs_input_grad
            return a * b

        def backward(self, g):
            seen["backward"] = self.needs_input_grad
            return None, g * 2

    a = mc.tensor([1.0, 2.0])
    b = _x([3.0, 4.0], mc.float32)
    Probe.apply(a, b).sum().backward()
    assert seen == {"forward": (False, True), "backward": (False, True)}
    assert a.grad is None
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 2.0])
