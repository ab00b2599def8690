"""What the two benchmark workers share: the cases, the timing loop, memory and FLOP counting.

Imports nothing heavier than NumPy, so the driver (``run.py``) can use it without loading
minicnn or torch into its own process.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
from time import perf_counter

RESULT_MARK = "@@BENCH-RESULT@@ "

# --------------------------------------------------------------------------- the two models
# Each layer: ("conv", c_in, c_out, kernel, padding) | ("bn", c) | ("relu",) | ("pool", k)
#             | ("flatten",) | ("linear", n_in, n_out) | ("dropout", p)
# Both workers build minicnn.models.mnist_cnn / cifar_cnn (the torch worker with layers=torch.nn,
# which gives the identical PyTorch model); this spec is the fallback when that module is missing,
# and it counts the FLOPs. Both workers report their parameter count and layer list, and the
# driver checks that they agree with each other and with the spec.
MODELS = {
    "mnist": {
        "input": (1, 28, 28),
        "classes": 10,
        "batch": 64,
        "optimizer": "adam",
        "params": 50_378,
        "layers": [
            ("conv", 1, 32, 3, 1), ("bn", 32), ("relu",), ("pool", 2),
            ("conv", 32, 64, 3, 1), ("bn", 64), ("relu",), ("pool", 2),
            ("flatten",), ("linear", 3136, 10),
        ],
    },
    "cifar": {
        "input": (3, 32, 32),
        "classes": 10,
        "batch": 128,
        "optimizer": "sgd",
        "params": 620_810,
        "layers": [
            ("conv", 3, 32, 3, 1), ("bn", 32), ("relu",), ("pool", 2),
            ("conv", 32, 64, 3, 1), ("bn", 64), ("relu",), ("pool", 2),
            ("conv", 64, 128, 3, 1), ("bn", 128), ("relu",), ("pool", 2),
            ("flatten",), ("linear", 2048, 256), ("relu",), ("dropout", 0.5), ("linear", 256, 10),
        ],
    },
    # CIFAR ResNet-20 (He et al. 2016): minicnn.models.resnet(20); the torch worker builds the same
    # network with build_resnet(torch.nn). Timed on the GPU only (the "gpu" section of run.py).
    "resnet20": {
        "input": (3, 32, 32),
        "classes": 10,
        "batch": 128,
        "optimizer": "sgd",
        "params": 272_474,
        "resnet": {"depth": 20, "width": 16},
    },
}  # fmt: skip

CPU_MODELS = ("mnist", "cifar")  # the model rows of the CPU sections (and the GPU "models" section)
# The GPU cases (run.py's "gpu" section): training steps at two batch sizes, TF32 off in both libraries.
GPU_CASES = (("cifar", 128), ("cifar", 512), ("resnet20", 128), ("resnet20", 512))

OPTIMIZERS = {
    "adam": {"lr": 1e-3},  # Adam, PyTorch defaults (betas 0.9/0.999, eps 1e-8)
    "sgd": {"lr": 0.01, "momentum": 0.9},
}


def build_from_spec(nn, name):
    """The model as ``nn.Sequential`` from the spec; ``nn`` is ``minicnn.nn`` or ``torch.nn``."""
    make = {
        "conv": lambda cin, cout, k, p: nn.Conv2d(cin, cout, k, padding=p),
        "bn": nn.BatchNorm2d,
        "relu": nn.ReLU,
        "pool": nn.MaxPool2d,
        "flatten": nn.Flatten,
        "linear": nn.Linear,
        "dropout": nn.Dropout,
    }
    return nn.Sequential(*(make[kind](*args) for kind, *args in MODELS[name]["layers"]))


def build_resnet(nn, depth=20, width=16, num_classes=10):
    """The CIFAR ResNet of ``minicnn.models.ResNet`` written against ``nn`` (``minicnn.nn`` or
    ``torch.nn``): same layers, same order, same state-dict keys (conv1, layer1.0.bn2, fc...)."""
    relu = nn.functional.relu

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = relu(self.bn1(self.conv1(x)))
            return relu(self.bn2(self.conv2(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            stages, c = [], width
            for i in range(3):
                c_out = width * 2**i
                blocks = [BasicBlock(c, c_out, 1 if i == 0 else 2)]
                blocks += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
                stages.append(nn.Sequential(*blocks))
                c = c_out
            self.layer1, self.layer2, self.layer3 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(c, num_classes)

        def forward(self, x):
            x = relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def build_model(nn, name):
    """(model, where it came from): minicnn.models' builder (with ``layers=nn`` for the CNNs), else the
    spec; for ResNet-20, ``minicnn.models.resnet(20)`` in minicnn and ``build_resnet(torch.nn)``."""
    spec = MODELS[name]
    if "resnet" in spec:
        depth, width = spec["resnet"]["depth"], spec["resnet"]["width"]
        if nn.__name__.startswith("minicnn"):
            try:
                from minicnn import models

                return models.resnet(depth, width=width), f"minicnn.models.resnet({depth})"
            except (ImportError, AttributeError):
                pass
        return build_resnet(nn, depth, width), f"benchmarks/_common.py build_resnet({nn.__name__}, {depth})"
    try:
        from minicnn import models

        builder = getattr(models, f"{name}_cnn")
    except (ImportError, AttributeError):
        return build_from_spec(nn, name), "built from benchmarks/_common.py MODELS"
    return builder(layers=nn), f"minicnn.models.{name}_cnn(layers={nn.__name__})"


def layer_names(model) -> list:
    return [type(m).__name__ for m in model.children()]


def resnet_macs(batch: int, depth=20, width=16, num_classes=10, size=32) -> int:
    """Multiply-accumulates of a CIFAR ResNet's forward pass (3x3 convs, 1x1 downsamples, the fc)."""
    n = (depth - 2) // 6
    macs = size * size * width * 3 * 9  # stem
    c, hw = width, size
    for i in range(3):
        c_out = width * 2**i
        for b in range(n):
            stride = 2 if (i > 0 and b == 0) else 1
            hw_out = hw // stride
            macs += hw_out * hw_out * c_out * c * 9  # conv1
            macs += hw_out * hw_out * c_out * c_out * 9  # conv2
            if stride != 1 or c != c_out:
                macs += hw_out * hw_out * c_out * c  # 1x1 downsample
            c, hw = c_out, hw_out
    macs += c * num_classes
    return batch * macs


