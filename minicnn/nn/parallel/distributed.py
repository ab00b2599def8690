"""``DistributedDataParallel``: the same model on every rank, gradients averaged over the ranks.

The whole mechanism (docs/distributed.md draws it):

1. Construction: every rank sends the names, shapes and dtypes of its parameters and buffers to
   every other (one ``all_gather_object``); a difference is an error on every rank (no rank is left
   waiting). Then rank 0's parameters and buffers are broadcast, so all ranks start equal.
2. Buckets: the parameters, in reverse order of registration (roughly the order in which backward
   produces their gradients), are grouped into buckets of about ``bucket_cap_mb`` megabytes.
3. Backward: each parameter has a post-accumulate-grad hook
   (:meth:`minicnn.Tensor.register_post_accumulate_grad_hook`). When the last gradient of a bucket
   has arrived, the bucket's gradients are copied into one flat buffer and its all-reduce is
   *started* (non-blocking) while backward goes on with the earlier layers. Buckets are started in
   their order on every rank, as MPI and NCCL require. When the last bucket has started, each is
   waited for, divided by the world size and copied back into the ``.grad`` of its parameters --
   still inside ``backward()``, so ``optimizer.step()`` sees averaged gradients.
4. Forward: with ``broadcast_buffers`` (default) rank 0's buffers (BatchNorm running statistics)
   are broadcast first, as PyTorch does.

Since every rank averages the same gradients and takes the same optimizer step, the weights stay
equal without ever being sent again: p ranks x b samples is one step on a batch of p*b.
"""

from __future__ import annotations

import contextlib
import weakref

from minicnn.autograd import is_grad_enabled
from minicnn.nn.module import Module

# PyTorch's other arguments, accepted and without effect here (one process drives one device)
_ACCEPTED = {"init_sync", "mixed_precision", "device_mesh", "skip_all_reduce_unused_params",
             "delay_all_reduce_named_params", "param_to_hook_all_reduce"}  # fmt: skip


