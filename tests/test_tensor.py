"""minicnn.Tensor: properties, conversions, dtype rules, repr, error messages and constructors.

PyTorch is the reference wherever it has the same function (dtype inference, repr, constructors).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minicnn as mc


def _torch_dtype_name(t):
    """PyTorch's dtype as minicnn prints it: torch.float32 -> minicnn.float32."""
    return str(t.dtype).replace("torch.", "minicnn.")


# ====================================================================== properties and conversions
def test_shape_dtype_device_ndim():
    t = mc.zeros(2, 3, 5)
    assert t.shape == (2, 3, 5) and isinstance(t.shape, tuple)
    assert t.dtype == mc.float32 and t.ndim == 3 and t.dim() == 3
    assert t.device == mc.device("cpu") and t.device == "cpu"
    assert t.size() == (2, 3, 5) and t.size(1) == 3 and t.size(-1) == 5
    assert t.numel() == 30 and len(t) == 2
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(mc.tensor(1.0))


def test_numpy_returns_the_values():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = mc.tensor(a)
    out = t.numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(np.asarray(t), a)
    assert t.tolist() == a.tolist()


def test_item_gives_python_numbers():
    f = mc.tensor([[2.5]]).item()
    i = mc.tensor(7).item()
    b = mc.tensor(True).item()
    assert (f, type(f)) == (2.5, float) and (i, type(i)) == (7, int) and (b, type(b)) == (True, bool)
    assert float(mc.tensor(1.5)) == 1.5 and int(mc.tensor(3)) == 3
    with pytest.raises(ValueError, match=r"only one-element tensors.*shape \(2,\)"):
        mc.tensor([1.0, 2.0]).item()


def test_truth_value_of_a_multi_element_tensor_is_ambiguous():
    assert bool(mc.tensor([3.0]))
    with pytest.raises(RuntimeError, match="ambiguous; use .any\\(\\) or .all\\(\\)"):
        bool(mc.tensor([1.0, 2.0]))


def test_comparisons_return_bool_tensors_without_a_graph():
    x = mc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for out, expected in [
        (x < 2, [True, False, False]),
        (x <= 2, [True, True, False]),
        (x > 2, [False, False, True]),
        (x >= 2, [False, True, True]),
        (x == 2, [False, True, False]),
        (x != 2, [True, False, True]),
    ]:
        assert out.dtype == mc.bool_ and not out.requires_grad
        assert out.tolist() == expected
    assert (x > 0).all().item() and not (x > 2.5).all().item() and (x > 2.5).any().item()


# ====================================================================== dtype rules (vs torch.tensor)
@pytest.mark.parametrize(
    "data",
    [
        1.5,
        [1.0, 2.0],
        [1, 2.5],
        7,
        [1, 2, 3],
        True,
        [True, False],
        np.array([1.0, 2.0]),
        np.array([1.0], dtype=np.float32),
        np.array([1, 2], dtype=np.int32),
        np.array([1, 2], dtype=np.uint8),
        np.float64(2.0),
        np.float32(2.0),
        np.int32(3),
        np.array(2.0),
    ],
    ids=repr,
)
def test_tensor_dtype_inference_matches_torch(data):
    assert str(mc.tensor(data).dtype) == _torch_dtype_name(torch.tensor(data))


def test_dtype_argument_and_default_dtype():
    assert mc.tensor([1, 2], dtype=mc.float64).dtype == mc.float64
    assert mc.tensor(1.5, dtype="float16").dtype == mc.float16
    assert mc.get_default_dtype() == mc.float32
    mc.set_default_dtype(mc.float64)
    try:
        assert mc.tensor(1.5).dtype == mc.float64
        assert mc.zeros(2).dtype == mc.float64 and mc.randn(2).dtype == mc.float64
        assert mc.tensor([1, 2]).dtype == mc.int64  # integers are unaffected
    finally:
        mc.set_default_dtype(mc.float32)
    with pytest.raises(TypeError, match="expected a floating dtype, got int64"):
        mc.set_default_dtype(mc.int64)


def test_tensor_copies_and_from_numpy_shares():
    a = np.ones(3)
    t, shared = mc.tensor(a), mc.from_numpy(a)
    a[0] = 5.0
    assert t.tolist() == [1.0, 1.0, 1.0]
    assert shared.tolist() == [5.0, 1.0, 1.0]
    u = mc.tensor(t)
    t.data[1] = -1.0
    assert u.tolist() == [1.0, 1.0, 1.0]


