"""The first GPU run of minicnn, as one command that ends in under 10 minutes (docs/gpu.md).

On a machine with a GPU (bare: PyTorch, torchvision and cupy-cuda13x installed, nothing else)::

    python3 benchmarks/gpu_first_run.py --device cuda --data-dir .device_data --out OUT

runs, in order, each stage in its own process with a time limit (the whole run keeps inside
``--budget`` seconds, 540 by default; a stage that would not fit is reported as not run):

1. ``env``: the GPU, driver, CUDA, CuPy, PyTorch and NumPy versions, and whether minicnn sees the
   GPU (if not: the reason, e.g. "CuPy is installed but failed: CUDARuntimeError: ...", and stop);
2. ``check``: ``python -m minicnn.check --device cuda --quick`` (every op against PyTorch);
3. ``bench``: ``benchmarks/run.py --device cuda --only gemm,gpu``: the SGEMM ceiling and the GPU
   cases, training steps of the CIFAR CNN and ResNet-20 at batch 128 and 512, TF32 off in both;
4. ``mnist``: ``examples/mnist_cnn.py --device cuda`` for its 5 epochs;
5. ``cifar`` (only with ``--stages ...,cifar``): ``examples/cifar10_cnn.py --device cuda``, 1 epoch
   on the CIFAR-10 subset that travels;
6. ``multigpu`` (a machine with more than one GPU; reported as not run with one): the NCCL parity
   checks (DDP + SyncBatchNorm over NCCL = one big batch, the collectives against MPI's) and DDP
   throughput at 1, 2, ... all GPUs (``benchmarks/distributed.py --device cuda --parity``);
7. ``parity``: the cuda half of the parity suite, ``pytest parity_tests -k cuda``, in the time left
   (``MINICNN_REQUIRE_CUDA=1``: a broken CuPy fails instead of falling back to the stand-in).

It writes ``OUT/gpu_run.json`` (every figure), ``OUT/gpu_run.md`` (the section that
docs/benchmarks.md takes as it is, under "GPU figures") and one log per stage (``OUT/<stage>.log``),
after each stage, so a run cut short still leaves what it did.

The data travel with the working tree, which is limited to 64 MiB: ``--pack-data DIR`` (here, once)
writes DIR/MNIST/raw/*.gz (11.6 MB, the four official archives) and DIR/cifar10/cifar10_uint8.npz,
a CIFAR-10 subset (the first 10,000 training and 2,000 test images, about 34 MB: the full archive is
170 MB). DIR is ``.device_data`` (git-ignored); the device tool's call names it in ``carry``.

Dry run, here, without a GPU (everything up to the device: the same stages on the CPU, shrunk)::

    python benchmarks/gpu_first_run.py --device cpu --smoke --data-dir .device_data --out out/dry
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("env", "check", "bench", "mnist", "cifar", "multigpu", "parity")  # the order they run in
DEFAULT_STAGES = "env,check,bench,mnist,multigpu,parity"
# Per stage: the most it may take (s), and the least worth starting it with. A later stage's minimum
# is kept in reserve while an earlier one runs, so the parity suite (last) gets whatever is left.
LIMITS = {"check": (150, 30), "bench": (240, 60), "mnist": (240, 60), "parity": (600, 30), "cifar": (150, 60),
          "multigpu": (180, 60)}  # fmt: skip
# Where --pack-data reads the datasets: $MINICNN_SHARED_DATA, else ../shared/data from the working dir.
SHARED_DATA = Path(os.environ.get("MINICNN_SHARED_DATA", "../shared/data"))
PACK_LIMIT_MIB = 52  # the data's share of the 64 MiB that travel (the working tree is ~3 MiB)


# ====================================================================== packing the data
def pack_data(dest: Path, source: Path, n_train: int, n_test: int) -> dict:
    """Write the data that travel: MNIST's four .gz archives and a CIFAR-10 subset (.npz)."""
    import numpy as np

    dest = Path(dest)
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        src = source / "MNIST" / "raw" / name
        if not src.is_file():
            raise SystemExit(f"--pack-data: {src} is missing (set --source or MINICNN_SHARED_DATA)")
        shutil.copyfile(src, raw / name)
        files[f"MNIST/raw/{name}"] = _sha256(raw / name)
    cifar_src = source / "cifar10" / "cifar10_uint8.npz"
    if not cifar_src.is_file():
        raise SystemExit(f"--pack-data: {cifar_src} is missing (set --source or MINICNN_SHARED_DATA)")
    with np.load(cifar_src) as z:
        arrays = {
            "x_train": z["x_train"][:n_train],
            "y_train": z["y_train"][:n_train],
            "x_test": z["x_test"][:n_test],
            "y_test": z["y_test"][:n_test],
        }
        if "classes" in z.files:
            arrays["classes"] = z["classes"]
    out = dest / "cifar10" / "cifar10_uint8.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    files["cifar10/cifar10_uint8.npz"] = _sha256(out)
    counts = np.bincount(arrays["y_train"].reshape(-1), minlength=10).tolist()
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    readme = (
        "Data for the first GPU run (benchmarks/gpu_first_run.py --pack-data); git-ignored, carried by the\n"
        "device tool. MNIST: the four official .gz archives. CIFAR-10: the first "
        f"{n_train} training images (data_batch_1; per class {counts}) and the first {n_test} test images\n"
        f"of {cifar_src}, same arrays and layout (x uint8 NHWC, y int64, classes).\n"
        + "".join(f"sha256 {h}  {name}\n" for name, h in files.items())
    )
    (dest / "README.txt").write_text(readme)
    info = {"dest": str(dest), "bytes": total, "files": files, "cifar_train": n_train, "cifar_test": n_test}
    mib = total / 2**20
    print(f"packed {dest}: {mib:.1f} MiB ({len(files)} files); CIFAR-10 subset {n_train} + {n_test} images")
    if mib > PACK_LIMIT_MIB:
        raise SystemExit(
            f"--pack-data: {mib:.1f} MiB is over {PACK_LIMIT_MIB} MiB: with the working tree it would not "
            "fit in the 64 MiB that travel; use fewer CIFAR images (--cifar-train / --cifar-test)"
        )
    return info


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ====================================================================== running a stage
class Run:
    """The run's state: the deadline, the results so far, where they are written."""

    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="minicnn-gpu-run-"))
        self.results = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "device": args.device,
            "smoke": args.smoke,
            "budget_s": args.budget,
            "commit": _git_commit(),
            "stages": {},
        }

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        env["CUPY_TF32"] = "0"
        if self.args.device == "cuda":
            env["MINICNN_REQUIRE_CUDA"] = "1"  # never "pass" on the stand-in or the CPU by accident
        return env

    def stage(self, name, cmd, later):
        """Run ``cmd`` as stage ``name`` within its limit and the time left (keeping the minimums of
        the ``later`` stages in reserve); returns (record, log text)."""
        cap, least = LIMITS[name]
        reserve = sum(LIMITS[s][1] for s in later)
        timeout = min(cap, self.left() - reserve)
        record = {"command": " ".join(str(c) for c in cmd)}
        if timeout < least:
            record.update(status="not run", why=f"out of time ({self.left():.0f} s left, {reserve} s kept)")
            print(f"[{name}] not run: {record['why']}", flush=True)
            return record, ""
        print(f"[{name}] {record['command']}  (limit {timeout:.0f} s)", flush=True)
        log_path = self.out / f"{name}.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [str(c) for c in cmd], cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout ends the workers it started too
            )  # fmt: skip
            try:
                code = proc.wait(timeout=timeout)
                status = "ok" if code == 0 else f"exit {code}"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code, status = None, f"timed out after {timeout:.0f} s"
        record.update(status=status, exit_code=code, seconds=round(time.monotonic() - t0, 1))
        text = log_path.read_text(errors="replace")
        print(f"[{name}] {status} in {record['seconds']} s; log {log_path}", flush=True)
        return record, text

    def save(self):
        self.results["elapsed_s"] = round(time.monotonic() - self.start, 1)
        (self.out / "gpu_run.json").write_text(json.dumps(self.results, indent=1))
        (self.out / "gpu_run.md").write_text(markdown(self.results))


