"""``DataLoader``: batches from any map-style dataset, with the arguments of ``torch.utils.data.DataLoader``.

Two ways to make a batch:

**Fast path: whole-array datasets** (``MNIST``, ``CIFAR10``, ``ArraysDataset``, a ``Subset`` of
one), when their ``transform=`` is None or made only of ``ToTensor``, ``Normalize``,
``RandomCrop``, ``RandomHorizontalFlip``, and there is no ``collate_fn``/``target_transform``.
No per-sample Python code runs:

1. each epoch, the indices from the sampler -- with ``shuffle=True`` one permutation of
   ``range(N)`` from the loader's seeded generator;
2. ``images[indices]``: one fancy-indexing gather of uint8 pixels, in layout (B, C, H, W);
3. ``.astype(float32) / 255`` on the device, so the pixels cross to the GPU as uint8 (4x less
   traffic) -- when the device is CUDA and the dataset fits, it is copied there once, up front;
4. the dataset's transforms, then the loader's ``transform``, as batch operations on the device
   (one random crop offset / coin toss per image, from the loader's generator).

The generator's state is part of :meth:`DataLoader.state_dict`, so a checkpointed run resumes
with exactly the batches (and augmentations) it would have seen.

**Per-sample path: every other dataset** (a ``Dataset`` subclass, a list of pairs, a
``TensorDataset``...): ``collate_fn([dataset[i] for i in batch])``, by ``num_workers`` worker
processes (or threads) in parallel when ``num_workers > 0`` (see ``minicnn/data/workers.py``).
"""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np

from minicnn import random as _random
from minicnn.backend import Device, cupy_module, device_of, to_device
from minicnn.data.collate import default_collate, default_convert
from minicnn.data.dataset import Subset, TensorDataset, check_labels, targets_of
from minicnn.data.sampler import BatchSampler, RandomSampler, SequentialSampler, numpy_generator
from minicnn.data.transforms import Transform, batch_plan
from minicnn.data.workers import Fetcher, ProcessWorkers, ThreadWorkers
from minicnn.tensor import Tensor

__all__ = ["DataLoader"]

# Copy a dataset to the GPU once only if it takes at most this share of the free GPU memory.
_GPU_SHARE = 0.5


def _positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value > 0


def _fast_source(dataset):
    """``(arrays dataset, index map or None, batch transforms)`` when the fast path applies, else None."""
    from minicnn.data.datasets import ArraysDataset

    index_map = None
    while isinstance(dataset, Subset):
        idx = np.asarray(dataset.indices, dtype=np.int64).reshape(-1)
        index_map = idx if index_map is None else idx[index_map]
        dataset = dataset.dataset
    if isinstance(dataset, ArraysDataset) and type(dataset).__getitem__ is ArraysDataset.__getitem__:
        if dataset.target_transform is not None:
            return None
        plan = [] if dataset.transform is None else batch_plan(dataset.transform)
        return None if plan is None else (dataset, index_map, plan)
    if index_map is None and not hasattr(dataset, "__getitem__"):  # any object with .data and .targets
        if hasattr(dataset, "data") and hasattr(dataset, "targets"):
            return dataset, None, []
    return None


