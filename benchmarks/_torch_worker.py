"""PyTorch side of the benchmarks: ``python _torch_worker.py '<json task>'`` (started by run.py).

Runs one task in a fresh process, pinned to the thread count the driver gives, and prints one
result line (see ``_common.emit``). The cases mirror ``_minicnn_worker.py``; the per-op cases are
``_common.time_ops``, one function for both libraries.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the repository root, for minicnn.models' builders

from _common import (  # noqa: E402
    CONV_LAYERS,
    MODELS,
    OPTIMIZERS,
    SWEEP_BATCHES,
    blas_info,
    build_model,
    conv_layer_step,
    emit,
    layer_names,
    memory_baseline,
    memory_peak_mib,
    pin_threads,
    read_task,
    time_interleaved,
    time_it,
    time_ops,
)


def make_optimizer(torch, name, params):
    kind = MODELS[name]["optimizer"]
    if kind == "adam":
        return torch.optim.Adam(params, **OPTIMIZERS["adam"])
    return torch.optim.SGD(params, **OPTIMIZERS["sgd"])


def model_step(torch, task, device):
    """``(step, model, source)``: one training step (or inference batch) of the task's model."""
    name, batch = task["model"], task.get("batch") or MODELS[task["model"]]["batch"]
    torch.manual_seed(0)
    model, source = build_model(torch.nn, name)
    model.to(device)
    x = torch.randn(batch, *MODELS[name]["input"], device=device)
    y = torch.randint(0, MODELS[name]["classes"], (batch,), device=device)
    F = torch.nn.functional
    if task.get("mode", "train") == "train":
        model.train()
        opt = make_optimizer(torch, name, model.parameters())

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)

    return step, model, source


def profile_task(torch, task, device):
    """``torch.profiler`` over ``repeats`` training steps (after ``warmup``): each op's self CPU time
    per step, the largest first -- the counterpart of minicnn's ``profile`` table."""
    step, _, source = model_step(torch, dict(task, mode="train"), device)
    for _ in range(task["warmup"]):
        step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(task["repeats"]):
            step()
    n = task["repeats"]
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    rows = [(e.key, e.self_cpu_time_total / n / 1e3, e.count / n) for e in events]
    lines = [f"{'op (torch.profiler, self CPU time)':42s} {'ms/step':>9s} {'calls/step':>10s} {'share':>6s}"]
    for key, ms, calls in rows[:18]:
        lines.append(f"{key[:42]:42s} {ms:9.2f} {calls:10.1f} {ms / total:6.1%}")
    lines.append(f"{'total (all ops, self time)':42s} {total:9.2f}")
    return {"table": "\n".join(lines), "rows": rows, "model_source": source}


def model_task(torch, task, device, sync):
    step, model, source = model_step(torch, task, device)
    stats = time_it(step, task["warmup"], task["repeats"], sync)
    stats["params"] = sum(p.numel() for p in model.parameters())
    stats["layers"] = layer_names(model)
    stats["model_source"] = source
    return stats


def conv_task(torch, task, device):
    """Forward + backward of every conv layer of ``CONV_LAYERS`` (``torch.nn.functional.conv2d``: oneDNN
    on the CPU), as minicnn's ``conv_task``."""
    lib = _lib(torch, device)
    out = {"algorithms": ["PyTorch"], "layers": {}}
    for layer in task.get("layers") or CONV_LAYERS:
        step = conv_layer_step(lib, layer)
        out["layers"][layer] = time_interleaved({"PyTorch": step}, task["warmup"], task["repeats"])
    return out


def _lib(torch, device):
    """The library namespace of ``_common.time_ops`` / ``conv_layer_step`` for PyTorch."""
    g = torch.Generator(device="cpu").manual_seed(0)
    return SimpleNamespace(
        F=torch.nn.functional,
        randn=lambda *shape, grad=True: torch.randn(*shape, generator=g).to(device).requires_grad_(grad),
        zeros=lambda n: torch.zeros(n, device=device),
        ones=lambda n: torch.ones(n, device=device),
        randint=lambda high, n: torch.randint(0, high, (n,), generator=g).to(device),
        no_grad=torch.no_grad,
    )


def op_task(torch, task, device, sync):
    return {"ops": time_ops(_lib(torch, device), task, sync)}


def main():
    task = read_task()
    cpus = pin_threads(task["threads"])
    import torch

    torch.set_num_threads(task["threads"])
    device = task.get("device", "cpu")
    sync = None
    if device == "cuda":  # TF32 off: full float32 GEMMs and convolutions, as CuPy's (CUPY_TF32=0)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        sync = torch.cuda.synchronize
    kind = task["kind"]
    base = memory_baseline()
    if kind == "probe":
        result = {
            "torch": torch.__version__,
            "cuda_available": bool(torch.cuda.is_available()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "blas": blas_info(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": cpus,
        }
    elif kind == "gemm":
        n = task["n"]
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        result = time_it(lambda: torch.mm(a, b), 2, task["repeats"], sync)
        result["gflops"] = 2 * n**3 / result["median_s"] / 1e9
    elif kind == "model":
        result = model_task(torch, task, device, sync)
    elif kind == "ops":
        result = op_task(torch, task, device, sync)
    elif kind == "convs":
        result = conv_task(torch, task, device)
    elif kind == "profile":
        result = profile_task(torch, task, device)
    elif kind == "sweep":
        result = {"sweep": {}}
        for b in task.get("batches", SWEEP_BATCHES):
            sub = dict(task, kind="model", model="mnist", mode="train", batch=b)
            result["sweep"][str(b)] = model_task(torch, sub, device, sync)
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    if device == "cuda" and kind != "probe":
        result["gpu_peak_mib"] = torch.cuda.max_memory_reserved() / 2**20
        result["gpu_memory_method"] = "torch.cuda.max_memory_reserved"
    result["memory"] = memory_peak_mib(base)
    emit(result)


if __name__ == "__main__":
    main()
