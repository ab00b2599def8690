"""The engines under the collectives: MPI (mpi4py) for CPU arrays, NCCL (CuPy's ``cupy.cuda.nccl``)
for GPU arrays, and a one-process stand-in when mpi4py is not installed.

Each backend works on raw arrays, in place, and returns a :class:`Work` at once; the reduction
may still be running (``MPI_Iallreduce``, or an NCCL kernel on the communication stream) until
``Work.wait()``. minicnn writes no networking code: MPI and NCCL move the bytes.
"""

from __future__ import annotations

import enum
import importlib

import numpy as np

from minicnn.backend import _import_cupy, cupy_module, is_cupy_array


class ReduceOp(enum.Enum):
    """``torch.distributed.ReduceOp``: how ``all_reduce`` combines the ranks' values."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"

    def __repr__(self):
        return f"ReduceOp.{self.name}"


class Work:
    """The handle an ``async_op=True`` collective returns (``torch.distributed.Work``).

    ``wait()`` blocks until the result is in the tensor (on a GPU: makes the current stream wait
    for it, without blocking the host), then runs the finishing steps (the division of ``AVG``, the
    copy back into a non-contiguous tensor). ``is_completed()`` asks without blocking.
    """

    def __init__(self, wait=None, test=None, finish=()):
        self._wait, self._test, self._finish = wait, test, list(finish)
        self._done = False

    def wait(self, timeout=None) -> bool:
        if not self._done:
            if self._wait is not None:
                self._wait()
            for step in self._finish:
                step()
            self._done = True
            self._wait = self._test = None
            self._finish = []
        return True

    def is_completed(self) -> bool:
        if self._done:
            return True
        if self._test is None or self._test():
            self.wait()
            return True
        return False

    def is_success(self) -> bool:
        return self.is_completed()

    def result(self):
        self.wait()
        return []

    def then(self, step):
        """Add a finishing step (run by ``wait``); returns self."""
        if self._done:
            step()
        else:
            self._finish.append(step)
        return self

    def _progress(self):
        """Let MPI move a non-blocking collective along (MPICH progresses inside MPI calls only)."""
        if not self._done and self._test is not None:
            self._test()


DONE = Work()  # a collective that had nothing to do (world size 1)


def _divide(arr, n):
    if arr.dtype.kind in "fc":
        arr *= 1.0 / n
    else:
        arr //= n


# ============================================================================ one process, no mpi4py
class LocalBackend:
    """World size 1 without mpi4py: every collective is the identity (``AVG`` of one value is itself)."""

    name = "local"
    rank, size = 0, 1

    def all_reduce(self, arr, op):
        return Work()

    def broadcast(self, arr, src):
        return Work()

    def all_gather(self, out, inp):
        out[...] = inp.reshape(out.shape)
        return Work()

    def reduce_scatter(self, out, inp, op):
        out[...] = inp.reshape(out.shape)
        return Work()

    def barrier(self):
        pass

    def all_gather_object(self, obj):
        return [obj]

    def broadcast_object(self, obj, src):
        return obj

    def abort(self, code):
        import os

        os._exit(code)


# ============================================================================ MPI
def import_mpi():
    """``mpi4py.MPI``, or an ImportError that says in one line what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "minicnn.distributed needs mpi4py and an MPI library for more than one process: "
            f'pip install "minicnn[distributed]" (or: pip install mpi4py mpich). ({e})'
        ) from None
    return MPI


