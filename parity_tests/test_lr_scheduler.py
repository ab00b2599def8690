"""LR schedulers against torch.optim.lr_scheduler: the lr (and momentum) of every step, 100 steps.

The schedulers use PyTorch's formulas in PyTorch's order, so the Python floats are compared exactly.
"""

import math
import warnings

import numpy as np
import pytest
import torch

import minicnn as mc
from minicnn import optim
from minicnn.optim import lr_scheduler as mc_sched
from minicnn.testing import compare_optimizer_with_torch

STEPS = 100
BASE_LRS = (0.1, 0.02)


def _mc_optimizer(kind, device):
    a = mc.tensor(np.ones((2, 3)), device=device, requires_grad=True)
    b = mc.tensor(np.ones(4), device=device, requires_grad=True)
    groups = [{"params": [a], "lr": BASE_LRS[0]}, {"params": [b], "lr": BASE_LRS[1]}]
    return optim.Adam(groups) if kind == "adam" else optim.SGD(groups, momentum=0.9)


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def _trace(opt, sched, steps=STEPS):
    """lrs from get_last_lr, the lrs in the groups, and the momenta, after construction and each step."""
    rows = [(list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups], _momenta(opt))]
    for _ in range(steps):
        opt.step()  # no gradients: a no-op, but the order optimizer.step() -> scheduler.step() is kept
        sched.step()
        rows.append((list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups], _momenta(opt)))
    return rows


# Each case builds the same schedule from a scheduler module (minicnn's or torch's) and an optimizer.
CASES = {
    "StepLR": lambda S, o: S.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda S, o: S.MultiStepLR(o, milestones=[10, 30, 30, 75], gamma=0.3),
    "CosineAnnealingLR": lambda S, o: S.CosineAnnealingLR(o, T_max=100),
    "CosineAnnealingLR-restarts": lambda S, o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    "LinearLR": lambda S, o: S.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20),
    "LinearLR-defaults": lambda S, o: S.LinearLR(o),
    "LambdaLR": lambda S, o: S.LambdaLR(o, lambda e: 0.97**e),
    "LambdaLR-per-group": lambda S, o: S.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: math.cos(e / 20)]),
    "warmup+cosine": lambda S, o: S.SequentialLR(
        o,
        [S.LinearLR(o, start_factor=0.01, total_iters=10), S.CosineAnnealingLR(o, T_max=90)],
        milestones=[10],
    ),
    "three-phase-sequence": lambda S, o: S.SequentialLR(
        o,
        [
            S.LinearLR(o, start_factor=0.2, total_iters=5),
            S.StepLR(o, 10, 0.5),
            S.CosineAnnealingLR(o, T_max=40),
        ],
        milestones=[5, 45],
    ),
    "OneCycleLR": lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=STEPS),
    "OneCycleLR-linear": lambda S, o: S.OneCycleLR(
        o, max_lr=[0.5, 0.05], epochs=10, steps_per_epoch=10, pct_start=0.25, anneal_strategy="linear"
    ),
    "OneCycleLR-three-phase": lambda S, o: S.OneCycleLR(
        o,
        max_lr=0.3,
        total_steps=STEPS,
        three_phase=True,
        div_factor=10.0,
        final_div_factor=100.0,
        base_momentum=[0.8, 0.7],
        max_momentum=0.99,
    ),  # fmt: skip
    "OneCycleLR-no-momentum": lambda S, o: S.OneCycleLR(
        o, max_lr=0.2, total_steps=STEPS, cycle_momentum=False
    ),
}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(CASES))
def test_schedule_matches_torch(name, kind, device):
    """get_last_lr(), every group's lr, initial_lr and momentum (or betas), after construction and after
    each of 100 steps, exactly (``compare_optimizer_with_torch`` with lr_rtol=0); the parameters too."""

    def groups(params):
        return [{"params": [params[0]], "lr": BASE_LRS[0]}, {"params": [params[1]], "lr": BASE_LRS[1]}]

    def make(lib):
        return lambda ps: lib.Adam(groups(ps)) if kind == "adam" else lib.SGD(groups(ps), momentum=0.9)

    compare_optimizer_with_torch(
        make(optim),
        make(torch.optim),
        [(2, 3), (4,)],
        steps=STEPS,
        scheduler=(lambda o: CASES[name](mc_sched, o), lambda o: CASES[name](torch.optim.lr_scheduler, o)),
        lr_rtol=0.0,
        device=device,
    )


