"""Adam and AdamW (Adam with decoupled weight decay)."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.optim.optimizer import Optimizer, _check_at_least, _check_flags, _check_number, _lerp_


class Adam(Optimizer):
    """``torch.optim.Adam``. At step t, with g = gradient and p = parameter::

    g = -g                                                   if maximize
    p = p * (1 - lr * weight_decay)                          if decoupled (AdamW)
    g = g + weight_decay * p                                 elif weight_decay != 0
    m = m + (1 - beta1) * (g - m)                            (lerp: m = beta1 m + (1 - beta1) g)
    v = beta2 * v + (1 - beta2) * g * g
    v_max = max(v_max, v);  v = v_max                        if amsgrad
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    ):
        name = type(self).__name__
        _check_flags(name, foreach=foreach, fused=fused, capturable=capturable, differentiable=differentiable)
        _check_at_least(name, "learning rate lr", lr, 0.0)
        _check_at_least(name, "epsilon eps", eps, 0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            _check_number(name, f"betas[{i}]", beta)
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"{name}: invalid beta parameter at index {i}: {beta} (it must be in [0, 1))"
                )
        _check_at_least(name, "weight_decay", weight_decay, 0.0)
        defaults = dict(
            lr=lr,
            betas=(float(betas[0]), float(betas[1])),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def _update(self, p, grad, group):
        param = p.array
        xp = get_array_module(param)
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        state = self.state[p]
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        if group["maximize"]:
            grad = -grad
        state["step"] += 1
        step = state["step"]
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param

        _lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            denom = xp.sqrt(max_exp_avg_sq)
        else:
            denom = xp.sqrt(exp_avg_sq)
        denom /= bias_correction2_sqrt
        denom += eps
        param += -step_size * exp_avg / denom


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam whose weight decay shrinks the parameter directly,
    ``p = p * (1 - lr * weight_decay)``, instead of adding ``weight_decay * p`` to the gradient
    (so the decay is not rescaled by Adam's adaptive denominator). Default weight_decay = 1e-2.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
            capturable=capturable, differentiable=differentiable, fused=fused, decoupled_weight_decay=True,
        )  # fmt: skip
