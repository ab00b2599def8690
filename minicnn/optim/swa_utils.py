"""``minicnn.optim.swa_utils``: ``AveragedModel``, a running average of a model's weights (stochastic
weight averaging, or an exponential moving average as in torchvision's classification reference).

    ema = AveragedModel(model, avg_fn=get_ema_avg_fn(0.999), use_buffers=True)
    ...after optimizer.step():   ema.update_parameters(model)
    evaluate(ema)                # runs the averaged copy

As ``torch.optim.swa_utils``: the first ``update_parameters`` copies the model; later ones combine
(average, model, n_averaged) with ``avg_fn`` (per tensor) or ``multi_avg_fn`` (lists of tensors); the
default is the equal-weight running mean average + (model - average) / (n_averaged + 1).
``use_buffers=True`` averages the buffers too (BatchNorm statistics); otherwise they are copied.
``n_averaged`` is an int64 buffer (``ema.n_averaged.fill_(0)`` restarts the average).
"""

from __future__ import annotations

import copy
import itertools

from minicnn.autograd import no_grad
from minicnn.creation import tensor
from minicnn.dtypes import int64
from minicnn.nn.module import Module

__all__ = [
    "AveragedModel",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]


def get_ema_avg_fn(decay=0.999):
    """average <- decay * average + (1 - decay) * model, per tensor."""

    def ema_update(averaged, current, num_averaged):
        return decay * averaged + (1 - decay) * current

    return ema_update


def get_swa_avg_fn():
    """average <- average + (model - average) / (n_averaged + 1): the equal-weight running mean."""

    def swa_update(averaged, current, num_averaged):
        return averaged + (current - averaged) / (num_averaged + 1)

    return swa_update


def get_ema_multi_avg_fn(decay=0.999):
    """``get_ema_avg_fn`` over lists of tensors, in place."""

    def ema_update(averaged_list, current_list, num_averaged):
        for averaged, current in zip(averaged_list, current_list):
            averaged.copy_(decay * averaged + (1 - decay) * current)

    return ema_update


def get_swa_multi_avg_fn():
    """``get_swa_avg_fn`` over lists of tensors, in place."""

    def swa_update(averaged_list, current_list, num_averaged):
        for averaged, current in zip(averaged_list, current_list):
            averaged.copy_(averaged + (current - averaged) / (num_averaged + 1))

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` whose weights are a running average of ``model``'s (see the module doc)."""

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: give avg_fn or multi_avg_fn, not both")
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a minicnn nn.Module, got {type(model).__name__}")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=int64, device="cpu" if device is None else device))
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _tensors(self, model):
        if self.use_buffers:
            return list(itertools.chain(model.parameters(), model.buffers()))
        return list(model.parameters())

    @no_grad()
    def update_parameters(self, model):
        """Fold ``model``'s current weights into the average (the first call copies them)."""
        averaged = [t.detach() for t in self._tensors(self.module)]
        current = [t.detach().to(a.device) for a, t in zip(averaged, self._tensors(model))]
        if len(averaged) != len(current):
            raise ValueError(
                f"AveragedModel.update_parameters: the model has {len(current)} tensors to average, the "
                f"averaged copy {len(averaged)}: pass the model this AveragedModel was made from"
            )
        n = int(self.n_averaged.item())
        if n == 0:
            for a, c in zip(averaged, current):
                a.copy_(c)
        elif self.multi_avg_fn is not None:
            self.multi_avg_fn(averaged, current, self.n_averaged)
        else:
            avg_fn = get_swa_avg_fn() if self.avg_fn is None else self.avg_fn
            for a, c in zip(averaged, current):
                a.copy_(avg_fn(a, c, self.n_averaged.to(a.device)))
        if not self.use_buffers:  # the buffers (BatchNorm statistics) follow the model
            for b_avg, b_model in zip(self.module.buffers(), model.buffers()):
                b_avg.detach().copy_(b_model.detach().to(b_avg.device))
        self.n_averaged.fill_(n + 1)
