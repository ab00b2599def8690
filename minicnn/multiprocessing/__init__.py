"""``minicnn.multiprocessing``: ``torch.multiprocessing``'s name, for DDP scripts that import it.

``spawn(fn, args, nprocs)`` runs ``fn(rank, *args)`` in ``nprocs`` processes, as
``torch.multiprocessing.spawn`` does -- but the processes are started by ``mpiexec`` (they must be
MPI processes for ``init_process_group`` to connect them), so ``fn`` must be importable: a function
defined at the top level of a module or of the script (which each process runs again under the name
``__mp_main__``, guarded by ``if __name__ == "__main__":``, as with Python's spawn start method).
When the script is already running under ``mpiexec -n N`` with N = ``nprocs``, each rank simply
calls ``fn(rank, *args)``. New scripts should use the launcher instead (docs/porting.md):
``python -m minicnn.distributed.run --nproc-per-node N train.py``.

Python's own ``multiprocessing`` names (``Process``, ``Queue``, ``set_start_method``...) are here too.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from multiprocessing import (  # noqa: F401  (torch.multiprocessing re-exports them)
    Event,
    Lock,
    Manager,
    Pool,
    Process,
    Queue,
    cpu_count,
    current_process,
    get_all_start_methods,
    get_context,
    get_start_method,
    set_start_method,
)

__all__ = ["spawn", "start_processes", "ProcessRaisedException", "ProcessExitedException", "ProcessContext"]


class ProcessExitedException(Exception):
    """A spawned process ended with a non-zero exit status (its traceback was printed above)."""

    def __init__(self, msg, exit_code=None):
        super().__init__(msg)
        self.exit_code = exit_code


class ProcessRaisedException(ProcessExitedException):
    """Kept for scripts that catch torch's name; minicnn raises ProcessExitedException."""


class ProcessContext:
    """The running job of ``spawn(..., join=False)``: ``join(timeout)`` waits and raises on failure."""

    def __init__(self, popen, payload, nprocs):
        self.popen, self._payload, self.nprocs = popen, payload, nprocs

    def pids(self):
        return [self.popen.pid]

    def join(self, timeout=None) -> bool:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if os.path.exists(self._payload):
            os.unlink(self._payload)
        if code != 0:
            raise ProcessExitedException(
                f"spawn: the job of {self.nprocs} processes ended with exit status {code} (the failing "
                "rank's traceback is printed above)",
                exit_code=code,
            )
        return True


def _reference(fn):
    """How a worker finds ``fn``: (module name, main script path or None, qualified name)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module is None or qualname is None or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(
            f"spawn: fn must be a function defined at the top level of a module or script, got {fn!r} "
            "(each process imports it by name)"
        )
    if module in ("__main__", "__mp_main__"):
        main = sys.modules["__main__"]
        path = getattr(main, "__file__", None)
        if path is None:
            raise ValueError("spawn: fn is defined in an interactive session; put it in a file")
        return module, os.path.abspath(path), qualname
    return module, None, qualname


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    from minicnn.distributed import env
    from minicnn.distributed.run import find_mpiexec

    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"spawn: nprocs must be a positive integer, got {nprocs!r}")
    info = env.launched_by_mpi()
    if info is not None and info["world_size"] > 1:  # already one of nprocs MPI processes
        if info["world_size"] != nprocs:
            raise ValueError(
                f"spawn: nprocs={nprocs}, but this script runs under an MPI launcher with "
                f"{info['world_size']} processes; make them equal, or start it with plain python"
            )
        fn(info["rank"], *args)
        return None
    module, main_path, qualname = _reference(fn)
    fd, payload = tempfile.mkstemp(prefix="minicnn-spawn-", suffix=".pkl")
    with os.fdopen(fd, "wb") as f:
        pickle.dump({"module": module, "main": main_path, "qualname": qualname,
                     "args": pickle.dumps(tuple(args))}, f)  # fmt: skip
    cmd = [
        find_mpiexec(),
        "-n",
        str(nprocs),
        sys.executable,
        "-m",
        "minicnn.multiprocessing._worker",
        payload,
    ]
    popen = subprocess.Popen(cmd)
    context = ProcessContext(popen, payload, nprocs)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Run ``fn(i, *args)`` for i = 0 .. nprocs-1, each in its own MPI process; wait for all (``join``).

    Raises :class:`ProcessExitedException` when the job fails (an uncaught exception on any rank
    ends the whole job, with that rank's traceback).
    """
    return start_processes(fn, args, nprocs, join, daemon, start_method)
