"""``synth-eyes``: the clean synthetic eye renderer (the role UnityEyes plays in the paper)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.plugins.eyes.domain import EyeAlbedos, EyeDomain, shade_eye
from sim2real_bench.plugins.eyes.geometry import EyeGeometry, EyeLayers, trace


class SynthEyes(EyeDomain):
    """Clean synthetic eye crops, 35x55 grayscale, labeled with gaze (pitch, yaw) in radians.

    Only the base shading of :func:`shade_eye`: flat randomized albedos, no texture,
    no camera. Labels follow the convention in :mod:`sim2real_bench.plugins.eyes.geometry`.
    """

    block_size: ClassVar[int] = 128
    """Images traced and shaded at a time. Each of the about 90 per-pixel steps of a 1,024-image chunk
    writes 7.9 MB, more than a core's cache holds; 128 images (1 MB) stay in it, and a chunk renders
    about a fifth faster (``results/speed.md``). Every step is per pixel, so the images are the same."""

    def form_image(self, geometry: EyeGeometry, layers: EyeLayers, generator: torch.Generator) -> Tensor:
        return shade_eye(layers, EyeAlbedos.draw(len(geometry), generator))

    def render(self, geometry: EyeGeometry, generator: torch.Generator) -> Tensor:
        """:meth:`form_image` of the whole chunk, block by block: the albedos are drawn first, as it draws them."""
        albedos = EyeAlbedos.draw(len(geometry), generator)
        blocks = [slice(start, start + self.block_size) for start in range(0, len(geometry), self.block_size)]
        return torch.cat([shade_eye(trace(geometry[b], self.height, self.width), albedos[b]) for b in blocks])