def _git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


# ====================================================================== the stages
ENV_PROBE = r"""
import json, platform, sys
info = {"python": platform.python_version()}
import numpy
info["numpy"] = numpy.__version__
import minicnn
from minicnn import backend
info["minicnn"] = minicnn.__version__
info["minicnn_sees_gpu"] = backend.cuda_available()
info["cuda_problem"] = backend.cuda_unavailable_reason()
if info["minicnn_sees_gpu"]:
    cp = backend.cupy_module()
    info["cupy"] = cp.__version__
    info["gpu"] = minicnn.cuda.get_device_name()
    info["gpus"] = minicnn.cuda.device_count()
    info["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cp.cuda.runtime.driverGetVersion()
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_sees_gpu"] = torch.cuda.is_available()
except Exception as e:
    info["torch"] = f"not importable: {type(e).__name__}: {e}"
print("@@ENV@@" + json.dumps(info))
"""


def stage_env(run):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", ENV_PROBE], cwd=REPO, env=run.env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    info = {}
    for line in proc.stdout.splitlines():
        if line.startswith("@@ENV@@"):
            info = json.loads(line[len("@@ENV@@") :])
    if not info:
        info = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True)  # fmt: skip
        info["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    info["seconds"] = round(time.monotonic() - t0, 1)
    info["status"] = "ok" if "error" not in info else "error"
    return info


def stage_check(run, later):
    args = run.args
    cmd = [sys.executable, "-m", "minicnn.check", "--device", args.device, "--quick"]
    if args.smoke:
        cmd += ["--ops", "relu,conv2d,cross_entropy"]
    record, text = run.stage("check", cmd, later)
    verdict = [line for line in text.splitlines() if line.startswith("minicnn.check:")]
    record["verdict"] = verdict[-1] if verdict else None
    record["failed"] = [line for line in text.splitlines() if line.startswith("FAILED ")][:40]
    return record


def stage_bench(run, later):
    args = run.args
    out_json = run.work / "bench.json"
    cmd = [sys.executable, "benchmarks/run.py", "--device", "cuda", "--only", "gemm,gpu", "--json", out_json]
    if args.device == "cpu":
        cmd += ["--gpu-on-cpu"]
    if args.smoke:
        cmd += ["--repeats", "1", "--warmup", "0", "--gpu-batches", "4"]
    else:
        cmd += ["--repeats", "20", "--warmup", "5"]
    record, _ = run.stage("bench", cmd, later)
    if out_json.is_file():
        report = json.loads(out_json.read_text())
        record["report"] = report.get("cuda")
        record["env"] = report.get("env", {}).get("probes")
    return record


def stage_mnist(run, later):
    args = run.args
    out = run.work / "mnist"
    cmd = [sys.executable, "examples/mnist_cnn.py", "--device", args.device, "--data-dir", args.data_dir,
           "--out", out, "--no-progress"]  # fmt: skip
    cmd += (
        ["--epochs", "1", "--limit-train", "512", "--limit-test", "256"] if args.smoke else ["--epochs", "5"]
    )
    record, text = run.stage("mnist", cmd, later)
    _read_example(record, text, out)
    return record


def stage_cifar(run, later):
    args = run.args
    out = run.work / "cifar"
    cmd = [sys.executable, "examples/cifar10_cnn.py", "--device", args.device, "--data-dir", args.data_dir,
           "--out", out, "--no-progress", "--epochs", "1"]  # fmt: skip
    if args.smoke:
        cmd += ["--limit-train", "256", "--limit-test", "128"]
    record, text = run.stage("cifar", cmd, later)
    _read_example(record, text, out)
    return record


def _read_example(record, text, out):
    m = re.search(r"test accuracy: ([\d.]+)%", text)
    record["test_accuracy_pct"] = float(m.group(1)) if m else None
    m = re.search(r"total time: ([\d.]+) s", text)
    record["total_s"] = float(m.group(1)) if m else None
    record["epoch_lines"] = [line for line in text.splitlines() if re.match(r"epoch \d+/\d+:", line)]
    history = Path(out) / "history.json"
    if history.is_file():
        record["history"] = json.loads(history.read_text())


def stage_parity(run, later):
    args = run.args
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "parity_tests", "-k"]
    cmd += ["cuda and relu"] if args.smoke else ["cuda"]
    if args.device == "cpu":  # the dry run: the cpu half instead (no GPU here to run the cuda half on)
        cmd[-1] = cmd[-1].replace("cuda", "cpu and textbook")
    record, text = run.stage("parity", cmd, later)
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    record["summary"] = summary[-1].strip("= ") if summary else None
    record["failed"] = [line for line in text.splitlines() if line.startswith("FAILED ")][:40]
    return record


