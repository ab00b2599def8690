"""minicnn side of the benchmarks: ``python _minicnn_worker.py '<json task>'`` (started by run.py).

Runs one task in a fresh process, pinned to the thread count the driver gives, and prints one
result line (see ``_common.emit``). The cases mirror ``_torch_worker.py``; the per-op cases are
``_common.time_ops``, one function for both libraries.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the repository root: run from a checkout

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


def make_optimizer(name, params):
    from minicnn import optim

    if MODELS[name]["optimizer"] == "adam":
        return optim.Adam(params, **OPTIMIZERS["adam"])
    return optim.SGD(params, **OPTIMIZERS["sgd"])


def _data(mc, np, name, batch, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *MODELS[name]["input"]), dtype=np.float32)
    y = rng.integers(0, MODELS[name]["classes"], batch)
    return mc.tensor(x, device=device), mc.tensor(y, device=device)


def train_step_fn(mc, np, name, batch, device):
    import minicnn.nn.functional as F
    from minicnn import nn

    mc.manual_seed(0)
    model, source = build_model(nn, name)
    model.to(device)
    model.train()
    opt = make_optimizer(name, model.parameters())
    x, y = _data(mc, np, name, batch, device)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step, model, source


def model_task(mc, np, task, device, sync):
    name, batch = task["model"], task.get("batch") or MODELS[task["model"]]["batch"]
    if task["mode"] == "train":
        step, model, source = train_step_fn(mc, np, name, batch, device)
    else:
        from minicnn import nn

        mc.manual_seed(0)
        model, source = build_model(nn, name)
        model.to(device)
        model.eval()
        x, _ = _data(mc, np, name, batch, device)

        def step():
            with mc.no_grad():
                model(x)

    stats = time_it(step, task["warmup"], task["repeats"], sync)
    stats["params"] = int(sum(p.numel() for p in model.parameters()))
    stats["layers"] = layer_names(model)
    stats["model_source"] = source
    return stats


def profile_task(mc, np, task, device):
    """The profiler's breakdown of ``repeats`` training steps (after ``warmup`` unprofiled ones)."""
    name = task["model"]
    step, _, source = train_step_fn(mc, np, name, MODELS[name]["batch"], device)
    for _ in range(task["warmup"]):
        step()
    with mc.profile() as prof:
        for _ in range(task["repeats"]):
            step()
    return {"table": prof.table(steps=task["repeats"]), "rows": prof.rows(), "model_source": source}


def conv_algorithms(mc):
    """The per-conv-layer table's algorithms (``run.py --only convs``): name -> a function that returns
    a context manager under which minicnn's ``conv2d`` runs that algorithm. THE PLACE TO ADD ONE: a
    new algorithm of the kernels tier gets an entry here (and the table a row per layer for it).

    * ``kernels (chosen)``: what a model gets, the kernels tier with its own choice per layer;
    * ``im2col``: the kernels tier's im2col twin (Winograd switched off, when it exists);
    * ``textbook``: ``minicnn/ops/conv.py`` (``MINICNN_KERNELS=0``);
    * ``winograd F(mxm,3x3)``, one per tile size ``m`` of ``minicnn.kernels.winograd`` (the keys of its
      filter transforms ``G``), when that module exists: its ``choose`` forced to ``m`` on 3x3 /
      stride 1 / padding 1 geometries (``kernels (chosen)`` shows which one, if any, it picks itself)."""
    import contextlib

    from minicnn import kernels

    try:
        from minicnn.kernels import winograd
    except ImportError:  # no Winograd kernels in this checkout
        winograd = None

    @contextlib.contextmanager
    def patched(obj, name, value):
        old = getattr(obj, name)
        setattr(obj, name, value)
        try:
            yield
        finally:
            setattr(obj, name, old)

    algos = {
        "kernels (chosen)": lambda: kernels.use_kernels(True),
        "im2col": lambda: patched(winograd, "ENABLED", False) if winograd else kernels.use_kernels(True),
        "textbook": lambda: kernels.use_kernels(False),
    }
    if winograd is not None:

        def forced(m):
            def choose(g, dtype):
                fits = (g.KH, g.KW) == (3, 3) and g.stride == (1, 1) and g.dilation == (1, 1)
                return m if fits and g.groups == 1 and tuple(g.pads) == (1, 1, 1, 1) else 0

            return lambda: patched(winograd, "choose", choose)

        for m in sorted(getattr(winograd, "G", None) or (2, 4)):  # the tile sizes (keys of G)
            algos[f"winograd F({m}x{m},3x3)"] = forced(m)
    if not kernels.available():  # no Numba: only the textbook runs
        algos = {"textbook": algos["textbook"]}
    return algos


