"""The MNIST example end to end against the same recipe in PyTorch: ``--epochs 1`` wall time, data
loading included.

    python benchmarks/mnist_epoch.py --data-dir DIR                  # DIR/MNIST/raw/*-ubyte.gz
    python benchmarks/mnist_epoch.py --data-dir DIR --runs 3 --threads 2
    python benchmarks/mnist_epoch.py --data-dir DIR --limit-train 2000   # a quick check, not figures

Each run is a fresh process, the libraries alternating (which goes first flips from run to run):

* **minicnn**: ``examples/mnist_cnn.py --data-dir DIR --epochs 1 --no-progress --device cpu`` as it is
  (its report files go to a temporary folder): loads the data, trains the MNIST CNN one epoch (Adam lr
  1e-3, batch 64, cosine schedule, images normalised with mean 0.1307 and std 0.3081), evaluates the
  test set, then writes its report (test predictions again, history, four figures, the model).
* **PyTorch**, the recipe as a PyTorch user writes it (``TORCH_RECIPE`` below): the same model layer
  for layer, same optimizer, batch, schedule and normalisation, ``torchvision.datasets.MNIST`` with
  ``ToTensor`` + ``Normalize`` and a ``DataLoader`` (batch 64, shuffled; the test set in batches of
  1000). torchvision reads uncompressed files: the recipe decompresses the four ``.gz`` files into a
  temporary folder first, inside its timed part (minicnn reads the ``.gz`` files itself).
  ``--torch-data tensors`` instead holds the normalised images as one tensor and slices shuffled
  batches from it (as minicnn's loader does), which leaves out torchvision's per-image transforms.

Printed per library (medians over ``--runs``): the process's wall time (interpreter start, imports,
data, training, test, and for minicnn its report), the training epoch alone (as each script measures
it), and the ratio minicnn / PyTorch. Both processes get ``--threads`` threads (OMP/OpenBLAS/MKL
variables and ``torch.set_num_threads``). On a shared machine, give the load (printed) beside a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "mnist_cnn.py")

TORCH_RECIPE = r"""
import gzip, json, os, shutil, sys, tempfile, time
t_start = time.perf_counter()
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision import transforms

