"""The MPI side of tests/test_distributed.py: scenarios that run in each rank under ``mpiexec``.

``mpiexec -n P python tests/test_distributed_worker.py SCENARIO [ARGS]``. Each scenario computes
its distributed result and, on rank 0, the single-process reference, then prints ``RESULT`` lines
(JSON) that the pytest side reads and asserts against. It holds no tests of its own (pytest
collects nothing here).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import minicnn as mc  # noqa: E402
import minicnn.distributed as dist  # noqa: E402
from minicnn import nn, optim  # noqa: E402
from minicnn.nn import functional as F  # noqa: E402
from minicnn.nn.parallel import DistributedDataParallel as DDP  # noqa: E402


def result(**values):
    print("RESULT " + json.dumps(values), flush=True)


def small_cnn(seed, dtype=mc.float64):
    """A small CNN without batch norm: conv-relu-pool, conv-relu, linear (float64)."""
    mc.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 5),
    )  # fmt: skip
    return model.to(dtype=dtype)


def global_batch(n, seed=123):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 8, 8))
    y = rng.integers(0, 5, size=n)
    return x, y


def sgd(params):
    return optim.SGD(params, lr=0.1, momentum=0.9)


def weights(model):
    return [p.numpy().copy() for p in model.parameters()]


def max_diff(a, b):
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


# ============================================================================ DDP = one big batch
def ddp_big_batch(split, bucket_cap_mb, steps=5):
    """p ranks with ``split[r]`` samples each vs one process on all of them (rank 0 computes both)."""
    dist.init_process_group()
    r, p = dist.get_rank(), dist.get_world_size()
    split = [int(s) for s in split.split(",")]
    assert len(split) == p, f"split {split} for {p} ranks"
    n = sum(split)
    start = sum(split[:r])
    model = DDP(small_cnn(seed=100 + r), bucket_cap_mb=float(bucket_cap_mb))  # rank 0's weights win
    opt = sgd(model.parameters())
    for step in range(steps):
        x, y = global_batch(n, seed=step)
        xb, yb = mc.tensor(x[start : start + split[r]]), mc.tensor(y[start : start + split[r]])
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    got = weights(model.module)
    gathered = [None] * p
    dist.all_gather_object(gathered, got)
    if r == 0:
        big = small_cnn(seed=100)
        big_opt = sgd(big.parameters())
        per_rank = small_cnn(seed=100)  # PyTorch's rule: the average of the ranks' mean gradients
        per_opt = sgd(per_rank.parameters())
        for step in range(steps):
            x, y = global_batch(n, seed=step)
            big_opt.zero_grad()
            F.cross_entropy(big(mc.tensor(x)), mc.tensor(y)).backward()
            big_opt.step()
            per_opt.zero_grad()
            loss = 0
            for q in range(p):
                s = sum(split[:q])
                xq, yq = mc.tensor(x[s : s + split[q]]), mc.tensor(y[s : s + split[q]])
                loss = loss + F.cross_entropy(per_rank(xq), yq) / p
            loss.backward()
            per_opt.step()
        ref_big, ref_rule = weights(big), weights(per_rank)
        result(
            vs_big_batch=max_diff(got, ref_big),
            vs_pytorch_rule=max_diff(got, ref_rule),
            ranks_agree=max(max_diff(gathered[0], g) for g in gathered),
            buckets=len(model._buckets),
        )


# ============================================================================ SyncBatchNorm
def syncbn(per_rank, shape):
    """SyncBatchNorm over p ranks vs torch.nn.BatchNorm2d on the whole batch (float64)."""
    import torch

    dist.init_process_group()
    r, p = dist.get_rank(), dist.get_world_size()
    b = int(per_rank)
    c, h, w = (int(s) for s in shape.split(","))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((p * b, c, h, w)) * 3 + 1
    weight = rng.standard_normal((p * b, c, h, w))  # the loss is sum(out * weight): a non-trivial dL/dout
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)

    layer = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(c, momentum=0.3)))
    layer = layer.to(dtype=mc.float64)
    bn = layer[0]
    with mc.no_grad():
        bn.weight.copy_(mc.tensor(gamma))
        bn.bias.copy_(mc.tensor(beta))
    xs = mc.tensor(x[r * b : (r + 1) * b], requires_grad=True)
    for _ in range(2):  # twice: the running statistics are updated twice
        out = layer(xs)
    (out * mc.tensor(weight[r * b : (r + 1) * b])).sum().backward()
    outs, dxs = [None] * p, [None] * p
    dist.all_gather_object(outs, out.numpy())
    dist.all_gather_object(dxs, xs.grad.numpy())
    dgamma, dbeta = bn.weight.grad, bn.bias.grad
    dist.all_reduce(dgamma)
    dist.all_reduce(dbeta)
    if r == 0:
        tbn = torch.nn.BatchNorm2d(c, momentum=0.3).double()
        with torch.no_grad():
            tbn.weight.copy_(torch.tensor(gamma))
            tbn.bias.copy_(torch.tensor(beta))
        tx = torch.tensor(x, requires_grad=True)
        for _ in range(2):
            tout = tbn(tx)
        (tout * torch.tensor(weight)).sum().backward()
        result(
            type=type(bn).__name__,
            out=float(np.abs(np.concatenate(outs) - tout.detach().numpy()).max()),
            dx=float(np.abs(np.concatenate(dxs) - tx.grad.numpy()).max()),
            dgamma=float(np.abs(dgamma.numpy() - tbn.weight.grad.numpy()).max()),
            dbeta=float(np.abs(dbeta.numpy() - tbn.bias.grad.numpy()).max()),
            running_mean=float(np.abs(bn.running_mean.numpy() - tbn.running_mean.numpy()).max()),
            running_var=float(np.abs(bn.running_var.numpy() - tbn.running_var.numpy()).max()),
        )


# ============================================================================ hooks, overlap, no_sync
def overlap():
    """With small buckets, the first bucket's all-reduce starts before the last gradient is ready."""
    dist.init_process_group()
    model = DDP(small_cnn(seed=0), bucket_cap_mb=1e-4)
    x, y = global_batch(4)
    F.cross_entropy(model(mc.tensor(x)), mc.tensor(y)).backward()
    log = model.bucket_log
    ready = [i for i, (kind, _) in enumerate(log) if kind == "ready"]
    first_start = log.index(("start", 0))
    if dist.get_rank() == 0:
        result(buckets=len(model._buckets), first_start=first_start, last_ready=ready[-1], log=log)


