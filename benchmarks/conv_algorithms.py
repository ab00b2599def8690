"""The conv twin's algorithms per layer of the models, against PyTorch, in one process.

``python benchmarks/conv_algorithms.py [--repeats 30] [--threads 2] [--layers mnist_conv2,cifar_conv3]``

For each conv layer of ``models.mnist_cnn()`` and ``models.cifar_cnn()`` (their training shapes),
times forward + backward (input gradient unless it is a first layer, weight and bias gradients) of
minicnn's kernels-tier conv2d with each algorithm the twin has: im2col, Winograd F(2x2,3x3) and
F(4x4,3x3), and PyTorch's conv2d, interleaved round by round (so a change in the machine's load hits
all of them), medians of ``--repeats`` rounds. It also prints the float32 error of each algorithm's
output and gradients against float64 (max |error| / max |value|) and which algorithm
``kernels.winograd.choose`` picks. docs/kernels.md records its figures.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

LAYERS = {  # name: (input shape, out channels, first layer)
    "mnist_conv1": ((64, 1, 28, 28), 32, True),
    "mnist_conv2": ((64, 32, 14, 14), 64, False),
    "cifar_conv1": ((128, 3, 32, 32), 32, True),
    "cifar_conv2": ((128, 32, 16, 16), 64, False),
    "cifar_conv3": ((128, 64, 8, 8), 128, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", default=",".join(LAYERS))
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import torch

    from minicnn.kernels import conv as kconv
    from minicnn.kernels import winograd

    torch.set_num_threads(args.threads)
    env = {v: os.environ.get(v, "unset") for v in ("OPENBLAS_CORETYPE", "NUMBA_CPU_NAME")}
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads, {env}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    choose = winograd.choose

    def run_minicnn(m, x, w, b, gy, first):
        winograd.choose = lambda g, dtype: m
        op = kconv.Conv2d()
        op.needs_input_grad = (not first, True, True)
        out = op.forward(x, w, b, 1, 1, 1, 1)
        grads = op.backward(gy)
        return out, grads

    def run_torch(tx, tw, tb, tgy):
        out = torch.nn.functional.conv2d(tx, tw, tb, padding=1)
        return out, torch.autograd.grad(out, [t for t in (tx, tw, tb) if t.requires_grad], tgy)

    for name in args.layers.split(","):
        measure_layer(name, args.repeats, run_minicnn, run_torch, choose)
    winograd.choose = choose


def measure_layer(name, repeats, run_minicnn, run_torch, choose):
    import numpy as np
    import torch

    from minicnn.ops._geometry import ConvGeometry

    xs, O, first = LAYERS[name]
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal(xs)
    w64 = rng.standard_normal((O, xs[1], 3, 3)) / np.sqrt(9 * xs[1])
    b64, gy64 = rng.standard_normal(O), rng.standard_normal((xs[0], O, xs[2], xs[3]))
    x, w, b, gy = (a.astype(np.float32) for a in (x64, w64, b64, gy64))
    picked = choose(ConvGeometry(x.shape, w.shape, b.shape, 1, 1, 1, 1), x.dtype)
    algos = {"im2col": 0, "F(2x2)": 2, "F(4x4)": 4}
    errors = {}
    for label, m in algos.items():  # float32 against float64 (both by im2col: the textbook's sums)
        ref_out, ref_grads = run_minicnn(0, x64, w64, b64, gy64, first)
        out, grads = run_minicnn(m, x, w, b, gy, first)
        pairs = [(a, r) for a, r in zip((out, *grads), (ref_out, *ref_grads)) if a is not None]
        errors[label] = [np.abs(a - r).max() / np.abs(r).max() for a, r in pairs]
    tx = torch.tensor(x, requires_grad=not first)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    tgy = torch.tensor(gy)
    fns = {label: functools.partial(run_minicnn, m, x, w, b, gy, first) for label, m in algos.items()}
    fns["PyTorch"] = functools.partial(run_torch, tx, tw, tb, tgy)
    for f in fns.values():  # warm up (compiles, fills the buffers)
        for _ in range(3):
            f()
    times = {label: [] for label in fns}
    for _ in range(repeats):
        for label, f in fns.items():
            t = time.perf_counter()
            f()
            times[label].append(time.perf_counter() - t)
    med = {label: statistics.median(ts) * 1e3 for label, ts in times.items()}
    low = {label: min(ts) * 1e3 for label, ts in times.items()}
    names = {0: "im2col", 2: "F(2x2)", 4: "F(4x4)"}
    print(f"\n{name} {xs} -> {O}{' (first layer: no dx)' if first else ''}; choose() -> {names[picked]}; "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    for label in fns:
        err = ""
        if label != "PyTorch":
            err = "  f32 error out/grads " + " ".join(f"{e:.1e}" for e in errors[label])
        print(f"  {label:8s} fwd+bwd median {med[label]:7.2f} ms ({med[label] / med['PyTorch']:5.2f}x), "
              f"min {low[label]:7.2f} ms ({low[label] / low['PyTorch']:5.2f}x){err}")  # fmt: skip


if __name__ == "__main__":
    main()
