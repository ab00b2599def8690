"""PyTorch-compatibility of the Tensor API (issue: "PyTorch training scripts run by renaming the import").

Each test runs the same construct in minicnn and in PyTorch and asserts PyTorch's result:
``.data`` as a detached Tensor, in-place methods, the version counter, type promotion, printed
forms, CUDA helpers, top-level functions and methods, and the inputs PyTorch refuses.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import nn, optim


def both(values, dtype="float32", requires_grad=False):
    """The same values as a minicnn tensor and a torch tensor."""
    a = np.asarray(values, dtype=dtype)
    return (
        mc.tensor(a, requires_grad=requires_grad),
        torch.tensor(a, requires_grad=requires_grad),
    )


def same(m, t, rtol=1e-6):
    """minicnn tensor m equals torch tensor t: dtype name, shape and values."""
    assert str(m.dtype) == str(t.dtype).replace("torch.", "minicnn."), (m.dtype, t.dtype)
    assert tuple(m.shape) == tuple(t.shape)
    np.testing.assert_allclose(m.numpy(), t.detach().numpy(), rtol=rtol, atol=rtol)


# ====================================================================== .data and detach
def test_data_is_a_detached_tensor_sharing_memory():
    x = mc.tensor([1.0, -2.0, 3.0], requires_grad=True)
    d = x.data
    assert isinstance(d, mc.Tensor) and not d.requires_grad and d.grad_fn is None
    assert np.shares_memory(d.array, x.array) and np.shares_memory(x.detach().array, x.array)
    d[0] = 10.0  # writes through, as in PyTorch
    assert x.tolist() == [10.0, -2.0, 3.0]
    np.testing.assert_array_equal(x.data.cpu().numpy(), [10.0, -2.0, 3.0])
    c = x.data.clone()
    c.zero_()
    assert x.tolist() == [10.0, -2.0, 3.0]


def test_torch_max_of_outputs_data_and_bias_data_zero_():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.5, 0.2]], dtype=np.float32)
    m, t = mc.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    mv, mi = mc.max(m.data, 1)
    tv, ti = torch.max(t.data, 1)
    same(mv, tv)
    same(mi, ti)
    conv = nn.Conv2d(1, 2, 3)
    conv.bias.data.zero_()
    conv.weight.data.fill_(0.5)
    assert conv.bias.tolist() == [0.0, 0.0] and float(conv.weight.sum()) == 9.0
    p_data = conv.weight.data.clone()
    assert isinstance(p_data, mc.Tensor) and not np.shares_memory(p_data.array, conv.weight.array)


def test_data_assignment_replaces_the_values():
    p = nn.Parameter(mc.zeros(3))
    p.data = mc.ones(2)  # as torch: .data may be rebound, even to another shape
    assert p.shape == (2,) and p.requires_grad


# ====================================================================== in-place methods
@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.zero_(),
        lambda t: t.fill_(2.5),
        lambda t: t.add_(1.5),
        lambda t: t.add_(t * 0 + 2, alpha=3),
        lambda t: t.sub_(0.25),
        lambda t: t.mul_(-2),
        lambda t: t.div_(4),
        lambda t: t.clamp_(-0.5, 0.5),
        lambda t: t.clamp_(min=0.0),
        lambda t: t.relu_(),
        lambda t: t.copy_(t * 0 + 7),
        lambda t: t.__iadd__(1.0),
        lambda t: t.__imul__(3.0),
        lambda t: t.__itruediv__(2.0),
        lambda t: t.__isub__(1.0),
    ],
)
def test_in_place_methods_match_torch(call):
    values = [[-1.5, 0.0, 2.0], [0.75, -0.25, 3.0]]
    m, t = both(values)
    rm, rt = call(m), call(t)
    assert rm is m and rt is t
    same(m, t)
    assert m._version == 1


def test_in_place_keeps_dtype_shape_and_refuses_like_torch():
    m, t = both([1, 2, 3], dtype="int64")
    m.add_(2)
    t.add_(2)
    same(m, t)
    with pytest.raises(RuntimeError, match="result type minicnn.float32 can't be cast to the desired output"):
        m.div_(2)
    with pytest.raises(RuntimeError):
        t.div_(2)
    x = mc.zeros(3)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        x.add_(mc.ones(2, 3))
    x.add_(mc.tensor(2.0, dtype=mc.float64))  # a float64 0-d value goes into float32 memory
    assert x.dtype == mc.float32 and x.tolist() == [2.0, 2.0, 2.0]


def test_setitem_and_random_fills():
    m, t = both(np.zeros((3, 4)))
    for target in (m, t):
        target[0] = 1.0
        target[1, 2:] = 5.0
        target[:, 0] = target[:, 0] + 2
        target[target > 4] = -1.0
    same(m, t)
    mc.manual_seed(0)
    u = mc.empty(20000).uniform_(-2, 3)
    n = mc.empty(20000).normal_(1.0, 0.5)
    assert -2 <= u.min().item() and u.max().item() < 3 and abs(u.mean().item() - 0.5) < 0.05
    assert abs(n.mean().item() - 1.0) < 0.02 and abs(n.std().item() - 0.5) < 0.02


def test_in_place_on_a_leaf_that_requires_grad_raises_like_torch():
    p = mc.ones(3, requires_grad=True)
    tp = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError) as theirs:
        tp.add_(1)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        p.add_(1)
    assert "leaf Variable that requires grad" in str(theirs.value)
    for fn in (lambda t: t.zero_(), lambda t: t.mul_(2), lambda t: t.__setitem__(0, 5.0)):
        with pytest.raises(RuntimeError, match="leaf Variable"):
            fn(p)
    with mc.no_grad():
        p.mul_(3)
        p[0] = 0.0
    assert p.tolist() == [0.0, 3.0, 3.0] and p.requires_grad


def test_gradients_through_in_place_ops_match_torch():
    x_values = np.array([0.5, -1.0, 2.0, -0.25])
    w_values = np.array([1.5, 2.0, -0.5, 3.0])

    def run(lib, x, w):
        h = x * 2
        h.add_(w, alpha=0.5)
        h.mul_(w)
        h = h.relu_().clone()  # relu saves its output (in both libraries): work on a copy
        h = h.clamp_(max=3.0).clone()
        h[1] = w[0] * 4
        h[2:] = h[2:] + x[2:]
        h.sub_(1).div_(2)
        g = h.clone()
        g.copy_(h * h)
        return (g * lib.tensor([1.0, -2.0, 3.0, 0.5], dtype=h.dtype)).sum()

    x, tx = both(x_values, "float64", requires_grad=True)
    w, tw = both(w_values, "float64", requires_grad=True)
    loss, tloss = run(mc, x, w), run(torch, tx, tw)
    loss.backward()
    tloss.backward()
    same(loss, tloss, rtol=1e-12)
    same(x.grad, tx.grad, rtol=1e-12)
    same(w.grad, tw.grad, rtol=1e-12)


def test_relu_inplace_in_a_model_keeps_gradients_right():
    mc.manual_seed(0)
    torch.manual_seed(0)
    layers = [nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)]
    model = nn.Sequential(*layers).double()
    tnn = torch.nn
    ref = tnn.Sequential(tnn.Linear(5, 4), tnn.ReLU(inplace=True), tnn.Linear(4, 2)).double()
    model.load_state_dict(ref.state_dict())
    x = np.random.default_rng(1).standard_normal((3, 5))
    model(mc.tensor(x)).sum().backward()
    ref(torch.tensor(x)).sum().backward()
    for (name, p), tp in zip(model.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, err_msg=name)


# ====================================================================== the version counter
def _modified_message():
    return "modified by an inplace operation"


def test_changing_a_saved_input_in_place_raises_like_torch():
    for lib in (mc, torch):
        a = lib.ones(3, requires_grad=True)
        b = a * 2  # b is saved by the next multiplication
        c = b * b
        b.add_(1)
        with pytest.raises(RuntimeError, match=_modified_message()):
            c.sum().backward()


def test_changing_a_saved_output_in_place_raises_like_torch():
    for lib in (mc, torch):
        a = lib.ones(3, requires_grad=True)
        e = (a * 1).exp()  # exp saves its output
        e.mul_(2)
        with pytest.raises(RuntimeError, match=_modified_message()):
            e.sum().backward()


def test_changing_an_unsaved_input_is_fine_like_torch():
    grads = []
    for lib in (mc, torch):
        a = lib.ones(3, requires_grad=True)
        b = a * 2
        c = b + 1  # addition saves nothing
        b.mul_(5)
        c.sum().backward()
        grads.append(a.grad.tolist())
    assert grads[0] == grads[1] == [2.0, 2.0, 2.0]


def test_a_weight_changed_through_data_between_forward_and_backward_raises():
    """Through ``.data`` PyTorch says nothing and returns the gradient of another computation;
    minicnn's ``.data`` shares the version counter, so the change is caught (docs/porting.md)."""
    lin = nn.Linear(3, 2)
    loss = lin(mc.randn(4, 3, requires_grad=True)).pow(2).sum()  # the input's gradient needs the weight
    lin.weight.data.mul_(2)
    with pytest.raises(RuntimeError, match=_modified_message() + r".*\[minicnn.float32 \[2, 3\]\]"):
        loss.backward()


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.Adam(p, lr=0.1)])
def test_optimizer_step_before_a_retained_graph_backward_raises_like_torch(make):
    lin = nn.Linear(3, 2)
    opt = make(lin.parameters())
    loss = lin(mc.randn(4, 3, requires_grad=True)).pow(2).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match=_modified_message()):
        loss.backward()
    # PyTorch too (the input needs a gradient here, so the weight is saved for backward)
    tlin = torch.nn.Linear(3, 2)
    topt = torch.optim.SGD(tlin.parameters(), lr=0.1)
    tloss = tlin(torch.randn(4, 3, requires_grad=True)).pow(2).sum()
    tloss.backward(retain_graph=True)
    topt.step()
    with pytest.raises(RuntimeError, match=_modified_message()):
        tloss.backward()