def test_tensor_from_a_torch_tensor():
    t = mc.tensor(torch.arange(4, dtype=torch.float64).reshape(2, 2))
    assert t.dtype == mc.float64 and t.tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_to_and_conversion_methods():
    x = mc.tensor([1.7, -2.7], requires_grad=True)
    assert x.to(mc.float32) is x and x.to("cpu") is x and x.cpu() is x
    assert x.double().dtype == mc.float64 and x.float().dtype == mc.float32
    assert x.long().tolist() == [1, -2]  # truncation toward zero, as torch
    assert x.to("cpu", mc.float64).dtype == mc.float64
    assert x.to(dtype=mc.float64, device="cpu").dtype == mc.float64
    assert x.to(mc.tensor([1], dtype=mc.int32)).dtype == mc.int32
    assert x.type_as(mc.zeros(1, dtype=mc.float64)).dtype == mc.float64


def test_clone_is_independent_and_differentiable():
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.array is not x.array and c.grad_fn is not None
    c.data[0] = 10.0
    assert x.tolist() == [1.0, 2.0]


def test_T_is_for_at_most_2_dims():
    assert mc.zeros(2, 3).T.shape == (3, 2) and mc.zeros(4).T.shape == (4,)
    with pytest.raises(RuntimeError, match=r"at most 2 dimensions, got shape \(2, 3, 4\)"):
        mc.zeros(2, 3, 4).T  # noqa: B018


# ====================================================================== repr
@pytest.mark.parametrize(
    "data",
    [[1.0, 2.0], [[1, 2], [3, 4]], [[1.5, -2.25], [3.0, 4.0]], 3.5, [1e-5, 1e5], [0.12345678, 2.0], []],
    ids=repr,
)
def test_repr_matches_torch_for_default_dtypes(data):
    assert repr(mc.tensor(data)) == repr(torch.tensor(data))


def test_repr_shows_dtype_grad_and_grad_fn():
    assert repr(mc.tensor([0.5], dtype=mc.float64)) == "tensor([0.5000], dtype=minicnn.float64)"
    assert repr(mc.tensor([1, 2], dtype=mc.int32)) == "tensor([1, 2], dtype=minicnn.int32)"
    x = mc.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    assert repr(x * 2) == "tensor([2., 4.], grad_fn=<MulBackward>)"


# ====================================================================== error messages
def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied"):
        mc.randn(2, 3) @ mc.randn(4, 5)
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(4,\).*\(3\).*only.*\(4\)"):
        mc.matmul(mc.randn(3), mc.randn(4))
    with pytest.raises(
        ValueError, match=r"batch dimensions of shapes \(2, 3, 4\) and \(3, 4, 5\) do not broadcast"
    ):
        mc.randn(2, 3, 4) @ mc.randn(3, 4, 5)
    with pytest.raises(ValueError, match=r"at least 1 dimension, got shapes \(\) and \(3,\)"):
        mc.tensor(1.0) @ mc.randn(3)


def test_shape_op_errors_name_the_op_and_the_shapes():
    with pytest.raises(
        ValueError, match=r"reshape: cannot view a tensor of shape \(2, 3\) \(6 elements\) as shape \(4, 2\)"
    ):
        mc.zeros(2, 3).reshape(4, 2)
    with pytest.raises(
        ValueError, match=r"permute: \(0, 0\) is not a permutation of the 2 dims of shape \(2, 3\)"
    ):
        mc.zeros(2, 3).permute(0, 0)
    with pytest.raises(
        ValueError, match=r"cat: all tensors must have matching shapes, got \(2, 3\) and \(2, 4\)"
    ):
        mc.cat([mc.zeros(2, 3), mc.zeros(2, 4)], dim=0)
    with pytest.raises(ValueError, match=r"stack: all tensors must have matching shapes"):
        mc.stack([mc.zeros(2, 3), mc.zeros(3, 2)])
    with pytest.raises(ValueError, match="cat: expected a non-empty sequence"):
        mc.cat([])
    with pytest.raises(IndexError, match=r"sum: dim 3 is out of range for a tensor with 2 dimension\(s\)"):
        mc.zeros(2, 3).sum(3)
    with pytest.raises(ValueError, match="clamp: give at least one of min and max"):
        mc.zeros(2).clamp()
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1"):
        mc.zeros(2, 3, 4).flatten(2, 1)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda x: x.squeeze(5),
            r"squeeze: dim 5 is out of range for a tensor with 2 dimension\(s\) .*\[-2, 1\]",
        ),
        (lambda x: x.unsqueeze(3), r"unsqueeze: dim 3 .* 2 dimension\(s\) \(expected a dim in \[-3, 2\]\)"),
        (lambda x: x.unsqueeze(-4), r"unsqueeze: dim -4"),
        (lambda x: x.flatten(2), r"flatten: dim 2"),
        (lambda x: x.transpose(0, 4), r"transpose: dim 4"),
        (lambda x: x.permute(0, 3), r"permute: dim 3"),
        (lambda x: mc.cat([x, x], 2), r"cat: dim 2"),
        (lambda x: mc.stack([x, x], -4), r"stack: dim -4 .* \[-3, 2\]"),
    ],
)
def test_out_of_range_dims_raise_instead_of_wrapping(call, message):
    # like PyTorch: an IndexError, never a silent modulo onto another dim
    with pytest.raises(IndexError, match=message):
        call(mc.zeros(2, 1))
    x = mc.zeros(2, 1)
    assert x.squeeze(-1).shape == (2,) and x.unsqueeze(-3).shape == (1, 2, 1)
    assert mc.stack([x, x], -3).shape == (2, 2, 1) and mc.tensor(1.0).squeeze(-1).shape == ()


