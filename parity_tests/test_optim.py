"""Optimizers against torch.optim: 50 steps on the same parameters with the same gradients.

SGD, Adam, AdamW, RMSprop, Adadelta, Adagrad: every option, float64 and float32, parameter
groups, state_dict layout and exact resume, argument and checkpoint validation.

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
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4)),
    ("Adadelta", dict(lr=0.3, rho=0.95, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, eps=1e-6)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.3, weight_decay=0.1, maximize=True)),
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


def _run_torch(opt, params, grads, dtype):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else torch.from_numpy(g.astype(dtype))
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
        ("Adadelta", dict(lr=0.5, weight_decay=0.01)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1)),
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
        ("Adadelta", dict(lr=0.5, rho=0.85, weight_decay=0.01)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2)),
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


# Options torch keeps in every group to choose an implementation; minicnn has one, and keeps none.
TORCH_IMPLEMENTATION_FLAGS = {"foreach", "fused", "capturable", "differentiable"}


LAYOUT_CASES = [c for i, c in enumerate(CASES) if i % 3 == 2 or c[0] == "AdamW"]  # every optimizer


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=_case_id)
def test_state_dict_layout_and_values_are_torchs(case, device):
    """Same keys per parameter, same group options (less torch's implementation flags), same values."""
    name, kwargs = case
    init, grads = _problem(("layout", _case_id(case)))
    mc_params = _make_params(init, "float64", device)
    th_params = [torch.from_numpy(a.copy()).requires_grad_() for a in init]
    opt = getattr(optim, name)(_groups(mc_params, 0.02), **kwargs)
    th_opt = getattr(torch.optim, name)(_groups(th_params, 0.02), foreach=False, **kwargs)
    for stop in (0, 7):  # before the first step (Adagrad already has state then) and after 7
        _run_minicnn(opt, mc_params, grads[:stop], device, "float64", stop=stop)
        _run_torch(th_opt, th_params, grads[:stop], "float64")
        mine, ref = opt.state_dict(), th_opt.state_dict()
        for g, tg in zip(mine["param_groups"], ref["param_groups"]):
            assert set(g) == set(tg) - TORCH_IMPLEMENTATION_FLAGS
            for key in g:
                assert g[key] == tg[key], f"param_groups option {key!r}: {g[key]} != torch's {tg[key]}"
        assert set(mine["state"]) == set(ref["state"])
        for i, state in mine["state"].items():
            assert set(state) == set(ref["state"][i]), f"state[{i}]"
            for key, value in state.items():
                expected = ref["state"][i][key]
                if key == "step":
                    assert value == float(expected)
                else:
                    assert_close(mc.Tensor(value).numpy(), expected.numpy(), 1e-10, f"state[{i}][{key!r}]")
        grads = grads[stop:]


def test_adagrad_creates_its_state_at_construction_like_torch(device):
    params = _make_params([np.ones((2, 3)), np.ones(4)], "float32", device)
    opt = optim.Adagrad(params, initial_accumulator_value=0.25)
    for p in params:
        assert opt.state[p]["step"] == 0
        assert opt.state[p]["sum"].dtype == np.float32
        expected = np.full(p.shape, 0.25, np.float32)
        np.testing.assert_array_equal(mc.Tensor(opt.state[p]["sum"]).numpy(), expected)
    late = mc.tensor(np.ones(3, np.float32), device=device, requires_grad=True)
    opt.add_param_group({"params": [late], "initial_accumulator_value": 9.0})  # ignored, as in torch
    late.grad = mc.ones_like(late)
    opt.step()
    np.testing.assert_allclose(mc.Tensor(opt.state[late]["sum"]).numpy(), np.full(3, 1.25, np.float32))


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


def _stepped(opt, params):
    for p in params:
        p.grad = mc.ones_like(p)
    opt.step()
    return opt.state_dict()


def test_load_state_dict_rejects_other_shapes_at_load(device):
    """A checkpoint of other parameters is refused by load_state_dict, not later inside step()."""
    params = _make_params([np.ones((2, 2)), np.ones(3)], "float64", device)
    others = _make_params([np.ones((2, 2)), np.ones(5)], "float64", device)
    for name in ("SGD", "Adam", "RMSprop", "Adadelta", "Adagrad"):
        kwargs = dict(lr=0.1, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.1)
        saved = _stepped(getattr(optim, name)(others, **kwargs), others)
        opt = getattr(optim, name)(params, **kwargs)
        before = opt.state_dict()
        message = r"state\[1\]\['\w+'\] has shape \(5,\), but parameter 1 has shape \(3,\)"
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(saved)
        assert opt.state_dict()["param_groups"] == before["param_groups"]  # nothing half-loaded


@pytest.mark.parametrize(
    "saved_by, loaded_by, missing",
    [("SGD", "Adam", "betas, eps"), ("Adam", "SGD", "momentum, dampening"),
     ("Adam", "RMSprop", "momentum, alpha"), ("RMSprop", "SGD", "dampening"),
     ("Adagrad", "Adadelta", "rho"), ("Adadelta", "Adagrad", "lr_decay")],
)  # fmt: skip
def test_load_state_dict_rejects_another_optimizers_state(saved_by, loaded_by, missing, device):
    params = _make_params([np.ones((2, 2)), np.ones(3)], "float64", device)
    saved = _stepped(getattr(optim, saved_by)(params, lr=0.1), params)
    with pytest.raises(ValueError, match=f"lacks {loaded_by}'s option\\(s\\) {missing}.*another optimizer"):
        getattr(optim, loaded_by)(params, lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="expected an optimizer state_dict"):
        getattr(optim, loaded_by)(params, lr=0.1).load_state_dict({"model": 1})


def test_load_state_dict_fills_flags_missing_from_an_older_checkpoint(device):
    params = _make_params([np.ones(3)], "float64", device)
    saved = _stepped(optim.Adam(params, lr=0.1), params)
    del saved["param_groups"][0]["decoupled_weight_decay"], saved["param_groups"][0]["maximize"]
    opt = optim.Adam(params, lr=0.5)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["maximize"] is False and opt.param_groups[0]["decoupled_weight_decay"] is False
    assert opt.param_groups[0]["lr"] == 0.1


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
        (lambda p: optim.Adadelta(p, lr=-1.0), "Adadelta: invalid learning rate"),
        (lambda p: optim.Adadelta(p, rho=1.5), "invalid rho value"),
        (lambda p: optim.Adadelta(p, eps=-1e-6), "invalid epsilon"),
        (lambda p: optim.Adadelta(p, weight_decay=-1), "invalid weight_decay"),
        (lambda p: optim.Adagrad(p, lr=-0.1), "Adagrad: invalid learning rate"),
        (lambda p: optim.Adagrad(p, lr_decay=-0.1), "invalid lr_decay"),
        (lambda p: optim.Adagrad(p, initial_accumulator_value=-1), "invalid initial_accumulator_value"),
        (lambda p: optim.Adagrad(p, eps=-1), "invalid epsilon"),
    ],
)
def test_bad_arguments_raise_value_error(make, match, device):
    params = _make_params([np.ones(3)], "float64", device)
    with pytest.raises(ValueError, match=match):
        make(params)


