"""``minicnn.utils.data``: the same names as ``torch.utils.data`` (``Dataset``, ``DataLoader``,
``TensorDataset``, ``random_split``...), provided by :mod:`minicnn.data`."""

from minicnn.data import (  # noqa: F401
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)
