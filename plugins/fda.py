"""``fda``: Fourier Domain Adaptation (Yang & Soatto, "FDA: Fourier Domain Adaptation
for Semantic Segmentation", CVPR 2020, arXiv 2004.05498).

Each synthetic image keeps its Fourier phase (where edges and shapes are) and
takes the low-frequency amplitude (global tone, illumination, shading) of a
target training image drawn at random. With the spectrum centred (``fftshift``),
the swapped window is the square of half-size ``b = floor(min(H, W) * L)``
around the zero frequency, ``(2b + 1)`` frequencies on a side, as in the
authors' NumPy version. No training: fit only stores the target windows.

Choices the image size forced (config fields):

* ``window`` (L) defaults to 0.1, not the authors' 0.01: on 35x55 eyes 0.01
  gives ``b = 0``, a no-op. 0.1 gives ``b = 3`` (a 7x7 window: up to 3 cycles
  per image each way, i.e. illumination gradients and shading, never the iris
  or eyelid edges) on eyes and ``b = 6`` on 64x64 hands: the same share of the
  spectrum the paper swaps with its L = 0.09 setting on 1024x512 frames.
  A window with ``b = 0`` or ``2b + 1`` beyond the image is a ConfigError.
* The transform runs on intensities in [0, 1], as the authors' pixel values
  are non-negative: in [-1, 1] the zero-frequency term can be negative, and
  swapping its magnitude would flip the sign of the target's mean brightness.
  Outputs are clamped back into [-1, 1].
* ``targets``: windows of at most this many target images are kept (a seeded
  random subset beyond it), so the fitted state stays small at the paper budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.config import BUDGETS, Checked, at_least
from sim2real_bench.data import Samples
from sim2real_bench.errors import ConfigError
from sim2real_bench.refiner import FitContext, Refiner


@dataclass(frozen=True)
class FDAConfig(Checked):
    """Settings of ``fda``."""

    window: float = 0.1
    """L: the swapped window's half-size as a share of ``min(H, W)`` (b = floor(min(H, W) * L))."""
    targets: int = 50_000
    """Target images whose low-frequency amplitudes are kept to draw from."""

    section: ClassVar[str] = "fda"

    def problems(self) -> list[str]:
        problems = at_least(self, 1, "targets")
        if not 0 < self.window < math.inf:
            problems.append(f"window L={self.window} changes nothing; use a positive L (e.g. --set refiner.window=0.1)")
        return problems


class FDA(Refiner):
    """Swap each image's low-frequency amplitude spectrum for a random target image's."""

    Config = FDAConfig
    presets = {budget: FDAConfig() for budget in BUDGETS}

    def __init__(self, config: FDAConfig, image_shape: tuple[int, int, int]) -> None:
        _, height, width = image_shape
        side = min(height, width)
        half = math.floor(side * config.window)
        # The window's size in frequencies depends on the images, so this check waits for them.
        if half < 1:
            raise ConfigError(
                f"fda: window L={config.window} gives a low-frequency square of half-size b = floor({side} * L) = "
                f"{half} on {height}x{width} images, which changes nothing; use L >= {1 / side:.3f} "
                f"(e.g. --set refiner.window=0.1)")
        if 2 * half + 1 > side:
            raise ConfigError(f"fda: window L={config.window} gives a {2 * half + 1}-frequency square, wider than "
                              f"{height}x{width} images; use L <= {(side - 1) / 2 / side:.3f}")
        super().__init__(config, image_shape)
        self.half = half
        centre_h, centre_w = height // 2, width // 2  # the zero frequency after fftshift, odd or even size
        self.rows = slice(centre_h - half, centre_h + half + 1)
        self.columns = slice(centre_w - half, centre_w + half + 1)
        self.amplitudes = torch.ones(1, image_shape[0], 2 * half + 1, 2 * half + 1)
        self.generator = torch.Generator().manual_seed(0)

    def _spectrum(self, images: Tensor) -> Tensor:
        return torch.fft.fftshift(torch.fft.fft2((images.float() + 1) / 2), dim=(-2, -1))

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Keep the low-frequency amplitudes of (up to ``targets``) target images."""
        self.generator.manual_seed(context.seed)
        images = target.images
        if len(images) > self.config.targets:
            images = images[torch.randperm(len(images), generator=self.generator)[: self.config.targets]]
        self.amplitudes = torch.cat([
            self._spectrum(images[start : start + 4096])[..., self.rows, self.columns].abs()
            for start in range(0, len(images), 4096)])
        return len(images)

    def refine(self, images: Tensor) -> Tensor:
        spectrum = self._spectrum(images)
        drawn = torch.randint(len(self.amplitudes), (len(images),), generator=self.generator)
        window = spectrum[..., self.rows, self.columns]
        swapped = torch.polar(self.amplitudes[drawn.to(self.amplitudes.device)].to(images.device), window.angle())
        spectrum[..., self.rows, self.columns] = swapped
        unit = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real
        return (unit * 2 - 1).clamp(-1, 1).to(images.dtype)

    def to(self, device: torch.device) -> None:
        self.amplitudes = self.amplitudes.to(device)

    def state_dict(self) -> dict[str, Tensor]:
        return {"amplitudes": self.amplitudes}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.amplitudes = state["amplitudes"]
