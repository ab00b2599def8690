"""``python -m minicnn.check``: every op, layer, loss, optimizer and scheduler of minicnn against the
installed PyTorch, over sampled configurations. The first thing to run on a new machine or GPU.

    python -m minicnn.check --quick                     # a few configurations per op, < 1 minute on a CPU
    python -m minicnn.check --device cuda               # minicnn on the GPU, PyTorch on the CPU
    python -m minicnn.check --dtype float32 --ops conv2d,max_pool2d,nn.BatchNorm2d

It prints one row per op (configurations, worst forward error, worst gradient error, pass) and a
verdict line, and exits 0 only when everything matches (1 when something differs, 2 for a usage
problem: no GPU, no PyTorch, an unknown op). The catalogue is ``minicnn/testing/catalogue.py``;
the comparison rule and its tolerances are ``minicnn.testing``'s (docs/check.md).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

QUICK, FULL = 5, 50  # configurations per op (the fixed edge cases first, then random ones)


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m minicnn.check",
        description="Check every minicnn op, layer, loss and optimizer against the installed PyTorch.",
    )
    p.add_argument("--device", default="cpu", help="where minicnn runs: cpu (default) or cuda[:N]")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="default: float64")
    p.add_argument("--ops", default="", help="comma-separated names or groups (functional, op, nn, optim)")
    p.add_argument("--quick", action="store_true", help=f"{QUICK} configurations per op instead of {FULL}")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled configurations and values")
    p.add_argument("--list", action="store_true", help="list the op names and exit")
    p.add_argument(
        "--tier",
        default="auto",
        choices=["auto", "kernels", "textbook"],
        help="CPU tier: the compiled kernels (auto: when Numba is there) or the textbook ops; "
        "a GPU always runs the textbook",
    )
    return p


def _select(spec, catalogue, groups):
    """The checks named in ``spec`` (names or group names, case-insensitive), or an error message."""
    if not spec.strip():
        return list(catalogue.values()), None
    by_name = {name.lower(): check for name, check in catalogue.items()}
    chosen, unknown = [], []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        key = word.lower()
        if key in by_name:
            found = [by_name[key]]
        elif key in groups:
            found = [c for c in catalogue.values() if c.group == key]
        else:
            unknown.append(word)
            continue
        chosen += [c for c in found if c not in chosen]
    if unknown:
        return None, (
            f"unknown op{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; valid names: "
            + ", ".join(catalogue)
            + " (or a group: "
            + ", ".join(groups)
            + ")"
        )
    return chosen, None


def _fmt(v):
    return "-" if v is None else ("0" if v == 0 else f"{v:.1e}")


def run_check(check, count, dtype, device, seed, torch):
    """Run one catalogue entry on ``count`` configurations: (configs run, worst forward error, worst
    gradient error, failures as (config, message) pairs)."""
    import numpy as np

    from minicnn.testing import ParityError
    from minicnn.testing.catalogue import Context, config_seed, configurations, describe

    fwd = grad = None
    failures = []
    configs = configurations(check, count, seed)
    for i, cfg in enumerate(configs):
        # two streams: the values this configuration draws, and compare_with_torch's upstream gradients
        # (one stream for both would make the upstream gradient a copy of the first input)
        values, upstream = config_seed(seed, check.name, i), config_seed(seed, check.name, (i, "upstream"))
        ctx = Context(dtype, device, torch, np.random.default_rng(values), upstream)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch's notes on 'same' padding, inf * 0, ...
                result = check.run(cfg, ctx)
            reports = result if isinstance(result, list) else [result]
        except ParityError as err:
            reports = [err.report] if err.report is not None else []
            failures.append((describe(cfg), str(err).splitlines()[0]))
        except Exception as err:  # an op that raises on this configuration
            reports = []
            failures.append((describe(cfg), f"{type(err).__name__}: {err}".splitlines()[0]))
        for report in reports:
            f = report.max_error("output", "buffer", "param", "hyper")
            g = report.max_error("grad")
            fwd = f if fwd is None or (f is not None and f > fwd) else fwd
            grad = g if grad is None or (g is not None and g > grad) else grad
    return len(configs), fwd, grad, failures


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (it has printed it)
        return int(exit_.code or 0)
    from minicnn.backend import Device, cuda_available, cuda_unavailable_reason
    from minicnn.testing.catalogue import CATALOGUE, GROUPS

    if args.list:
        for name, check in CATALOGUE.items():
            print(f"{name:22s} {check.group}")
        return 0
    checks, problem = _select(args.ops, CATALOGUE, GROUPS)
    if problem:
        print(f"minicnn.check: {problem}", file=sys.stderr)
        return 2
    try:
        device = Device(args.device)
    except (TypeError, ValueError) as err:
        print(f"minicnn.check: {err}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not cuda_available():
        print(
            f"minicnn.check: no CUDA device: {cuda_unavailable_reason()} (install the CuPy wheel for "
            "your CUDA version, e.g. `pip install cupy-cuda12x`; `nvidia-smi` shows it)",
            file=sys.stderr,
        )
        return 2
    try:
        import torch
    except ImportError as err:
        from minicnn.testing._util import TORCH_INSTALL

        print(f"minicnn.check: PyTorch could not be imported ({err}): {TORCH_INSTALL}", file=sys.stderr)
        return 2

    import minicnn
    from minicnn import kernels

    if args.tier == "kernels" and not kernels.available():
        print(f"minicnn.check: --tier kernels: {kernels.unavailable_reason()}", file=sys.stderr)
        return 2
    on_cpu_kernels = device.type == "cpu" and args.tier != "textbook" and kernels.available()
    tier = "kernels" if on_cpu_kernels else "textbook"
    with kernels.use_kernels(tier == "kernels"):
        return _run(args, checks, device, tier, torch, minicnn)


def _run(args, checks, device, tier, torch, minicnn) -> int:
    from minicnn.testing import RTOL

    count = QUICK if args.quick else FULL
    rtol = RTOL[args.dtype]
    print(
        f"minicnn {minicnn.__version__} against PyTorch {torch.__version__}: minicnn on {device} "
        f"({tier} tier), PyTorch on the CPU, {args.dtype}, seed {args.seed}, up to {count} configurations "
        "per op"
    )
    print(f"errors are relative: max |minicnn - torch| / (|torch| + max|torch|); pass = all <= {rtol:g}")
    width = max(len(c.name) for c in checks)
    head = f"{'op':<{width}}  {'configs':>7}  {'worst fwd err':>13}  {'worst grad err':>14}  pass"
    print(head)
    print("-" * len(head))
    start, failed, notes = time.perf_counter(), [], []
    for check in checks:
        n, fwd, grad, failures = run_check(check, count, args.dtype, str(device), args.seed, torch)
        ok = not failures
        print(
            f"{check.name:<{width}}  {n:>7}  {_fmt(fwd):>13}  {_fmt(grad):>14}  {'yes' if ok else 'NO'}",
            flush=True,
        )
        if not ok:
            failed.append((check.name, failures))
        if check.note and check.note not in notes:
            notes.append(check.note)
    for note in notes:
        print(f"note: {note}")
    for name, failures in failed:
        for config, message in failures:
            print(f"FAILED {name} [{config}]: {message}")
    seconds = time.perf_counter() - start
    matched = len(checks) - len(failed)
    verdict = (
        f"minicnn.check: {matched}/{len(checks)} ops match PyTorch {torch.__version__} on {device} "
        f"({tier} tier, {args.dtype}) in {seconds:.0f} s"
    )
    if failed:
        verdict += "; different: " + ", ".join(name for name, _ in failed)
    print(verdict)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