def stage_multigpu(run, later):
    """DDP over NCCL on every GPU: the parity checks, then throughput at 1, 2, ... GPUs (with one GPU:
    not run). The dry run on the CPU runs the same plumbing: the parity checks on the CuPy stand-in
    with a fake NCCL communicator, and 1 process x 2 threads vs 2 processes."""
    args = run.args
    gpus = run.results["stages"].get("env", {}).get("gpus") or 0
    if args.device == "cuda" and gpus < 2:
        record = {"status": "not run", "why": f"needs 2 or more GPUs, this machine has {gpus}"}
        print(f"[multigpu] not run: {record['why']}", flush=True)
        return record
    out_json = run.work / "multigpu.json"
    cmd = [sys.executable, "benchmarks/distributed.py", "--device", args.device, "--parity"]
    cmd += ["--json", out_json]
    if args.device == "cuda":
        cmd += ["--models", "cifar,resnet20", "--steps", "3" if args.smoke else "20"]
    else:
        cmd += ["--models", "mnist", "--steps", "2", "--warmup", "1"]
    record, text = run.stage("multigpu", cmd, later)
    record["table"] = [line for line in text.splitlines() if line.startswith("|")]
    if out_json.is_file():
        record["report"] = json.loads(out_json.read_text())
    return record