def no_sync(k):
    """k micro-batches, the first k-1 under no_sync, then one step = one step on their union."""
    k = int(k)
    dist.init_process_group()
    r, p = dist.get_rank(), dist.get_world_size()
    b = 3
    model = DDP(small_cnn(seed=5))
    opt = sgd(model.parameters())
    x, y = global_batch(k * p * b, seed=9)
    calls = {"n": 0}
    original = dist.all_reduce

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    dist.all_reduce = counting
    opt.zero_grad()
    for j in range(k):
        lo = (j * p + r) * b
        xb, yb = mc.tensor(x[lo : lo + b]), mc.tensor(y[lo : lo + b])
        if j < k - 1:
            with model.no_sync():
                (F.cross_entropy(model(xb), yb) / k).backward()
            silent = calls["n"]
        else:
            (F.cross_entropy(model(xb), yb) / k).backward()
    dist.all_reduce = original
    opt.step()
    got = weights(model.module)
    if r == 0:
        ref = small_cnn(seed=5)
        ref_opt = sgd(ref.parameters())
        F.cross_entropy(ref(mc.tensor(x)), mc.tensor(y)).backward()
        ref_opt.step()
        result(diff=max_diff(got, ref_opt and weights(ref)), reduces_under_no_sync=silent,
               reduces_total=calls["n"])  # fmt: skip


