"""What minicnn does about memory, in one place: it asks glibc's malloc to keep freed memory.

Why. A training step allocates the same activation-sized arrays every time (each op's output and
input gradient, several MiB each) and frees them a moment later. With glibc's defaults a block of
that size comes from ``mmap`` and goes back to the operating system when freed, so the next step
gets fresh pages, and the first write to every 4 KiB page is a page fault. Measured on the 2-core
machine of docs/benchmarks.md (kernels tier, float32): the MNIST CNN's step made 11,800 page faults
(57 -> 34 ms per step without them), the CIFAR CNN's 16,700 (186 -> 132 ms).

What. At import, on Linux with glibc only, two of malloc's documented tunables (``mallopt``):
``M_MMAP_THRESHOLD`` = 32 MiB (its maximum: blocks up to that size come from the heap, not from
``mmap``) and ``M_TRIM_THRESHOLD`` = 1 GiB (free memory at the top of the heap is given back to
the system only beyond that). Freed blocks then stay in the process and the next step reuses them:
0-1 page faults per step. Nothing in minicnn tracks which array is alive; malloc owns the memory,
exactly as before. The price is that up to ~1 GiB of freed memory stays mapped in the process
(resident only where it was used), as a GPU caching allocator keeps its blocks.

The whole process shares malloc, so this applies to everything in it. ``MINICNN_MALLOC=system``
in the environment leaves glibc's settings alone; so does setting glibc's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` variables.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

tuned = False  # whether the settings were applied in this process


def tune_malloc() -> bool:
    """Apply the settings above once (Linux with glibc only); returns whether they are in effect."""
    global tuned
    if tuned:
        return True
    if os.environ.get("MINICNN_MALLOC", "").strip().lower() == "system":
        return False
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False  # the user tuned glibc themselves
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    tuned = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and tuned
    return tuned
