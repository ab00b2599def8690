"""The default process group and the collectives on minicnn Tensors (``torch.distributed``'s names).

One group, the whole world, as most training scripts use. ``init_process_group`` starts it:
MPI for CPU tensors (and for the objects: signatures, NCCL's unique id), NCCL for GPU tensors.
Every collective changes its tensors in place, on every rank, as PyTorch's do; with
``async_op=True`` it returns a :class:`~minicnn.distributed.backends.Work` at once.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback

from minicnn.backend import is_cupy_array
from minicnn.distributed import env
from minicnn.distributed.backends import (
    LocalBackend,
    MPIBackend,
    NCCLBackend,
    ReduceOp,
    Work,
    nccl_module,
)

_NOT_INITIALIZED = (
    "Default process group has not been initialized, please make sure to call init_process_group."
)


class _World:
    """The default group: a CPU backend (MPI, or the one-process stand-in) and, for GPU tensors, NCCL."""

    def __init__(self, backend_name, cpu, gpu):
        self.backend_name, self.cpu, self.gpu = backend_name, cpu, gpu
        self.rank, self.size = cpu.rank, cpu.size

    def for_array(self, arr, who):
        if is_cupy_array(arr):
            if self.gpu is None and self.backend_name is None and nccl_module() is not None:
                self.gpu = NCCLBackend(self.cpu)  # backend=None: NCCL made on the first GPU tensor
            if self.gpu is not None:
                return self.gpu
            return self.cpu  # MPI through host copies
        if self.backend_name == "nccl":
            raise RuntimeError(
                f"{who}: the process group was initialised with backend 'nccl', which handles GPU tensors "
                "only, and this tensor is on the CPU. Move it to the GPU, or use init_process_group('mpi') "
                "(or no backend: MPI for CPU tensors, NCCL for GPU tensors)."
            )
        return self.cpu


_world: _World | None = None


class _GroupMember:
    """``torch.distributed.group.WORLD``: the only group minicnn has."""

    WORLD = "WORLD"


group = _GroupMember


def is_available() -> bool:
    """True when mpi4py is installed (more than one process can run); world size 1 always works."""
    import importlib.util

    return importlib.util.find_spec("mpi4py") is not None  # without importing it: that would start MPI


def is_initialized() -> bool:
    return _world is not None


def is_mpi_available() -> bool:
    return is_available()


def is_nccl_available() -> bool:
    return nccl_module() is not None


def is_gloo_available() -> bool:
    """There is no Gloo in minicnn: ``backend='gloo'`` is served by MPI (see init_process_group)."""
    return False


def _world_or_raise() -> _World:
    if _world is None:
        raise ValueError(_NOT_INITIALIZED)
    return _world


def _check_group(group, who):
    if group is not None and group != _GroupMember.WORLD:
        raise NotImplementedError(
            f"{who}: minicnn has one process group, the whole world (group=None); new_group and "
            "sub-groups are not implemented"
        )


def init_process_group(
    backend=None,
    init_method=None,
    timeout=None,
    world_size=-1,
    rank=-1,
    store=None,
    group_name="",
    pg_options=None,
    device_id=None,
):
    """Start the default process group: every process of the job calls it once, before any collective.

    * ``backend``: ``"mpi"`` (CPU tensors; GPU tensors through host copies), ``"nccl"`` (GPU tensors
      only, NCCL's unique id sent over MPI), or None: MPI for CPU tensors and NCCL for GPU tensors
      when CuPy's NCCL is there (made on the first GPU collective). ``"gloo"`` is accepted and
      served by MPI, so a CPU script written for Gloo runs unchanged.
    * Rank and world size come from the MPI launcher (``mpiexec -n N`` or
      ``python -m minicnn.distributed.run``); a plain ``python script.py`` is world size 1, and
      needs no MPI at all when mpi4py is missing. ``world_size=``/``rank=`` may be passed, as
      torchrun scripts do, and must agree with the launcher's. ``init_method``, ``store`` and
      ``timeout`` are accepted and unused: MPI does the rendezvous.
    * From here on, an uncaught exception on any rank ends the whole job (``MPI_Abort``), with
      that rank's traceback, instead of leaving the other ranks waiting in a collective forever.
    """
    global _world
    if _world is not None:
        raise ValueError("trying to initialize the default process group twice!")
    name = None if backend is None else str(backend).lower()
    if name == "gloo":
        name = "mpi"
    if name not in (None, "mpi", "nccl"):
        raise ValueError(
            f"init_process_group: unknown backend {backend!r}: minicnn has 'mpi' (CPU), 'nccl' (GPU), "
            "'gloo' (served by MPI) and None (MPI for CPU tensors, NCCL for GPU tensors)"
        )
    launched = env.launched_world_size()
    try:
        cpu = MPIBackend()
    except ImportError:
        if launched > 1 or (world_size is not None and world_size > 1):
            raise
        cpu = LocalBackend()
    if world_size is not None and world_size != -1 and world_size != cpu.size:
        how = "" if cpu.size > 1 else (
            f": start the job with mpiexec -n {world_size} python script.py, or "
            f"python -m minicnn.distributed.run --nproc-per-node {world_size} script.py"
        )  # fmt: skip
        raise ValueError(
            f"init_process_group: world_size={world_size}, but the MPI launcher started {cpu.size} "
            f"process(es){how}"
        )
    if rank is not None and rank != -1 and rank != cpu.rank:
        raise ValueError(
            f"init_process_group: rank={rank}, but MPI says this process is rank {cpu.rank} (the launcher "
            "gives the ranks; pass rank=-1 or int(os.environ['RANK']))"
        )
    gpu = NCCLBackend(cpu) if name == "nccl" else None
    _world = _World(name, cpu, gpu)
    env.fill_torchrun_env()
    if cpu.size > 1:
        _share_the_cores()
        host = cpu.broadcast_object(socket.gethostname(), 0)
        if "MINICNN_LAUNCHER" not in os.environ:
            os.environ["MASTER_ADDR"] = host
        install_abort_hook()


_thread_limits = None  # threadpoolctl's limit on the BLAS threads, kept alive while the group lives


def _share_the_cores():
    """Several processes on one machine: give each its share of the cores (compiled kernels and BLAS),
    unless NUMBA_NUM_THREADS / OMP_NUM_THREADS say otherwise (the launcher sets them, as torchrun)."""
    global _thread_limits
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local <= 1:
        return
    threads = max(1, (os.cpu_count() or 1) // local)
    if "NUMBA_NUM_THREADS" not in os.environ:
        try:
            import numba

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # the textbook tier only
            pass
    if "OMP_NUM_THREADS" not in os.environ and _thread_limits is None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # BLAS keeps its threads
            return
        _thread_limits = threadpool_limits(threads)


def destroy_process_group(group=None) -> None:
    """End the default group (a later ``init_process_group`` may start a new one)."""
    global _world
    _check_group(group, "destroy_process_group")
    w = _world_or_raise()
    for b in (w.gpu, w.cpu):
        if b is not None and hasattr(b, "destroy"):
            b.destroy()
    _world = None


def get_rank(group=None) -> int:
    _check_group(group, "get_rank")
    return _world_or_raise().rank


def get_world_size(group=None) -> int:
    _check_group(group, "get_world_size")
    return _world_or_raise().size


def get_backend(group=None) -> str:
    """``"mpi"``, ``"nccl"``, or, for ``backend=None`` where NCCL is available, ``"cpu:mpi,cuda:nccl"``
    (PyTorch's form for a group with a backend per device type); ``"local"`` without mpi4py."""
    _check_group(group, "get_backend")
    w = _world_or_raise()
    if w.backend_name == "nccl":
        return "nccl"
    if w.backend_name is None and nccl_module() is not None:
        return f"cpu:{w.cpu.name},cuda:nccl"
    return w.cpu.name


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank has reached this line."""
    _check_group(group, "barrier")
    _world_or_raise().cpu.barrier()
    return Work() if async_op else None


# ============================================================================ collectives on Tensors
def _array(t, who, name="tensor"):
    from minicnn.tensor import Tensor

    if not isinstance(t, Tensor):
        raise TypeError(f"{who}: {name} must be a minicnn Tensor, got {type(t).__name__}")
    return t.array


def _op(op, who) -> ReduceOp:
    if isinstance(op, ReduceOp):
        return op
    raise TypeError(
        f"{who}: op must be a minicnn.distributed.ReduceOp (SUM, AVG, PRODUCT, MIN, MAX), got {op!r}"
    )


def _finish(work, tensors, async_op):
    def bump():
        for t in tensors:
            t.bump_version()

    work.then(bump)
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine ``tensor`` over all ranks with ``op``; every rank gets the result, in place."""
    who = "all_reduce"
    _check_group(group, who)
    arr, op = _array(tensor, who), _op(op, who)
    w = _world_or_raise()
    return _finish(w.for_array(arr, who).all_reduce(arr, op), [tensor], async_op)


def broadcast(tensor, src=0, group=None, async_op=False):
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor``."""
    who = "broadcast"
    _check_group(group, who)
    arr, w = _array(tensor, who), _world_or_raise()
    if not 0 <= src < w.size:
        raise ValueError(f"broadcast: src={src} is not a rank of this world of {w.size} process(es)")
    return _finish(w.for_array(arr, who).broadcast(arr, src), [tensor], async_op)


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Every rank's ``input_tensor``, concatenated along dim 0 (or stacked), into ``output_tensor``."""
    who = "all_gather_into_tensor"
    _check_group(group, who)
    out, inp = _array(output_tensor, who, "output_tensor"), _array(input_tensor, who, "input_tensor")
    w = _world_or_raise()
    if out.size != inp.size * w.size or out.dtype != inp.dtype:
        raise ValueError(
            f"{who}: output_tensor must hold world_size x input_tensor = {w.size} x {tuple(inp.shape)} "
            f"{inp.dtype} values, got {tuple(out.shape)} {out.dtype}"
        )
    flat_out = out.reshape(w.size, -1) if out.flags.c_contiguous else out
    work = w.for_array(inp, who).all_gather(flat_out, inp.reshape(-1))
    return _finish(work, [output_tensor], async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """``tensor_list[r]`` = rank r's ``tensor``, on every rank (the list holds world_size tensors)."""
    who = "all_gather"
    _check_group(group, who)
    inp, w = _array(tensor, who), _world_or_raise()
    if not isinstance(tensor_list, (list, tuple)) or len(tensor_list) != w.size:
        raise ValueError(f"{who}: tensor_list must be a list of {w.size} tensors (one per rank)")
    for i, t in enumerate(tensor_list):
        a = _array(t, who, f"tensor_list[{i}]")
        if a.shape != inp.shape or a.dtype != inp.dtype:
            raise ValueError(
                f"{who}: tensor_list[{i}] has shape {tuple(a.shape)} {a.dtype}, expected "
                f"{tuple(inp.shape)} {inp.dtype} like the input tensor"
            )
    xp = tensor._xp
    gathered = xp.empty((w.size,) + tuple(inp.shape), dtype=inp.dtype)
    work = w.for_array(inp, who).all_gather(gathered.reshape(w.size, -1), inp.reshape(-1))

    def scatter_into_list():
        for r, t in enumerate(tensor_list):
            t.array[...] = gathered[r]

    work.then(scatter_into_list)
    return _finish(work, list(tensor_list), async_op)


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input`` (world_size blocks along dim 0) over the ranks; rank r keeps block r in ``output``."""
    who = "reduce_scatter_tensor"
    _check_group(group, who)
    out, inp = _array(output, who, "output"), _array(input, who, "input")
    op, w = _op(op, who), _world_or_raise()
    if inp.size != out.size * w.size or out.dtype != inp.dtype:
        raise ValueError(
            f"{who}: input must hold world_size x output = {w.size} x {tuple(out.shape)} {out.dtype} "
            f"values, got {tuple(inp.shape)} {inp.dtype}"
        )
    work = w.for_array(inp, who).reduce_scatter(out, inp.reshape(-1), op)
    return _finish(work, [output], async_op)


def all_gather_object(object_list, obj, group=None):
    """``object_list[r]`` = rank r's picklable ``obj`` (through MPI, pickled)."""
    _check_group(group, "all_gather_object")
    w = _world_or_raise()
    if len(object_list) != w.size:
        raise ValueError(f"all_gather_object: object_list must have world_size = {w.size} entries")
    object_list[:] = w.cpu.all_gather_object(obj)


def broadcast_object_list(object_list, src=0, group=None, device=None):
    """Replace every rank's ``object_list`` entries by rank ``src``'s (picklable objects)."""
    _check_group(group, "broadcast_object_list")
    w = _world_or_raise()
    object_list[:] = w.cpu.broadcast_object(list(object_list), src)


# ============================================================================ whole-job abort
def abort(code=1):
    """End every process of the job now (``MPI_Abort``)."""
    if _world is not None:
        _world.cpu.abort(code)
    try:
        from mpi4py import MPI
    except ImportError:
        os._exit(code)
    MPI.COMM_WORLD.Abort(code)


def install_abort_hook():
    """Make an uncaught exception on this rank end the whole job: print its traceback (prefixed with
    the rank), then ``MPI_Abort``. Without it, the other ranks would wait in their next collective
    forever, and ``mpiexec`` with them. Installed by ``init_process_group`` and by the launcher."""
    if getattr(sys.excepthook, "_minicnn_abort", False):
        return
    previous = sys.excepthook

    def excepthook(etype, value, tb):
        info = env.launched_by_mpi()
        rank = info["rank"] if info else 0
        text = "".join(traceback.format_exception(etype, value, tb))
        try:
            sys.stdout.flush()
        except Exception:  # stdout closed: the traceback still goes to stderr
            pass
        sys.stderr.write(f"[rank {rank}] uncaught exception; aborting the whole job (MPI_Abort):\n{text}")
        sys.stderr.flush()
        if info is None or info["world_size"] == 1:
            previous(etype, value, tb)
            return
        abort(1)

    excepthook._minicnn_abort = True
    sys.excepthook = excepthook