def test_views_share_the_version_counter():
    a = mc.ones(2, 3, requires_grad=True)
    b = a * 1
    v = b.view(6)
    e = v.exp()  # saves its output, not v; but the multiplication below saves b
    prod = b * b
    with mc.no_grad():
        v.add_(1)  # changes b's memory through a view
    assert b._version == v._version == 1
    e.sum().backward(retain_graph=True)  # exp's own output untouched: fine
    with pytest.raises(RuntimeError, match=_modified_message()):
        prod.sum().backward()


# ====================================================================== CUDA helpers and cudnn
def test_cuda_helpers_without_a_gpu():
    assert mc.cuda.is_available() == torch.cuda.is_available() or not mc.cuda.is_available()
    assert mc.cuda.is_available() is mc.cuda_available()
    if not mc.cuda.is_available():
        assert mc.cuda.device_count() == 0
    mc.cuda.manual_seed(1)
    mc.cuda.manual_seed_all(1)
    x = mc.ones(2)
    assert x.to("cpu", non_blocking=True) is x and x.is_cuda is False
    device = mc.device("cuda" if mc.cuda.is_available() else "cpu")
    assert x.to(device).device == device


def test_backends_cudnn_is_minicnns_own():
    import minicnn.backends.cudnn as cudnn

    assert cudnn.__name__ == "minicnn.backends.cudnn"
    cudnn.benchmark = True
    cudnn.deterministic = True
    assert mc.backends.cudnn.benchmark is True
    cudnn.benchmark = False
    cudnn.deterministic = False


