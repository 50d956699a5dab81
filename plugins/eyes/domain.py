"""What both eye domains share: the crop, the geometry draw, the label kind and
the base shading of eyeball and skin.

The base shading is the clean renderer's whole image model: sclera shaded by the
eyeball's curvature, an iris darkening toward its limbus, a dark pupil, the
upper lid's soft shadow on the eyeball, skin darkening into the socket, albedos
randomized per image as a renderer's materials are. The stand-in for real
captures starts from the same shading and adds what a camera and a real face add.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.data import ProceduralDataset, Samples
from sim2real_bench.plugins.eyes.geometry import EyeGeometry, EyeLayers, sample_geometry, trace
from sim2real_bench.plugins.imaging import uniform


def smoothstep(low: float, high: float, value: Tensor) -> Tensor:
    """0 below ``low``, 1 above ``high``, a smooth ramp between."""
    t = ((value - low) / (high - low)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def lerp(start: Tensor, end: Tensor, weight: Tensor) -> Tensor:
    """``start`` where ``weight`` is 0, ``end`` where it is 1."""
    return start + (end - start) * weight


@dataclass(frozen=True)
class EyeAlbedos:
    """Per-image albedos of the base shading, each ``(N, 1, 1, 1)``: a renderer's randomized materials."""

    skin: Tensor
    sclera: Tensor
    iris: Tensor
    pupil: Tensor

    @classmethod
    def draw(cls, count: int, generator: torch.Generator) -> EyeAlbedos:
        return cls(
            skin=uniform(count, 0.45, 0.75, generator),
            sclera=uniform(count, 0.72, 0.92, generator),
            iris=uniform(count, 0.12, 0.45, generator),
            pupil=uniform(count, 0.02, 0.08, generator),
        )

    def __getitem__(self, images: slice) -> EyeAlbedos:
        return EyeAlbedos(self.skin[images], self.sclera[images], self.iris[images], self.pupil[images])


def shade_eye(
    layers: EyeLayers,
    albedos: EyeAlbedos,
    iris_texture: Tensor | float = 1.0,
    sclera_texture: Tensor | float = 1.0,
    skin_texture: Tensor | float = 1.0,
) -> Tensor:
    """Base shading of a traced eye, ``(N, 1, H, W)`` in [0, 1]; textures multiply albedos."""
    skin_albedo = albedos.skin * skin_texture
    sclera_albedo = albedos.sclera * sclera_texture
    iris_albedo = albedos.iris * iris_texture
    pupil_albedo = albedos.pupil
    aperture, iris_mask, pupil_mask = (m.unsqueeze(1) for m in (layers.aperture, layers.iris, layers.pupil))
    above_upper = layers.above_upper_lid.unsqueeze(1)
    below_lower = layers.below_lower_lid.unsqueeze(1)

    eye = sclera_albedo * (0.55 + 0.45 * layers.eyeball_normal_z.unsqueeze(1))
    iris = iris_albedo * (1 - 0.5 * smoothstep(0.7, 1.0, layers.iris_radius.unsqueeze(1)))
    eye = lerp(eye, iris, iris_mask)
    eye = lerp(eye, pupil_albedo.expand_as(eye), pupil_mask)
    eye = eye * (1 - 0.35 * torch.exp(-(-above_upper).clamp_min(0) / 2.0))

    outside = above_upper.clamp_min(0) + below_lower.clamp_min(0)
    skin = skin_albedo * (1 - 0.15 * torch.exp(-outside / 4.0))
    return lerp(skin, eye, aperture)


class EyeDomain(ProceduralDataset):
    """A procedural eye domain: 35x55 grayscale crops labeled with gaze (pitch, yaw)."""

    label_kind: ClassVar[str] = "gaze"
    label_names: ClassVar[tuple[str, ...]] = ("pitch", "yaw")
    version: ClassVar[int] = 3
    """3: an eye wider by 4 % of the crop on a larger eyeball, so the iris is nearly as large as real
    crops' (``results/calibration.md``, "geometry version 3"). 2: the anatomical geometry of
    :func:`sample_geometry` (iris above the corner line, lids against the iris and following it);
    1 put the iris below the corner line inside an open,
    round aperture (``results/calibration.md`` has both)."""
    height: ClassVar[int] = 35
    width: ClassVar[int] = 55

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.height, self.width)

    def generate(self, count: int, generator: torch.Generator) -> Samples:
        geometry = sample_geometry(count, self.height, self.width, generator)
        image = self.render(geometry, generator).clamp(0, 1)
        return Samples(image * 2 - 1, geometry.labels)

    def render(self, geometry: EyeGeometry, generator: torch.Generator) -> Tensor:
        """Trace and form the images of ``geometry``, ``(N, 1, H, W)``; all at once unless a domain knows better."""
        return self.form_image(geometry, trace(geometry, self.height, self.width), generator)

    @abstractmethod
    def form_image(self, geometry: EyeGeometry, layers: EyeLayers, generator: torch.Generator) -> Tensor:
        """Turn traced geometry into ``(N, 1, H, W)`` intensities in [0, 1]."""
