"""Adadelta: a per-coordinate step size from running averages of squared gradients and squared updates."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.optim.optimizer import Optimizer, _check_at_least, _check_flags, _check_number


class Adadelta(Optimizer):
    """``torch.optim.Adadelta`` (Zeiler 2012; the optimizer of PyTorch's official MNIST example).
    With g = gradient and p = parameter::

    g = -g                                            if maximize
    g = g + weight_decay * p                          if weight_decay != 0
    v = rho * v + (1 - rho) * g * g                   (square_avg)
    d = sqrt(u + eps) / sqrt(v + eps) * g             (u = acc_delta, the running average of d * d)
    u = rho * u + (1 - rho) * d * d
    p = p - lr * d

    ``lr`` (default 1.0) only scales the update: the step size itself comes from the ratio of the
    two running averages.
    """

    def __init__(
        self,
        params,
        lr=1.0,
        rho=0.9,
        eps=1e-6,
        weight_decay=0,
        foreach=None,
        *,
        capturable=False,
        maximize=False,
        differentiable=False,
    ):
        _check_flags("Adadelta", foreach=foreach, capturable=capturable, differentiable=differentiable)
        _check_at_least("Adadelta", "learning rate lr", lr, 0.0)
        _check_number("Adadelta", "rho", rho)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Adadelta: invalid rho value: {rho} (it must be in [0, 1])")
        _check_at_least("Adadelta", "epsilon eps", eps, 0.0)
        _check_at_least("Adadelta", "weight_decay", weight_decay, 0.0)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, p, grad, group):
        param = p.array
        xp = get_array_module(param)
        lr, rho, eps = float(group["lr"]), float(group["rho"]), float(group["eps"])
        weight_decay = float(group["weight_decay"])
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(param)
            state["acc_delta"] = xp.zeros_like(param)
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]

        state["step"] += 1
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param

        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        std = xp.sqrt(square_avg + eps)
        delta = xp.sqrt(acc_delta + eps)
        delta /= std
        delta *= grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param += -lr * delta
