"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from minicnn.optim.optimizer import Optimizer, _check_at_least, _check_flags, _check_number


class SGD(Optimizer):
    """``torch.optim.SGD``: the update, in the order PyTorch computes it (g = gradient, p = parameter)::

    g = -g                                  if maximize
    g = g + weight_decay * p                if weight_decay != 0
    b = g  (first step),  b = momentum * b + (1 - dampening) * g  (later steps)   if momentum != 0
    g = g + momentum * b  if nesterov  else  g = b                                 if momentum != 0
    p = p - lr * g
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        _check_flags("SGD", foreach=foreach, fused=fused, differentiable=differentiable)
        _check_at_least("SGD", "learning rate lr", lr, 0.0)
        _check_at_least("SGD", "momentum", momentum, 0.0)
        _check_at_least("SGD", "weight_decay", weight_decay, 0.0)
        _check_number("SGD", "dampening", dampening)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                f"got momentum={momentum}, dampening={dampening}"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p, grad, group):
        param = p.array
        lr, momentum = float(group["lr"]), float(group["momentum"])
        weight_decay, dampening = float(group["weight_decay"]), float(group["dampening"])
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - dampening) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param += -lr * grad