def test_schedule_drives_the_update(device):
    """The lr a scheduler writes is the one the next optimizer step uses."""
    p = mc.tensor(np.zeros(3), device=device, requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = mc_sched.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = mc.ones_like(p)
        opt.step()
        sched.step()
    np.testing.assert_array_equal(p.numpy(), np.full(3, -1.75))  # -(1 + 0.5 + 0.25)


class _Warmup:
    """A callable object: LambdaLR saves and restores its attributes."""

    def __init__(self, n):
        self.n = n

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.n)


STATE_CASES = {
    "CosineAnnealingLR": lambda S, o: S.CosineAnnealingLR(o, T_max=50, eta_min=1e-4),
    "MultiStepLR": lambda S, o: S.MultiStepLR(o, milestones=[20, 50, 70]),
    "warmup+cosine": CASES["warmup+cosine"],
    "OneCycleLR": CASES["OneCycleLR-three-phase"],
    "LambdaLR-object": lambda S, o: S.LambdaLR(o, _Warmup(30)),
}


@pytest.mark.parametrize("name", list(STATE_CASES))
def test_state_dict_round_trip(name, device):
    opt = _mc_optimizer("sgd", device)
    straight = _trace(opt, STATE_CASES[name](mc_sched, opt))

    opt = _mc_optimizer("sgd", device)
    sched = STATE_CASES[name](mc_sched, opt)
    head = _trace(opt, sched, steps=40)
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert sched_state["last_epoch"] == 40 and "optimizer" not in sched_state
    for _ in range(5):  # stepping on must not change the saved state
        opt.step()
        sched.step()
    if name == "LambdaLR-object":
        sched.lr_lambdas[0].n = 7

    new_opt = _mc_optimizer("sgd", device)
    new_sched = STATE_CASES[name](mc_sched, new_opt)
    if name == "LambdaLR-object":
        new_sched.lr_lambdas[0].n = 1000  # restored from the checkpoint
    new_sched.load_state_dict(sched_state)
    new_opt.load_state_dict(opt_state)
    tail = _trace(new_opt, new_sched, steps=60)
    assert head + tail[1:] == straight


def test_scheduler_step_before_optimizer_step_warns(device):
    opt = _mc_optimizer("sgd", device)
    sched = mc_sched.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"before optimizer.step\(\)"):
        sched.step()
    opt, sched = _mc_optimizer("sgd", device), None
    sched = mc_sched.StepLR(opt, step_size=2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def test_bad_arguments_are_explained(device):
    opt = _mc_optimizer("sgd", device)
    with pytest.raises(TypeError, match="needs a minicnn.optim.Optimizer"):
        mc_sched.StepLR(torch.optim.SGD([torch.ones(1, requires_grad=True)]), step_size=1)
    with pytest.raises(ValueError, match=r"start_factor must be in \(0, 1\]"):
        mc_sched.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match=r"end_factor must be in \[0, 1\]"):
        mc_sched.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="one value per parameter group"):
        mc_sched.OneCycleLR(opt, max_lr=[0.1, 0.2, 0.3], total_steps=10)
    with pytest.raises(ValueError, match="total_steps, or both epochs and steps_per_epoch"):
        mc_sched.OneCycleLR(opt, max_lr=0.1, epochs=3)
    with pytest.raises(ValueError, match="anneal_strategy"):
        mc_sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, anneal_strategy="cosine")
    with pytest.raises(ValueError, match="pct_start"):
        mc_sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="expected 2 lr_lambdas"):
        mc_sched.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="one milestone fewer than schedulers"):
        mc_sched.SequentialLR(opt, [mc_sched.StepLR(opt, 3), mc_sched.StepLR(opt, 4)], milestones=[])
    other = _mc_optimizer("sgd", device)
    with pytest.raises(ValueError, match="same optimizer"):
        mc_sched.SequentialLR(opt, [mc_sched.StepLR(opt, 3), mc_sched.StepLR(other, 4)], milestones=[5])
    with pytest.raises(KeyError, match="initial_lr"):
        mc_sched.StepLR(_mc_optimizer("sgd", device), step_size=3, last_epoch=10)

    sched = mc_sched.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="stepped 4 times, but total_steps is 3"):
        sched.step()

    class NoMomentum(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum or betas"):
        mc_sched.OneCycleLR(NoMomentum([mc.tensor(np.ones(2), requires_grad=True)]), 0.1, total_steps=5)