# ====================================================================== constructors
@pytest.mark.parametrize("name", ["zeros", "ones"])
def test_zeros_ones(name):
    mc_fn, th_fn = getattr(mc, name), getattr(torch, name)
    for args in [(3,), (2, 3), ((2, 3),), ([4, 1],)]:
        a, b = mc_fn(*args), th_fn(*args)
        assert a.shape == tuple(b.shape) and str(a.dtype) == _torch_dtype_name(b)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert mc_fn(2, dtype=mc.float64).dtype == mc.float64
    t = mc_fn(2, requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_like_constructors_and_empty():
    x = mc.randn(2, 3, dtype=mc.float64)
    assert mc.zeros_like(x).dtype == mc.float64 and mc.zeros_like(x).tolist() == [[0.0] * 3] * 2
    assert mc.ones_like(x, dtype=mc.float32).dtype == mc.float32 and mc.ones_like(x).numpy().sum() == 6
    assert mc.empty(4, 5).shape == (4, 5) and mc.empty(4, 5).dtype == mc.float32


@pytest.mark.parametrize("fill", [1.5, 3, True, -0.25])
def test_full_infers_the_dtype_like_torch(fill):
    a, b = mc.full((2, 3), fill), torch.full((2, 3), fill)
    assert str(a.dtype) == _torch_dtype_name(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert mc.full((2,), 3, dtype=mc.float64).dtype == mc.float64


@pytest.mark.parametrize(
    "args", [(5,), (2, 9), (1, 2, 0.25), (0.0, 1.0, 0.125), (-3, 3, 2), (5, 0, -1)], ids=str
)
def test_arange_matches_torch(args):
    a, b = mc.arange(*args), torch.arange(*args)
    assert str(a.dtype) == _torch_dtype_name(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_linspace_eye_match_torch():
    np.testing.assert_allclose(mc.linspace(-1, 2, 7).numpy(), torch.linspace(-1, 2, 7).numpy(), rtol=1e-6)
    assert mc.linspace(0, 1, 5).dtype == mc.float32
    np.testing.assert_array_equal(mc.eye(3).numpy(), torch.eye(3).numpy())
    np.testing.assert_array_equal(mc.eye(2, 4).numpy(), torch.eye(2, 4).numpy())


def test_randn_is_reproducible_after_manual_seed():
    mc.manual_seed(123)
    a, b = mc.randn(4, 5), mc.randn(4, 5)
    mc.manual_seed(123)
    c = mc.randn(4, 5)
    assert mc.initial_seed() == 123
    np.testing.assert_array_equal(a.numpy(), c.numpy())
    assert not np.array_equal(a.numpy(), b.numpy())
    mc.manual_seed(124)
    assert not np.array_equal(mc.randn(4, 5).numpy(), a.numpy())


def test_randn_and_rand_distributions_and_dtypes():
    mc.manual_seed(0)
    z = mc.randn(100_000)
    u = mc.rand(100_000, dtype=mc.float64)
    assert z.dtype == mc.float32 and u.dtype == mc.float64
    # standard normal: mean 0, std 1 (standard error of the mean ~0.003)
    assert abs(z.numpy().mean()) < 0.02 and abs(z.numpy().std() - 1) < 0.02
    # uniform [0, 1): mean 1/2, variance 1/12
    assert u.numpy().min() >= 0.0 and u.numpy().max() < 1.0
    assert abs(u.numpy().mean() - 0.5) < 0.01 and abs(u.numpy().var() - 1 / 12) < 0.01
    assert mc.randn(2, 3, requires_grad=True).requires_grad and mc.randn((2, 3)).shape == (2, 3)


def test_randint_range_and_dtype():
    mc.manual_seed(1)
    r = mc.randint(-2, 3, (1000,))
    assert r.dtype == mc.int64 and r.shape == (1000,)
    assert set(np.unique(r.numpy()).tolist()) == {-2, -1, 0, 1, 2}


def test_rng_state_round_trip():
    mc.manual_seed(7)
    state = mc.get_rng_state()
    a = mc.rand(5)
    mc.randn(3)  # advance the generator
    mc.set_rng_state(state)
    np.testing.assert_array_equal(mc.rand(5).numpy(), a.numpy())
