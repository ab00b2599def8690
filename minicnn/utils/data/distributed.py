"""``minicnn.utils.data.distributed``: where ``torch.utils.data.distributed`` keeps ``DistributedSampler``."""

from minicnn.data import DistributedSampler

__all__ = ["DistributedSampler"]
