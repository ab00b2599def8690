"""Optimizers against torch.optim: 50 steps on the same parameters with the same gradients.

torch runs its single-tensor implementations (foreach=False), which minicnn follows operation
by operation, so float64 parameters agree within 1e-10 (in practice to a few ulps).
"""

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import optim
from minicnn.optim import optimizer as optimizer_module
from minicnn.testing import compare_optimizer_with_torch
from parity_tests.harness import assert_close, rng_for

SHAPES = [(3, 4), (7,), (2, 3, 5)]
STEPS = 50

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, centered=True, momentum=0.5, weight_decay=0.1, maximize=True)),
]


def _case_id(case):
    name, kw = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in kw.items()) or "defaults")


def _torch_optimizer(name, params, kwargs):
    return getattr(torch.optim, name)(params, foreach=False, **kwargs)


def _problem(key):
    """Initial parameters and a sequence of gradients (some params skip some steps: grad None)."""
    rng = rng_for("optim", key)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = []
    for step in range(STEPS):
        grads.append(
            [rng.standard_normal(s) if not (i == 1 and step % 3 == 2) else None for i, s in enumerate(SHAPES)]
        )
    return init, grads


def _run_minicnn(opt, params, grads, device, dtype, start=0, stop=STEPS):
    for step in range(start, stop):
        for p, g in zip(params, grads[step]):
            p.grad = None if g is None else mc.tensor(g.astype(dtype), device=device)
        opt.step()


def _make_params(init, dtype, device):
    return [mc.tensor(a.astype(dtype), device=device, requires_grad=True) for a in init]


def _groups(params, first_lr):
    """Two param groups: the first parameter alone with its own lr, the others with the defaults."""
    return [{"params": params[:1], "lr": first_lr}, {"params": params[1:]}]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch_over_50_steps(case, dtype, device):
    """Parameters compared after every step (``minicnn.testing.compare_optimizer_with_torch``)."""
    name, kwargs = case
    init, grads = _problem(_case_id(case))
    report = compare_optimizer_with_torch(
        lambda ps: getattr(optim, name)(ps, **kwargs),
        lambda ps: _torch_optimizer(name, ps, kwargs),
        init,
        steps=STEPS,
        grads=grads,
        dtype=dtype,
        device=device,
        rtol=1e-10 if dtype == "float64" else 1e-5,
    )
    opt = report.optimizer
    for p in report.params:  # buffers keep the parameter's dtype too
        for key, value in opt.state[p].items():
            if hasattr(value, "dtype"):
                assert value.dtype == np.dtype(dtype), f"state[{key!r}] is {value.dtype}"


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adam", dict(lr=0.01, amsgrad=True)),
        ("AdamW", dict(lr=0.01, weight_decay=0.1)),
        ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ],
)
def test_param_groups_with_their_own_lr(name, kwargs, device):
    init, grads = _problem(("groups", name))
    report = compare_optimizer_with_torch(
        lambda ps: getattr(optim, name)(_groups(ps, 0.003), **kwargs),
        lambda ps: _torch_optimizer(name, _groups(ps, 0.003), kwargs),
        init,
        steps=STEPS,
        grads=grads,
        device=device,
    )
    opt = report.optimizer
    assert opt.param_groups[0]["lr"] == 0.003 and opt.param_groups[1]["lr"] == kwargs["lr"]


def test_trains_through_autograd_like_torch(device):
    """A small least-squares fit where the gradients come from backward(), not from the test."""
    rng = rng_for("autograd fit")
    x, y, w0 = rng.standard_normal((16, 5)), rng.standard_normal((16, 3)), rng.standard_normal((5, 3))
    w = mc.tensor(w0.copy(), device=device, requires_grad=True)
    tw = torch.from_numpy(w0.copy()).requires_grad_()
    opt = optim.Adam([w], lr=0.05, weight_decay=0.01)
    th_opt = torch.optim.Adam([tw], lr=0.05, weight_decay=0.01, foreach=False)
    xm, ym = mc.tensor(x, device=device), mc.tensor(y, device=device)
    for _ in range(30):
        opt.zero_grad()
        loss = ((xm @ w - ym) * (xm @ w - ym)).mean()
        loss.backward()
        opt.step()
        th_opt.zero_grad()
        ((torch.from_numpy(x) @ tw - torch.from_numpy(y)) ** 2).mean().backward()
        th_opt.step()
    assert_close(w.numpy(), tw.detach().numpy(), 1e-10, "fitted weights")


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1)),
        ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
        ("AdamW", dict(lr=0.01)),
        ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ],
)
def test_state_dict_resumes_exactly(name, kwargs, device):
    init, grads = _problem(("resume", name))
    straight = _make_params(init, "float64", device)
    _run_minicnn(getattr(optim, name)(_groups(straight, 0.02), **kwargs), straight, grads, device, "float64")

    params = _make_params(init, "float64", device)
    first = getattr(optim, name)(_groups(params, 0.02), **kwargs)
    _run_minicnn(first, params, grads, device, "float64", stop=20)
    saved = first.state_dict()
    # torch's layout: state keyed by parameter index, groups list indices
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1, 2]]
    assert set(saved["state"]) == {0, 1, 2}
    # the checkpoint holds copies: spoiling the live buffers must not reach it
    for state in first.state.values():
        for value in state.values():
            if hasattr(value, "shape"):
                value[...] = np.nan

    resumed = getattr(optim, name)(_groups(params, 0.5), **kwargs)  # a different lr, restored by loading
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 0.02
    assert resumed.param_groups[0]["params"][0] is params[0]
    _run_minicnn(resumed, params, grads, device, "float64", start=20)
    for i, (p, q) in enumerate(zip(params, straight)):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=f"{name} param {i} after resuming")


