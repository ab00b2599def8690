"""``minicnn.data``: datasets, ``DataLoader``, transforms, checks (named as in torch.utils.data, torchvision).

::

    from minicnn.data import MNIST, DataLoader, Normalize
    train = MNIST("./data", train=True)                  # uint8 (60000, 28, 28) + int64 labels
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0,
                        transform=Normalize((0.1307,), (0.3081,)))
    for images, labels in loader:                         # float32 (64, 1, 28, 28), int64 (64,)
        ...

Any map-style dataset works too (a ``Dataset`` subclass, a list of ``(x, y)`` pairs, a
``TensorDataset``), collated per sample, with ``num_workers`` worker processes in parallel.
"""

from minicnn.data import transforms
from minicnn.data.checks import channel_stats, class_balance, sample_grid
from minicnn.data.collate import default_collate, default_convert
from minicnn.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from minicnn.data.datasets import CIFAR10, MNIST, ArraysDataset, DataError, FashionMNIST, ImageFolder
from minicnn.data.loader import DataLoader
from minicnn.data.sampler import (
    BatchSampler,
    DistributedSampler,
    Generator,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
from minicnn.data.transforms import (
    Compose,
    Lambda,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    ToTensor,
    Transform,
)
from minicnn.data.workers import get_worker_info