data_dir, mode = sys.argv[1], sys.argv[5]
epochs, threads, limit = (int(a) for a in sys.argv[2:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
t_data = time.perf_counter()
MEAN, STD = 0.1307, 0.3081
tmp = tempfile.mkdtemp(prefix="mnist-torch-")
raw = os.path.join(tmp, "MNIST", "raw")
os.makedirs(raw)
for part in ("train", "t10k"):
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{part}-{kind}-ubyte"
        with gzip.open(os.path.join(data_dir, "MNIST", "raw", name + ".gz"), "rb") as src:
            with open(os.path.join(raw, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
train_set = torchvision.datasets.MNIST(tmp, train=True, download=False, transform=tf)
test_set = torchvision.datasets.MNIST(tmp, train=False, download=False, transform=tf)
if limit > 0:
    train_set = torch.utils.data.Subset(train_set, range(min(limit, len(train_set))))
if mode == "torchvision":
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
else:  # "tensors": the normalised images as one tensor, shuffled batches sliced from it
    def as_tensors(ds):
        base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
        n = len(ds)
        x = ((base.data[:n].float() / 255 - MEAN) / STD).unsqueeze(1)
        return x, base.targets[:n]
    xtr, ytr = as_tensors(train_set)
    xte, yte = as_tensors(test_set)
    def train_loader_fn():
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            yield xtr[idx], ytr[idx]
    train_loader = None
    test_loader = [(xte[i:i + 1000], yte[i:i + 1000]) for i in range(0, len(xte), 1000)]
t_data = time.perf_counter() - t_data

model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 7 * 7, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
epoch_times = []
for epoch in range(epochs):
    t0 = time.perf_counter()
    model.train()
    for x, y in (train_loader if train_loader is not None else train_loader_fn()):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    sched.step()
    epoch_times.append(time.perf_counter() - t0)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    acc = correct / total
    print(f"epoch {epoch + 1}/{epochs}: train {epoch_times[-1]:.1f} s, test accuracy {100 * acc:.2f}%")
shutil.rmtree(tmp)
print("@@RESULT@@ " + json.dumps({"epoch_s": epoch_times[0], "data_s": t_data, "acc": acc,
                                  "script_s": time.perf_counter() - t_start, "train_images": len(train_set),
                                  "params": sum(p.numel() for p in model.parameters()),
                                  "layers": [type(m).__name__ for m in model]}))
"""


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_minicnn(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="mnist-minicnn-") as out:
        cmd = [sys.executable, EXAMPLE, "--data-dir", args.data_dir, "--epochs", str(args.epochs),
               "--no-progress", "--device", "cpu", "--out", out]  # fmt: skip
        if args.limit_train:
            cmd += ["--limit-train", str(args.limit_train)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=child_env(args.threads), capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"minicnn example failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    epoch = re.search(r"^epoch 1/\d+: .*\| ([\d.]+) s, ", proc.stdout, re.M)
    acc = re.search(r"test accuracy: ([\d.]+)%", proc.stdout)
    return {"wall_s": wall, "epoch_s": float(epoch.group(1)) if epoch else None,
            "acc": float(acc.group(1)) / 100 if acc else None}  # fmt: skip


def run_torch(args) -> dict:
    cmd = [sys.executable, "-c", TORCH_RECIPE, args.data_dir, str(args.epochs), str(args.threads),
           str(args.limit_train or 0), args.torch_data]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=child_env(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@ ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"PyTorch recipe failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"wall_s": wall, **json.loads(line.split(" ", 1)[1])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/*-ubyte.gz")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--runs", type=int, default=1, help="runs per library, alternating (medians printed)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--limit-train", type=int, default=None, metavar="N", help="train on the first N images")
    p.add_argument("--torch-data", choices=("torchvision", "tensors"), default="torchvision",
                   help="PyTorch's data: torchvision transforms per image, or one tensor")  # fmt: skip
    args = p.parse_args(argv)
    raw = os.path.join(args.data_dir, "MNIST", "raw")
    if not os.path.isfile(os.path.join(raw, "train-images-idx3-ubyte.gz")):
        p.error(f"--data-dir: expected {raw}/train-images-idx3-ubyte.gz (and the other three MNIST files)")
    load = os.getloadavg()[0]
    results = {"minicnn": [], "torch": []}
    for i in range(args.runs):
        order = ("torch", "minicnn") if i % 2 else ("minicnn", "torch")
        for lib in order:
            r = run_minicnn(args) if lib == "minicnn" else run_torch(args)
            results[lib].append(r)
            print(f"run {i + 1} {lib}: wall {r['wall_s']:.1f} s, epoch {r['epoch_s'] or float('nan'):.1f} s, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    keys = ("wall_s", "epoch_s", "acc")
    med = {lib: {k: statistics.median(r[k] for r in rs if r[k] is not None) for k in keys}
           for lib, rs in results.items()}  # fmt: skip
    print(f"MNIST CNN, {args.epochs} epoch(s), batch 64, Adam lr 1e-3, {args.threads} thread(s); "
          f"PyTorch data: {args.torch_data}; medians of {args.runs} run(s); load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    if args.limit_train:
        print(f"(first {args.limit_train} training images only: a check of the plumbing, not figures)")
    print(f"{'':9} {'wall s':>8} {'epoch s':>8} {'test acc':>9}")
    for lib, m in med.items():
        print(f"{lib:9} {m['wall_s']:8.1f} {m['epoch_s']:8.1f} {100 * m['acc']:8.2f}%")
    mc, th = med["minicnn"], med["torch"]
    wall, epoch = mc["wall_s"] / th["wall_s"], mc["epoch_s"] / th["epoch_s"]
    print(f"{'ratio':9} {wall:7.2f}x {epoch:7.2f}x  (minicnn / PyTorch)")
    print("wall: the whole process (imports, data, training, test; minicnn's also writes its report "
          "figures); epoch: the training epoch alone")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