def test_load_state_dict_casts_buffers_to_the_params_dtype(device):
    init, grads = _problem("cast")
    p64 = _make_params(init, "float64", device)
    opt = optim.Adam(p64, lr=0.01)
    _run_minicnn(opt, p64, grads, device, "float64", stop=5)
    p32 = _make_params(init, "float32", device)
    opt32 = optim.Adam(p32, lr=0.01)
    opt32.load_state_dict(opt.state_dict())
    for p, q in zip(p32, p64):
        assert opt32.state[p]["step"] == opt.state[q]["step"] > 0
        assert opt32.state[p]["exp_avg"].dtype == np.float32
        assert mc.Tensor(opt32.state[p]["exp_avg"]).device == mc.device(device)
    _run_minicnn(opt32, p32, grads, device, "float32", start=5, stop=6)
    assert all(p.dtype == np.float32 for p in p32)


def test_load_state_dict_rejects_a_different_layout(device):
    params = _make_params([np.ones((2, 2)), np.ones(3)], "float64", device)
    saved = optim.SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="parameter group"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="2 parameters here but 1"):
        optim.SGD(params, lr=0.1).load_state_dict(optim.SGD(params[:1], lr=0.1).state_dict())


def test_zero_grad_both_modes(device):
    params = _make_params([np.ones((2, 3)), np.ones(4)], "float32", device)
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = mc.tensor(np.full(p.shape, 2.0, dtype=np.float32), device=device)
    arrays = [p.grad.array for p in params]
    opt.zero_grad(set_to_none=False)
    for p, arr in zip(params, arrays):
        assert p.grad.array is arr, "set_to_none=False must zero the grad array in place"
        assert p.grad.dtype == np.float32
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape, np.float32))
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = [p.numpy().copy() for p in params]
    opt.step()  # no gradients: nothing moves
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.numpy(), b)


def test_update_is_in_place_and_step_returns_the_closure_loss(device):
    p = mc.tensor(np.arange(6.0).reshape(2, 3), device=device, requires_grad=True)
    array = p.array
    opt = optim.SGD([p], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 55.0
    assert p.array is array
    np.testing.assert_array_equal(p.numpy(), np.zeros((2, 3)))  # p - 0.5 * 2p


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "invalid learning rate"),
        (lambda p: optim.SGD(p, momentum=-0.5), "invalid momentum"),
        (lambda p: optim.SGD(p, weight_decay=-1), "invalid weight_decay"),
        (lambda p: optim.SGD(p, nesterov=True), "Nesterov momentum requires a momentum"),
        (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
        (lambda p: optim.Adam(p, lr=-1e-3), "Adam: invalid learning rate"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), "beta parameter at index 0"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), "beta parameter at index 1"),
        (lambda p: optim.Adam(p, eps=-1e-8), "invalid epsilon"),
        (lambda p: optim.AdamW(p, weight_decay=-0.01), "AdamW: invalid weight_decay"),
        (lambda p: optim.RMSprop(p, alpha=-0.9), "invalid alpha"),
        (lambda p: optim.RMSprop(p, momentum=-0.1), "invalid momentum"),
        (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
    ],
)
def test_bad_arguments_raise_value_error(make, match, device):
    params = _make_params([np.ones(3)], "float64", device)
    with pytest.raises(ValueError, match=match):
        make(params)


def test_bad_params_are_explained(device):
    a = mc.tensor(np.ones((2, 2)), device=device, requires_grad=True)
    with pytest.raises(TypeError, match=r"single Tensor of shape \(2, 2\)"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors.*ndarray"):
        optim.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD([{"params": {a}}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": a})


def test_add_param_group_fills_defaults(device):
    a, b = (mc.tensor(np.ones(2), device=device, requires_grad=True) for _ in range(2))
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert len(opt.param_groups[1]["params"]) == 1 and opt.param_groups[1]["params"][0] is b
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    assert "Parameter Group 1" in repr(opt)


def test_params_on_two_devices_are_refused(device, monkeypatch):
    """Pretend the second parameter lives on another device than the first (cuda:0 when the first is on
    the CPU, cuda:1 when it is on cuda:0) by patching the device lookup of the optimizer."""
    a = mc.tensor(np.ones((3, 4)), device=device, requires_grad=True)
    b = mc.tensor(np.ones(7), device=device, requires_grad=True)
    other = "cuda:1" if a.device == "cuda:0" else "cuda:0"
    opt = optim.SGD([a, b], lr=0.1)
    a.grad, b.grad = mc.zeros_like(a), mc.zeros_like(b)
    real_device_of = optimizer_module.device_of
    monkeypatch.setattr(
        optimizer_module,
        "device_of",
        lambda arr: mc.device(other) if arr is b.array else real_device_of(arr),
    )
    with pytest.raises(RuntimeError) as info:
        opt.step()
    message = str(info.value)
    assert str(a.device) != other
    assert "different devices" in message and other in message and str(a.device) in message
    assert "(3, 4)" in message and "(7,)" in message
    assert "model.to(device) before creating the optimizer" in message
    b.grad = None  # only parameters that have a gradient take part in the step
    opt.step()


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_numpy_scalar_hyperparameters_do_not_upcast_float32(name, device):
    """np.float64 options (say from a NumPy schedule) give bit-for-bit the float32 result of Python floats."""
    init, grads = _problem(("scalars", name))
    results = []
    for lr, momentum in [(0.01, 0.9), (np.float64(0.01), np.float64(0.9))]:
        params = _make_params(init, "float32", device)
        kwargs = dict(lr=lr) if name == "Adam" else dict(lr=lr, momentum=momentum)
        _run_minicnn(getattr(optim, name)(params, **kwargs), params, grads, device, "float32", stop=10)
        results.append([p.numpy() for p in params])
    for a, b in zip(*results):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