def conv_task(mc, np, task, device):
    """Forward + backward of every conv layer of ``CONV_LAYERS`` with every algorithm of
    ``conv_algorithms``, the kernels tier's algorithms interleaved round by round
    (``time_interleaved``), then the textbook on its own: its GEMMs run on BLAS's own threads, and
    OpenBLAS's threads keep spinning for up to ~0.1 s after each, which would slow whichever
    algorithm came next in the round (docs/kernels.md, "Threads")."""
    import time

    lib = _lib(mc, np, device)
    algos = conv_algorithms(mc)
    out = {"algorithms": list(algos), "layers": {}}
    for layer in task.get("layers") or CONV_LAYERS:
        step = conv_layer_step(lib, layer)

        def under(make, step=step):
            def run():
                with make():
                    step()

            return run

        fns = {name: under(make) for name, make in algos.items()}
        alone = {name: fns.pop(name) for name in ("textbook",) if name in fns}
        times = time_interleaved(fns, task["warmup"], task["repeats"])
        for name, fn in alone.items():
            times[name] = time_it(fn, task["warmup"], task["repeats"])
            time.sleep(0.2)  # (BLAS's threads go back to sleep before the next layer)
        out["layers"][layer] = {name: times[name] for name in algos}
    return out


def _lib(mc, np, device):
    """The library namespace of ``_common.time_ops`` / ``conv_layer_step`` for minicnn."""
    import minicnn.nn.functional as F

    rng = np.random.default_rng(0)
    return SimpleNamespace(
        F=F,
        randn=lambda *shape, grad=True: mc.tensor(
            rng.standard_normal(shape, dtype=np.float32), device=device, requires_grad=grad
        ),
        zeros=lambda n: mc.zeros(n, device=device),
        ones=lambda n: mc.ones(n, device=device),
        randint=lambda high, n: mc.tensor(rng.integers(0, high, n), device=device),
        no_grad=mc.no_grad,
    )


def op_task(mc, np, task, device, sync):
    return {"ops": time_ops(_lib(mc, np, device), task, sync)}


def main():
    task = read_task()
    cpus = pin_threads(task["threads"])
    import numpy as np

    import minicnn as mc

    device = task.get("device", "cpu")
    sync = None
    if device == "cuda":
        from minicnn.backend import cupy_module

        cp = cupy_module()

        def sync():
            cp.cuda.Device().synchronize()

    kind = task["kind"]
    base = memory_baseline()
    if kind == "probe":
        result = {
            "numpy": np.__version__,
            "minicnn": mc.__version__,
            "cuda_available": bool(mc.cuda_available()),
            "cuda_problem": mc.cuda.unavailable_reason(),
            "kernels": bool(mc.kernels.enabled()),
            "blas": blas_info(),
            "numpy_blas": _numpy_blas_config(np),
            "cpus": cpus,
        }
    elif kind == "gemm":
        n = task["n"]
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        if device == "cuda":
            a, b = cp.asarray(a), cp.asarray(b)
        result = time_it(lambda: a @ b, 2, task["repeats"], sync)
        result["gflops"] = 2 * n**3 / result["median_s"] / 1e9
    elif kind == "model":
        result = model_task(mc, np, task, device, sync)
    elif kind == "profile":
        result = profile_task(mc, np, task, device)
    elif kind == "ops":
        result = op_task(mc, np, task, device, sync)
    elif kind == "convs":
        result = conv_task(mc, np, task, device)
    elif kind == "sweep":
        result = {"sweep": {}}
        for b in task.get("batches", SWEEP_BATCHES):
            sub = dict(task, kind="model", model="mnist", mode="train", batch=b)
            result["sweep"][str(b)] = model_task(mc, np, sub, device, sync)
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    if device == "cuda" and kind != "probe":
        result["gpu_peak_mib"] = cp.get_default_memory_pool().total_bytes() / 2**20
        result["gpu_memory_method"] = "cupy default memory pool total_bytes at the end"
    result["memory"] = memory_peak_mib(base)
    emit(result)


def _numpy_blas_config(np):
    """The BLAS numpy was built against (numpy >= 2 exposes it as a dict)."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception as exc:  # older numpy: no mode="dicts"
        return {"note": f"numpy.show_config(mode='dicts') unavailable: {exc}"}


if __name__ == "__main__":
    main()