class MPIBackend:
    """Collectives through mpi4py's non-blocking calls (``Iallreduce``, ``Ibcast``, ``Iallgather``,
    ``Ireduce_scatter_block``) on the whole world, a duplicate of ``COMM_WORLD`` (so minicnn's
    messages never mix with the user's own MPI calls).

    NumPy arrays are handed to MPI as they are when contiguous (else a contiguous copy, copied back
    by ``wait``). CuPy arrays are copied to the host and back: the mpich wheel is not CUDA-aware;
    GPU tensors go through NCCL instead (:class:`NCCLBackend`). float16 travels as float32 (MPI has
    no float16 sum).
    """

    name = "mpi"

    def __init__(self):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._ops = {
            ReduceOp.SUM: MPI.SUM,
            ReduceOp.AVG: MPI.SUM,
            ReduceOp.PRODUCT: MPI.PROD,
            ReduceOp.MIN: MPI.MIN,
            ReduceOp.MAX: MPI.MAX,
        }

    # ------------------------------------------------------------ host buffers
    def _host(self, arr, copy_back=True):
        """``(buffer MPI can use, steps that put the result back into arr)``."""
        if type(arr) is np.ndarray and arr.flags.c_contiguous and arr.dtype != np.float16:
            return arr, []
        if is_cupy_array(arr):
            host = arr.get()
        else:
            host = np.ascontiguousarray(arr)
        if host.dtype == np.float16:
            host = host.astype(np.float32)
        elif host is arr:
            host = host.copy()
        if not copy_back:
            return host, []

        def put_back():
            if is_cupy_array(arr):
                arr[...] = cupy_module().asarray(host.astype(arr.dtype, copy=False))
            else:
                arr[...] = host

        return host, [put_back]

    def _work(self, request, finish):
        return Work(request.Wait, request.Test, finish)

    # ------------------------------------------------------------ collectives
    def all_reduce(self, arr, op):
        buf, back = self._host(arr)
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
        steps = ([lambda: _divide(buf, self.size)] if op is ReduceOp.AVG else []) + back
        return self._work(req, steps)

    def broadcast(self, arr, src):
        buf, back = self._host(arr)
        req = self.comm.Ibcast(buf, root=src)
        return self._work(req, back if self.rank != src else [])

    def all_gather(self, out, inp):
        send, _ = self._host(inp, copy_back=False)
        recv, back = self._host(out)
        req = self.comm.Iallgather(send, recv)
        return self._work(req, back)

    def reduce_scatter(self, out, inp, op):
        send, _ = self._host(inp, copy_back=False)
        recv, back = self._host(out)
        req = self.comm.Ireduce_scatter_block(send, recv, op=self._ops[op])
        steps = ([lambda: _divide(recv, self.size)] if op is ReduceOp.AVG else []) + back
        return self._work(req, steps)

    def barrier(self):
        self.comm.Barrier()

    def all_gather_object(self, obj):
        return self.comm.allgather(obj)

    def broadcast_object(self, obj, src):
        return self.comm.bcast(obj, root=src)

    def abort(self, code):
        self.MPI.COMM_WORLD.Abort(code)

    def destroy(self):
        self.comm.Free()


