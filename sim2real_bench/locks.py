"""One process at a time: exclusive, non-blocking file locks that name their holder.

A lock is an ``flock`` on a small file holding the holder's pid. The kernel
releases it when the holder exits, however it exits (a crash or SIGKILL leaves
no stale lock), and the file itself stays: unlinking it would let a waiting
process lock a name nobody else sees.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def held(lock: Path, refused: Callable[[str], Exception]) -> Iterator[None]:
    """Hold ``lock`` for a block; when another process holds it, raise ``refused(its pid)`` at once.

    Raises ``OSError`` when the lock file cannot be created (callers say which folder to use instead).
    """
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refused(os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