# ============================================================================ NCCL on the CuPy stand-in
class FakeNccl:
    """``cupy.cuda.nccl`` for the CuPy stand-in: an NcclCommunicator that, like NCCL, gets raw device
    pointers, element counts, NCCL dtypes and a stream, and reduces the memory behind the pointers --
    here with MPI on the host memory that the stand-in's "device" arrays are. It checks that every
    rank was given the same unique id, and counts its calls."""

    NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_INT64 = 0, 1, 2, 4
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
    NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
    available = True
    _DTYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 4: np.int64, 6: np.float16, 7: np.float32, 8: np.float64}

    def __init__(self):
        self.calls = []

    def get_unique_id(self):
        return tuple(int(v) for v in np.random.default_rng().integers(-128, 128, size=128))

    def NcclCommunicator(self, ndev, comm_id, rank):  # noqa: N802  (CuPy's name)
        from mpi4py import MPI

        fake = self
        ids = MPI.COMM_WORLD.allgather(comm_id)
        assert all(i == ids[0] for i in ids) and len(ids) == ndev, "the ranks got different NCCL ids"
        ops = {0: MPI.SUM, 1: MPI.PROD, 2: MPI.MAX, 3: MPI.MIN}

        def memory(ptr, count, dtype):
            import ctypes

            dt = np.dtype(FakeNccl._DTYPES[dtype])
            raw = (ctypes.c_char * (count * dt.itemsize)).from_address(ptr)
            return np.frombuffer(raw, dtype=dt, count=count)

        class Communicator:
            def __init__(self):
                self.comm, self.rank = MPI.COMM_WORLD.Dup(), rank

            def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802
                fake.calls.append("allReduce")
                a, b = memory(send, count, dtype), memory(recv, count, dtype)
                self.comm.Allreduce(MPI.IN_PLACE if send == recv else a.copy(), b, op=ops[op])

            def bcast(self, buff, count, dtype, root, stream):
                fake.calls.append("bcast")
                self.comm.Bcast(memory(buff, count, dtype), root=root)

            def allGather(self, send, recv, count, dtype, stream):  # noqa: N802
                fake.calls.append("allGather")
                self.comm.Allgather(memory(send, count, dtype).copy(), memory(recv, count * ndev, dtype))

            def reduceScatter(self, send, recv, count, dtype, op, stream):  # noqa: N802
                fake.calls.append("reduceScatter")
                a = memory(send, count * ndev, dtype).copy()
                self.comm.Reduce_scatter_block(a, memory(recv, count, dtype), op=ops[op])

            def destroy(self):
                self.comm.Free()

        return Communicator()


class FakeStream:
    ptr = 0

    def __init__(self, non_blocking=False):
        FakeStream.ptr += 1
        self.ptr = FakeStream.ptr

    def wait_event(self, event):
        assert event.recorded, "waiting for an event that was never recorded"


class FakeEvent:
    def __init__(self, disable_timing=False):
        self.recorded = False

    def record(self, stream=None):
        self.recorded = True

    def query(self):
        return self.recorded


def install_fake_nccl():
    """The stand-in as minicnn's CuPy, with NCCL, streams, events and ``ndarray.data.ptr``."""
    import types

    from parity_tests import cupy_standin

    fake = FakeNccl()
    current = FakeStream()
    cupy_standin.cuda.nccl = fake
    cupy_standin.cuda.Stream = FakeStream
    cupy_standin.cuda.Event = FakeEvent
    cupy_standin.cuda.get_current_stream = lambda: current
    cupy_standin.ndarray.data = property(lambda self: types.SimpleNamespace(ptr=self._a.ctypes.data))
    cupy_standin.install(devices=1)
    mc.use_kernels(False)  # the GPU path is the textbook tier
    return fake, cupy_standin


def cnn_with_batchnorm(seed):
    mc.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
    )  # fmt: skip
    return model.to(dtype=mc.float64)


