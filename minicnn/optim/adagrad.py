"""Adagrad: divide the gradient by the root of the sum of all past squared gradients."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.optim.optimizer import Optimizer, _check_at_least, _check_flags


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` (Duchi et al. 2011). At step t, with g = gradient and p = parameter::

    g = -g                                            if maximize
    g = g + weight_decay * p                          if weight_decay != 0
    clr = lr / (1 + (t - 1) * lr_decay)
    s = s + g * g                                     (s starts at initial_accumulator_value)
    p = p - clr * g / (sqrt(s) + eps)

    As in PyTorch, the state (``step`` = 0 and ``sum``) of every parameter is created by the
    constructor, and ``sum`` starts at the constructor's ``initial_accumulator_value`` (a
    parameter group's own value is ignored, as in PyTorch).
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        fused=None,
    ):
        _check_flags("Adagrad", foreach=foreach, fused=fused, differentiable=differentiable)
        _check_at_least("Adagrad", "learning rate lr", lr, 0.0)
        _check_at_least("Adagrad", "lr_decay", lr_decay, 0.0)
        _check_at_least("Adagrad", "weight_decay", weight_decay, 0.0)
        _check_at_least("Adagrad", "initial_accumulator_value", initial_accumulator_value, 0.0)
        _check_at_least("Adagrad", "epsilon eps", eps, 0.0)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p)

    def _init_state(self, p):
        state = self.state[p]
        if len(state) == 0:
            xp = get_array_module(p.array)
            state["step"] = 0
            state["sum"] = xp.full_like(p.array, float(self.defaults["initial_accumulator_value"]))
        return state

    def _update(self, p, grad, group):
        param = p.array
        xp = get_array_module(param)
        lr, lr_decay = float(group["lr"]), float(group["lr_decay"])
        eps, weight_decay = float(group["eps"]), float(group["weight_decay"])
        state = self._init_state(p)  # parameters of a group added later start here
        state["step"] += 1
        step = state["step"]
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param

        clr = lr / (1 + (step - 1) * lr_decay)
        state_sum = state["sum"]
        state_sum += grad * grad
        std = xp.sqrt(state_sum)
        std += eps
        param += -clr * grad / std