def model_macs(name: str, batch: int) -> int:
    """Multiply-accumulates of one forward pass: conv N*C_out*H_out*W_out*C_in*k*k, linear N*in*out."""
    spec = MODELS[name]
    if "resnet" in spec:
        return resnet_macs(batch, spec["resnet"]["depth"], spec["resnet"]["width"], spec["classes"])
    _, h, w = spec["input"]
    macs = 0
    for layer in spec["layers"]:
        if layer[0] == "conv":
            _, cin, cout, k, p = layer
            h, w = h + 2 * p - k + 1, w + 2 * p - k + 1
            macs += batch * cout * h * w * cin * k * k
        elif layer[0] == "pool":
            h, w = h // layer[1], w // layer[1]
        elif layer[0] == "linear":
            macs += batch * layer[1] * layer[2]
    return macs


def conv_macs(shape) -> int:
    """MACs of a stride-1 conv2d: shape = (N, C_in, H, W, C_out, k, padding)."""
    n, cin, h, w, cout, k, p = shape
    return n * cout * (h + 2 * p - k + 1) * (w + 2 * p - k + 1) * cin * k * k


# --------------------------------------------------------------------------- micro-benchmark cases
# conv2d: (N, C_in, H, W, C_out, kernel, padding), stride 1 -- the layers of the two models.
CONV_SHAPES = {
    "mnist conv1": (64, 1, 28, 28, 32, 3, 1),
    "mnist conv2": (64, 32, 14, 14, 64, 3, 1),
    "cifar conv2": (128, 32, 16, 16, 64, 3, 1),
    "cifar conv3": (128, 64, 8, 8, 128, 3, 1),
}
POOL_SHAPES = {"mnist pool1": (64, 32, 28, 28), "cifar pool1": (128, 32, 32, 32)}
BN_SHAPES = {"mnist bn1": (64, 32, 28, 28), "cifar bn2": (128, 64, 16, 16)}
CE_SHAPES = {"b128 x 10": (128, 10), "b512 x 1000": (512, 1000)}
QUICK_OPS = {"mnist conv2", "mnist pool1", "mnist bn1", "b128 x 10"}