@pytest.mark.parametrize(
    "name, option, value",
    [("SGD", "lr", "0.1"), ("SGD", "momentum", "0.9"), ("SGD", "dampening", None),
     ("SGD", "weight_decay", [0]),
     ("Adam", "lr", "0.1"), ("Adam", "eps", "1e-8"), ("Adam", "betas", ("0.9", 0.999)),
     ("AdamW", "weight_decay", "0.01"), ("RMSprop", "alpha", "0.99"), ("RMSprop", "lr", "0.1"),
     ("Adadelta", "rho", "0.9"), ("Adadelta", "lr", "1"), ("Adagrad", "lr_decay", "0"),
     ("Adagrad", "initial_accumulator_value", "0.1"), ("Adagrad", "lr", "0.1")],
)  # fmt: skip
def test_a_non_number_option_is_a_type_error_naming_it(name, option, value, device):
    params = _make_params([np.ones(3)], "float64", device)
    shown = "betas\\[0\\]" if option == "betas" else option
    with pytest.raises(TypeError, match=f"^{name}: .*{shown} must be a number, got ") as info:
        getattr(optim, name)(params, **{option: value})
    assert "\n" not in str(info.value)


def test_numbers_of_every_kind_are_accepted(device):
    params = _make_params([np.ones(3)], "float64", device)
    optim.SGD(params, lr=np.float32(0.1), momentum=np.int64(0), weight_decay=True)
    optim.Adam(params, lr=mc.tensor(1e-3), betas=[np.float64(0.9), 0.999])
    optim.Adadelta(params, 1.0, 0.9, 1e-6, 0, None)  # torch's positional order, foreach included
    optim.Adagrad(params, 0.01, 0, 0, 0, 1e-10, False, maximize=True, fused=None)
    # torch's order: ..., centered, capturable, foreach, maximize
    rmsprop = optim.RMSprop(params, 0.01, 0.99, 1e-8, 0, 0, False, False, None, True)
    assert rmsprop.defaults["maximize"] is True
    with pytest.raises(NotImplementedError, match="differentiable=True is not supported"):
        optim.SGD(params, lr=0.1, differentiable=True)
    with pytest.raises(TypeError, match="foreach must be None, True or False"):
        optim.Adam(params, foreach="yes")


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_between_retained_backwards_is_refused(name, device):
    """As in PyTorch: opt.step() changes the weights in place, so a second backward through the
    graph built with the old weights raises instead of returning wrong gradients."""
    w = mc.tensor(np.arange(6.0).reshape(2, 3), device=device, requires_grad=True)
    opt = getattr(optim, name)([w], lr=0.1)
    loss = (w * w).sum()  # the product saves w for its backward
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    tw = torch.from_numpy(np.arange(6.0).reshape(2, 3)).requires_grad_()
    th_opt = getattr(torch.optim, name)([tw], lr=0.1)
    th_loss = (tw * tw).sum()
    th_loss.backward(retain_graph=True)
    th_opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        th_loss.backward()


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


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Adadelta", "Adagrad"])
def test_numpy_scalar_hyperparameters_do_not_upcast_float32(name, device):
    """np.float64 options (say from a NumPy schedule) give bit-for-bit the float32 result of Python floats."""
    init, grads = _problem(("scalars", name))
    results = []
    for lr, momentum in [(0.01, 0.9), (np.float64(0.01), np.float64(0.9))]:
        params = _make_params(init, "float32", device)
        kwargs = dict(lr=lr, momentum=momentum) if name in ("SGD", "RMSprop") else dict(lr=lr)
        _run_minicnn(getattr(optim, name)(params, **kwargs), params, grads, device, "float32", stop=10)
        results.append([p.numpy() for p in params])
    for a, b in zip(*results):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
