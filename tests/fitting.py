"""What the tests of trained refiners share: a fit context on the CPU with nothing tracked."""

from __future__ import annotations

from pathlib import Path

from sim2real_bench.device import resolve_compute
from sim2real_bench.refiner import FitContext
from sim2real_bench.tracking import Tracker

EYES = (1, 35, 55)
"""``(C, H, W)`` of the gaze task's eye crops."""


def context(folder: Path) -> FitContext:
    """A seed-0 fit on the CPU in fp32 that checkpoints into ``folder``, logs nothing and shows no progress bar."""
    return FitContext(resolve_compute("cpu", "fp32"), Tracker.disabled(), 0, folder, progress=False)
