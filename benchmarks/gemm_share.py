"""How much of a minicnn training step is BLAS GEMM time, and how much is everything else.

    python benchmarks/gemm_share.py [--threads 2] [--steps 20] [--json FILE]

For the MNIST and CIFAR CNNs of ``run.py`` (same models, batch sizes and optimizers), it runs
training steps while timing every ``numpy.matmul`` call (all of conv2d's GEMMs, in every layout,
go through it) and prints, per model: the median step, the GEMM time per step, their GFLOP/s,
and the rest. It answers "what would a step cost if everything but the convolution GEMMs were
free?" -- a floor for a NumPy implementation that keeps im2col GEMMs (docs/performance.md).

The Linear layers use the ``@`` operator, which cannot be intercepted; they are counted in the
rest (the profiler puts the whole Linear op at ~1-2 % of a step). Measurement only: the wrapper
replaces ``numpy.matmul`` for the duration of this script, never inside the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the repository root: run from a checkout

from _common import MODELS, blas_info, pin_threads  # noqa: E402


class GemmClock:
    """Replaces numpy.matmul by a timed call while active; sums seconds and FLOPs (2*M*K*N per
    matrix product, times the batch of a batched product)."""

    def __init__(self, np):
        self.np, self.real = np, np.matmul
        self.seconds = self.flops = 0.0
        self.calls = 0

    def __enter__(self):
        real, np = self.real, self.np

        def timed(a, b, *args, **kwargs):
            t0 = time.perf_counter()
            out = real(a, b, *args, **kwargs)
            self.seconds += time.perf_counter() - t0
            if a.ndim >= 2 and b.ndim >= 2:
                batch = out.size // (out.shape[-2] * out.shape[-1]) if out.ndim >= 2 else 1
                self.flops += 2.0 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]
            self.calls += 1
            return out

        np.matmul = timed
        return self

    def __exit__(self, *exc):
        self.np.matmul = self.real

    def reset(self):
        self.seconds = self.flops = 0.0
        self.calls = 0


def measure(name, steps, warmup):
    import numpy as np
    from _minicnn_worker import train_step_fn

    import minicnn as mc

    step, _, _ = train_step_fn(mc, np, name, MODELS[name]["batch"], "cpu")
    with GemmClock(np) as clock:
        for _ in range(warmup):
            step()
        per_step, gemm, flops = [], [], []
        for _ in range(steps):
            clock.reset()
            t0 = time.perf_counter()
            step()
            per_step.append(time.perf_counter() - t0)
            gemm.append(clock.seconds)
            flops.append(clock.flops)
    median = sorted(per_step)[len(per_step) // 2]
    gemm_ms = 1e3 * sorted(gemm)[len(gemm) // 2]
    return {
        "model": name,
        "batch": MODELS[name]["batch"],
        "step_ms": 1e3 * median,
        "gemm_ms": gemm_ms,
        "gemm_calls": clock.calls,
        "gemm_gflops": flops[0] / 1e9,
        "gemm_gflop_per_s": flops[0] / 1e9 / (gemm_ms / 1e3),
        "rest_ms": 1e3 * median - gemm_ms,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    pin_threads(args.threads)
    rows = [measure(name, args.steps, args.warmup) for name in ("mnist", "cifar")]
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE') or '(unset)'}; BLAS: {blas_info()}")
    print(f"{'model':8} {'batch':>5} {'step ms':>8} {'GEMM ms':>8} {'GEMM GFLOP':>10} "
          f"{'GFLOP/s':>8} {'rest ms':>8} {'GEMM %':>7}")  # fmt: skip
    for r in rows:
        print(
            f"{r['model']:8} {r['batch']:5d} {r['step_ms']:8.1f} {r['gemm_ms']:8.1f} "
            f"{r['gemm_gflops']:10.2f} {r['gemm_gflop_per_s']:8.0f} {r['rest_ms']:8.1f} "
            f"{100 * r['gemm_ms'] / r['step_ms']:6.1f}%"
        )
    if args.json:
        with open(args.json, "w") as f:
            env = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "blas": blas_info()}
            json.dump({"rows": rows, "env": env}, f, indent=1)


if __name__ == "__main__":
    main()
