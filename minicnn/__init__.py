"""minicnn: a from-scratch deep-learning framework for CNNs on NumPy (CPU) and CuPy (GPU).

Every op is a small class with ``forward`` and ``backward`` side by side, checked against
PyTorch. Start with ``minicnn.Tensor``, ``minicnn.nn`` and ``minicnn.optim``.
"""

import builtins

from minicnn import _memory, _out, accelerator, backends, cuda, kernels, nn, optim, xpu
from minicnn.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minicnn.backend import Device, cuda_available
from minicnn.creation import (
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from minicnn.dtypes import (
    Size,
    bool_,
    cdouble,
    cfloat,
    complex64,
    complex128,
    double,
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    int8,
    int16,
    int32,
    int64,
    long,
    set_default_dtype,
    short,
    uint8,
)
from minicnn.kernels import use_kernels
from minicnn.ops import basic as _basic
from minicnn.ops import scatter as _scatter
from minicnn.ops.activation import log_softmax, relu, sigmoid, softmax, tanh
from minicnn.ops.basic import (
    cat,
    chunk,
    clamp,
    expand,
    flatten,
    matmul,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    topk,
    transpose,
    unsqueeze,
    where,
)
from minicnn.profiler import profile
from minicnn.random import get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from minicnn.serialization import load, load_training_state, save, save_training_state
from minicnn.summary import summary
from minicnn.tensor import Tensor

# PyTorch's dtype names that shadow Python builtins (``minicnn.float`` is float32, as ``torch.float``)
float = float32  # noqa: A001
int = int32  # noqa: A001
bool = bool_  # noqa: A001
clip = clamp

__version__ = "0.1.0"

_memory.tune_malloc()  # freed blocks stay in the process: no page faults per training step (_memory.py)


def empty_cache() -> None:
    """Free the memory minicnn keeps for reuse on the CPU: the compiled conv kernels' column buffer
    and Winograd buffers of this thread (``minicnn/kernels/conv.py``, ``winograd.py``), as
    ``torch.cuda.empty_cache`` does for PyTorch's GPU cache. On CuPy, ``minicnn.cuda.empty_cache()``
    frees CuPy's pool."""
    if kernels.available():
        from minicnn.kernels import conv, winograd

        conv.columns.clear()
        winograd.buffers.clear()


def device(spec="cpu", index=None) -> Device:
    """``minicnn.device("cuda:0")``, ``minicnn.device("cuda", 1)`` -- a device, as ``torch.device``."""
    if index is not None:
        spec = f"{spec}:{index}"
    return Device(spec)


def is_tensor(obj) -> builtins.bool:
    """True for a minicnn Tensor (``torch.is_tensor``)."""
    return isinstance(obj, Tensor)


def is_floating_point(t) -> builtins.bool:
    return t.is_floating_point()


def numel(t) -> builtins.int:
    return t.numel()


def exp(x):
    return x.exp()


def log(x):
    return x.log()


def sqrt(x):
    return x.sqrt()


def abs(x):  # noqa: A001
    return x.abs()


def pow(x, exponent):  # noqa: A001
    return x**exponent


def mm(a, b):
    return a.mm(b)


def sum(x, dim=None, keepdim=False, **kwargs):  # noqa: A001
    return x.sum(dim, keepdim, **kwargs)


def mean(x, dim=None, keepdim=False, **kwargs):
    return x.mean(dim, keepdim, **kwargs)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return x.std(dim, unbiased, keepdim, correction=correction)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return x.var(dim, unbiased, keepdim, correction=correction)


def argmax(x, dim=None, keepdim=False):
    return x.argmax(dim, keepdim)


def argmin(x, dim=None, keepdim=False):
    return x.argmin(dim, keepdim)


def eq(a, b):
    return a == b


def ne(a, b):
    return a != b


def lt(a, b):
    return a < b


def le(a, b):
    return a <= b


def gt(a, b):
    return a > b


def ge(a, b):
    return a >= b


def equal(a, b) -> builtins.bool:
    return a.equal(b)


def add(input, other, *, alpha=1):
    return input + (other if alpha == 1 else other * alpha)


def sub(input, other, *, alpha=1):
    return input - (other if alpha == 1 else other * alpha)


def mul(input, other):
    return input * other


def div(input, other):
    return input / other


def log1p(x):
    return x.log1p()


# ---- out= (minicnn/_out.py), as PyTorch: torch.mul(a, b, out=c) writes into c and returns it
add, sub, mul, div, matmul, mm = (_out.with_out(f) for f in (add, sub, mul, div, matmul, mm))
exp, log, log1p, sqrt, abs, pow = (_out.with_out(f) for f in (exp, log, log1p, sqrt, abs, pow))  # noqa: A001
clamp, cat, stack, where = (_out.with_out(f) for f in (clamp, cat, stack, where))
maximum, minimum = _out.with_out(_basic.maximum), _out.with_out(_basic.minimum)
norm, roll = _basic.norm, _basic.roll


def max(input, dim=None, keepdim=False):  # noqa: A001
    """``torch.max``: the largest value; ``(values, indices)`` along ``dim``; with a tensor as the
    second argument, the elementwise maximum (``torch.maximum``)."""
    return input.max(dim, keepdim)


def min(input, dim=None, keepdim=False):  # noqa: A001
    """``torch.min``, as ``max``."""
    return input.min(dim, keepdim)


def randperm(n, *, generator=None, dtype=int64, device="cpu", requires_grad=False):  # noqa: F811
    """A random permutation of 0..n-1 (``torch.randperm``), from ``generator`` (a ``minicnn.Generator``)
    or minicnn's seeded global generator. Other numbers than PyTorch's for the same seed."""
    from minicnn import random as _random

    if isinstance(n, builtins.bool) or not isinstance(n, builtins.int) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    rng = _random.cpu_generator() if generator is None else generator.numpy
    return tensor(rng.permutation(builtins.int(n)), dtype=dtype, device=device, requires_grad=requires_grad)
clip = clamp
multiply, subtract, divide = mul, sub, div
scatter = _scatter.scatter


class inference_mode(set_grad_enabled):
    """``with minicnn.inference_mode():`` (``torch.inference_mode``): no graph is recorded, as in
    ``no_grad``; minicnn has no separate "inference tensors". ``inference_mode(False)`` records again.
    Also a decorator, with or without parentheses."""

    def __new__(cls, mode=True):
        if callable(mode):  # @minicnn.inference_mode without parentheses
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        super().__init__(not mode)


_deterministic = False


def use_deterministic_algorithms(mode, *, warn_only=False) -> None:
    """Accepted, as ``torch.use_deterministic_algorithms``: minicnn's ops already give the same result
    for the same input every run on the CPU; on a GPU the scatter-adds of indexing backward may sum in
    a varying order (minicnn/backends/cudnn.py). The flag is kept for ``are_deterministic...``."""
    global _deterministic
    _deterministic = builtins.bool(mode)


def are_deterministic_algorithms_enabled() -> builtins.bool:
    return _deterministic


# ----------------------------------------------------------------------------- data and checkpoints
# (minicnn.data, minicnn.serialization) torch.Generator's role: random_split(..., generator=...),
# DataLoader(generator=...); minicnn.save/load above take nested checkpoints and read .pt files.
from minicnn import utils  # noqa: E402, I001  (torch.utils.data's names: minicnn.utils.data)
from minicnn import distributed, multiprocessing  # noqa: E402  (torch.distributed, torch.multiprocessing)
from minicnn.data.sampler import Generator  # noqa: E402
