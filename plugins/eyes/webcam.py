"""``webcam-eyes``: a procedural STAND-IN for real eye captures such as MPIIGaze.

It is not real data. It draws the same eye geometry as ``synth-eyes`` (so labels
mean the same thing) and forms the image the way a face in front of a laptop
webcam does, adding what the clean renderer lacks:

* face: skin texture (1/f noise, as skin albedo varies), the eyelid crease and
  the lower-lid fold, eyelashes along both lid margins;
* eye: radial iris striations and a collarette, uneven sclera, a corneal glint of
  the screen or a lamp;
* light: a brightness gradient, a shadow cast by the brow, vignetting;
* camera: defocus blur, Poisson-Gaussian sensor noise, JPEG compression;
* normalization: per-image histogram equalization, as MPIIGaze's normalized crops
  have (``../shared/facts.md``), so global intensity statistics say nothing of
  the domain and the gap lives in structure and texture.

The strengths are the fields of :class:`CaptureConfig`; their defaults are the
calibration documented in ``results/calibration.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sim2real_bench.plugins import imaging
from sim2real_bench.plugins.eyes.domain import EyeDomain, shade_eye, smoothstep
from sim2real_bench.plugins.eyes.geometry import EyeGeometry, EyeLayers
from sim2real_bench.plugins.imaging import falloff, uniform


@dataclass(frozen=True)
class CaptureConfig:
    """Strength of each effect of the capture model (upper ends of per-image draws)."""

    skin_texture: float = 0.15
    crease_depth: float = 0.35
    lash_darkness: float = 0.8
    lash_count: int = 28
    iris_striation: float = 0.3
    glint: float = 0.8
    gradient: float = 0.4
    brow_shadow: float = 0.45
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    read_noise: float = 0.012
    shot_noise_gain: float = 0.003
    jpeg_quality: tuple[float, float] = (40.0, 90.0)


def periodic_profile(count: int, samples: int, terms: int, generator: torch.Generator) -> Tensor:
    """``(count, samples)`` random periodic 1D textures, unit std, amplitude falling as 1/sqrt(k)."""
    spectrum = torch.zeros(count, samples // 2 + 1, dtype=torch.complex64)
    frequency = torch.arange(1, terms + 1, dtype=torch.float32)
    phase = torch.rand(count, terms, generator=generator) * 2 * torch.pi
    amplitude = torch.rand(count, terms, generator=generator) / frequency.sqrt()
    spectrum[:, 1 : terms + 1] = amplitude * torch.exp(1j * phase)
    profile = torch.fft.irfft(spectrum, n=samples)
    return profile / profile.std(1, keepdim=True).clamp_min(1e-6)


def sample_profile(profile: Tensor, position: Tensor) -> Tensor:
    """Look ``(N, C, S)`` 1D textures up at ``(N, H, W)`` positions in [-1, 1] (linear)."""
    grid = torch.stack([position, torch.zeros_like(position)], dim=-1)
    return F.grid_sample(profile.unsqueeze(2), grid, mode="bilinear", padding_mode="border", align_corners=False)


def iris_striations(layers: EyeLayers, strength: Tensor, generator: torch.Generator) -> Tensor:
    """Radial streaks (a random texture around the iris angle) and a darker collarette."""
    count = strength.shape[0]
    profile = periodic_profile(count, 256, 60, generator)
    streaks = sample_profile(profile.unsqueeze(1), layers.iris_angle / torch.pi)
    collarette = falloff(-((layers.iris_radius - 0.45) / 0.08).square()).unsqueeze(1)
    texture = 1 + strength.view(-1, 1, 1, 1) * (0.5 * streaks - collarette)
    return texture.clamp_min(0.2)


def lash_row(count: int, number: int, samples: int, generator: torch.Generator) -> Tensor:
    """``(count, 2, samples)`` along one lid margin: lash density and lash length (pixels)."""
    position = torch.linspace(-1, 1, samples).view(1, 1, -1)
    roots = torch.empty(count, number, 1).uniform_(-0.95, 0.95, generator=generator)
    length = torch.empty(count, number, 1).uniform_(0.6, 1.3, generator=generator)
    strands = falloff(-((position - roots) / 0.02).square())
    density = strands.amax(1)
    reach = (strands * length).sum(1) / strands.sum(1).clamp_min(1e-6)
    return torch.stack([density, reach.clamp_min(0.6)], 1)


def lashes(layers: EyeLayers, geometry: EyeGeometry, count: int, generator: torch.Generator) -> Tensor:
    """Coverage in [0, 1] of lashes along both lid margins, plus the dark lash line.

    Lashes grow out of the margin and fan outward toward the corners; each lid's
    row of roots is a 1D texture looked up along the slanted lid coordinate.
    """
    images = layers.aperture.shape[0]
    coverage = torch.zeros(images, 1, *layers.aperture.shape[1:])
    lids = ((layers.above_upper_lid, count, 4.0), (layers.below_lower_lid, count // 3, 2.0))
    for margin, number, length in lids:
        height = margin.clamp_min(0)
        slanted = layers.along_eye - 0.8 * layers.along_eye * height / geometry.half_width
        row = sample_profile(lash_row(images, number, 256, generator), slanted)
        reach = length * row[:, 1:]
        strand = row[:, :1] * falloff(-height.unsqueeze(1) / reach) * (height.unsqueeze(1) < reach)
        strand = strand * (margin.unsqueeze(1) > -0.5)
        line = (falloff(-(margin / 0.8).square()) * (layers.along_eye.abs() < 0.95)).unsqueeze(1)
        coverage = torch.maximum(coverage, torch.maximum(strand, 0.6 * line))
    return coverage


def illumination(count: int, height: int, width: int, config: CaptureConfig, generator: torch.Generator) -> Tensor:
    """A multiplicative light field: gradient, brow shadow and vignetting."""
    ys = torch.linspace(-1, 1, height).view(1, 1, -1, 1)
    xs = torch.linspace(-1, 1, width).view(1, 1, 1, -1)
    angle = uniform(count, 0, 2 * torch.pi, generator)
    gradient = uniform(count, 0, config.gradient, generator) * (torch.cos(angle) * xs + torch.sin(angle) * ys)
    brow_edge = uniform(count, -1.0, -0.3, generator)
    brow = uniform(count, 0, config.brow_shadow, generator) * torch.sigmoid((brow_edge - ys) * 8)
    vignette = uniform(count, 0, 0.25, generator) * (xs.square() + ys.square()) / 2
    return (1 + gradient) * (1 - brow) * (1 - vignette)


class WebcamEyes(EyeDomain):
    """Stand-in for real webcam eye crops (MPIIGaze-like), 35x55, histogram-equalized.

    Same label geometry as ``synth-eyes``; see the module docstring for the
    capture model. Not real data: results on it are a benchmark of method
    mechanics, to be confirmed on MPIIGaze with the ``mpiigaze:PATH`` loader.
    """

    capture = CaptureConfig()

    def form_image(self, geometry: EyeGeometry, layers: EyeLayers, generator: torch.Generator) -> Tensor:
        config = self.capture
        count, height, width = layers.aperture.shape
        skin_texture = 1 + uniform(count, 0.3, 1.0, generator) * config.skin_texture * (
            imaging.pink_noise(count, height, width, 2.5, generator)
            + 0.25 * imaging.pink_noise(count, height, width, 1.0, generator)
        )
        sclera_texture = 1 - 0.06 * imaging.pink_noise(count, height, width, 2.0, generator).abs()
        iris_texture = iris_striations(layers, uniform(count, 0.5, 1.0, generator).flatten() * config.iris_striation, generator)
        image = shade_eye(layers, generator, iris_texture, sclera_texture, skin_texture)

        above, below = layers.above_upper_lid.unsqueeze(1), layers.below_lower_lid.unsqueeze(1)
        crease_height = uniform(count, 3.0, 7.0, generator)
        crease = falloff(-((above - crease_height) / uniform(count, 0.8, 1.8, generator)).square())
        fold = falloff(-((below - uniform(count, 2.5, 5.0, generator)) / 1.5).square())
        within = (1 - smoothstep(0.7, 1.1, layers.along_eye.abs())).unsqueeze(1)
        depth = uniform(count, 0.3, 1.0, generator) * config.crease_depth
        image = image * (1 - depth * crease * within) * (1 - 0.5 * depth * fold * within)

        coverage = lashes(layers, geometry, config.lash_count, generator)
        image = image * (1 - uniform(count, 0.5, 1.0, generator) * config.lash_darkness * coverage)

        offset_x = uniform(count, -0.35, 0.35, generator) * geometry.iris_radius.unsqueeze(1)
        offset_y = uniform(count, -0.45, 0.1, generator) * geometry.iris_radius.unsqueeze(1)
        ys = torch.arange(height, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
        xs = torch.arange(width, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
        glint_x = layers.iris_center_x.unsqueeze(1) + offset_x
        glint_y = layers.iris_center_y.unsqueeze(1) + offset_y
        spot = falloff(-((xs - glint_x).square() + (ys - glint_y).square()) / (2 * 0.7**2))
        image = image + uniform(count, 0.4, 1.0, generator) * config.glint * spot * layers.aperture.unsqueeze(1)

        image = image * illumination(count, height, width, config, generator)
        image = imaging.gaussian_blur(image, uniform(count, *config.blur_sigma, generator).flatten())
        gain = uniform(count, 0.2, 1.0, generator) * config.shot_noise_gain
        read = uniform(count, 0.2, 1.0, generator) * config.read_noise
        image = imaging.sensor_noise(image.clamp(0, 1), gain, read, generator)
        image = imaging.jpeg(image.clamp(0, 1), uniform(count, *config.jpeg_quality, generator).flatten())
        return imaging.equalize(image)
