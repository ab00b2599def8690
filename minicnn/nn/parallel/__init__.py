"""``minicnn.nn.parallel``: ``DistributedDataParallel`` (data parallelism across processes)."""

from minicnn.nn.parallel.distributed import DistributedDataParallel
