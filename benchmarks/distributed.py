"""Data-parallel throughput: on CPUs, 1 process x T threads vs P processes x 1 thread; on GPUs, DDP at
1, 2, ... all GPUs.

    python benchmarks/distributed.py                         # CPU: MNIST and CIFAR CNN, 2 processes
    python benchmarks/distributed.py --steps 30 --models mnist
    python benchmarks/distributed.py --device cuda --gpus all --models cifar,resnet20 --parity

CPU (default): for each model, the same global batch (MNIST 64, CIFAR 128, ResNet-20 128) of
random images, trained with SGD, once in one process with ``--processes`` threads (Numba and BLAS),
once in ``--processes`` processes (``mpiexec``) with one thread each and DistributedDataParallel;
and the time of one all-reduce of all the model's gradients, alone between the processes.

GPU (``--device cuda``): ``--per-gpu-batch`` images per GPU (weak scaling, as DDP is used), DDP over
NCCL with 1, 2, ... GPUs (``--gpus 1,2,4`` or ``all``), one process per GPU; images/s of the whole
job and the scaling efficiency against one GPU. ``--parity`` first runs the NCCL parity checks of
tests/test_distributed_worker.py on the real GPUs (DDP + SyncBatchNorm = one big batch; the
collectives against MPI's); on a machine without GPUs it runs them on the CuPy stand-in with the
fake NCCL communicator instead.

Prints a markdown table with the machine's load average; ``--json PATH`` writes every figure.
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
GLOBAL_BATCH = {"mnist": 64, "cifar": 128, "resnet20": 128}
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32), "resnet20": (3, 32, 32)}


def worker(model_name, steps, warmup, device, batch):
    import numpy as np

    import minicnn as mc
    import minicnn.distributed as dist
    from minicnn import models, optim
    from minicnn.nn import functional as F
    from minicnn.nn.parallel import DistributedDataParallel as DDP

    if device == "cuda":
        mc.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    mc.manual_seed(0)
    build = {"mnist": models.mnist_cnn, "cifar": models.cifar_cnn, "resnet20": models.resnet}[model_name]
    model = build().to(device)
    per_rank = batch if device == "cuda" else batch // world
    if world > 1:
        model = DDP(model)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = mc.tensor(rng.standard_normal((per_rank, *SHAPES[model_name])).astype(np.float32), device=device)
    y = mc.tensor(rng.integers(0, 10, per_rank), device=device)

    def sync():
        if device == "cuda":
            mc.cuda.synchronize()
        dist.barrier()

    times = []
    for step in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    allreduce = []
    if world > 1:
        buf = mc.zeros(n_params, device=device)
        for i in range(warmup + steps):
            sync()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            sync()
            if i >= warmup:
                allreduce.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    if rank == 0:
        print("RESULT " + json.dumps({
            "model": model_name, "device": device, "processes": world, "per_rank_batch": per_rank,
            "step_ms": 1e3 * step_s, "images_per_s": per_rank * world / step_s, "params": n_params,
            "allreduce_ms": 1e3 * float(np.median(allreduce)) if allreduce else None,
        }), flush=True)  # fmt: skip


def _env(threads=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def run(cmd, env, timeout=600):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    results = [json.loads(x[7:]) for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode != 0 or not results:
        return {"error": f"exit {out.returncode}: " + (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return results[-1]


def parity(mpiexec, n, device):
    """The NCCL parity scenarios of tests/test_distributed_worker.py on n ranks."""
    worker_py = str(ROOT / "tests" / "test_distributed_worker.py")
    mode = "cuda-real" if device == "cuda" else "cuda"
    checks = {}
    r = run([mpiexec, "-n", str(n), sys.executable, worker_py, "ddp_sync_bn", mode, "3"], _env(1), 300)
    checks["ddp_syncbn_vs_big_batch"] = r
    r = run([mpiexec, "-n", str(n), sys.executable, worker_py, "nccl_collectives", mode], _env(1), 300)
    checks["collectives_nccl_vs_mpi"] = r
    ok = all("error" not in c for c in checks.values())
    ok = ok and checks["ddp_syncbn_vs_big_batch"]["diff"] < 1e-12
    ok = ok and checks["collectives_nccl_vs_mpi"]["cuda"] == checks["collectives_nccl_vs_mpi"]["cpu"]
    return {"ok": bool(ok), "ranks": n, "checks": checks}


def gpu_count():
    from minicnn import cuda

    return cuda.device_count()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--processes", type=int, default=2, help="CPU: processes (and threads of the 1-process run)"
    )
    p.add_argument("--gpus", default="all", help="GPU: the GPU counts to run, e.g. 1,2,4 or all")
    p.add_argument("--per-gpu-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--models", default="mnist,cifar")
    p.add_argument("--parity", action="store_true", help="run the NCCL parity checks first")
    p.add_argument("--json", default=None, help="write every figure to this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.steps, args.warmup, args.device, args.batch)
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    me = [sys.executable, __file__, "--device", args.device, "--steps", str(args.steps), "--warmup",
          str(args.warmup)]  # fmt: skip
    report = {"device": args.device, "load_before": os.getloadavg()[0], "runs": []}
    print(f"load average before: {report['load_before']:.2f}")
    if args.device == "cuda":
        available = gpu_count()
        counts = (
            list(range(1, available + 1)) if args.gpus == "all" else [int(g) for g in args.gpus.split(",")]
        )
        if args.parity:
            report["parity"] = parity(mpiexec, max(2, min(available, 2)), "cuda")
            verdict = "ok" if report["parity"]["ok"] else "FAILED"
            print(f"NCCL parity on {report['parity']['ranks']} GPUs: {verdict}")
        print(
            "| model | GPUs | batch per GPU | images/s | step (ms) | scaling efficiency | all-reduce (ms) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in args.models.split(","):
            base = None
            for n in counts:
                cmd = [mpiexec, "-n", str(n)] + me + ["--batch", str(args.per_gpu_batch), "--worker", name]
                r = run(cmd, _env())
                r.update(model=name, gpus=n)
                report["runs"].append(r)
                if "error" in r:
                    print(f"| {name} | {n} | {args.per_gpu_batch} | error: {r['error'][:80]} | | | |")
                    continue
                base = base or r["images_per_s"]
                eff = r["images_per_s"] / (n * base)
                ar = "-" if r["allreduce_ms"] is None else f"{r['allreduce_ms']:.2f}"
                speed = f"{r['images_per_s']:.0f} | {r['step_ms']:.2f}"
                print(f"| {name} | {n} | {args.per_gpu_batch} | {speed} | {100 * eff:.0f}% | {ar} |")
    else:
        n = args.processes
        if args.parity:
            report["parity"] = parity(mpiexec, 2, "cpu")
            print(f"NCCL parity on the CuPy stand-in: {'ok' if report['parity']['ok'] else 'FAILED'}")
        print("| model | setup | images/s | step (ms) | all-reduce per step (ms) |\n|---|---|---|---|---|")
        for name in args.models.split(","):
            batch = str(GLOBAL_BATCH[name])
            one = run(me + ["--batch", batch, "--worker", name], _env(threads=n))
            many = run([mpiexec, "-n", str(n)] + me + ["--batch", batch, "--worker", name], _env(threads=1))
            one.update(model=name, setup=f"1 process x {n} threads")
            many.update(model=name, setup=f"{n} processes x 1 thread")
            report["runs"] += [one, many]
            for r in (one, many):
                if "error" in r:
                    print(f"| {name} | {r['setup']} | error: {r['error'][:80]} | | |")
                    continue
                ar = "-" if r["allreduce_ms"] is None else f"{r['allreduce_ms']:.2f}"
                print(f"| {name} ({r['params']:,} parameters), global batch {batch} | {r['setup']} | "
                      f"{r['images_per_s']:.0f} | {r['step_ms']:.1f} | {ar} |")  # fmt: skip
    report["load_after"] = os.getloadavg()[0]
    print(f"load average after: {report['load_after']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if report.get("parity", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