class _Range:
    """A stand-in with ``len()`` for a dataset object that has ``.data`` but no ``__len__``."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


class DataLoader:
    """Iterate over ``dataset`` in batches, as ``torch.utils.data.DataLoader``.

    ``dataset`` is any map-style dataset (``__getitem__`` + ``__len__``): a
    :class:`~minicnn.data.Dataset` subclass, a list of ``(x, y)`` pairs, a ``TensorDataset``, or
    one of minicnn's whole-array datasets (``MNIST``, ``CIFAR10``...), which take the fast
    batched path (module doc). There each batch is ``(images, labels)``: images float32
    (``dtype``) in layout (N, C, H, W), ``pixel / 255`` before the transforms, labels int64 (N,).
    Elsewhere a batch is what ``collate_fn`` (default :func:`~minicnn.data.default_collate`)
    makes of the samples: ``[X, Y]`` for ``(x, y)`` samples, as PyTorch.

    PyTorch's arguments: ``batch_size`` (None: no batching), ``shuffle``, ``sampler``,
    ``batch_sampler``, ``num_workers``, ``collate_fn``, ``pin_memory`` (accepted; batches are
    copied synchronously here, so it changes nothing), ``drop_last``, ``timeout``,
    ``worker_init_fn``, ``multiprocessing_context`` ('fork' (default on Linux), 'spawn',
    'forkserver', or minicnn's ``"thread"`` for worker threads), ``generator`` (a
    ``minicnn.Generator``, ``numpy.random.Generator`` or int seed), ``prefetch_factor`` (batches
    in flight per worker, default 2), ``persistent_workers`` (keep the workers between epochs).

    minicnn's own, keyword-only: ``device`` (batches are moved there), ``transform`` (a batch
    transform applied to the images of every batch, on the device), ``seed`` (seeds the
    shuffling/augmentation generator; None: drawn from minicnn's generator, so
    ``minicnn.manual_seed`` makes it reproducible), ``dtype`` (of the fast path's images; None:
    the default float dtype).
    """

    def __init__(
        self,
        dataset,
        batch_size=1,
        shuffle=None,
        sampler=None,
        batch_sampler=None,
        num_workers=0,
        collate_fn=None,
        pin_memory=False,
        drop_last=False,
        timeout=0,
        worker_init_fn=None,
        multiprocessing_context=None,
        generator=None,
        *,
        prefetch_factor=None,
        persistent_workers=False,
        pin_memory_device="",
        in_order=True,
        device="cpu",
        transform=None,
        seed=None,
        dtype=None,
    ):
        from minicnn.dtypes import default_float, np_dtype

        if batch_size is not None and not _positive_int(batch_size):
            raise ValueError(
                f"DataLoader: batch_size must be a positive integer (or None), got {batch_size!r}"
            )
        try:
            self.device = Device(device)
        except (ValueError, TypeError) as e:
            raise ValueError(f"DataLoader: {e}") from None
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable, got {type(transform).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
            raise ValueError(
                "DataLoader: num_workers option should be a non-negative integer; use num_workers=0 to load "
                f"in the main process, got {num_workers!r}"
            )
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError(
                "DataLoader: prefetch_factor option could only be specified with num_workers > 0 "
                "(otherwise set prefetch_factor to None)"
            )
        if prefetch_factor is not None and not _positive_int(prefetch_factor):
            raise ValueError(
                f"DataLoader: prefetch_factor must be a positive integer, got {prefetch_factor!r}"
            )
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None and (batch_size != 1 or shuffle or sampler is not None or drop_last):
            raise ValueError(
                "DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                "and drop_last"
            )
        if batch_size is None and batch_sampler is None and drop_last:
            raise ValueError(
                "DataLoader: batch_size=None option disables auto-batching and is mutually exclusive with "
                "drop_last"
            )

        self.dataset = dataset
        self.num_workers = int(num_workers)
        self.pin_memory, self.pin_memory_device, self.in_order = bool(pin_memory), pin_memory_device, in_order
        self.timeout, self.worker_init_fn = timeout, worker_init_fn
        self.prefetch_factor = (
            (2 if prefetch_factor is None else int(prefetch_factor)) if num_workers else None
        )
        self.persistent_workers = bool(persistent_workers)
        self.multiprocessing_context = multiprocessing_context
        self.transform = transform
        self.dtype = np.dtype(default_float() if dtype is None else np_dtype(dtype))
        self.shuffle = bool(shuffle)
        if generator is not None:
            self.generator = numpy_generator(generator, "DataLoader")
            self.seed = None if seed is None else int(seed)
        else:
            if seed is None:
                seed = int(_random.cpu_generator().integers(2**62))
            self.seed = int(seed)
            self.generator = np.random.default_rng(self.seed)
        self._pool = None

        fast = _fast_source(dataset)
        self._fast = fast is not None and collate_fn is None and batch_size is not None
        if not self._fast and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(
                "DataLoader: dataset must be a map-style dataset with __getitem__ and __len__ (a "
                "minicnn.data.Dataset subclass, a TensorDataset, a list of (x, y) pairs...) or have .data "
                f"(uint8 images (N, H, W) or (N, H, W, C)) and .targets (N,), like minicnn.data.MNIST; got "
                f"{type(dataset).__name__}"
            )
        if self._fast:
            self._setup_fast(*fast)
            source = dataset if hasattr(dataset, "__len__") else _Range(self.images.shape[0])
        else:
            source = dataset
            self._check_labels()
        self.collate_fn = (
            collate_fn
            if collate_fn is not None
            else (default_collate if batch_size is not None else default_convert)
        )
        self._tensor_gather = type(dataset) is TensorDataset and collate_fn is None and batch_size is not None

        if sampler is None:
            sampler = (
                RandomSampler(source, generator=self.generator) if self.shuffle else SequentialSampler(source)
            )
        if batch_sampler is None and batch_size is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)

    # ------------------------------------------------------------------ fast path set-up
    def _setup_fast(self, dataset, index_map, plan):
        name = getattr(dataset, "name", type(dataset).__name__)
        images = np.asarray(dataset.data)
        if images.ndim == 3:  # greyscale (N, H, W) -> (N, 1, H, W), a free view
            images = images[:, None]
        elif images.ndim == 4:  # channels last (N, H, W, C) -> (N, C, H, W), one copy up front
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        else:
            raise ValueError(
                "DataLoader: dataset images must have layout (N, H, W) or (N, H, W, C), "
                f"got shape {images.shape}"
            )
        labels = np.asarray(dataset.targets)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"DataLoader: {images.shape[0]} images but labels of shape {labels.shape}")
        classes = getattr(dataset, "classes", None)
        n_classes = len(classes) if classes else None
        check_labels(
            labels if index_map is None else labels[index_map], n_classes, f"DataLoader: dataset {name}"
        )
        labels = labels.astype(np.int64, copy=False)
        self._plan, self._index_map = plan, index_map
        self.images, self.labels = images, labels
        self.on_device = self.device.type == "cpu" or self._fits_on_gpu(images.nbytes + labels.nbytes)
        if self.on_device:
            self.images, self.labels = to_device(images, self.device), to_device(labels, self.device)
            if index_map is not None:
                self._index_map = to_device(index_map, self.device)

    def _check_labels(self):
        found = targets_of(self.dataset)
        if found is not None:
            targets, n_classes = found
            name = getattr(self.dataset, "name", type(self.dataset).__name__)
            check_labels(targets, n_classes, f"DataLoader: dataset {name}")

    def _fits_on_gpu(self, nbytes):
        cp = cupy_module()
        with cp.cuda.Device(self.device.index):
            free, _ = cp.cuda.runtime.memGetInfo()
        return nbytes <= _GPU_SHARE * free

    # ------------------------------------------------------------------ iteration
    def __len__(self):
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def _index_batches(self, as_array):
        """The index batches of one epoch: NumPy int64 arrays (fast path) or lists."""
        bs = self.batch_sampler
        if bs is None:  # batch_size=None: single indices
            yield from iter(self.sampler)
            return
        order = getattr(bs.sampler, "order", None) if type(bs) is BatchSampler else None
        if order is not None:  # minicnn's own samplers: the epoch's order in one array, then slices
            order = order()
            n, b = len(order), bs.batch_size
            stop = n - n % b if bs.drop_last else n
            for start in range(0, stop, b):
                chunk = order[start : start + b]
                yield chunk if as_array else chunk.tolist()
            return
        for batch in bs:
            yield np.asarray(batch, dtype=np.int64) if as_array else list(batch)

    def __iter__(self):
        if self._fast:
            return self._iter_fast()
        return self._iter_samples()

    def _iter_fast(self):
        for idx in self._index_batches(as_array=True):
            yield self._batch(idx)

    def _batch(self, idx):
        if self.on_device:
            idx = to_device(idx, self.device)
            if self._index_map is not None:
                idx = self._index_map[idx]
            x, y = self.images[idx], self.labels[idx]
        else:  # dataset kept in host memory: gather there, send the uint8 batch
            if self._index_map is not None:
                idx = self._index_map[idx]
            x, y = to_device(self.images[idx], self.device), to_device(self.labels[idx], self.device)
        x = x.astype(self.dtype) / 255.0  # a Python float keeps float32 float32
        for t in self._plan:
            x = t.apply(x, self.generator)
        x = self._batch_transform(x)
        return Tensor._make(x), Tensor._make(y)

    def _batch_transform(self, x):
        if self.transform is None:
            return x
        if isinstance(self.transform, Transform):
            return self.transform.apply(x, self.generator)
        return self.transform(x)

    def _fetcher(self):
        if self._tensor_gather:
            return _TensorGather(self.dataset)
        return Fetcher(self.dataset, self.collate_fn, batched=self.batch_sampler is not None)

    def _workers(self, base_seed):
        ctx = self.multiprocessing_context
        if ctx == "thread":
            return ThreadWorkers(self._fetcher(), self.num_workers, self.worker_init_fn, base_seed)
        if ctx is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = "fork" if sys.platform.startswith("linux") and "fork" in methods else None
        if ctx is None or isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        return ProcessWorkers(self._fetcher(), self.num_workers, self.worker_init_fn, base_seed, ctx)

    def _iter_samples(self):
        epoch_seed = int(self.generator.integers(2**63))
        batches = self._index_batches(as_array=self._tensor_gather)
        tasks = ((k, idx, (epoch_seed, k)) for k, idx in enumerate(batches))
        pool = None
        if self.num_workers == 0:
            fetch = self._fetcher()
            results = (fetch(idx, seed) for _, idx, seed in tasks)
        else:
            pool = self._pool if self._pool is not None else self._workers(epoch_seed)
            if self.persistent_workers:
                self._pool = pool
            results = pool.run(tasks, self.prefetch_factor * self.num_workers, self.timeout)
        try:
            for batch in results:
                yield self._finish(batch)
        finally:
            results.close()
            if pool is not None and not self.persistent_workers:
                pool.shutdown()

    def _finish(self, batch):
        """Move a collated batch to the device, then apply the loader's batch ``transform`` to its inputs."""
        batch = _to_device(batch, self.device)
        if self.transform is not None:
            if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
                first = Tensor._make(self._batch_transform(batch[0].array))
                batch = [first, *batch[1:]] if isinstance(batch, list) else (first, *batch[1:])
            elif isinstance(batch, Tensor):
                batch = Tensor._make(self._batch_transform(batch.array))
        return batch

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            self._pool = None
            try:
                pool.shutdown()
            except Exception:  # interpreter shutting down
                pass

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict:
        """The shuffling/augmentation generator's state (JSON-serialisable)."""
        return {"seed": self.seed, "generator": self.generator.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (into the same generator object, which the sampler shares)."""
        self.seed = None if state["seed"] is None else int(state["seed"])
        self.generator.bit_generator.state = state["generator"]

    def __repr__(self):
        return (
            f"DataLoader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, num_workers={self.num_workers}, device='{self.device}', "
            f"transform={self.transform!r})"
        )


class _TensorGather:
    """A ``TensorDataset`` batch by one gather per tensor: what ``default_collate`` of the samples gives."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, indices, seed):
        out = []
        for t in self.dataset.tensors:
            idx = indices if device_of(t.array).type == "cpu" else to_device(indices, device_of(t.array))
            out.append(Tensor._make(t.array[idx]))
        return out


def _to_device(obj, device):
    if isinstance(obj, Tensor):
        return obj if device_of(obj.array) == device else Tensor._make(to_device(obj.array, device))
    if isinstance(obj, list):
        return [_to_device(o, device) for o in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj
