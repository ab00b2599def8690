"""DataLoader workers: batches of a per-sample dataset made in parallel, by processes or threads.

Each task is one whole batch ``(epoch, batch number, indices, seed)``: a worker calls
``dataset[i]`` for each index, collates, and sends the batch back; the loader yields batches
in order. At most ``prefetch_factor * num_workers`` batches are in flight.

* **processes** (the default, ``fork`` on Linux as PyTorch): real parallelism for Python code
  (PIL decoding, NumPy on small arrays, the dataset's own ``__getitem__``). The batch comes back
  pickled through a pipe. Each worker process seeds Python's ``random``, NumPy's global RNG and
  minicnn's generator with ``base_seed + worker_id``, as PyTorch does.
* **threads** (``multiprocessing_context="thread"``): no start-up cost and no copies, but Python
  code holds the GIL, so only code that releases it (file reads, large NumPy operations) overlaps.

Random transforms are reproducible whatever the workers: the seed of each task is
``(epoch seed, batch number)``, installed as the transforms' generator for that batch.
"""

from __future__ import annotations

import itertools
import multiprocessing.connection
import os
import queue
import random
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from minicnn.data.transforms import using_generator

__all__ = ["get_worker_info", "WorkerInfo"]


class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker: ``id``, ``num_workers``, ``seed``, ``dataset``."""

    __slots__ = ("id", "num_workers", "seed", "dataset")

    def __init__(self, id, num_workers, seed, dataset):  # noqa: A002  (torch's field name)
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_thread_info = threading.local()
_process_info = None  # set in a worker process


def get_worker_info():
    """In a DataLoader worker: its :class:`WorkerInfo`; in the main process: None."""
    info = getattr(_thread_info, "info", None)
    return info if info is not None else _process_info


class Fetcher:
    """Make one batch: ``dataset[i]`` for each index (or ``__getitems__``), then ``collate_fn``.

    Picklable when the dataset is (needed only for the 'spawn'/'forkserver' start methods).
    """

    def __init__(self, dataset, collate_fn, batched=True):
        self.dataset, self.collate_fn, self.batched = dataset, collate_fn, batched

    def __call__(self, indices, seed):
        with using_generator(np.random.default_rng(seed)):
            if not self.batched:  # batch_size=None: one sample, converted
                return self.collate_fn(self.dataset[indices])
            getitems = getattr(self.dataset, "__getitems__", None)
            samples = getitems(indices) if callable(getitems) else [self.dataset[i] for i in indices]
            return self.collate_fn(samples)


class _RemoteTraceback(Exception):
    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


class WorkerError:
    """An exception raised in a worker process, carried back to be raised again in the loop."""

    def __init__(self, exc, worker_id):
        self.exc_type, self.message = type(exc), str(exc)
        self.worker_id = worker_id
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self):
        msg = f"{self.message} [in DataLoader worker process {self.worker_id}]"
        try:
            exc = self.exc_type(msg)
        except Exception:
            exc = RuntimeError(f"{self.exc_type.__name__}: {msg}")
        raise exc from _RemoteTraceback(f'\n"""\n{self.traceback}"""')


def _seed_everything(seed):
    from minicnn import random as _random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    _random.manual_seed(seed)


# ---------------------------------------------------------------------------- processes
def _process_loop(fetcher, index_queue, result_queue, worker_id, num_workers, seed, init_fn, parent):
    global _process_info
    try:
        _seed_everything(seed)
        _process_info = WorkerInfo(worker_id, num_workers, seed, fetcher.dataset)
        init_error = None
        if init_fn is not None:
            try:
                init_fn(worker_id)
            except Exception as e:
                init_error = WorkerError(e, worker_id)
        while True:
            try:
                task = index_queue.get(timeout=5.0)
            except queue.Empty:
                if os.getppid() != parent:  # the main process is gone: do not linger
                    return
                continue
            if task is None:
                return
            epoch, number, indices, batch_seed = task
            if init_error is not None:
                out = init_error
            else:
                try:
                    out = fetcher(indices, batch_seed)
                except Exception as e:
                    out = WorkerError(e, worker_id)
            result_queue.put((epoch, number, out))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the main process reports it
        return
    except (EOFError, OSError, BrokenPipeError):  # the main process closed the queues
        return


class ProcessWorkers:
    """``num_workers`` processes, each with its own task queue, and one queue of results."""

    def __init__(self, fetcher, num_workers, worker_init_fn, base_seed, context):
        self.num_workers = num_workers
        self.index_queues = [context.Queue() for _ in range(num_workers)]
        self.result_queue = context.Queue()
        self.processes = []
        self.epoch = 0
        for wid in range(num_workers):
            p = context.Process(
                target=_process_loop,
                args=(
                    fetcher,
                    self.index_queues[wid],
                    self.result_queue,
                    wid,
                    num_workers,
                    (base_seed + wid) % 2**63,
                    worker_init_fn,
                    os.getpid(),
                ),  # fmt: skip
                daemon=True,
            )
            p.start()
            self.processes.append(p)

    def _get(self, timeout):
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            wait = 2.0 if deadline is None else max(0.0, min(2.0, deadline - time.monotonic()))
            try:
                return self.result_queue.get(timeout=wait)
            except queue.Empty:
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    p = dead[0]
                    self.shutdown()
                    raise RuntimeError(
                        f"DataLoader worker (pid {p.pid}) exited unexpectedly with exit code {p.exitcode} "
                        "(killed for lack of memory? a crash in native code?)"
                    ) from None
                if deadline is not None and time.monotonic() >= deadline:
                    self.shutdown()
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None

    def run(self, tasks, prefetch, timeout):
        """Yield the results of ``tasks`` ((number, indices, seed), numbered 0, 1, ...) in order."""
        self.epoch += 1
        epoch, tasks = self.epoch, iter(tasks)
        sent = 0

        def send():
            nonlocal sent
            task = next(tasks, None)
            if task is None:
                return False
            self.index_queues[sent % self.num_workers].put((epoch, *task))
            sent += 1
            return True

        for _ in range(prefetch):
            if not send():
                break
        buffer, wanted = {}, 0
        while wanted < sent:
            while wanted not in buffer:
                got_epoch, number, out = self._get(timeout)
                if got_epoch == epoch:  # results of an abandoned earlier epoch are dropped
                    buffer[number] = out
            out = buffer.pop(wanted)
            wanted += 1
            send()
            if isinstance(out, WorkerError):
                out.reraise()
            yield out

    def shutdown(self):
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        alive = [p for p in self.processes if p.is_alive()]
        while alive and time.monotonic() < deadline:
            try:  # results nobody will read: drain them so the workers can flush their pipe and exit
                while True:
                    self.result_queue.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                pass
            multiprocessing.connection.wait([p.sentinel for p in alive], timeout=0.01)
            alive = [p for p in alive if p.is_alive()]
        for p in self.processes:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
        for q in (*self.index_queues, self.result_queue):
            q.cancel_join_thread()
            q.close()
        self.processes = []


# ---------------------------------------------------------------------------- threads
class ThreadWorkers:
    """``num_workers`` threads sharing the process (and the GIL)."""

    def __init__(self, fetcher, num_workers, worker_init_fn, base_seed, context=None):
        self.fetcher, self.num_workers = fetcher, num_workers
        self._ids, self._lock = itertools.count(), threading.Lock()
        self._init_fn, self._base_seed = worker_init_fn, base_seed
        self.executor = ThreadPoolExecutor(
            num_workers, thread_name_prefix="minicnn-data-worker", initializer=self._init
        )

    def _init(self):
        with self._lock:
            wid = next(self._ids)
        _thread_info.info = WorkerInfo(
            wid, self.num_workers, (self._base_seed + wid) % 2**63, self.fetcher.dataset
        )
        if self._init_fn is not None:
            self._init_fn(wid)

    def run(self, tasks, prefetch, timeout):
        tasks, pending = iter(tasks), deque()

        def send():
            task = next(tasks, None)
            if task is not None:
                pending.append(self.executor.submit(self.fetcher, task[1], task[2]))

        for _ in range(prefetch):
            send()
        try:
            while pending:
                future = pending.popleft()
                try:
                    out = future.result(timeout=timeout or None)
                except FutureTimeout:
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
                send()
                yield out
        finally:
            for f in pending:
                f.cancel()

    def shutdown(self):
        self.executor.shutdown(wait=False, cancel_futures=True)
