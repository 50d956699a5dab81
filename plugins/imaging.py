"""Image-formation operations shared by the procedural domains.

Batched torch, one random draw per image from an explicit generator, so domains
stay deterministic per seed. Images here are ``(N, 1, H, W)`` in [0, 1].
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

# JPEG's standard luminance quantization table (quality 50), Annex K of ITU T.81.
_JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(size: int = 8) -> Tensor:
    k = torch.arange(size, dtype=torch.float32).view(-1, 1)
    n = torch.arange(size, dtype=torch.float32).view(1, -1)
    matrix = torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


_DCT = _dct_matrix()


FALLOFF_FLOOR = -40.0
"""Smallest exponent :func:`falloff` evaluates: exp(-40) = 4e-18 is nothing to an image in [0, 1]."""


def falloff(exponent: Tensor) -> Tensor:
    """``exp(exponent)`` for the non-positive exponents of soft shapes (Gaussian bumps, decays).

    The exponent is floored at :data:`FALLOFF_FLOOR`: a float32 exp whose result is denormal (exponent
    below -87, as the far tail of every narrow bump is) runs about 20 times slower on x86 CPUs, and so does
    arithmetic on it; above the floor every value and product of two stays a normal float.
    """
    return exponent.clamp_min(FALLOFF_FLOOR).exp()


def uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    """``(count, 1, 1, 1)`` uniform draws, one per image."""
    return torch.empty(count, 1, 1, 1).uniform_(low, high, generator=generator)


def gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image with its own Gaussian ``sigma`` (pixels; shape ``(N,)``)."""
    count, channels, height, width = images.shape
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1).clamp_min(1e-3)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
    flat = images.reshape(1, count * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, 2 * radius + 1), groups=count * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, 2 * radius + 1, 1), groups=count * channels)
    return flat.view(count, channels, height, width)


def pink_noise(count: int, height: int, width: int, exponent: float, generator: torch.Generator) -> Tensor:
    """Zero-mean, unit-std noise whose power falls as ``f ** -exponent`` (natural textures)."""
    white = torch.randn(count, 1, height, width, generator=generator)
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    radius = torch.sqrt(fx.square() + fy.square())
    radius[0, 0] = 1.0
    filtered = torch.fft.irfft2(torch.fft.rfft2(white) * radius ** (-exponent / 2), s=(height, width))
    filtered = filtered - filtered.mean(dim=(2, 3), keepdim=True)
    return filtered / filtered.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def sensor_noise(images: Tensor, gain: Tensor, read: Tensor, generator: torch.Generator) -> Tensor:
    """Poisson-Gaussian sensor noise: variance ``gain * signal + read ** 2``."""
    std = torch.sqrt(gain * images.clamp_min(0) + read.square())
    return images + std * torch.randn(images.shape, generator=generator)


def jpeg(images: Tensor, quality: Tensor) -> Tensor:
    """Baseline JPEG of the luma channel: 8x8 DCT, quantization by ``quality`` (1-100), inverse."""
    count, channels, height, width = images.shape
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(images * 255 - 128, (0, pad_w, 0, pad_h), mode="replicate")
    blocks = padded.unfold(2, 8, 8).unfold(3, 8, 8)  # N, C, H/8, W/8, 8, 8
    scale = torch.where(quality < 50, 5000 / quality, 200 - 2 * quality).view(-1, 1, 1, 1, 1, 1)
    table = ((_JPEG_LUMA * scale + 50) / 100).floor().clamp(1, 255)
    coefficients = _DCT @ blocks @ _DCT.T
    restored = _DCT.T @ (torch.round(coefficients / table) * table) @ _DCT
    rows, cols = restored.shape[2], restored.shape[3]
    restored = restored.permute(0, 1, 2, 4, 3, 5).reshape(count, channels, rows * 8, cols * 8)
    return ((restored[..., :height, :width] + 128) / 255).clamp(0, 1)


def equalize(images: Tensor) -> Tensor:
    """Per-image histogram equalization over 256 levels (ties map to one value)."""
    return kornia.enhance.equalize(images.clamp(0, 1))
