"""Cold start of the compiled kernels: the MNIST CNN's first training step with an empty Numba
cache, then with a warm one. ``python benchmarks/cold_start.py [--runs 3]``

Each measurement is a fresh process with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (cold:
every kernel the step needs is compiled, then written to the cache) or at the folder a cold run
filled (warm: the kernels are loaded from the cache). It prints the import time of minicnn, the
first training step (zero_grad, forward, cross-entropy, backward, Adam step; batch 64, float32; wall
and CPU time) and the second step, for each. Targets (issue 15): first step at most 15 s cold, at
most 2 s warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import minicnn as mc
from minicnn import models, nn, optim
t_import = time.perf_counter() - t0
mc.manual_seed(0)
model = models.mnist_cnn()
opt = optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
rng = np.random.default_rng(0)
x = mc.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
y = mc.tensor(rng.integers(0, 10, 64))
steps, cpu = [], []
for _ in range(2):
    t, c = time.perf_counter(), time.process_time()
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    loss.item()
    steps.append(time.perf_counter() - t)
    cpu.append(time.process_time() - c)
print(json.dumps({"import_s": t_import, "first_step_s": steps[0], "second_step_s": steps[1],
                  "first_step_cpu_s": cpu[0], "kernels": mc.kernels.enabled()}))
"""


def run(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(runs: int = 3) -> dict:
    """``runs`` cold/warm pairs of fresh processes; returns {"cold": {...}, "warm": {...}} of medians
    (seconds: import_s, first_step_s, second_step_s) and whether the kernels were on."""
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="minicnn-numba-cache-") as cache:
            cold.append(run(cache))
            warm.append(run(cache))
    keys = ("import_s", "first_step_s", "second_step_s", "first_step_cpu_s")
    out = {
        name: {k: statistics.median(r[k] for r in rows) for k in keys}
        for name, rows in (("cold", cold), ("warm", warm))
    }
    out["kernels"] = cold[0]["kernels"]
    return out


def print_table(result: dict) -> None:
    if not result["kernels"]:
        print("the kernels are off (MINICNN_KERNELS=0 or no Numba): nothing is compiled")
    print(f"{'':6} {'import s':>9} {'first step s':>13} {'(its CPU s)':>12} {'second step s':>14}")
    for name in ("cold", "warm"):
        med = result[name]
        print(f"{name:6} {med['import_s']:9.2f} {med['first_step_s']:13.2f} {med['first_step_cpu_s']:12.2f} "
              f"{med['second_step_s']:14.3f}")  # fmt: skip
    print("targets: first step <= 15 s cold, <= 2 s warm. Its CPU time (compiling is one thread) hardly")
    print("depends on the machine's load; the wall time grows with it on a shared machine.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="cold/warm pairs (medians are printed)")
    args = p.parse_args(argv)
    print_table(measure(args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
