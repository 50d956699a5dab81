"""``none``: the identity refiner; the task trains on raw synthetic images.

The row every method is measured against: *gap closed* is relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from sim2real_bench.config import BUDGETS
from sim2real_bench.refiner import Refiner


@dataclass(frozen=True)
class IdentityConfig:
    """``none`` has no settings."""


class Identity(Refiner):
    """Return the synthetic images unchanged."""

    Config = IdentityConfig
    presets = {budget: IdentityConfig() for budget in BUDGETS}

    def refine(self, images: Tensor) -> Tensor:
        return images
