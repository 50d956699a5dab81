"""``example-dots``: a toy gaze domain, a dark disc on a bright field.

The disc sits right of the centre for positive yaw and above it for positive
pitch, so a gaze regressor can learn it, though the images look nothing like
eyes. A :class:`~sim2real_bench.data.ProceduralDataset` only renders chunks
from the seeded generator it is given; splits and determinism come with it.
"""

from __future__ import annotations

import torch

from sim2real_bench.data import ProceduralDataset, Samples

HEIGHT, WIDTH = 35, 55
"""The gaze task's input size."""
TRAVEL = 20.0
"""Pixels the disc moves per radian of gaze."""


class Dots(ProceduralDataset):
    """A dark disc whose offset encodes gaze (pitch, yaw): 35x55 grayscale, a toy."""

    label_kind = "gaze"
    label_names = ("pitch", "yaw")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, HEIGHT, WIDTH)

    def generate(self, count: int, generator: torch.Generator) -> Samples:
        pitch = torch.empty(count, 1, 1).uniform_(-0.35, 0.35, generator=generator)
        yaw = torch.empty(count, 1, 1).uniform_(-0.5, 0.5, generator=generator)
        ys = torch.arange(HEIGHT, dtype=torch.float32).view(1, -1, 1) + 0.5
        xs = torch.arange(WIDTH, dtype=torch.float32).view(1, 1, -1) + 0.5
        distance = torch.hypot(xs - WIDTH / 2 - TRAVEL * yaw, ys - HEIGHT / 2 + TRAVEL * pitch)
        disc = torch.sigmoid((6.0 - distance) * 2)
        noise = 0.05 * torch.randn(count, HEIGHT, WIDTH, generator=generator)
        images = (0.8 - 1.5 * disc + noise).clamp(-1, 1).unsqueeze(1)
        return Samples(images, torch.cat([pitch, yaw], 1).flatten(1))