def ddp_sync_bn(device, steps, sync="sync"):
    """DDP + SyncBatchNorm over p ranks (NCCL on the stand-in for device "cuda", MPI for "cpu") vs one
    process with BatchNorm on the whole batch; on "cuda", the host synchronisations of every step."""
    steps = int(steps)
    fake = standin = None
    if device == "cuda":
        fake, standin = install_fake_nccl()
        dist.init_process_group("nccl")
    elif device == "cuda-real":  # real GPUs, one per rank (benchmarks/gpu_first_run.py's multigpu stage)
        device = "cuda"
        mc.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group()
    r, p = dist.get_rank(), dist.get_world_size()
    b = 3
    model = cnn_with_batchnorm(seed=50 + r)
    if sync == "sync":  # "plain": each rank's BatchNorm normalises its own b images (lesson 10)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    model = DDP(model, bucket_cap_mb=1e-4)
    opt = sgd(model.parameters())
    syncs, transfers = [], []
    for step in range(steps):
        x, y = global_batch(p * b, seed=step)
        xb = mc.tensor(x[r * b : (r + 1) * b], device=device)
        yb = mc.tensor(y[r * b : (r + 1) * b], device=device)
        if standin is not None:
            standin.syncs.clear()
            standin.transfers.clear()
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        if standin is not None:
            syncs.append(len(standin.syncs))
            transfers.append(len(standin.transfers))
            if standin.syncs:
                print(standin.syncs.report(), file=sys.stderr)
    got = [t.numpy() if device == "cpu" else t.array.get() for t in model.module.state_dict().values()]
    if r == 0:
        ref = cnn_with_batchnorm(seed=50)
        ref_opt = sgd(ref.parameters())
        for step in range(steps):
            x, y = global_batch(p * b, seed=step)
            ref_opt.zero_grad()
            F.cross_entropy(ref(mc.tensor(x)), mc.tensor(y)).backward()
            ref_opt.step()
        want = [t.numpy() for t in ref.state_dict().values()]
        diff = max(float(np.abs(np.asarray(u, dtype=np.float64) - v).max()) for u, v in zip(got, want))
        kinds = sorted(set(fake.calls)) if fake else []
        result(diff=diff, syncs=syncs, transfers=transfers, nccl_calls=kinds,
               n_nccl=len(fake.calls) if fake else 0, backend=dist.get_backend())  # fmt: skip


def nccl_collectives(mode="cuda"):
    """The collectives on stand-in GPU tensors through the fake NCCL (``cuda``), or on real GPUs
    through NCCL (``cuda-real``), against the same on NumPy (MPI)."""
    if mode == "cuda-real":
        fake = None
        mc.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    else:
        fake, _ = install_fake_nccl()
    dist.init_process_group()  # backend None: MPI for CPU tensors, NCCL for GPU tensors
    r, p = dist.get_rank(), dist.get_world_size()
    out = {}
    for device in ("cpu", "cuda"):

        def host(t, device=device):
            return (t.numpy() if device == "cpu" else t.array.get()).tolist()

        t = mc.tensor([r + 1.0, -r - 2.0], device=device)
        dist.all_reduce(t, dist.ReduceOp.AVG, async_op=True).wait()
        big = mc.zeros(2 * p, device=device)
        dist.all_gather_into_tensor(big, mc.tensor([float(r), 2.0 * r], device=device))
        small = mc.zeros(2, device=device)
        dist.reduce_scatter_tensor(
            small, mc.arange(2 * p, dtype=mc.float32, device=device) + r, dist.ReduceOp.MAX
        )
        c = mc.full((2,), float(r), device=device)
        dist.broadcast(c, 1)
        out[device] = [host(t), host(big), host(small), host(c)]
    if r == 0:
        calls = sorted(set(fake.calls)) if fake else []
        result(cpu=out["cpu"], cuda=out["cuda"], nccl_calls=calls, backend=dist.get_backend())


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.used, self.unused = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x):
        return self.used(self.body(x).relu())


def unused():
    """A parameter the forward never uses: with find_unused_parameters its gradient counts as zero
    and steps work; without, the next forward raises PyTorch's "finished reduction" error."""
    dist.init_process_group()
    r = dist.get_rank()
    x, y = mc.randn(4, 4, dtype=mc.float64), mc.tensor([0, 1, 2, 0])
    mc.manual_seed(0)
    found = DDP(TwoHeads().double(), find_unused_parameters=True)
    for _ in range(2):
        F.cross_entropy(found(x + r), y).backward()
    grads = [found.module.unused.weight.grad.numpy(), found.module.body.weight.grad.numpy()]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, grads)
    mc.manual_seed(0)
    strict = DDP(TwoHeads().double())
    F.cross_entropy(strict(x), y).backward()
    try:
        strict(x)
        error = None
    except RuntimeError as e:
        error = str(e)
    if r == 0:
        result(unused_grad_max=float(np.abs(gathered[0][0]).max()),
               body_grads_agree=float(np.abs(gathered[0][1] - gathered[1][1]).max()),
               error=error)  # fmt: skip


