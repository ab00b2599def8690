"""``SyncBatchNorm``: batch normalisation whose statistics are those of the whole global batch.

With DistributedDataParallel each rank sees b of the p*b samples of a step. Plain BatchNorm
normalises each rank's b samples by their own mean and variance: a different function from one
BatchNorm over p*b samples (noisier with small b). SyncBatchNorm all-reduces the per-channel sums,
so every rank normalises with the global statistics: forward and backward are then exactly those
of BatchNorm on the whole batch (docs/backprop/batchnorm.md, "SyncBatchNorm").

Forward (per channel, M = the number of values over all ranks):
    μ = Σ_all x / M,   var = Σ_all (x - μ)² / M   (two all-reduces: sums, then squared deviations)
Backward, with g = dL/d(out) and x̂ the normalised input:
    dx = γ · invstd / M · (M·g - Σ_all g - x̂ · Σ_all(g·x̂))   (one all-reduce of both sums)
    dγ = Σ_local(g·x̂),   dβ = Σ_local g   (local: DistributedDataParallel averages them, as any weight)
Outside training, or without an initialised process group, it is BatchNorm.
"""

from __future__ import annotations

import math

from minicnn.autograd import Function
from minicnn.backend import get_array_module
from minicnn.nn.modules.batchnorm import _BatchNorm
from minicnn.ops.normalization import _per_channel, _update_running_stats


def _all_reduce_sum(arr):
    """Sum ``arr`` over all ranks, in place (MPI or NCCL, whichever holds this array)."""
    from minicnn import distributed as dist
    from minicnn.tensor import Tensor

    dist.all_reduce(Tensor._make(arr), dist.ReduceOp.SUM)
    return arr


class SyncBatchNormFunction(Function):
    """Batch norm in training mode with the statistics of the batch over all ranks (see the module doc)."""

    saved_inputs = (0, 1)

    def forward(self, x, weight, bias, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        c = x.shape[1]
        m_local = x.shape[0] * math.prod(x.shape[2:])
        # one all-reduce for the C sums and the count (ranks may hold batches of different sizes)
        sums = xp.empty(c + 1, dtype=x.dtype)
        sums[:c] = x.sum(axis=axes)
        sums[c] = m_local
        _all_reduce_sum(sums)
        # M stays on the device: reading it back would make the host wait for the GPU
        m = sums[c]
        mean = sums[:c] / m
        centered = x - _per_channel(mean, x.ndim)
        var = _all_reduce_sum((centered**2).sum(axis=axes)) / m  # biased, two passes as BatchNorm
        _update_running_stats(running_mean, running_var, mean, var, m, momentum)
        invstd = 1.0 / xp.sqrt(var + eps)
        xhat = centered * _per_channel(invstd, x.ndim)
        out = xhat if weight is None else _per_channel(weight, x.ndim) * xhat
        if bias is not None:
            out = out + _per_channel(bias, x.ndim)
        self.xhat, self.invstd, self.weight, self.m = xhat, invstd, weight, m
        return out

    def backward(self, g):
        xp = get_array_module(g)
        xhat, invstd, m = self.xhat, self.invstd, self.m
        axes = (0,) + tuple(range(2, g.ndim))
        c = g.shape[1]
        gamma_invstd = invstd if self.weight is None else self.weight * invstd
        local = xp.empty(2 * c, dtype=g.dtype)
        local[:c] = g.sum(axis=axes)  # Σg on this rank: dβ
        local[c:] = (g * xhat).sum(axis=axes)  # Σ(g·x̂) on this rank: dγ
        dbeta, dgamma = local[:c].copy(), local[c:].copy()
        dx = None
        if self.needs_input_grad[0]:
            total = _all_reduce_sum(local)  # Σ_all g, Σ_all(g·x̂)
            dx = _per_channel(gamma_invstd / m, g.ndim) * (
                m * g - _per_channel(total[:c], g.ndim) - xhat * _per_channel(total[c:], g.ndim)
            )
        return dx, dgamma, dbeta


class SyncBatchNorm(_BatchNorm):
    """``torch.nn.SyncBatchNorm``: BatchNorm over (N, C, ...) inputs with statistics over all ranks.

    ``SyncBatchNorm.convert_sync_batchnorm(model)`` turns every BatchNorm1d/2d of ``model`` into one
    (sharing its weights and running statistics). Without an initialised process group, or in eval
    mode, it computes what BatchNorm computes.
    """

    _layouts = (2, 3, 4, 5)
    _expected = "(N, {C}), (N, {C}, L), (N, {C}, H, W) or (N, {C}, D, H, W)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):  # fmt: skip
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input):
        from minicnn import distributed as dist
        from minicnn.nn.modules._utils import check_input

        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        if not (use_batch_stats and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        check_input(self, input, self._layouts, self._expected.format(C=self.num_features),
                    channels=self.num_features)  # fmt: skip
        factor = 0.1 if self.momentum is None else float(self.momentum)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / self.num_batches_tracked.array
        keep = self.track_running_stats
        return SyncBatchNormFunction.apply(
            input,
            self.weight,
            self.bias,
            running_mean=self.running_mean.array if keep else None,
            running_var=self.running_var.array if keep else None,
            momentum=factor,
            eps=self.eps,
        )

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Replace every BatchNorm1d/2d in ``module`` (or ``module`` itself) by a SyncBatchNorm that
        shares its weight, bias and running statistics; returns the converted module."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group)  # fmt: skip
            if module.affine:
                out.weight = module.weight
                if module.bias is not None:
                    out.bias = module.bias
                else:
                    out.bias = None
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.train(module.training)
        for name, child in list(module.named_children()):
            setattr(out, name, cls.convert_sync_batchnorm(child, process_group))
        return out
