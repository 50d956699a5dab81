"""SIGTERM handled like Ctrl-C, so ``kill PID`` leaves no RUNNING run and no partial folder behind.

Every cleanup path of the project (``tracking.tracked_run`` marking a run
KILLED, exports removing their partial folder, sweeps closing their parent)
is written for :class:`KeyboardInterrupt`; delivering SIGTERM as a subclass of
it reuses all of them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; raised in the main thread like Ctrl-C's interrupt."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # One is enough: a second SIGTERM (a supervisor repeating itself) must not cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the body runs, SIGTERM raises :class:`Terminated` and SIGINT :class:`KeyboardInterrupt` in the main
    thread; the old handlers come back after.

    SIGINT is set too because a process started in the background by a
    non-interactive shell inherits it ignored, and ``kill -INT PID`` must still stop it.
    Outside the main thread (Python only delivers signals there) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_terminated),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for a short cleanup that must finish (stopping a child server)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