# ====================================================================== functions, methods, dtypes
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_top_level_activations(name):
    m, t = both([[-1.0, 0.5, 2.0]], "float64")
    same(getattr(mc, name)(m), getattr(torch, name)(t), rtol=1e-14)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_top_level_softmax(name):
    m, t = both([[-1.0, 0.5, 2.0], [3.0, 3.0, 0.0]], "float64")
    same(getattr(mc, name)(m, dim=1), getattr(torch, name)(t, dim=1), rtol=1e-14)
    same(getattr(mc, name)(m, 0), getattr(torch, name)(t, 0), rtol=1e-14)


def test_shape_methods_match_torch():
    values = np.arange(24, dtype=np.float64).reshape(4, 6)
    m, t = both(values, "float64", requires_grad=True)
    o_m, o_t = both(np.zeros((2, 12)), "float64")
    same(m.view_as(o_m), t.view_as(o_t))
    same(m.t(), t.t())
    same(m.mm(m.t()), t.mm(t.t()))
    same(mc.mm(m, m.t()), torch.mm(t, t.t()))
    for got, want in zip(m.chunk(3, dim=1), t.chunk(3, dim=1)):
        same(got, want)
    for got, want in zip(m.chunk(3), t.chunk(3)):
        same(got, want)
    same(m.repeat(2, 1, 3), t.repeat(2, 1, 3))
    (m.repeat(2, 3) * mc.tensor(np.arange(48.0).reshape(8, 6).repeat(3, axis=1))).sum().backward()
    (t.repeat(2, 3) * torch.tensor(np.arange(48.0).reshape(8, 6).repeat(3, axis=1))).sum().backward()
    same(m.grad, t.grad)
    with pytest.raises(RuntimeError, match="mm: both operands must be matrices"):
        m.mm(mc.ones(6))


