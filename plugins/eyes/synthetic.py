"""``synth-eyes``: the clean synthetic eye renderer (the role UnityEyes plays in the paper)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim2real_bench.plugins.eyes.domain import EyeDomain, shade_eye
from sim2real_bench.plugins.eyes.geometry import EyeGeometry, EyeLayers


class SynthEyes(EyeDomain):
    """Clean synthetic eye crops, 35x55 grayscale, labeled with gaze (pitch, yaw) in radians.

    Only the base shading of :func:`shade_eye`: flat randomized albedos, no texture,
    no camera. Labels follow the convention in :mod:`sim2real_bench.plugins.eyes.geometry`.
    """

    def form_image(self, geometry: EyeGeometry, layers: EyeLayers, generator: torch.Generator) -> Tensor:
        return shade_eye(layers, generator)
