"""The compiled CPU tier: the textbook ops of ``minicnn/ops/`` as plain loop nests, compiled by Numba.

Two tiers compute the same math (docs/kernels.md):

* ``minicnn/ops/`` is the textbook: one ``Function`` per op, whole-array code on ``xp`` (NumPy or
  CuPy), exactly what ``docs/backprop/`` derives. It is what runs on a GPU, and what runs on the
  CPU when the kernels are off.
* ``minicnn/kernels/`` (this package) holds, for the ops where it pays, a *twin*: a subclass of the
  textbook ``Function`` whose ``forward``/``backward`` call loop nests compiled with
  ``@njit(parallel=True, cache=True)``. Each kernel's docstring names the textbook code it equals.

The choice is made in one place, ``Function.apply`` (``minicnn/autograd.py``): the twin runs when
the kernels are on, every array input is a NumPy array, and the op has a twin. Nothing else in the
library asks which tier is running.

Switches: ``MINICNN_KERNELS=0`` in the environment, or ``minicnn.use_kernels(False)`` (also a
context manager: ``with minicnn.use_kernels(False): ...``), run the textbook tier.
``NUMBA_DISABLE_JIT=1`` runs the kernels as ordinary Python (slow), so a debugger can step through
them. Where Numba cannot be imported, minicnn runs the textbook tier and says so once.
"""

from __future__ import annotations

import os
import warnings

from minicnn import autograd

_reason_off = None  # why the kernels are unavailable (None: they are available)

try:
    import numba
except Exception as e:  # ImportError, or a broken llvmlite
    _reason_off = f"Numba could not be imported ({type(e).__name__}: {e})"
_threads_started = False


def start_threads():
    """Start Numba's threads, on the OpenMP layer with a short spin where it is available.

    A training step hands work to the threads some 30 times (each parallel loop, each GEMM shared
    out by ``kernels/gemm.py``). Threads that sleep at once when idle ("workqueue", or OpenMP with
    ``OMP_WAIT_POLICY=passive``) pay a wake-up at every hand-off; GNU OpenMP's default spins about
    300,000 rounds, long enough to slow the GEMM shares that follow on the same cores. Measured on
    2 cores (docs/kernels.md), MNIST step: workqueue 38-46 ms, OpenMP default 40-43, passive 32-34,
    ``GOMP_SPINCOUNT`` 1,000-30,000 30-33; CIFAR: workqueue 160-195, 10,000 spins 125-128.
    GNU OpenMP reads ``GOMP_SPINCOUNT`` when it loads, so the variable is set only while Numba
    loads it here, then removed: it does not reach PyTorch's own OpenMP or child processes.
    ``NUMBA_THREADING_LAYER``, ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user win.
    Called once, at import."""
    global _threads_started
    if _threads_started or _reason_off is not None:
        return
    _threads_started = True
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
        numba.config.THREADING_LAYER = "default"
    scoped = not any(v in os.environ for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"))
    if scoped:
        os.environ["GOMP_SPINCOUNT"] = str(GOMP_SPINCOUNT)
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
    except Exception as e:  # no threading layer could load: the first parallel kernel will say why
        warnings.warn(f"minicnn: Numba's threads did not start ({e})", RuntimeWarning, stacklevel=2)
    finally:
        if scoped:
            del os.environ["GOMP_SPINCOUNT"]


GOMP_SPINCOUNT = 10_000
start_threads()


def _in_forked_child():
    """GNU OpenMP cannot run parallel loops in a child forked after its threads ran in the parent:
    Numba then ends the child ("Terminating: fork() called from a process already using GNU
    OpenMP"). So a forked child (a DataLoader worker with the 'fork' start method, a
    ``multiprocessing`` pool) runs the textbook tier: the same results, no compiled loops."""
    global _reason_off
    _reason_off = (
        "this process was forked from one whose GNU OpenMP threads (Numba's threading layer) had "
        "started, and GNU OpenMP cannot run after a fork; start child processes with 'spawn' or "
        "'forkserver', or set NUMBA_THREADING_LAYER=workqueue, to use the kernels in them"
    )
    autograd._kernels_enabled = False


if _reason_off is None and hasattr(os, "register_at_fork"):
    try:
        from numba.np.ufunc import omppool  # noqa: F401 -- loaded only on the OpenMP layer

        _gnu_openmp = numba.threading_layer() == "omp" and omppool.openmp_vendor == "GNU"
    except (ImportError, ValueError, AttributeError):  # another layer, or none started
        _gnu_openmp = False
    if _gnu_openmp:
        os.register_at_fork(after_in_child=_in_forked_child)

if os.environ.get("MINICNN_KERNELS", "1").strip() == "0":
    autograd._kernels_enabled = False
elif _reason_off is not None:
    autograd._kernels_enabled = False
    warnings.warn(
        f"minicnn: {_reason_off}; running the textbook tier (NumPy only) on the CPU. "
        "Install numba for the compiled kernels.",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    autograd._kernels_enabled = True


def available() -> bool:
    """True when Numba imported, so the kernels can run."""
    return _reason_off is None


def enabled() -> bool:
    """True when the kernels run for NumPy arrays (available and switched on)."""
    return autograd._kernels_enabled


def unavailable_reason():
    """Why the kernels cannot run (``None`` when they can)."""
    return _reason_off


class use_kernels:
    """Switch the compiled kernels on or off: ``minicnn.use_kernels(False)`` for the rest of the
    program, or ``with minicnn.use_kernels(False): ...`` for a block (the previous setting comes
    back after it). Turning them on where Numba is missing raises an error that says why."""

    def __init__(self, enabled: bool = True):
        if enabled and _reason_off is not None:
            raise RuntimeError(f"minicnn.use_kernels(True): {_reason_off}")
        self.prev = autograd._kernels_enabled
        autograd._kernels_enabled = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        autograd._kernels_enabled = self.prev
        return False


def twin(textbook_cls):
    """Class decorator for a kernels-tier op: registers it as the compiled twin of ``textbook_cls``
    (it must subclass it, so checks and attributes are shared)."""

    def register(kernel_cls):
        if not issubclass(kernel_cls, textbook_cls):
            raise TypeError(f"{kernel_cls.__name__} must subclass {textbook_cls.__name__}")
        textbook_cls.compiled = kernel_cls
        kernel_cls.compiled = None
        return kernel_cls

    return register


if _reason_off is None:
    # Importing the kernel modules registers the twins (compilation happens at first call).
    from minicnn.kernels import _registry  # noqa: F401, E402