# ============================================================================ errors
def mismatch():
    """Rank 1 builds another model: DDP construction fails on every rank, with one clear line."""
    dist.init_process_group()
    r = dist.get_rank()
    mc.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8 if r == 0 else 9), nn.ReLU(), nn.Linear(8 if r == 0 else 9, 2))
    try:
        DDP(model)
        message = None
    except RuntimeError as e:
        message = str(e)
    messages = [None] * dist.get_world_size()
    dist.all_gather_object(messages, message)  # the ranks are still connected: nobody hangs
    if r == 0:
        result(messages=messages)


def collectives():
    """all_reduce with every op, async handles, broadcast, all_gather(_into_tensor), reduce_scatter."""
    dist.init_process_group()
    r, p = dist.get_rank(), dist.get_world_size()
    out = {}
    for op in ("SUM", "AVG", "PRODUCT", "MIN", "MAX"):
        t = mc.tensor([r + 1.0, 2.0 * r - 1.0], dtype=mc.float64)
        work = dist.all_reduce(t, getattr(dist.ReduceOp, op), async_op=True)
        work.wait()
        out[op] = t.numpy().tolist()
    t = mc.arange(6, dtype=mc.float32).reshape(2, 3) * (r + 1)
    tt = t.transpose(0, 1)  # not contiguous
    dist.all_reduce(tt)
    out["noncontiguous"] = t.numpy().tolist()
    b = mc.full((3,), float(r))
    dist.broadcast(b, src=p - 1)
    out["broadcast"] = b.numpy().tolist()
    parts = [mc.zeros(2, dtype=mc.int64) for _ in range(p)]
    dist.all_gather(parts, mc.tensor([r, 10 * r]))
    out["all_gather"] = [q.numpy().tolist() for q in parts]
    big = mc.zeros(2 * p)
    dist.all_gather_into_tensor(big, mc.tensor([float(r), -float(r)]))
    out["all_gather_into_tensor"] = big.numpy().tolist()
    small = mc.zeros(2)
    dist.reduce_scatter_tensor(small, mc.arange(2 * p, dtype=mc.float32) + r)
    out["reduce_scatter"] = small.numpy().tolist()
    dist.barrier()
    out["env"] = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                                                  "MASTER_ADDR", "MASTER_PORT")}  # fmt: skip
    out["backend"] = dist.get_backend()
    gathered = [None] * p
    dist.all_gather_object(gathered, out)
    if r == 0:
        result(ranks=gathered)


# ============================================================================ faults
def raise_mid_training(pid_dir):
    """Rank 1 raises at step 3; rank 0 would wait in its all-reduce forever without the abort."""
    Path(pid_dir, f"rank{os.environ['RANK']}.pid").write_text(str(os.getpid()))
    dist.init_process_group()
    model = DDP(small_cnn(seed=0))
    opt = sgd(model.parameters())
    x, y = global_batch(4)
    for step in range(1000):
        if dist.get_rank() == 1 and step == 3:
            raise ValueError("rank 1 failed on purpose at step 3")
        opt.zero_grad()
        F.cross_entropy(model(mc.tensor(x)), mc.tensor(y)).backward()
        opt.step()
        time.sleep(0.01)


def kill_mid_training(pid_dir):
    """Rank 1 kills itself with SIGKILL at step 3."""
    Path(pid_dir, f"rank{os.environ['RANK']}.pid").write_text(str(os.getpid()))
    dist.init_process_group()
    model = DDP(small_cnn(seed=0))
    x, y = global_batch(4)
    for step in range(1000):
        if dist.get_rank() == 1 and step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        F.cross_entropy(model(mc.tensor(x)), mc.tensor(y)).backward()
        time.sleep(0.01)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
