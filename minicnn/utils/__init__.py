"""``minicnn.utils``: PyTorch's ``torch.utils`` names, so ``from torch.utils.data import DataLoader``
ports by renaming the import (``from minicnn.utils.data import DataLoader``)."""

from minicnn.utils import data
