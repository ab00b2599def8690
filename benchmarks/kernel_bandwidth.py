"""Memory speed of the loop kernels (minicnn/kernels/) on the models' shapes: bytes moved / time,
beside a plain parallel copy of the same number of bytes. ``python benchmarks/kernel_bandwidth.py``

    python benchmarks/kernel_bandwidth.py                     # every kernel, float32, Numba's threads
    python benchmarks/kernel_bandwidth.py --only col2im,max_pool --rounds 41
    NUMBA_NUM_THREADS=1 python benchmarks/kernel_bandwidth.py
    # the AVX2 code on an AVX-512 machine (both variables: the name alone keeps the host's features)
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,\
+fsgsbase,+fxsr,+invpcid,+lzcnt,+mmx,+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,\
+ssse3,+xsave,+xsaveopt NUMBA_CACHE_DIR=/tmp/numba-avx2 python benchmarks/kernel_bandwidth.py

Bytes = every array the kernel reads or writes, counted once (col2im: dcols read, dx written; the
max-pool forward: x read, out and arg-max written; ...). The copy reads half of that and writes the
other half. Each round runs every kernel case and its copy once, in turn, so a change in the machine's
load hits both; the medians over ``--rounds`` are printed with the load average before and after.
The arrays are reused call after call, as in a training step (so they may sit in the caches).
docs/kernels.md records the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root: run from a checkout

CONVS = {
    "mnist conv1": (64, 1, 28, 28),
    "mnist conv2": (64, 32, 14, 14),
    "cifar conv1": (128, 3, 32, 32),
    "cifar conv2": (128, 32, 16, 16),
    "cifar conv3": (128, 64, 8, 8),
}  # fmt: skip  (inputs; 3x3, pad 1)
POOLS = {"mnist pool1": (64, 32, 28, 28), "mnist pool2": (64, 64, 14, 14), "cifar pool1": (128, 32, 32, 32),
         "cifar pool2": (128, 64, 16, 16), "cifar pool3": (128, 128, 8, 8)}  # fmt: skip
ACTS = {
    "mnist conv1 out": (64, 32, 784),
    "mnist conv2 out": (64, 64, 196),
    "cifar conv1 out": (128, 32, 1024),
    "cifar conv2 out": (128, 64, 256),
    "cifar conv3 out": (128, 128, 64),
}  # fmt: skip  (N, C, H*W)
POOL_2X2 = (2, 2, 2, 2, 0, 0, 1, 1)  # the max-pool backward's kernel, stride, padding, dilation
KERNELS = ("im2col", "col2im", "max_pool", "batch_norm", "relu", "bias")


def cases(np, only):
    """(kernel, shape label, bytes moved, function) for every case."""
    from minicnn.kernels import activation, conv, normalization, pooling

    rng = np.random.default_rng(0)
    f32 = np.float32
    bn, pool_bwd = normalization, pooling.max_pool2d_backward_loops
    out = []
    for label, (n, c, h, w) in CONVS.items():
        x = rng.standard_normal((n, c, h, w), dtype=f32)
        cols = np.empty((n, c * 9, h, w), f32)
        dcols = rng.standard_normal(cols.shape, dtype=f32)
        dx = np.empty_like(x)
        nbytes = x.nbytes + cols.nbytes
        out.append(
            ("im2col", label, nbytes, lambda x=x, c=cols: conv.im2col_loops(x, 3, 3, 1, 1, 1, 1, 1, 1, c))
        )
        out.append(
            ("col2im", label, nbytes, lambda d=dcols, o=dx: conv.col2im_loops(d, 3, 3, 1, 1, 1, 1, 1, 1, o))
        )
    for label, (n, c, h, w) in POOLS.items():
        x = rng.standard_normal((n, c, h, w), dtype=f32)
        y, arg = np.empty((n, c, h // 2, w // 2), f32), np.empty((n, c, h // 2, w // 2), np.int32)
        g = rng.standard_normal(y.shape, dtype=f32)
        pooling.max_pool2d_2x2_forward_loops(x, y, arg)
        dx = np.empty_like(x)
        nbytes = x.nbytes + y.nbytes + arg.nbytes
        out.append(("max_pool", label + " 2x2 forward", nbytes,
                    lambda x=x, y=y, a=arg: pooling.max_pool2d_2x2_forward_loops(x, y, a)))  # fmt: skip
        out.append(("max_pool", label + " backward", nbytes,
                    lambda g=g, a=arg, d=dx: pool_bwd(g, a, *POOL_2X2, d)))  # fmt: skip
    for label, shape in ACTS.items():
        x, g = rng.standard_normal(shape, dtype=f32), rng.standard_normal(shape, dtype=f32)
        c = shape[1]
        mean, gamma, beta, k = (rng.standard_normal(c, dtype=f32) for _ in range(4))
        invstd = np.abs(rng.standard_normal(c, dtype=f32)) + 0.5
        sg, sgx = (rng.standard_normal(c, dtype=f32) for _ in range(2))
        m = f32(shape[0] * shape[2])
        s = x.nbytes
        xf, gf, y = x.reshape(-1), g.reshape(-1), x.copy()
        out += [
            ("batch_norm", label + " statistics", s, lambda x=x: bn.batch_norm_stats(x)),
            ("batch_norm", label + " normalize", 2 * s,
             lambda x=x, a=(mean, invstd, gamma, beta): bn.batch_norm_normalize(x, *a)),
            ("batch_norm", label + " backward sums", 2 * s,
             lambda g=g, x=x, a=(mean, invstd): bn.batch_norm_backward_sums(g, x, *a)),
            ("batch_norm", label + " backward dx", 3 * s,
             lambda g=g, x=x, a=(mean, invstd, k, m, sg, sgx): bn.batch_norm_backward_dx(g, x, *a)),
            ("relu", label + " forward", 2 * s, lambda xf=xf: activation.relu_forward(xf)),
            ("relu", label + " backward", 3 * s, lambda gf=gf, xf=xf: activation.relu_backward(gf, xf)),
            ("bias", label + " add (in place)", 2 * s, lambda y=y, b=mean: conv.add_bias_loops(y, b)),
        ]  # fmt: skip
    return [c for c in out if c[0] in only]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(KERNELS), help=f"comma-separated subset of {','.join(KERNELS)}")
    p.add_argument("--rounds", type=int, default=21, help="timed rounds (medians are printed)")
    args = p.parse_args(argv)
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    if set(only) - set(KERNELS) or args.rounds < 1:
        p.error(f"--only: choose from {','.join(KERNELS)}; --rounds >= 1")

    import numba
    import numpy as np

    import minicnn  # noqa: F401  (sets Numba's threading layer as the library runs it)

    @numba.njit(parallel=True, cache=True)
    def copy(a, b):
        for i in numba.prange(a.size):
            b[i] = a[i]

    load = os.getloadavg()[0]
    todo = cases(np, only)
    timed = []
    for kernel, label, nbytes, fn in todo:
        a, b = np.empty(nbytes // 8, np.float32), np.empty(nbytes // 8, np.float32)
        timed.append((kernel, label, nbytes, fn, lambda a=a, b=b: copy(a, b)))
    for *_, fn, cp in timed:  # compile and warm up
        fn(), fn(), cp(), cp()
    times = [([], []) for _ in timed]
    for _ in range(args.rounds):
        for (*_, fn, cp), (t_fn, t_cp) in zip(timed, times):
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            cp()
            t_fn.append(t1 - t0)
            t_cp.append(time.perf_counter() - t1)
    features = "custom (NUMBA_CPU_FEATURES)" if os.environ.get("NUMBA_CPU_FEATURES") else "the host's"
    cpu = os.environ.get("NUMBA_CPU_NAME") or "host"
    print(f"Numba {numba.__version__}, CPU name {cpu}, features {features}, "
          f"{numba.get_num_threads()} thread(s), float32; medians of {args.rounds} rounds; "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{'kernel':11} {'case':32} {'MB':>6} {'ms':>8} {'GB/s':>6} {'copy GB/s':>9}")
    for (kernel, label, nbytes, *_), (t_fn, t_cp) in zip(timed, times):
        t, c = statistics.median(t_fn), statistics.median(t_cp)
        gbs, copy_gbs = nbytes / t / 1e9, nbytes / c / 1e9
        print(f"{kernel:11} {label:32} {nbytes / 1e6:6.1f} {t * 1e3:8.3f} {gbs:6.1f} {copy_gbs:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