# ============================================================================ NCCL
def nccl_module():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``), or None when CuPy or its NCCL is missing."""
    cp = _import_cupy()
    if cp is None:
        return None
    try:
        nccl = cp.cuda.nccl
    except AttributeError:
        try:  # real CuPy: a submodule imported on demand
            nccl = importlib.import_module("cupy.cuda.nccl")
        except Exception:  # no NCCL in this CuPy build (Windows, ROCm)
            return None
    if nccl is None or not getattr(nccl, "available", True):
        return None
    return nccl


def _nccl_dtype(nccl, dtype):
    table = {
        np.dtype(np.float16): "NCCL_FLOAT16",
        np.dtype(np.float32): "NCCL_FLOAT32",
        np.dtype(np.float64): "NCCL_FLOAT64",
        np.dtype(np.int8): "NCCL_INT8",
        np.dtype(np.uint8): "NCCL_UINT8",
        np.dtype(np.int32): "NCCL_INT32",
        np.dtype(np.int64): "NCCL_INT64",
    }
    name = table.get(np.dtype(dtype))
    if name is None:
        raise TypeError(f"the NCCL backend cannot reduce {np.dtype(dtype)} tensors: use one of "
                        f"{', '.join(str(d) for d in table)}")  # fmt: skip
    return getattr(nccl, name)


class NCCLBackend:
    """Collectives on GPU arrays through NCCL (``cupy.cuda.nccl.NcclCommunicator``).

    Set-up: rank 0 draws NCCL's unique id (``nccl.get_unique_id()``), MPI broadcasts it, and every
    rank builds its communicator from it on its current GPU. Then NCCL moves GPU memory directly
    (NVLink, PCIe, InfiniBand), never through the host.

    Every collective runs on a communication stream of its own: that stream first waits for what the
    current stream has queued (an event), the NCCL kernel is queued there, and ``Work.wait()`` makes
    the current stream wait for it (another event). Nothing here makes the host wait for the GPU, so
    a DistributedDataParallel step has no host synchronisation, and backward kernels run on the
    compute stream while the gradients of the later layers are being summed.
    """

    name = "nccl"

    def __init__(self, mpi):
        nccl = nccl_module()
        if nccl is None:
            raise RuntimeError(
                "init_process_group('nccl'): CuPy's NCCL bindings (cupy.cuda.nccl) are not available: "
                "install CuPy for your CUDA (pip install cupy-cuda12x) on a machine with NVIDIA GPUs, "
                "or use backend='mpi'"
            )
        self.nccl, self.cp = nccl, cupy_module()
        self.rank, self.size = mpi.rank, mpi.size
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = mpi.broadcast_object(uid, 0)  # the unique id travels over MPI
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.device = self.cp.cuda.runtime.getDevice()
        self.stream = self.cp.cuda.Stream(non_blocking=True)
        self._ops = {
            ReduceOp.SUM: nccl.NCCL_SUM,
            ReduceOp.AVG: nccl.NCCL_SUM,  # then divided by the world size, on the current stream
            ReduceOp.PRODUCT: nccl.NCCL_PROD,
            ReduceOp.MIN: nccl.NCCL_MIN,
            ReduceOp.MAX: nccl.NCCL_MAX,
        }

    def _contiguous(self, arr):
        if arr.flags.c_contiguous:
            return arr, []
        buf = self.cp.ascontiguousarray(arr)

        def put_back():
            arr[...] = buf

        return buf, [put_back]

    def _launch(self, arrays, enqueue, finish):
        """Queue ``enqueue(stream_ptr)`` on the communication stream after the current stream's work."""
        cp = self.cp
        ready = cp.cuda.Event(disable_timing=True)
        ready.record(cp.cuda.get_current_stream())
        self.stream.wait_event(ready)
        enqueue(self.stream.ptr)
        done = cp.cuda.Event(disable_timing=True)
        done.record(self.stream)

        def wait():
            cp.cuda.get_current_stream().wait_event(done)
            arrays.clear()  # the arrays were kept alive until the current stream is ordered after NCCL

        return Work(wait, done.query, finish)

    def all_reduce(self, arr, op):
        buf, back = self._contiguous(arr)
        dtype = _nccl_dtype(self.nccl, buf.dtype)
        ptr = buf.data.ptr
        steps = ([lambda: _divide(buf, self.size)] if op is ReduceOp.AVG else []) + back
        return self._launch(
            [buf], lambda s: self.comm.allReduce(ptr, ptr, buf.size, dtype, self._ops[op], s), steps
        )

    def broadcast(self, arr, src):
        buf, back = self._contiguous(arr)
        dtype = _nccl_dtype(self.nccl, buf.dtype)
        ptr = buf.data.ptr
        return self._launch([buf], lambda s: self.comm.bcast(ptr, buf.size, dtype, src, s), back)

    def all_gather(self, out, inp):
        send, _ = self._contiguous(inp)
        recv, back = self._contiguous(out)
        dtype = _nccl_dtype(self.nccl, send.dtype)
        sp, rp = send.data.ptr, recv.data.ptr
        return self._launch([send, recv], lambda s: self.comm.allGather(sp, rp, send.size, dtype, s), back)

    def reduce_scatter(self, out, inp, op):
        send, _ = self._contiguous(inp)
        recv, back = self._contiguous(out)
        dtype = _nccl_dtype(self.nccl, send.dtype)
        sp, rp = send.data.ptr, recv.data.ptr
        steps = ([lambda: _divide(recv, self.size)] if op is ReduceOp.AVG else []) + back
        return self._launch(
            [send, recv],
            lambda s: self.comm.reduceScatter(sp, rp, recv.size, dtype, self._ops[op], s),
            steps,
        )

    def destroy(self):
        self.comm.destroy()