RUNNERS = {"check": stage_check, "bench": stage_bench, "mnist": stage_mnist, "parity": stage_parity,
           "cifar": stage_cifar, "multigpu": stage_multigpu}  # fmt: skip


# ====================================================================== the report
def markdown(r: dict) -> str:
    """The section docs/benchmarks.md takes as it is."""
    env = r["stages"].get("env", {})
    dry = r["device"] == "cpu"
    lines = [
        f"## GPU figures of {r['date']} (first run{', DRY RUN on the CPU: not figures' if dry else ''})",
        "",
        f"Command: `{r['command']}` at commit {r.get('commit') or '(unknown)'}; "
        f"{r.get('elapsed_s', 0):.0f} s of a {r['budget_s']} s budget.",
        "",
        f"Machine: {env.get('nvidia_smi') or env.get('gpu') or 'no GPU'}; CUDA runtime "
        f"{env.get('cuda_runtime', '-')}, driver {env.get('cuda_driver', '-')}; CuPy {env.get('cupy', '-')}, "
        f"PyTorch {env.get('torch', '-')}, NumPy {env.get('numpy', '-')}, Python {env.get('python', '-')}. "
        "minicnn runs its textbook ops on the GPU (the compiled kernels are CPU code); TF32 off in both.",
    ]
    if env.get("cuda_problem") and not dry:
        lines += ["", f"**minicnn sees no GPU**: {env['cuda_problem']}"]
    check = r["stages"].get("check")
    if check:
        lines += [
            "",
            f"### `{_short(check['command'])}`",
            "",
            f"{check.get('verdict') or check['status']} ({check['status']}, {check.get('seconds', '-')} s)",
        ]
        lines += [f"- {f}" for f in check.get("failed", [])]
    bench = r["stages"].get("bench")
    if bench:
        lines += ["", "### Training steps, minicnn vs PyTorch on the GPU (TF32 off in both)", ""]
        lines += _bench_table(bench)
    for key, title in (("mnist", "MNIST example (`examples/mnist_cnn.py`)"),
                       ("cifar", "CIFAR-10 example, 1 epoch on the travelling subset")):  # fmt: skip
        ex = r["stages"].get(key)
        if not ex:
            continue
        lines += ["", f"### {title}", ""]
        lines += [f"    {line}" for line in ex.get("epoch_lines", [])]
        lines += ["", f"Test accuracy {ex.get('test_accuracy_pct')} %, total {ex.get('total_s')} s "
                      f"({ex['status']}, stage {ex.get('seconds', '-')} s)."]  # fmt: skip
    parity = r["stages"].get("parity")
    if parity:
        lines += [
            "",
            f"### The parity suite (`{_short(parity['command'])}`)",
            "",
            f"{parity.get('summary') or '(no summary line)'} "
            f"({parity['status']}, {parity.get('seconds', '-')} s)",
        ]
        lines += [f"- {f}" for f in parity.get("failed", [])]
    multi = r["stages"].get("multigpu")
    if multi:
        lines += ["", "### Several GPUs: DistributedDataParallel over NCCL", ""]
        if multi.get("status") == "not run":
            lines.append(f"Not run: {multi.get('why')}.")
        else:
            par = (multi.get("report") or {}).get("parity")
            if par:
                lines += [f"NCCL parity ({par['ranks']} ranks): {'ok' if par['ok'] else 'FAILED'}.", ""]
            lines += multi.get("table") or [f"no figures ({multi.get('status')})"]
    lines += ["", "### Stages", "", "| stage | status | seconds |", "|---|---|---:|"]
    for name, rec in r["stages"].items():
        lines.append(f"| {name} | {rec.get('status', '-')} | {rec.get('seconds', '-')} |")
    return "\n".join(lines) + "\n"


