"""RMSprop: divide the gradient by a running root-mean-square of recent gradients."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.optim.optimizer import Optimizer, _check_at_least, _check_flags, _lerp_


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``. With g = gradient and p = parameter::

    g = -g                                           if maximize
    g = g + weight_decay * p                         if weight_decay != 0
    v = alpha * v + (1 - alpha) * g * g
    a = a + (1 - alpha) * (g - a);  d = sqrt(v - a * a) + eps     if centered
    d = sqrt(v) + eps                                             otherwise
    b = momentum * b + g / d;  p = p - lr * b        if momentum > 0
    p = p - lr * g / d                               otherwise
    """

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
        capturable=False,
        foreach=None,
        maximize=False,
        differentiable=False,
    ):
        _check_flags("RMSprop", foreach=foreach, capturable=capturable, differentiable=differentiable)
        _check_at_least("RMSprop", "learning rate lr", lr, 0.0)
        _check_at_least("RMSprop", "epsilon eps", eps, 0.0)
        _check_at_least("RMSprop", "momentum", momentum, 0.0)
        _check_at_least("RMSprop", "weight_decay", weight_decay, 0.0)
        _check_at_least("RMSprop", "alpha", alpha, 0.0)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, grad, group):
        param = p.array
        xp = get_array_module(param)
        lr, alpha, eps = float(group["lr"]), float(group["alpha"]), float(group["eps"])
        weight_decay, momentum = float(group["weight_decay"]), float(group["momentum"])
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(param)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param)
        square_avg = state["square_avg"]

        if group["maximize"]:
            grad = -grad
        state["step"] += 1
        if weight_decay != 0:
            grad = grad + weight_decay * param

        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            _lerp_(grad_avg, grad, 1 - alpha)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = xp.sqrt(square_avg)
        avg += eps

        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += grad / avg
            param += -lr * buf
        else:
            param += -lr * grad / avg