class _Bucket:
    """Parameters whose gradients are all-reduced together, through one flat buffer."""

    def __init__(self, index, params):
        self.index, self.params = index, params
        self.offsets, total = [], 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.numel = total
        first = params[0].array
        xp = params[0]._xp
        self.buffer = xp.empty(total, dtype=first.dtype)
        self.pending = len(params)
        self.work = None

    def reset(self):
        self.pending, self.work = len(self.params), None


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training (``torch.nn.parallel.DistributedDataParallel``).

    Arguments as PyTorch's; these act: ``broadcast_buffers`` (rank 0's buffers at every forward),
    ``bucket_cap_mb`` (bucket size, default 25), ``find_unused_parameters`` (parameters that the
    forward did not use count as ready with a zero gradient), ``gradient_as_bucket_view`` (accepted;
    the gradients are copied back). ``device_ids``, ``output_device``, ``dim``, ``static_graph``,
    ``check_reduction`` are accepted for compatibility: one process drives one device here.

    ``ddp.module`` is the wrapped model; ``ddp.state_dict()`` keys start with ``module.``.
    ``with ddp.no_sync():`` runs forward/backward without averaging (gradients accumulate locally;
    the next synchronised backward averages the sum), for gradient accumulation.
    """

    def __init__(
        self,
        module,
        device_ids=None,
        output_device=None,
        dim=0,
        broadcast_buffers=True,
        process_group=None,
        bucket_cap_mb=None,
        find_unused_parameters=False,
        check_reduction=False,
        gradient_as_bucket_view=False,
        static_graph=False,
        **kwargs,
    ):
        from minicnn import distributed as dist

        super().__init__()
        unknown = set(kwargs) - _ACCEPTED
        if unknown:
            raise TypeError(f"DistributedDataParallel got unexpected keyword arguments: {sorted(unknown)}")
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: expected a minicnn.nn.Module, got {type(module).__name__}"
            )
        if not dist.is_initialized():
            raise ValueError(
                "DistributedDataParallel: the default process group has not been initialized: call "
                "minicnn.distributed.init_process_group() first"
            )
        if process_group is not None and process_group != dist.group.WORLD:
            raise NotImplementedError("DistributedDataParallel: only the default process group is supported")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.bucket_cap_mb = 25.0 if bucket_cap_mb is None else float(bucket_cap_mb)
        if not self.bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
        self._params = [p for p in module.parameters() if p.requires_grad]
        if not self._params:
            raise RuntimeError(
                "DistributedDataParallel is not needed when a module doesn't have any parameter that "
                "requires a gradient."
            )
        self._verify_same_model(dist)
        self._sync_module_states(dist)
        self._buckets = self._build_buckets()
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._next_bucket = 0  # buckets are started strictly in order, the same on every rank
        self._expect_backward = False
        self._handles = []
        this = weakref.ref(self)

        def hook(p):
            ddp = this()
            if ddp is not None:
                ddp._grad_ready(p)

        for p in self._params:
            self._handles.append(p.register_post_accumulate_grad_hook(hook))
        weakref.finalize(self, _remove_all, list(self._handles))
        # The order in which the hooks fired in the last synchronised backward, and when each bucket
        # started (tests and docs read these to see the overlap).
        self.bucket_log = []

    # ------------------------------------------------------------ construction
    def _verify_same_model(self, dist):
        sig = [("parameter", n, tuple(p.shape), str(p.dtype)) for n, p in self.module.named_parameters()]
        sig += [("buffer", n, tuple(b.shape), str(b.dtype)) for n, b in self.module.named_buffers()]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, sig)
        reference = gathered[0]
        for r, other in enumerate(gathered[1:], start=1):
            if other != reference:
                raise RuntimeError("DistributedDataParallel: " + _first_difference(reference, other, r))

    def _sync_module_states(self, dist):
        from minicnn.autograd import no_grad

        if self.world_size == 1:
            return
        with no_grad():
            works = [dist.broadcast(t, 0, async_op=True) for t in self._states()]
            for w in works:
                w.wait()

    def _states(self):
        return [p for p in self.module.parameters()] + [b for b in self.module.buffers()]

    def _build_buckets(self):
        cap = self.bucket_cap_mb * 2**20
        buckets, current, size, key = [], [], 0, None
        for p in reversed(self._params):
            p_key = (str(p.dtype), str(p.device))
            if current and (size >= cap or p_key != key):
                buckets.append(_Bucket(len(buckets), current))
                current, size = [], 0
            current.append(p)
            size += p.numel() * p.array.itemsize
            key = p_key
        if current:
            buckets.append(_Bucket(len(buckets), current))
        return buckets

    # ------------------------------------------------------------ forward
    def forward(self, *inputs, **kwargs):
        if is_grad_enabled() and self.require_backward_grad_sync:
            self._prepare_for_backward()
        if self.broadcast_buffers and self.require_forward_param_sync and self.world_size > 1:
            self._broadcast_buffers()
        out = self.module(*inputs, **kwargs)
        if self._expect_backward and self.find_unused_parameters:
            self._mark_unused(out)
        return out

    def _prepare_for_backward(self):
        started = self._next_bucket > 0 or any(b.pending < len(b.params) for b in self._buckets)
        if self._expect_backward and started:
            raise RuntimeError(
                "DistributedDataParallel: expected to have finished reduction in the prior iteration before "
                "starting a new one. This error indicates that your module has parameters that were not "
                "used in producing loss: pass find_unused_parameters=True to DistributedDataParallel, or "
                "make sure all forward outputs take part in the loss."
            )
        for b in self._buckets:
            b.reset()
        self._next_bucket = 0
        self._expect_backward = True
        self.bucket_log = []

    def _broadcast_buffers(self):
        from minicnn import distributed as dist
        from minicnn.autograd import no_grad

        buffers = [b for b in self.module.buffers()]
        if buffers:
            with no_grad():
                works = [dist.broadcast(b, 0, async_op=True) for b in buffers]
                for w in works:
                    w.wait()

    def _mark_unused(self, out):
        """Parameters the graph of ``out`` does not reach get a zero gradient now and count as ready."""
        reached = set()
        roots = [t for t in _tensors_in(out) if t.grad_fn is not None]
        seen, stack = set(), [t.grad_fn for t in roots]
        while stack:
            fn = stack.pop()
            if id(fn) in seen:
                continue
            seen.add(id(fn))
            for t, f in zip(fn.inputs or (), fn.input_fns):
                if t is not None and f is None:
                    reached.add(id(t))
                elif f is not None:
                    stack.append(f)
        for p in self._params:
            if id(p) not in reached:
                if p.grad is None:
                    from minicnn.creation import zeros_like

                    p.grad = zeros_like(p)
                self._grad_ready(p)

    # ------------------------------------------------------------ backward: the hook
    def _grad_ready(self, p):
        if not (self._expect_backward and self.require_backward_grad_sync):
            return
        bucket = self._bucket_of[id(p)]
        self.bucket_log.append(("ready", bucket.index))
        bucket.pending -= 1
        if bucket.pending < 0:
            raise RuntimeError(
                "DistributedDataParallel: a parameter received its gradient twice in one backward (a second "
                "backward through the same forward?): call forward again before each backward"
            )
        for b in self._buckets[self._next_bucket :]:
            if b.work is not None:
                b.work._progress()  # let MPI move the started ones along
        while self._next_bucket < len(self._buckets) and self._buckets[self._next_bucket].pending == 0:
            self._start(self._buckets[self._next_bucket])
            self._next_bucket += 1
        if self._next_bucket == len(self._buckets):
            self._finish_all()

    def _start(self, bucket):
        from minicnn import distributed as dist
        from minicnn.tensor import Tensor

        self.bucket_log.append(("start", bucket.index))
        if self.world_size == 1:
            return  # nothing to average
        buf = bucket.buffer
        for p, off in zip(bucket.params, bucket.offsets):
            n = p.numel()
            if p.grad is None:
                buf[off : off + n] = 0
            else:
                buf[off : off + n] = p.grad.array.reshape(-1)
        bucket.work = dist.all_reduce(Tensor._make(buf), dist.ReduceOp.SUM, async_op=True)

    def _finish_all(self):
        from minicnn.tensor import Tensor

        scale = 1.0 / self.world_size
        for bucket in self._buckets if self.world_size > 1 else ():
            if bucket.work is not None:
                bucket.work.wait()
            buf = bucket.buffer
            buf *= scale
            for p, off in zip(bucket.params, bucket.offsets):
                n = p.numel()
                averaged = buf[off : off + n].reshape(p.array.shape)
                if p.grad is None:
                    p.grad = Tensor._make(averaged.copy())
                else:
                    p.grad.array[...] = averaged
            bucket.work = None
        self.bucket_log.append(("done", len(self._buckets)))
        self._expect_backward = False

    # ------------------------------------------------------------ the user's switches
    @contextlib.contextmanager
    def no_sync(self):
        """Forward/backward inside this block accumulate gradients locally, without communication."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def extra_repr(self):
        return (
            f"world_size={self.world_size}, buckets={len(self._buckets)}, "
            f"bucket_cap_mb={self.bucket_cap_mb:g}"
        )


def _remove_all(handles):
    for h in handles:
        h.remove()


def _tensors_in(out):
    from minicnn.tensor import Tensor

    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors_in(o)]
    return []


def _first_difference(reference, other, rank):
    """One line: the first parameter or buffer in which rank ``rank``'s model differs from rank 0's."""
    for a, b in zip(reference, other):
        if a != b:
            kind, name = a[0], a[1]
            if a[:2] != b[:2]:
                return (
                    f"rank {rank}'s model differs from rank 0's: rank 0 has {kind} '{name}' where rank "
                    f"{rank} has {b[0]} '{b[1]}' (every rank must build the same model)"
                )
            what = "shape" if a[2] != b[2] else "dtype"
            va, vb = (a[2], b[2]) if what == "shape" else (a[3], b[3])
            return (
                f"rank {rank}'s model differs from rank 0's: {kind} '{name}' has {what} {va} on rank 0 but "
                f"{vb} on rank {rank} (every rank must build the same model)"
            )
    n0, n1 = len(reference), len(other)
    return (
        f"rank {rank}'s model differs from rank 0's: rank 0 has {n0} parameters and buffers, rank {rank} "
        f"has {n1} (every rank must build the same model)"
    )