def test_topk_matches_torch_values_indices_and_gradient():
    rng = np.random.default_rng(3)
    values = rng.permutation(40).reshape(5, 8).astype(np.float64)
    m, t = both(values, "float64", requires_grad=True)
    for kwargs in (dict(k=3), dict(k=2, dim=0), dict(k=4, largest=False)):
        mv, mi = m.topk(**kwargs)
        tv, ti = t.topk(**kwargs)
        same(mv, tv)
        same(mi, ti)
    mv, _ = mc.topk(m, 3)
    tv, _ = torch.topk(t, 3)
    (mv * 2).sum().backward()
    (tv * 2).sum().backward()
    same(m.grad, t.grad)


def test_comparisons_as_methods_and_functions():
    m, t = both([1.0, 2.0, 3.0])
    for name in ("eq", "ne", "lt", "gt", "le", "ge"):
        same(getattr(m, name)(2.0), getattr(t, name)(2.0))
        same(getattr(mc, name)(m, m * 0 + 2), getattr(torch, name)(t, t * 0 + 2))
    assert (m == None) is False and (m != None) is True  # noqa: E711


@pytest.mark.parametrize("kwargs", [{}, dict(dim=1), dict(dim=0, keepdim=True), dict(dim=1, unbiased=False)])
def test_std_and_var_match_torch(kwargs):
    rng = np.random.default_rng(4)
    m, t = both(rng.standard_normal((3, 5)), "float64", requires_grad=True)
    for name in ("std", "var"):
        got, want = getattr(m, name)(**kwargs), getattr(t, name)(**kwargs)
        same(got, want, rtol=1e-12)
        got.sum().backward()
        want.sum().backward()
        same(m.grad, t.grad, rtol=1e-12)
        m.grad = t.grad = None
    same(mc.std(m, correction=0), torch.std(t, correction=0), rtol=1e-12)


def test_conversions_type_and_dtype_aliases():
    m, t = both([1.7, -2.2])
    for name in ("int", "long", "float", "double", "half", "bool"):
        same(getattr(m, name)(), getattr(t, name)())
    assert m.type() == "minicnn.FloatTensor" and t.type() == "torch.FloatTensor"
    assert m.long().type() == "minicnn.LongTensor"
    same(m.type(mc.float64), t.type(torch.float64))
    for alias in ("float", "long", "int", "double", "half", "bool", "short", "cfloat"):
        assert repr(getattr(mc, alias)) == repr(getattr(torch, alias)).replace("torch.", "minicnn."), alias
    assert mc.is_tensor(m) and not mc.is_tensor(np.ones(2))
    loss = mc.tensor(0.123456)
    assert f"{loss:.4f}" == f"{torch.tensor(0.123456):.4f}" == "0.1235"
    assert f"{mc.tensor([2.5]).sum():.1f}" == "2.5"


def test_printed_forms_match_torch():
    m, t = both(np.zeros((2, 3)), "float64")
    assert repr(m.shape) == repr(t.shape).replace("torch.", "minicnn.") == "minicnn.Size([2, 3])"
    assert str(m.shape) == "minicnn.Size([2, 3])" and m.shape == (2, 3) and isinstance(m.shape, tuple)
    assert m.size() == mc.Size([2, 3]) and m.shape[1:] == (3,) and repr(m.shape[1:]) == "minicnn.Size([3])"
    assert str(m.dtype) == "minicnn.float64" and repr(mc.bool_) == "minicnn.bool"
    for spec in ("cpu", "cuda:1", "cuda"):
        assert repr(mc.device(spec)) == repr(torch.device(spec if spec != "cuda" else "cuda:0"))
    assert repr(m) == repr(t).replace("torch.", "minicnn.")
    assert np.dtype(mc.float32) == np.float32 and np.zeros(2, dtype=mc.int64).dtype == np.int64


