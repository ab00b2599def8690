"""``minicnn.xpu``: the probe scripts call to choose an Intel GPU (``torch.xpu.is_available()``).
minicnn has no XPU backend: ``is_available()`` is False and ``device_count()`` 0, so a script's
``elif use_xpu:`` branch is never taken and it falls through to the next device."""


def is_available() -> bool:
    """False: minicnn does not run on Intel GPUs (XPU)."""
    return False


def device_count() -> int:
    """0: no XPU devices."""
    return 0
