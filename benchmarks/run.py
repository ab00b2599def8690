"""minicnn vs PyTorch, side by side in the same run: ``python benchmarks/run.py``.

Each measurement runs in a fresh worker process (``_minicnn_worker.py`` / ``_torch_worker.py``),
the two libraries alternating (which one goes first flips from case to case), both pinned to the
same CPUs and thread count. Every case is timed ``--repeats`` times after ``--warmup`` untimed
runs, and the median is reported. The whole set is run twice: with ``OPENBLAS_CORETYPE=Haswell``
(NumPy's OpenBLAS held to AVX2 kernels) and with the variable unset (OpenBLAS picks the CPU's own,
e.g. AVX-512), because the setting changes NumPy's matmul speed by up to 2x.

What is printed:
  * the environment (CPU, cores, versions, BLAS libraries and the kernel OpenBLAS picked);
  * the SGEMM ceiling: a float32 2048x2048x2048 matmul in each library, in GFLOP/s;
  * model rows: a training step (zero_grad, forward, cross-entropy, backward, optimizer step) and
    an inference batch (no_grad, eval mode) of the MNIST CNN (batch 64, Adam) and the CIFAR CNN
    (batch 128, SGD momentum 0.9) on synthetic data; ms, ratio minicnn/torch, GFLOP/s, and the
    peak memory of each worker process;
  * per-op micro-benchmarks: conv2d, max_pool2d, batch_norm (training mode), cross_entropy,
    forward (under no_grad) and backward (retain_graph, leaf grads cleared before each call);
  * per conv layer of the two models (``convs``): forward + backward ms of each algorithm minicnn has
    (its own choice, the im2col twin, the textbook, Winograd when minicnn/kernels/winograd.py exists:
    ``conv_algorithms`` in _minicnn_worker.py, the place to add one) against PyTorch's conv2d, once per
    BLAS setting (it does not depend on --tier);
  * a batch-size sweep of the MNIST CNN training step, in microseconds per sample;
  * where the two training steps' time goes: minicnn's profiler table, and torch.profiler's
    self CPU time per op for the same step;
  * the cold start (``coldstart``, once, kernels tier, the BLAS setting of the shell): the MNIST CNN's
    first training step with an empty Numba cache and with a warm one (``cold_start.py``, one pair);
  * the same model rows on a GPU (TF32 off in both) when both libraries see one, and the GPU
    cases: a training step of the CIFAR CNN and of ResNet-20 at batch 128 and 512; otherwise the
    GPU rows say "not measured".

Tiers (``--tier``): minicnn's CPU figures come from its compiled kernels (``kernels``, the default)
or from the textbook NumPy ops (``textbook``: the workers run with ``MINICNN_KERNELS=0``), or both,
one after the other. A GPU always runs the textbook ops (the kernels are CPU code).

FLOP count (stated in the output too): forward = 2 x MACs of the conv and linear layers
(conv MACs = N*C_out*H_out*W_out*C_in*k*k, linear MACs = N*in*out); a training step = 3 x forward
(the backward pass computes the gradient of the input and of the weight, each as costly as the
forward). BatchNorm, ReLU, pooling and the loss are not counted. conv2d backward = 2 x forward.

Peak memory: resident memory (RSS) of the worker process above its RSS right after the imports
(on Linux the kernel's peak counter VmHWM is reset at that point via /proc/self/clear_refs; else
ru_maxrss is used). It includes the model, data, activations, gradients and optimizer state, and
whatever the allocator keeps cached. Same method for both libraries.

Options: --quick (few repeats, fewer cases: a smoke test), --only models,ops,convs,sweep,gemm,profile,
coldstart,gpu,
--repeats N, --warmup N, --sweep-repeats N, --threads N, --blas both|haswell|unset,
--tier kernels|textbook|both, --device cpu|cuda|both (which sections run), --gpu-on-cpu (a dry run:
the GPU sections run their cases on the CPU, to check the plumbing without a GPU), --json out.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    CONV_LAYERS,
    CPU_MODELS,
    GPU_CASES,
    MODELS,
    RESULT_MARK,
    SWEEP_BATCHES,
    conv_macs,
    model_macs,
)

WORKERS = {
    "minicnn": os.path.join(HERE, "_minicnn_worker.py"),
    "torch": os.path.join(HERE, "_torch_worker.py"),
}
SECTIONS = ("gemm", "models", "ops", "convs", "sweep", "profile", "coldstart", "gpu")  # "gpu": the GPU cases
TIERS = {"kernels": "1", "textbook": "0"}  # MINICNN_KERNELS of the workers
BLAS_CONFIGS = {
    "haswell": ("OPENBLAS_CORETYPE=Haswell", "Haswell"),
    "unset": ("OPENBLAS_CORETYPE unset", None),
}
FLOP_NOTE = (
    "GFLOP/s: forward = 2 x MACs of conv + linear layers (conv N*Cout*Hout*Wout*Cin*k*k, linear N*in*out); "
    "training step = 3 x forward; conv2d backward = 2 x forward. BN, ReLU, pooling, loss not counted."
)
MEM_NOTE = (
    "peak MiB: worker RSS high-water mark above its RSS after imports (VmHWM reset via "
    "/proc/self/clear_refs; ru_maxrss elsewhere); includes allocator caches."
)


# --------------------------------------------------------------------------- running workers
def worker_env(threads: int, coretype: str | None, tier: str = "kernels") -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["MINICNN_KERNELS"] = TIERS[tier]
    env["CUPY_TF32"] = "0"  # no TF32 on the GPU (CuPy's default, made explicit)
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    return env


def run_worker(lib: str, task: dict, env: dict, timeout=1800) -> dict:
    """Run one task in a fresh process; returns its result, or {"error": ...} (never raises)."""
    cmd = [sys.executable, WORKERS[lib], json.dumps(task)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {proc.returncode}: {tail[0][:200]}"}


def run_pair(task: dict, env: dict, torch_first: bool) -> dict:
    order = ["torch", "minicnn"] if torch_first else ["minicnn", "torch"]
    out = {lib: run_worker(lib, task, env) for lib in order}
    return {"minicnn": out["minicnn"], "torch": out["torch"]}


# --------------------------------------------------------------------------- formatting
def fmt_table(headers, rows) -> str:
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for j, r in enumerate(cells):
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(parts))
        if j == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def ms(result, key="median_s"):
    if "error" in result:
        return "error"
    return f"{result[key] * 1e3:.2f}"


def ratio(a, b, key="median_s"):
    if "error" in a or "error" in b or not b.get(key):
        return "-"
    return f"{a[key] / b[key]:.2f}x"


def gflops(result, flops, key="median_s"):
    if "error" in result or not flops:
        return "-"
    return f"{flops / result[key] / 1e9:.1f}"


def errors_of(pair) -> list:
    return [f"  {lib}: {r['error']}" for lib, r in pair.items() if "error" in r]


# --------------------------------------------------------------------------- sections
def environment(args, probes) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": args.threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "OPENBLAS_CORETYPE_in_shell": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        "probes": probes,
    }


def print_environment(env_info):
    print(f"date           {env_info['date']}")
    print(f"CPU            {env_info['cpu']}")
    print(
        f"cores          {env_info['logical_cpus']} logical, {env_info['cpus_usable']} usable; "
        f"workers pinned to {env_info['threads']} thread(s)"
    )
    print(f"python         {env_info['python']} on {env_info['platform']}")
    print(f"shell          OPENBLAS_CORETYPE={env_info['OPENBLAS_CORETYPE_in_shell']}")
    for label, probe in env_info["probes"].items():
        mc, th = probe["minicnn"], probe["torch"]
        print(f"[{label}]")
        if "error" in mc:
            print(f"  minicnn worker: {mc['error']}")
        else:
            kernels = {True: "kernels on", False: "kernels off", None: "kernels ?"}[mc.get("kernels")]
            print(
                f"  minicnn {mc['minicnn']} ({kernels}), numpy {mc['numpy']}, numpy BLAS: {mc['numpy_blas']}"
            )
            for lib in mc["blas"]:
                print(f"    threadpool: {lib}")
        if "error" in th:
            print(f"  torch worker: {th['error']}")
        else:
            print(
                f"  torch {th['torch']}, threads {th['threads']}, CPU capability {th['cpu_capability']}, "
                f"oneDNN {th['mkldnn']}"
            )
    print()


def section_gemm(args, env, device):
    task = {
        "kind": "gemm",
        "n": 2048,
        "repeats": max(3, min(args.repeats, 10)),
        "threads": args.threads,
        "device": device,
    }
    pair = run_pair(task, env, torch_first=False)
    rows = [
        [f"{lib} float32 2048^3", ms(r), r.get("gflops") and f"{r['gflops']:.1f}"] for lib, r in pair.items()
    ]
    print(fmt_table(["SGEMM ceiling", "ms", "GFLOP/s"], rows))
    if errors_of(pair):
        print("\n".join(errors_of(pair)))
    return pair


def section_models(args, env, device, gemm):
    results, rows, errs = {}, [], []
    base = {"kind": "model", "warmup": args.warmup, "repeats": args.repeats, "threads": args.threads}
    base["device"] = device
    i = 0
    for name in CPU_MODELS:
        for mode in ("train", "infer"):
            task = dict(base, model=name, mode=mode)
            pair = run_pair(task, env, torch_first=bool(i % 2))
            i += 1
            key = f"{name} {mode}"
            results[key] = pair
            spec = MODELS[name]
            flops = 2 * model_macs(name, spec["batch"]) * (3 if mode == "train" else 1)
            mc, th = pair["minicnn"], pair["torch"]
            mem = {lib: r.get("memory", {}).get("peak_mib") for lib, r in pair.items()}
            mem_key = "gpu_peak_mib" if device == "cuda" else None
            if mem_key:
                mem = {lib: r.get(mem_key) for lib, r in pair.items()}
            ceil = {lib: (gemm or {}).get(lib, {}).get("gflops") for lib in pair}
            pct = {
                lib: f"{flops / r['median_s'] / 1e9 / ceil[lib] * 100:.0f}%"
                if "error" not in r and ceil[lib]
                else "-"
                for lib, r in pair.items()
            }
            opt = "Adam" if spec["optimizer"] == "adam" else "SGD m0.9"
            label = f"{name} {'train step' if mode == 'train' else 'inference'} b{spec['batch']}" + (
                f" {opt}" if mode == "train" else ""
            )
            rows.append(
                [
                    label,
                    ms(mc),
                    ms(th),
                    ratio(mc, th),
                    gflops(mc, flops),
                    pct["minicnn"],
                    gflops(th, flops),
                    pct["torch"],
                    "-" if mem["minicnn"] is None else f"{mem['minicnn']:.0f}",
                    "-" if mem["torch"] is None else f"{mem['torch']:.0f}",
                    f"{mem['minicnn'] / mem['torch']:.2f}x" if mem["minicnn"] and mem["torch"] else "-",
                ]
            )
            if "error" not in mc and "error" not in th and mc["layers"] != th["layers"]:
                errs.append(
                    f"  WARNING {name}: layers differ: minicnn {mc['layers']} vs torch {th['layers']}"
                )
            for lib, r in pair.items():
                if "error" not in r and r.get("params") != spec["params"]:
                    errs.append(
                        f"  WARNING {lib} {name}: {r.get('params')} parameters, expected {spec['params']}"
                    )
            errs += errors_of(pair)
    headers = [
        "model",
        "minicnn ms",
        "torch ms",
        "ratio",
        "mc GFLOP/s",
        "mc %ceil",
        "torch GFLOP/s",
        "torch %ceil",
        "mc peak MiB",
        "torch peak MiB",
        "mem ratio",
    ]
    print(fmt_table(headers, rows))
    print(
        f"(median of {args.repeats} after {args.warmup} warm-up; ratio = minicnn / torch; "
        "%ceil = share of the same library's SGEMM ceiling)"
    )
    if errs:
        print("\n".join(errs))
    return results


def describe_shape(op, shape) -> str:
    if op == "conv2d":
        n, cin, h, w, cout, k, p = shape
        return f"{n}x{cin}x{h}x{w} -> {cout}, k{k} p{p}"
    return "x".join(map(str, shape))


def section_ops(args, env, device):
    task = {
        "kind": "ops",
        "quick": args.quick,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": device,
    }
    pair = run_pair(task, env, torch_first=False)
    if errors_of(pair):
        print("\n".join(errors_of(pair)))
        return pair
    rows, errs = [], []
    for mc, th in zip(pair["minicnn"]["ops"], pair["torch"]["ops"]):
        shape = tuple(mc["shape"])
        macs = conv_macs(shape) if mc["op"] == "conv2d" else 0
        for lib, r in (("minicnn", mc), ("torch", th)):
            if "error" in r:
                errs.append(f"  {lib} {r['op']} {r['label']}: {r['error'][:200]}")
        for phase, mult in (("forward", 2), ("backward", 4)):
            mc_t, th_t = mc.get(phase, mc), th.get(phase, th)
            rows.append(
                [
                    f"{mc['op']} {phase}",
                    mc["label"],
                    describe_shape(mc["op"], shape),
                    ms(mc_t),
                    ms(th_t),
                    ratio(mc_t, th_t),
                    gflops(mc_t, mult * macs),
                    gflops(th_t, mult * macs),
                ]
            )
    headers = ["op", "case", "input", "minicnn ms", "torch ms", "ratio", "mc GFLOP/s", "torch GFLOP/s"]
    print(fmt_table(headers, rows))
    if errs:
        print("\n".join(errs))
    return pair


def section_convs(args, env, device):
    """Per conv layer: forward + backward of each of minicnn's algorithms (interleaved in one worker)
    against PyTorch's (another worker), medians."""
    layers = ["mnist conv2"] if args.quick else list(CONV_LAYERS)
    task = {"kind": "convs", "layers": layers, "warmup": args.warmup, "repeats": args.repeats}
    task.update(threads=args.threads, device=device)
    pair = run_pair(task, env, torch_first=True)
    if errors_of(pair):
        print("\n".join(errors_of(pair)))
        return pair
    rows = []
    for layer in layers:
        (n, cin, h, w), cout, first = CONV_LAYERS[layer]
        flops = (4 if first else 6) * conv_macs((n, cin, h, w, cout, 3, 1))  # forward, dW, dx unless first
        th = pair["torch"]["layers"][layer]["PyTorch"]
        mc = pair["minicnn"]["layers"][layer]
        best = min(mc, key=lambda a: mc[a]["median_s"])
        for j, (algo, r) in enumerate(mc.items()):
            head = [layer, f"{n}x{cin}x{h}x{w} -> {cout}"] if j == 0 else ["", ""]
            mark = " *" if algo == best else ""
            t_ms, t_gflops = (ms(th), gflops(th, flops)) if j == 0 else ("", "")
            rows.append([*head, algo + mark, ms(r), t_ms, ratio(r, th), gflops(r, flops), t_gflops])
    headers = ["layer", "input", "minicnn algorithm", "minicnn ms", "torch ms", "ratio", "mc GFLOP/s"]
    print(fmt_table([*headers, "torch GFLOP/s"], rows))
    print(
        "(forward + backward of F.conv2d, 3x3 padding 1 with bias: dW, db, and dx except for a first layer; "
        f"median of {args.repeats} after {args.warmup} warm-up, minicnn's kernels-tier algorithms "
        "interleaved in one worker, its textbook after them; "
        "* = minicnn's fastest; GFLOP/s: (6, or 4 for a first layer) x MACs)"
    )
    return pair


