"""``minicnn.data``: datasets loaded once as uint8 arrays, a batch ``DataLoader``, batch augmentation, checks.

::

    from minicnn.data import MNIST, DataLoader, Normalize
    train = MNIST("./data", train=True)                  # uint8 (60000, 28, 28) + int64 labels
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0,
                        transform=Normalize((0.1307,), (0.3081,)))
    for images, labels in loader:                         # float32 (64, 1, 28, 28), int64 (64,)
        ...
"""

from minicnn.data.checks import channel_stats, class_balance, sample_grid
from minicnn.data.datasets import CIFAR10, MNIST, ArraysDataset, DataError, FashionMNIST, ImageFolder
from minicnn.data.loader import DataLoader
from minicnn.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, Transform