def _bench_table(bench) -> list:
    rep = bench.get("report") or {}
    if not rep:
        return [f"not measured ({bench['status']})"]
    if not rep.get("measured") and not rep.get("dry_run_on_cpu"):
        return [f"not measured: {rep.get('why')}"]
    out = []
    gemm = rep.get("gemm") or {}
    if gemm:
        g = {lib: (v.get("gflops") if "error" not in v else None) for lib, v in gemm.items()}
        out += [f"SGEMM ceiling (float32 2048^3): minicnn/CuPy {_f(g.get('minicnn'))} GFLOP/s, "
                f"PyTorch {_f(g.get('torch'))} GFLOP/s.", ""]  # fmt: skip
    out += ["| model | batch | minicnn ms | PyTorch ms | ratio | minicnn peak MiB | PyTorch peak MiB |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for case, pair in (rep.get("gpu_cases") or {}).items():
        name, batch = case.rsplit(" b", 1)
        mc, th = pair["minicnn"], pair["torch"]
        row = [name, batch]
        for res in (mc, th):
            row.append("error" if "error" in res else f"{res['median_s'] * 1e3:.2f}")
        ok = "error" not in mc and "error" not in th
        row.append(f"{mc['median_s'] / th['median_s']:.2f}x" if ok else "-")
        for res in (mc, th):
            mem = res.get("gpu_peak_mib", res.get("memory", {}).get("peak_mib"))
            row.append("-" if mem is None else f"{mem:.0f}")
        out.append("| " + " | ".join(str(c) for c in row) + " |")
        for lib, res in pair.items():
            if "error" in res:
                out.append(f"| | | {lib}: {res['error'][:150]} | | | | |")
    return out


def _short(command: str) -> str:
    """A command as the report shows it: python, not the interpreter's full path."""
    head, _, rest = command.partition(" ")
    return f"python {rest}" if "python" in Path(head).name else command


def _f(x):
    return "-" if x is None else f"{x:.0f}"


# ====================================================================== main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a dry run up to the device"
    )
    p.add_argument("--data-dir", default=".device_data", help="the packed data (--pack-data)")
    p.add_argument("--out", default="out/gpu_run", help="where gpu_run.json, gpu_run.md and the logs go")
    p.add_argument("--budget", type=float, default=540, help="seconds for the whole run (default 540)")
    p.add_argument("--stages", default=DEFAULT_STAGES, help=f"comma-separated, from {','.join(STAGES)}")
    p.add_argument("--smoke", action="store_true", help="shrink every stage (a plumbing check, not figures)")
    p.add_argument("--pack-data", metavar="DIR", help="write the data that travel into DIR, then stop")
    p.add_argument("--source", default=str(SHARED_DATA), help="where --pack-data reads MNIST and CIFAR-10")
    p.add_argument("--cifar-train", type=int, default=10_000, help="CIFAR-10 training images packed")
    p.add_argument("--cifar-test", type=int, default=2_000, help="CIFAR-10 test images packed")
    args = p.parse_args(argv)
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        p.error(f"--stages: unknown {sorted(unknown)}; choose from {','.join(STAGES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.pack_data:
        pack_data(Path(args.pack_data), Path(args.source), args.cifar_train, args.cifar_test)
        return 0
    needs_data = {"mnist", "cifar"} & set(args.stages)
    if needs_data and not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        print(
            f"gpu_first_run: no data in {args.data_dir}: run --pack-data {args.data_dir} first",
            file=sys.stderr,
        )
        return 2
    run = Run(args)
    print(f"gpu_first_run: device {args.device}, stages {','.join(args.stages)}, budget {args.budget:.0f} s, "
          f"results in {run.out}", flush=True)  # fmt: skip
    if "env" in args.stages:
        env = run.results["stages"]["env"] = stage_env(run)
        print(f"[env] {json.dumps(env)}", flush=True)
        run.save()
        if args.device == "cuda" and not env.get("minicnn_sees_gpu"):
            print(
                f"gpu_first_run: minicnn sees no GPU: {env.get('cuda_problem') or env.get('error')}",
                flush=True,
            )
            return 2
    todo = [s for s in STAGES if s in args.stages and s != "env"]
    for i, name in enumerate(todo):
        run.results["stages"][name] = RUNNERS[name](run, later=todo[i + 1 :])
        run.save()
    run.save()
    shutil.rmtree(run.work, ignore_errors=True)
    print(f"gpu_first_run: done in {run.results['elapsed_s']:.0f} s; wrote {run.out}/gpu_run.md and .json")
    bad = [n for n, rec in run.results["stages"].items() if rec.get("status") not in ("ok", "not run")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