SWEEP_BATCHES = (16, 32, 64, 128, 256, 512)

# The per-conv-layer table (run.py --only convs): every conv layer of the two models at its training
# shape, name -> ((N, C_in, H, W), C_out, first layer). All are 3x3, stride 1, padding 1. A first
# layer's input needs no gradient (as in a model: the images do not require grad).
CONV_LAYERS = {
    "mnist conv1": ((64, 1, 28, 28), 32, True),
    "mnist conv2": ((64, 32, 14, 14), 64, False),
    "cifar conv1": ((128, 3, 32, 32), 32, True),
    "cifar conv2": ((128, 32, 16, 16), 64, False),
    "cifar conv3": ((128, 64, 8, 8), 128, False),
}


def op_cases(quick: bool):
    """(op, label, shape) for every micro-benchmark."""
    cases = []
    tables = {
        "conv2d": CONV_SHAPES,
        "max_pool2d": POOL_SHAPES,
        "batch_norm": BN_SHAPES,
        "cross_entropy": CE_SHAPES,
    }
    for op, table in tables.items():
        for label, shape in table.items():
            if not quick or label in QUICK_OPS:
                cases.append((op, label, shape))
    return cases


# --------------------------------------------------------------------------- timing
def time_it(fn, warmup: int, repeats: int, sync=None, before=None) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` timed times; return seconds statistics.

    ``before`` (untimed) runs before every call, e.g. to clear gradients; ``sync`` waits for a GPU.
    """
    for _ in range(warmup):
        if before is not None:
            before()
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(perf_counter() - t0)
    times.sort()
    q = len(times) // 4
    return {
        "median_s": statistics.median(times),
        "min_s": times[0],
        "p25_s": times[q],
        "p75_s": times[-1 - q],
        "repeats": repeats,
        "warmup": warmup,
    }


def time_interleaved(fns: dict, warmup: int, repeats: int) -> dict:
    """``time_it`` for several alternatives at once: each round runs every function of ``fns`` once,
    in turn, so a change in the machine's load hits all of them alike. Returns name -> statistics."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = perf_counter()
            fn()
            times[name].append(perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        ts.sort()
        q = len(ts) // 4
        out[name] = {"median_s": statistics.median(ts), "min_s": ts[0], "p25_s": ts[q], "p75_s": ts[-1 - q],
                     "repeats": repeats, "warmup": warmup}  # fmt: skip
    return out


# --------------------------------------------------------------------------- memory
# Peak resident memory of the worker process above the baseline taken after the imports.
# On Linux, writing "5" to /proc/self/clear_refs resets the peak (VmHWM) to the current RSS, so
# peak = VmHWM at the end - VmRSS at the reset. Elsewhere ru_maxrss (a high-water mark since the
# process started) minus the RSS after imports is used. Same method for both libraries.
def time_ops(lib, task: dict, sync=None) -> list:
    """Forward (under no_grad) and backward (``retain_graph``) times of every case of ``op_cases``.

    One piece of code for both libraries, since minicnn's API mirrors PyTorch's: ``lib`` gives
    the library's functional module ``F``, ``randn(*shape, grad=True)`` (float32 on the device),
    ``zeros(n)``, ``ones(n)``, ``randint(high, n)`` and ``no_grad``. An op that fails is reported
    with its error and the others are still timed.
    """
    F = lib.F

    def time_op(op, shape):
        if op == "conv2d":
            n, cin, h, w, cout, k, p = shape
            x, wt, b = lib.randn(n, cin, h, w), lib.randn(cout, cin, k, k), lib.randn(cout)
            leaves = (x, wt, b)

            def fwd():
                return F.conv2d(x, wt, b, padding=p)

        elif op == "max_pool2d":
            x = lib.randn(*shape)
            leaves = (x,)

            def fwd():
                return F.max_pool2d(x, 2)

        elif op == "batch_norm":
            c = shape[1]
            x, wt, b = lib.randn(*shape), lib.randn(c), lib.randn(c)
            rm, rv = lib.zeros(c), lib.ones(c)
            leaves = (x, wt, b)

            def fwd():
                return F.batch_norm(x, rm, rv, wt, b, training=True)

        else:  # cross_entropy
            x = lib.randn(*shape)
            t = lib.randint(shape[1], shape[0])
            leaves = (x,)

            def fwd():
                return F.cross_entropy(x, t)

        def fwd_nograd():
            with lib.no_grad():
                fwd()

        out = fwd()
        grad = None if out.ndim == 0 else lib.randn(*out.shape, grad=False)

        def clear():
            for leaf in leaves:
                leaf.grad = None

        def bwd():
            out.backward(grad, retain_graph=True)

        return {
            "forward": time_it(fwd_nograd, task["warmup"], task["repeats"], sync),
            "backward": time_it(bwd, task["warmup"], task["repeats"], sync, before=clear),
        }

    results = []
    for op, label, shape in op_cases(task["quick"]):
        entry = {"op": op, "label": label, "shape": list(shape)}
        try:
            entry.update(time_op(op, shape))
        except Exception as exc:  # an op that is missing or broken: report it, time the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
        results.append(entry)
    return results


def conv_layer_step(lib, layer: str):
    """The training work of one conv layer of ``CONV_LAYERS`` as one function: clear the leaves'
    gradients, ``F.conv2d`` (3x3, padding 1, with bias) on a recorded graph, ``backward`` of a fixed
    upstream gradient (input gradient unless a first layer, weight and bias gradients). ``lib`` as in
    ``time_ops``. One piece of code for both libraries."""
    (n, cin, h, w), cout, first = CONV_LAYERS[layer]
    x = lib.randn(n, cin, h, w, grad=not first)
    wt, b = lib.randn(cout, cin, 3, 3), lib.randn(cout)
    g = lib.randn(n, cout, h, w, grad=False)
    leaves = (wt, b) if first else (x, wt, b)

    def step():
        for leaf in leaves:
            leaf.grad = None
        lib.F.conv2d(x, wt, b, padding=1).backward(g)

    return step


def _status_kib(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_baseline() -> dict:
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        pass
    rss = _status_kib("VmRSS")
    if rss is None:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1 if sys.platform.startswith("linux") else 1 / 1024
        rss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
    return {"rss_kib": rss, "hwm_reset": reset}


def memory_peak_mib(baseline: dict) -> dict:
    hwm = _status_kib("VmHWM") if baseline["hwm_reset"] else None
    if hwm is None:
        scale = 1 if sys.platform.startswith("linux") else 1 / 1024
        hwm = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)
        method = "ru_maxrss - RSS after imports"
    else:
        method = "VmHWM (reset after imports) - RSS after imports"
    return {"peak_mib": (hwm - baseline["rss_kib"]) / 1024, "method": method}


# --------------------------------------------------------------------------- process plumbing
def pin_threads(threads: int) -> list:
    """Pin this process to the first ``threads`` CPUs it may use (Linux); returns the CPU list."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
        return cpus
    return []


def blas_info() -> list:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    return [{k: d[k] for k in keep if k in d} for d in threadpool_info()]


def read_task() -> dict:
    return json.loads(sys.argv[1])


def emit(result: dict) -> None:
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
