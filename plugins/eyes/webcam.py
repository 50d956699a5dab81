"""``webcam-eyes``: a procedural STAND-IN for real eye captures such as MPIIGaze.

It is not real data. It draws the same eye geometry as ``synth-eyes`` (so labels
mean the same thing) and forms the image the way a face in front of a laptop
webcam looks in MPIIGaze's normalized crops, adding what the clean renderer lacks:

* face: smooth skin shading with faint texture, the upper lid's dark lash line,
  the lid crease above it and the lower-lid fold below the eye;
* eye: a near-black iris (webcam exposure leaves little iris detail), sclera in
  the shadow of lids and lashes toward the corners, the caruncle at the inner
  corner and longer lashes at the outer one (MPIIGaze crops all show one eye's
  side: left eyes are mirrored), a corneal glint in some crops;
* light: a brightness gradient, a shadow cast by the brow, vignetting;
* camera: defocus blur, faint Poisson-Gaussian sensor noise, JPEG compression;
* normalization: per-image histogram equalization, as MPIIGaze's normalized crops
  have (``../shared/facts.md``), so global intensity statistics say nothing of
  the domain and the gap lives in structure and texture.

The strengths are the fields of :class:`CaptureConfig`; their defaults are the
calibration against real MPIIGaze crops documented in ``results/calibration.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sim2real_bench.plugins import imaging
from sim2real_bench.plugins.eyes.domain import EyeAlbedos, EyeDomain, shade_eye, smoothstep
from sim2real_bench.plugins.eyes.geometry import EyeGeometry, EyeLayers
from sim2real_bench.plugins.imaging import falloff, uniform


Range = tuple[float, float]


@dataclass(frozen=True)
class CaptureConfig:
    """The capture model's settings: each range is a per-image uniform draw (low, high).

    Albedo factors multiply the clean renderer's albedos; darkness and depth are
    the share of light an effect takes away at its centre; sizes are pixels of the
    35x55 crop.
    """

    skin_shading: float = 0.15
    """Std of the smooth (1/f^4) skin albedo variation: light and shape across the face."""
    skin_texture: float = 0.04
    """Std of the fine (1/f^2.5) skin texture; equalization amplifies whatever flat skin holds."""
    sclera_albedo: Range = (0.55, 0.85)
    iris_albedo: Range = (0.2, 0.5)
    iris_striation: float = 0.2
    lash_darkness: Range = (0.3, 0.6)
    lash_width: Range = (1.5, 3.0)
    outer_lashes: Range = (0.15, 0.35)
    """Extra darkness of the lash line toward the outer corner (the image's left)."""
    crease_height: Range = (4.0, 9.0)
    crease_width: Range = (1.5, 3.0)
    crease_depth: Range = (0.2, 0.5)
    fold_depth: Range = (0.15, 0.4)
    corner_shadow: Range = (0.1, 0.35)
    """Sclera darkening toward the corners, twice as strong at the inner (nasal) one."""
    caruncle: Range = (0.2, 0.5)
    glint_share: float = 0.4
    """Share of crops with a corneal glint."""
    glint: Range = (0.3, 0.8)
    gradient: float = 0.4
    brow_shadow: float = 0.45
    blur_sigma: Range = (0.8, 1.5)
    read_noise: float = 0.0015
    shot_noise_gain: float = 0.0002
    jpeg_quality: Range = (70.0, 95.0)


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


def band(distance: Tensor, centre: float | Tensor, width: float | Tensor) -> Tensor:
    """A soft line of Gaussian profile across a distance field: 1 at ``centre``, ``width`` its scale."""
    return falloff(-((distance - centre) / width).square())


def lid_shading(layers: EyeLayers, config: CaptureConfig, generator: torch.Generator) -> Tensor:
    """A multiplicative field of the lids: the lash line, the crease above it, the fold below the eye.

    In a real crop the upper lid's margin and lashes are one dark band, darkest
    toward the outer corner; between it and the crease the lid skin is bright.
    """
    count = layers.aperture.shape[0]
    above, below = layers.above_upper_lid.unsqueeze(1), layers.below_lower_lid.unsqueeze(1)
    side = layers.along_eye.unsqueeze(1)
    within = 1 - smoothstep(0.85, 1.3, side.abs())

    lash = band(above, uniform(count, 0.0, 1.0, generator), uniform(count, *config.lash_width, generator))
    lash = lash * (1 - smoothstep(0.95, 1.25, side.abs()))
    toward_corners = 0.5 + 0.5 * smoothstep(0.3, 0.9, side.abs())
    outer = smoothstep(0.4, 0.9, -side)
    crease_height = uniform(count, *config.crease_height, generator)
    crease = band(above, crease_height, uniform(count, *config.crease_width, generator)) * within
    fold = band(below, uniform(count, 3.0, 6.0, generator), uniform(count, 1.2, 2.5, generator))
    lash_line = 1 - uniform(count, *config.lash_darkness, generator) * lash * toward_corners
    outer_lashes = 1 - uniform(count, *config.outer_lashes, generator) * outer * lash
    crease_line = 1 - uniform(count, *config.crease_depth, generator) * crease
    fold_line = 1 - uniform(count, *config.fold_depth, generator) * fold * within
    return lash_line * outer_lashes * crease_line * fold_line


def corner_shading(layers: EyeLayers, config: CaptureConfig, generator: torch.Generator) -> Tensor:
    """Sclera shadowed toward the corners, most at the inner one, and the caruncle there.

    MPIIGaze mirrors left eyes, so every crop has its inner (nasal) corner on the
    image's right; a left-right symmetric eye is told from real crops by that alone.
    """
    count = layers.aperture.shape[0]
    side = layers.along_eye.unsqueeze(1)
    aperture = layers.aperture.unsqueeze(1)
    sclera = aperture * (1 - layers.iris.unsqueeze(1))
    nasal = smoothstep(0.5, 1.0, side)
    shadow = uniform(count, *config.corner_shadow, generator) * smoothstep(0.3, 0.9, side.abs()) * (1 + nasal)
    caruncle = uniform(count, *config.caruncle, generator) * band(side, 0.92, 0.1) * aperture
    return (1 - shadow * sclera) * (1 - caruncle)


def glint(geometry: EyeGeometry, layers: EyeLayers, config: CaptureConfig, generator: torch.Generator) -> Tensor:
    """The additive corneal reflection of a screen or lamp, on a share of the crops, near the iris centre."""
    count, height, width = layers.aperture.shape
    iris_radius = geometry.iris_radius.view(-1, 1, 1, 1)
    x = layers.iris_center_x.unsqueeze(1) + uniform(count, -0.4, 0.4, generator) * iris_radius
    y = layers.iris_center_y.unsqueeze(1) + uniform(count, -0.5, 0.2, generator) * iris_radius
    ys = torch.arange(height, dtype=torch.float32).view(1, 1, -1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, 1, -1) + 0.5
    spot = falloff(-((xs - x).square() + (ys - y).square()) / (2 * 0.6**2))
    shown = uniform(count, 0.0, 1.0, generator) < config.glint_share
    return shown * uniform(count, *config.glint, generator) * spot * layers.aperture.unsqueeze(1)


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

    version = 4
    """4: ``synth-eyes``' geometry version 3 under version 3's capture model. 3: the capture model
    calibrated against real MPIIGaze crops (lash line, crease and fold, dark iris, shadowed sclera,
    one eye's side, faint noise); 2 and 1 speckled flat skin and drew white sclera and strand
    lashes (``results/calibration.md``). Versions 1-3 have ``synth-eyes``' geometry version 2."""
    capture = CaptureConfig()

    def form_image(self, geometry: EyeGeometry, layers: EyeLayers, generator: torch.Generator) -> Tensor:
        config = self.capture
        count, height, width = layers.aperture.shape

        skin_texture = (1 + uniform(count, 0.3, 1.0, generator) * config.skin_shading
                        * imaging.pink_noise(count, height, width, 4.0, generator)
                        + uniform(count, 0.0, 1.0, generator) * config.skin_texture
                        * imaging.pink_noise(count, height, width, 2.5, generator))
        sclera_texture = uniform(count, *config.sclera_albedo, generator) * (
            1 - 0.05 * imaging.pink_noise(count, height, width, 2.0, generator).abs())
        striation = uniform(count, 0.5, 1.0, generator).flatten() * config.iris_striation
        iris_texture = uniform(count, *config.iris_albedo, generator) * iris_striations(layers, striation, generator)
        image = shade_eye(layers, EyeAlbedos.draw(count, generator), iris_texture, sclera_texture, skin_texture)
        image = image * lid_shading(layers, config, generator) * corner_shading(layers, config, generator)
        image = image + glint(geometry, layers, config, generator)
        image = image * illumination(count, height, width, config, generator)

        image = imaging.gaussian_blur(image, uniform(count, *config.blur_sigma, generator).flatten())
        gain = uniform(count, 0.0, 1.0, generator) * config.shot_noise_gain
        read = uniform(count, 0.2, 1.0, generator) * config.read_noise
        image = imaging.sensor_noise(image.clamp(0, 1), gain, read, generator)
        image = imaging.jpeg(image.clamp(0, 1), uniform(count, *config.jpeg_quality, generator).flatten())
        return imaging.equalize(image)
