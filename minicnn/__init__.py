"""minicnn: a from-scratch deep-learning framework for CNNs on NumPy (CPU) and CuPy (GPU).

Every op is a small class with ``forward`` and ``backward`` side by side, checked against
PyTorch. Start with ``minicnn.Tensor``, ``minicnn.nn`` and ``minicnn.optim``.
"""

from minicnn import nn, optim
from minicnn.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from minicnn.backend import Device, cuda_available
from minicnn.creation import (
    arange,
    empty,
    eye,
    from_numpy,
    full,
    linspace,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from minicnn.ops.basic import (
    cat,
    clamp,
    expand,
    flatten,
    matmul,
    permute,
    reshape,
    squeeze,
    stack,
    transpose,
    unsqueeze,
    where,
)
from minicnn.ops.basic import reduce_max as max  # noqa: A004  (torch.max)
from minicnn.ops.basic import reduce_min as min  # noqa: A004  (torch.min)
from minicnn.profiler import profile
from minicnn.random import get_rng_state, initial_seed, manual_seed, set_rng_state
from minicnn.serialization import load, load_training_state, save, save_training_state
from minicnn.summary import summary
from minicnn.tensor import (
    Tensor,
    bool_,
    float16,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    set_default_dtype,
    uint8,
)

__version__ = "0.1.0"


def empty_cache() -> None:
    """Free the memory minicnn keeps for reuse on the CPU (this thread's scratch buffers and idle
    output blocks, ``minicnn/ops/workspace.py``), as ``torch.cuda.empty_cache`` does for PyTorch's
    GPU cache. Arrays still in use are not affected; on CuPy, free its pool with
    ``cupy.get_default_memory_pool().free_all_blocks()``."""
    from minicnn.ops import workspace

    workspace.clear()


def device(spec="cpu") -> Device:
    """``minicnn.device("cuda:0")`` -- a device name, as ``torch.device``."""
    return Device(spec)


def exp(x):
    return x.exp()


def log(x):
    return x.log()


def sqrt(x):
    return x.sqrt()


def sum(x, dim=None, keepdim=False):  # noqa: A001
    return x.sum(dim, keepdim)


def mean(x, dim=None, keepdim=False):
    return x.mean(dim, keepdim)


def argmax(x, dim=None, keepdim=False):
    return x.argmax(dim, keepdim)
