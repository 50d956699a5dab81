"""``example-blur``: blur synthetic images until they are as smooth as the target's.

Real captures are softer than clean renders (defocus, motion, compression).
This refiner measures softness as the mean difference between neighbouring
pixels relative to the image's contrast, and fits, by bisection, the Gaussian
blur that makes synthetic images as smooth as the target images. It changes
sharpness only, never geometry, so the labels stay true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from sim2real_bench.config import Checked, at_least, positive
from sim2real_bench.data import Samples
from sim2real_bench.refiner import FitContext, Refiner


@dataclass(frozen=True)
class BlurConfig(Checked):
    """Settings of ``example-blur``."""

    sigma: float = -1.0
    """Blur in pixels; negative: fit it to the target images."""
    max_sigma: float = 4.0
    """The largest blur the fit considers."""
    fit_images: int = 2048
    """Synthetic and target images the fit measures."""
    steps: int = 12
    """Bisection steps: the fitted sigma is within max_sigma / 2**steps."""

    section: ClassVar[str] = "example-blur"
    """The name its ``ConfigError`` messages start with."""

    def problems(self) -> list[str]:
        """What is wrong with these settings; :class:`Checked` raises them as one ``ConfigError`` when made."""
        finite = [] if math.isfinite(self.sigma) else [f"sigma must be a finite number, got {self.sigma}"]
        return [*finite, *positive(self, "max_sigma"), *at_least(self, 1, "fit_images", "steps")]


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Blur every channel of ``(N, C, H, W)`` images with a Gaussian of ``sigma`` pixels."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def roughness(images: Tensor) -> float:
    """Mean absolute difference of neighbouring pixels over each image's contrast: what blur lowers."""
    steps = images.diff(dim=-1).abs().mean((1, 2, 3)) + images.diff(dim=-2).abs().mean((1, 2, 3))
    return float((steps / images.std((1, 2, 3)).clamp_min(1e-6)).mean())


class Blur(Refiner):
    """Gaussian blur fitted so that synthetic images are as smooth as the target's."""

    Config: ClassVar[type] = BlurConfig
    refined_cached: ClassVar[bool] = True
    """Keep the refined training set in the cache: a blur is cheap, but this shows how a costly refiner opts in."""
    presets: ClassVar[dict[str, BlurConfig]] = {
        "smoke": BlurConfig(fit_images=256, steps=6),
        "quick": BlurConfig(),
        "paper": BlurConfig(fit_images=16384, steps=16),
    }

    sigma: float = 0.0
    """The blur ``refine`` applies, in pixels (set by ``fit`` or ``load_state_dict``)."""

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Bisect sigma until blurred synthetic images are as rough as the target images."""
        if self.config.sigma >= 0:
            self.sigma = self.config.sigma
            return 0
        synthetic = source.images[: self.config.fit_images].float()
        goal = roughness(target.images[: self.config.fit_images].float())
        low, high = 0.0, self.config.max_sigma
        for _ in range(self.config.steps):
            middle = (low + high) / 2
            if roughness(gaussian_blur(synthetic, middle)) > goal:
                low = middle
            else:
                high = middle
        self.sigma = (low + high) / 2 if roughness(synthetic) > goal else 0.0
        return len(synthetic) + min(len(target), self.config.fit_images)

    def refine(self, images: Tensor) -> Tensor:
        """Blur ``(N, C, H, W)`` images in the task's input space; a blur of [-1, 1] images stays in [-1, 1]."""
        return gaussian_blur(images, self.sigma)

    def state_dict(self) -> dict[str, float]:
        return {"sigma": self.sigma}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.sigma = float(state["sigma"])
