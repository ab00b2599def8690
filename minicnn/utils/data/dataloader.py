"""``minicnn.utils.data.dataloader``: the names scripts import from ``torch.utils.data.dataloader``."""

from minicnn.data import DataLoader, default_collate, default_convert, get_worker_info

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]
