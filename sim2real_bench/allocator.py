"""Keep freed memory in the process instead of handing it back to the kernel after every large tensor.

The stages here allocate and free many tensors of a few megabytes each: a renderer's per-pixel fields of
a 1,024-image chunk are 8 MB apiece, and so are a training step's activations. glibc's malloc serves blocks
that large with ``mmap`` and gives the memory back on ``free`` (or trims it off the heap once more than
twice the last such block lies free), so the next tensor faults every page in again: 2,048 page faults
per 8 MB, zeroed by the kernel. On a 2-core box that was 39-59 s of a quick gaze run's 3 minutes.
Raising both thresholds keeps freed blocks on the heap for reuse, the effect PyTorch's CPU tuning guide
gets from jemalloc or tcmalloc, without a preloaded library. Outputs do not change: only where memory
comes from does.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""``mallopt`` parameter numbers of glibc's ``malloc.h``."""
MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks from this size up are still mapped on their own: glibc's largest allowed value on 64-bit systems.
Datasets and caches, the tensors above it, live for a whole stage, so mapping them costs nothing that repeats."""
TRIM_THRESHOLD_BYTES = 256 << 20
"""Free memory at the heap's top that is kept before trimming: a few stages' worth of working tensors."""


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks up to :data:`MMAP_THRESHOLD_BYTES`; ``False`` where it cannot.

    Other C libraries (macOS, musl, Windows) are left as they are. Calling it again changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                   TRIM_THRESHOLD_BYTES))
