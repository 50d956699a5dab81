"""``histmatch``: global intensity statistics matching, the simplest baseline.

Each synthetic image's histogram is mapped onto the pooled histogram of the
target training images (classic histogram specification, as
``skimage.exposure.match_histograms`` does: ties map to one value, so flat
synthetic regions stay flat). ``mode="reinhard"`` matches only the mean and
standard deviation instead (Reinhard et al. 2001 on grayscale). A method that
closes the sim-to-real gap must beat this: it changes intensities, never structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.config import BUDGETS, Checked, at_least, one_of
from sim2real_bench.data import Samples
from sim2real_bench.refiner import FitContext, Refiner

MODES = ("histogram", "reinhard")


@dataclass(frozen=True)
class HistMatchConfig(Checked):
    """Settings of ``histmatch``."""

    mode: str = "histogram"
    """``histogram`` (full histogram specification) or ``reinhard`` (mean and std)."""
    levels: int = 256
    """Intensity levels of the histograms."""

    section: ClassVar[str] = "histmatch"

    def problems(self) -> list[str]:
        return [*one_of(self, "mode", MODES), *at_least(self, 2, "levels")]


class HistMatch(Refiner):
    """Match each synthetic image's intensity histogram to the target domain's."""

    Config = HistMatchConfig
    presets = {budget: HistMatchConfig() for budget in BUDGETS}

    def __init__(self, config: HistMatchConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.quantiles = torch.linspace(-1, 1, config.levels)
        self.mean, self.std = torch.tensor(0.0), torch.tensor(1.0)

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        pixels = target.images.flatten().float()
        if pixels.numel() > 2**24:
            pixels = pixels[torch.randperm(pixels.numel(), generator=torch.Generator().manual_seed(context.seed))[: 2**24]]
        probabilities = (torch.arange(self.config.levels, dtype=torch.float32) + 0.5) / self.config.levels
        self.quantiles = torch.quantile(pixels, probabilities)
        self.mean, self.std = pixels.mean(), pixels.std()
        return len(target)

    def refine(self, images: Tensor) -> Tensor:
        if self.config.mode == "reinhard":
            flat = images.flatten(1)
            mean, std = flat.mean(1).view(-1, 1, 1, 1), flat.std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
            return ((images - mean) / std * self.std.to(images) + self.mean.to(images)).clamp(-1, 1)
        levels = self.config.levels
        bins = ((images.float().flatten(1) + 1) / 2 * levels).long().clamp(0, levels - 1)
        histogram = torch.zeros(len(images), levels, device=images.device).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float32))
        cdf = histogram.cumsum(1) / bins.shape[1]
        midpoint = cdf - histogram / (2 * bins.shape[1])
        quantiles = self.quantiles.to(images.device)
        position = (midpoint * levels - 0.5).clamp(0, levels - 1)
        low = position.floor().long()
        high = (low + 1).clamp(max=levels - 1)
        weight = position - low
        mapping = quantiles[low] * (1 - weight) + quantiles[high] * weight
        return mapping.gather(1, bins).view_as(images).to(images.dtype)

    def state_dict(self) -> dict[str, Tensor]:
        return {"quantiles": self.quantiles, "mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.quantiles, self.mean, self.std = state["quantiles"], state["mean"], state["std"]