# ====================================================================== type promotion
_DTYPES = ["bool", "uint8", "int32", "int64", "float16", "float32", "float64"]
_SCALARS = [True, 3, 2.5]


_RIGHT = [(d, False) for d in _DTYPES] + [(d, True) for d in _DTYPES] + [(repr(s), None) for s in _SCALARS]


@pytest.mark.parametrize("left", _DTYPES)
@pytest.mark.parametrize("right, zero_dim", _RIGHT)
def test_type_promotion_matches_torch(left, right, zero_dim):
    """Dimensioned tensor (op) dimensioned tensor / 0-d tensor / Python number: PyTorch's dtype."""
    a_np = np.array([1, 2, 3]).astype(left)
    m_a, t_a = mc.tensor(a_np), torch.tensor(a_np)
    if right in _DTYPES:
        b_np = (np.array(1) if zero_dim else np.array([1, 1, 2])).astype(right)
        m_b, t_b = mc.tensor(b_np), torch.tensor(b_np)
    else:
        m_b = t_b = eval(right)
    for op in ("add", "mul", "truediv"):
        if op != "truediv" and "bool" in (left, right) and left == right:
            continue  # torch refuses bool arithmetic in some versions; nothing to compare
        try:
            want = getattr(t_a, f"__{op}__")(t_b)
        except RuntimeError:
            continue
        got = getattr(m_a, f"__{op}__")(m_b)
        assert str(got.dtype) == str(want.dtype).replace("torch.", "minicnn."), (op, left, right, zero_dim)


def test_promotion_cases_named_in_the_issue():
    x = mc.ones(3)
    assert (x * mc.tensor(2.0, dtype=mc.float64)).dtype == mc.float32
    assert (x * np.float64(2.0)).dtype == mc.float32
    assert (mc.tensor([1, 2]) / 2).dtype == mc.float32
    assert (mc.tensor([4, 6]) / mc.tensor([2, 4])).tolist() == [2.0, 1.5]
    layer = nn.Linear(3, 1)
    assert layer(x.unsqueeze(0) * np.float64(0.5)).dtype == mc.float32  # the next layer still works


# ====================================================================== inputs PyTorch refuses
@pytest.mark.parametrize(
    "data", ["abc", ["1", "2"], None, [1.0, None], np.array([object(), 1], dtype=object)], ids=repr
)
def test_non_numeric_data_is_refused_at_creation(data):
    with pytest.raises(TypeError, match="cannot (make|be) a tensor"):
        mc.tensor(data)
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        torch.tensor(data)


@pytest.mark.parametrize(
    "call",
    [
        lambda: mc.zeros(2.5),
        lambda: mc.ones(2, "3"),
        lambda: mc.randn(2.0, 3),
        lambda: mc.empty((2, 1.5)),
        lambda: mc.ones(6).reshape(2.5, 4),
        lambda: mc.ones(6).view(2, "3"),
        lambda: mc.full((2.5,), 1.0),
    ],
)
def test_non_integer_sizes_raise_type_error(call):
    with pytest.raises(TypeError, match="must be a tuple of ints, but found element of type"):
        call()
    with pytest.raises(TypeError):
        torch.zeros(2.5)


def test_negative_sizes_and_zero_steps():
    with pytest.raises(RuntimeError, match="negative dimension"):
        mc.zeros(2, -1)
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        mc.arange(0, 10, 0)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        mc.arange(0, 10, -1)


def test_backward_of_a_complex_loss_is_refused_like_torch():
    z = mc.tensor([1.0 + 2.0j, 3.0 - 1.0j], requires_grad=True)
    tz = torch.tensor([1.0 + 2.0j, 3.0 - 1.0j], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for real scalar outputs"):
        (z * z).sum().backward()
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for real scalar outputs"):
        (tz * tz).sum().backward()
