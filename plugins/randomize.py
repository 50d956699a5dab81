"""``randomize``: domain randomization of the synthetic images at training time.

Instead of making synthetic images look like the target, randomize the nuisance
factors a renderer leaves clean (illumination, blur, noise, compression, tone)
so widely that the target looks like one more variation (Tobin et al., "Domain
Randomization for Transferring Deep Neural Networks from Simulation to the Real
World", IROS 2017; Tremblay et al., CVPR Workshops 2018). The augmentations are
kornia's (Riba et al., WACV 2020), drawn afresh for every batch the task sees
(``per_batch``): the runner passes :meth:`Randomize.refine` to the task as its
training-batch transform, so no image is ever seen twice with the same draw.

Only photometric augmentations are registered: a geometric one (flip, affine,
crop) would move the eye or the hand without moving its label. The target is
never looked at, so ``fit`` is a no-op: this is the baseline that needs no
target images at all. kornia's diffusion-based dissolving augmentation is left
out on purpose: it downloads a Stable Diffusion pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from sim2real_bench.config import BUDGETS, Checked
from sim2real_bench.refiner import Refiner

class OnRGB(nn.Module):
    """Run an RGB-only augmentation on grayscale images: replicate to three channels, average back."""

    def __init__(self, augmentation: nn.Module) -> None:
        super().__init__()
        self.augmentation = augmentation

    def forward(self, images: Tensor) -> Tensor:
        """Augment ``(N, 1, H, W)`` or ``(N, 3, H, W)`` images in [0, 1]."""
        if images.shape[1] == 3:
            return self.augmentation(images)
        return self.augmentation(images.expand(-1, 3, -1, -1)).mean(1, keepdim=True)


AUGMENTATIONS: dict[str, Callable[[], nn.Module]] = {
    # Strengths are in kornia's [0, 1] intensity units, chosen so that one draw stays a
    # plausible camera image of a 35x55 eye or a 64x64 depth crop.
    "linear_illumination": lambda: K.RandomLinearIllumination(gain=(0.01, 0.2), sign=(-1.0, 1.0), p=0.5),
    "corner_illumination": lambda: K.RandomLinearCornerIllumination(gain=(0.01, 0.2), sign=(-1.0, 1.0), p=0.5),
    "gaussian_illumination": lambda: K.RandomGaussianIllumination(gain=(0.01, 0.15), p=0.5),
    "plasma_shadow": lambda: K.RandomPlasmaShadow(roughness=(0.1, 0.7), shade_intensity=(-0.5, 0.0), p=0.3),
    "brightness": lambda: K.RandomBrightness(brightness=(0.8, 1.2), p=0.5),
    "contrast": lambda: K.RandomContrast(contrast=(0.6, 1.4), p=0.5),
    "gamma": lambda: K.RandomGamma(gamma=(0.6, 1.6), p=0.5),
    "gaussian_blur": lambda: K.RandomGaussianBlur(kernel_size=(5, 5), sigma=(0.1, 1.5), p=0.5),
    "motion_blur": lambda: K.RandomMotionBlur(kernel_size=(3, 5), angle=180.0, direction=(-1.0, 1.0), p=0.3),
    "box_blur": lambda: K.RandomBoxBlur(kernel_size=(3, 3), p=0.3),
    "sharpness": lambda: K.RandomSharpness(sharpness=(0.0, 1.0), p=0.3),
    "gaussian_noise": lambda: K.RandomGaussianNoise(std=0.03, p=0.5),
    "salt_and_pepper": lambda: K.RandomSaltAndPepperNoise(amount=(0.001, 0.01), p=0.2),
    "jpeg": lambda: OnRGB(K.RandomJPEG(jpeg_quality=(30.0, 95.0), p=0.3)),
    "erasing": lambda: K.RandomErasing(scale=(0.01, 0.04), ratio=(0.3, 3.3), value=0.5, p=0.2),
}
"""Every augmentation a pipeline may name: name -> factory of a fresh kornia module."""

DEFAULT_PIPELINE = (
    "linear_illumination", "gaussian_illumination", "brightness", "contrast", "gamma", "gaussian_blur",
    "motion_blur", "sharpness", "gaussian_noise", "jpeg", "erasing",
)
"""Scene, then camera, then sensor, then codec: the order an image is formed in. ``plasma_shadow``
is registered but not a default: it costs about as much as all the others together."""


@dataclass(frozen=True)
class RandomizeConfig(Checked):
    """Settings of ``randomize``."""

    pipeline: tuple[str, ...] = DEFAULT_PIPELINE
    """Names from :data:`AUGMENTATIONS`, applied in this order (each with its own probability)."""

    section: ClassVar[str] = "randomize"

    def problems(self) -> list[str]:
        unknown = [name for name in self.pipeline if name not in AUGMENTATIONS]
        if unknown:
            return [f"unknown augmentation(s) {', '.join(map(repr, unknown))}; known: {', '.join(AUGMENTATIONS)}"]
        if not self.pipeline:
            return [f"the pipeline is empty; name at least one of {', '.join(AUGMENTATIONS)}"]
        return []


class Randomize(Refiner):
    """Photometric domain randomization with fresh draws for every training batch."""

    Config = RandomizeConfig
    presets = {budget: RandomizeConfig() for budget in BUDGETS}
    per_batch = True

    def __init__(self, config: RandomizeConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.augment = nn.Sequential(*(AUGMENTATIONS[name]() for name in config.pipeline))

    @torch.no_grad()
    def refine(self, images: Tensor) -> Tensor:
        unit = (images.float() + 1) / 2  # kornia's photometric augmentations expect [0, 1]
        return (self.augment(unit).clamp(0, 1) * 2 - 1).to(images.dtype)

    def to(self, device: torch.device) -> None:
        self.augment.to(device)