def section_sweep(args, env, device):
    batches = (16, 64, 256) if args.quick else SWEEP_BATCHES
    task = {
        "kind": "sweep",
        "batches": list(batches),
        "warmup": max(1, args.warmup // 2),
        "repeats": args.sweep_repeats,
        "threads": args.threads,
        "device": device,
    }
    pair = run_pair(task, env, torch_first=True)
    if errors_of(pair):
        print("\n".join(errors_of(pair)))
        return pair
    rows = []
    for b in batches:
        mc, th = pair["minicnn"]["sweep"][str(b)], pair["torch"]["sweep"][str(b)]
        flops = 6 * model_macs("mnist", b)
        per_sample = [f"{r['median_s'] * 1e6 / b:.1f}" for r in (mc, th)]
        rows.append([b, *per_sample, ratio(mc, th), gflops(mc, flops), gflops(th, flops)])
    print(
        fmt_table(
            ["batch", "minicnn us/sample", "torch us/sample", "ratio", "mc GFLOP/s", "torch GFLOP/s"], rows
        )
    )
    print(f"(MNIST CNN training step, Adam; median of {task['repeats']} after {task['warmup']} warm-up)")
    return pair


def section_profile(args, env, device):
    out = {}
    for name in CPU_MODELS:
        task = {
            "kind": "profile",
            "model": name,
            "warmup": 2,
            "repeats": 3 if args.quick else 10,
            "threads": args.threads,
            "device": device,
        }
        spec = MODELS[name]
        for lib, what in (("minicnn", "minicnn.profile"), ("torch", "torch.profiler")):
            r = run_worker(lib, task, env)
            out[f"{name} {lib}"] = r
            print(
                f"{what} of one {name} CNN training step (batch {spec['batch']}), "
                f"mean of {task['repeats']} steps:"
            )
            print(r["table"] if "error" not in r else f"  error: {r['error']}")
            print()
    return out


def section_gpu_cases(args, env, device):
    """Training steps of the CIFAR CNN and ResNet-20 at batch 128 and 512 (``GPU_CASES``), both libraries."""
    results, rows, errs = {}, [], []
    base = {"kind": "model", "mode": "train", "warmup": args.warmup, "repeats": args.repeats}
    base.update(threads=args.threads, device=device)
    cases = [(name, b) for name in dict.fromkeys(n for n, _ in GPU_CASES) for b in args.gpu_batches]
    for i, (name, batch) in enumerate(cases):
        pair = run_pair(dict(base, model=name, batch=batch), env, torch_first=bool(i % 2))
        results[f"{name} b{batch}"] = pair
        flops = 6 * model_macs(name, batch)
        mc, th = pair["minicnn"], pair["torch"]
        key = "gpu_peak_mib" if device == "cuda" else None
        mem = {lib: (r.get(key) if key else r.get("memory", {}).get("peak_mib")) for lib, r in pair.items()}
        opt = "Adam" if MODELS[name]["optimizer"] == "adam" else "SGD m0.9"
        per_image = [f"{r['median_s'] * 1e6 / batch:.1f}" if "error" not in r else "error" for r in (mc, th)]
        rows.append(
            [
                f"{name} train step {opt}",
                batch,
                ms(mc),
                ms(th),
                ratio(mc, th),
                *per_image,
                gflops(mc, flops),
                gflops(th, flops),
                "-" if mem["minicnn"] is None else f"{mem['minicnn']:.0f}",
                "-" if mem["torch"] is None else f"{mem['torch']:.0f}",
            ]
        )
        for lib, r in pair.items():
            if "error" not in r and r.get("params") != MODELS[name]["params"]:
                errs.append(
                    f"  WARNING {lib} {name}: {r.get('params')} parameters, expected {MODELS[name]['params']}"
                )
        if "error" not in mc and "error" not in th and mc["layers"] != th["layers"]:
            errs.append(f"  WARNING {name}: layers differ: minicnn {mc['layers']} vs torch {th['layers']}")
        errs += errors_of(pair)
    headers = [
        "model", "batch", "minicnn ms", "torch ms", "ratio", "mc us/image", "torch us/image",
        "mc GFLOP/s", "torch GFLOP/s", "mc peak MiB", "torch peak MiB",
    ]  # fmt: skip
    print(fmt_table(headers, rows))
    print(
        f"(median of {args.repeats} after {args.warmup} warm-up, each step ending with a device "
        "synchronisation; GFLOP/s: 6 x forward MACs; peak MiB: "
        + ("CuPy pool total_bytes vs torch.cuda.max_memory_reserved)" if device == "cuda" else "process RSS)")
    )
    if errs:
        print("\n".join(errs))
    return results


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats and cases: a smoke test, not figures")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed runs per case (default 30; 5 with --quick)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 5; 2 with --quick)")
    p.add_argument("--sweep-repeats", type=int, default=None, help="timed runs per batch size (default 10)")
    default_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p.add_argument(
        "--threads", type=int, default=default_threads, help="threads of each worker (default: all CPUs)"
    )
    p.add_argument(
        "--blas",
        choices=("both", "haswell", "unset"),
        default="both",
        help="OPENBLAS_CORETYPE settings to run: Haswell, unset, or both (default)",
    )
    p.add_argument(
        "--tier",
        choices=("kernels", "textbook", "both"),
        default="kernels",
        help="minicnn CPU tier: compiled kernels (default), textbook NumPy ops (MINICNN_KERNELS=0), or both",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda", "both"),
        default="both",
        help="which sections run: the CPU ones, the GPU ones, or both (default)",
    )
    p.add_argument(
        "--gpu-on-cpu",
        action="store_true",
        help="dry run of the GPU sections: their cases run on the CPU (checks the plumbing, not figures)",
    )
    p.add_argument(
        "--gpu-batches",
        default=",".join(str(b) for b in dict.fromkeys(b for _, b in GPU_CASES)),
        help="batch sizes of the GPU cases (default 128,512)",
    )
    p.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    args = p.parse_args(argv)
    try:
        args.gpu_batches = [int(b) for b in args.gpu_batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--gpu-batches: expected comma-separated integers, got {args.gpu_batches!r}")
    if not args.gpu_batches or min(args.gpu_batches) < 2:
        p.error("--gpu-batches: batch sizes must be >= 2 (batch norm needs two values per channel)")
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if args.repeats is None:
        args.repeats = 5 if args.quick else 30
    if args.warmup is None:
        args.warmup = 2 if args.quick else 5
    if args.sweep_repeats is None:
        args.sweep_repeats = 3 if args.quick else 10
    if args.repeats < 1 or args.warmup < 0 or args.sweep_repeats < 1 or args.threads < 1:
        p.error("--repeats, --sweep-repeats and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # show each table as it is done, also when redirected
    configs = ["haswell", "unset"] if args.blas == "both" else [args.blas]
    tiers = ["kernels", "textbook"] if args.tier == "both" else [args.tier]
    if args.device == "cuda":
        configs = configs[-1:]  # the BLAS setting only matters to the CPU sections
    probes = {}
    for c in configs:
        label, coretype = BLAS_CONFIGS[c]
        env = worker_env(args.threads, coretype, tiers[0])
        probes[label] = run_pair({"kind": "probe", "threads": args.threads}, env, torch_first=False)
    env_info = environment(args, probes)
    print("minicnn vs PyTorch benchmarks (float32, synthetic data)")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print_environment(env_info)
    print(FLOP_NOTE)
    print(MEM_NOTE)
    report = {"env": env_info, "args": vars(args), "cpu": {}, "cuda": None}

    cpu_sections = [s for s in args.only if s != "gpu"] if args.device != "cuda" else []
    for tier in tiers if cpu_sections else []:
        for c in configs:
            label, coretype = BLAS_CONFIGS[c]
            env = worker_env(args.threads, coretype, tier)
            res = report["cpu"][label if args.tier == "kernels" else f"{label}, {tier} tier"] = {}
            print(
                f"\n==================== CPU, {label}, {tier} tier, {args.threads} thread(s) "
                "====================\n"
            )
            if "gemm" in args.only:
                res["gemm"] = section_gemm(args, env, "cpu")
                print()
            if "models" in args.only:
                res["models"] = section_models(args, env, "cpu", res.get("gemm"))
                print()
            if "ops" in args.only:
                res["ops"] = section_ops(args, env, "cpu")
                print()
            if "convs" in args.only and tier == tiers[0]:  # (every algorithm, whatever the tier)
                res["convs"] = section_convs(args, env, "cpu")
                print()
            if "sweep" in args.only:
                res["sweep"] = section_sweep(args, env, "cpu")
                print()
            if "profile" in args.only:
                res["profile"] = section_profile(args, env, "cpu")

    if "coldstart" in args.only and args.device != "cuda":
        import cold_start

        print("==================== cold start of the compiled kernels (MNIST CNN) ====================\n")
        report["coldstart"] = cold_start.measure(runs=1)
        cold_start.print_table(report["coldstart"])
        print()
    if args.device == "cpu":
        return finish(args, report)
    gpu_device = "cpu" if args.gpu_on_cpu else "cuda"
    title = (
        "GPU (TF32 off in both)" if not args.gpu_on_cpu else "GPU sections, DRY RUN on the CPU (not figures)"
    )
    print(f"==================== {title} ====================\n")
    first = next(iter(probes.values()))
    gpu_ok = args.gpu_on_cpu or all(
        "error" not in first[lib] and first[lib]["cuda_available"] for lib in first
    )
    if not gpu_ok:
        why = "; ".join(
            f"{lib}: {'error' if 'error' in r else 'sees a GPU' if r['cuda_available'] else 'no GPU'}"
            + (f" ({r['cuda_problem']})" if r.get("cuda_problem") else "")
            for lib, r in first.items()
        )
        print(f"GPU rows: not measured ({why})")
        report["cuda"] = {"measured": False, "why": why}
    else:
        env = worker_env(args.threads, None, "textbook")  # a GPU runs the textbook ops
        res = report["cuda"] = {"measured": not args.gpu_on_cpu, "dry_run_on_cpu": args.gpu_on_cpu}
        if "gemm" in args.only:
            res["gemm"] = section_gemm(args, env, gpu_device)
            print()
        if "models" in args.only:
            res["models"] = section_models(args, env, gpu_device, res.get("gemm"))
            print("(GPU peak MiB: torch.cuda.max_memory_reserved vs CuPy memory pool total_bytes)\n")
        if "gpu" in args.only:
            res["gpu_cases"] = section_gpu_cases(args, env, gpu_device)
            print()
        if "ops" in args.only:
            res["ops"] = section_ops(args, env, gpu_device)
    return finish(args, report)


def finish(args, report):
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
