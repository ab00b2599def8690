"""Data-parallel throughput on this machine: 1 process x T threads vs P processes x 1 thread.

    python benchmarks/distributed.py                 # MNIST CNN and CIFAR CNN, 2 processes
    python benchmarks/distributed.py --steps 30 --models mnist

For each model, the same global batch (MNIST 64, CIFAR 128) of random images, trained with SGD:

* one process, ``--processes`` threads (Numba and BLAS), the bare model;
* ``--processes`` processes started by ``mpiexec``, one thread each, DistributedDataParallel with
  the global batch split evenly;
* the time of one all-reduce of the model's gradients (all parameters in one buffer), measured
  alone between the processes.

Prints one table (images/s, step time, all-reduce time per step) with the machine's load average:
on a shared machine the numbers move with the load (docs/distributed.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = {"mnist": 64, "cifar": 128}


def worker(model_name, steps, warmup):
    import numpy as np

    import minicnn as mc
    import minicnn.distributed as dist
    from minicnn import models, optim
    from minicnn.nn import functional as F
    from minicnn.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    mc.manual_seed(0)
    model = models.mnist_cnn() if model_name == "mnist" else models.cifar_cnn()
    shape = (1, 28, 28) if model_name == "mnist" else (3, 32, 32)
    per_rank = GLOBAL_BATCH[model_name] // world
    if world > 1:
        model = DDP(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = mc.tensor(rng.standard_normal((per_rank, *shape)).astype(np.float32))
    y = mc.tensor(rng.integers(0, 10, per_rank))
    times = []
    for step in range(warmup + steps):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    allreduce = []
    if world > 1:
        buf = mc.zeros(n_params)
        for i in range(warmup + steps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            if i >= warmup:
                allreduce.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    if rank == 0:
        print("RESULT " + json.dumps({
            "model": model_name, "processes": world, "step_ms": 1e3 * step_s,
            "images_per_s": GLOBAL_BATCH[model_name] / step_s, "params": n_params,
            "allreduce_ms": 1e3 * float(np.median(allreduce)) if allreduce else None,
        }), flush=True)  # fmt: skip


def run(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))  # fmt: skip
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--models", default="mnist,cifar")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.warmup)
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    me = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup), "--worker"]
    n = args.processes
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| model | setup | images/s | step (ms) | all-reduce per step (ms) |\n|---|---|---|---|---|")
    for name in args.models.split(","):
        one = run(me + [name], threads=n)
        many = run([mpiexec, "-n", str(n)] + me + [name], threads=1)
        print(f"| {name} ({one['params']:,} parameters), global batch {GLOBAL_BATCH[name]} | 1 process x {n} "
              f"threads | {one['images_per_s']:.0f} | {one['step_ms']:.1f} | - |")  # fmt: skip
        print(f"| | {n} processes x 1 thread | {many['images_per_s']:.0f} | {many['step_ms']:.1f} | "
              f"{many['allreduce_ms']:.2f} |")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
