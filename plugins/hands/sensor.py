"""Image formation of a structured-light depth camera (Kinect v1-like), on depth maps.

Batched torch on ``(N, 1, H, W)`` absolute depths in mm (``inf``: no surface),
one random draw per image from an explicit generator. A structured-light sensor
triangulates a projected pattern from a projector ``baseline`` mm beside the
camera; disparity ``f * b / Z`` is measured in sub-pixel steps, hence:

* depth quantization that coarsens with distance (``Z^2 * step / (f * b)``);
* projector shadows: surfaces the projector cannot see past a nearer edge read
  nothing, on one side of every depth step;
* no reading at depth discontinuities (the correlation window straddles two
  surfaces), noise growing as ``Z^2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

SENSOR_FOCAL_PX = 588.03
"""The NYU Kinect's focal length at 640x480, for disparity quantization."""


def quantize_disparity(depth: Tensor, baseline_mm: float, step_px: float) -> Tensor:
    """Round each depth to the sensor's disparity steps: coarser with distance."""
    scale = SENSOR_FOCAL_PX * baseline_mm
    disparity = torch.round(scale / depth / step_px) * step_px
    return scale / disparity.clamp_min(1e-6)


def projector_shadow(depth: Tensor, focal_px: Tensor, baseline_mm: float) -> Tensor:
    """Pixels the projector cannot light because a nearer surface to their right blocks it.

    ``focal_px`` is ``(N,)``, in pixels of these depth maps. A pixel at disparity ``d``
    is shadowed by the pixel ``k`` to its right when that one's disparity exceeds
    ``d + k``.
    """
    disparity = focal_px.view(-1, 1, 1, 1) * baseline_mm / depth  # inf depth -> 0 disparity
    reach = min(depth.shape[-1] - 1, math.ceil(float((disparity.amax((1, 2, 3)) - disparity.amin((1, 2, 3))).max())))
    shadow = torch.zeros_like(depth, dtype=torch.bool)
    for shift in range(1, reach + 1):  # the last ``shift`` columns have no pixel that far right
        shadow[..., :-shift] |= disparity[..., shift:] - disparity[..., :-shift] > shift
    return shadow


def neighbourhood_extreme(images: Tensor, reduce: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """The 3x3 minimum or maximum (``reduce``: ``torch.minimum`` or ``torch.maximum``) around each pixel.

    Rows, then columns, of shifted views: the same values as a 3x3 pooling, in about a
    quarter of its time on single-channel maps.
    """
    outside = math.inf if reduce is torch.minimum else -math.inf
    padded = F.pad(images, (1, 1, 1, 1), value=outside)
    rows = reduce(reduce(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return reduce(reduce(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def depth_steps(depth: Tensor, jump_mm: float) -> tuple[Tensor, Tensor]:
    """Pixels on the far and on the near side of a depth step of more than ``jump_mm`` (3x3 neighbourhood)."""
    finite = depth.clamp(max=1e5)
    nearest = neighbourhood_extreme(finite, torch.minimum)
    farthest = neighbourhood_extreme(finite, torch.maximum)
    return finite - nearest > jump_mm, farthest - finite > jump_mm


def depth_noise(depth: Tensor, sigma_at_1m: Tensor, generator: torch.Generator) -> Tensor:
    """Gaussian noise of std ``sigma_at_1m * (Z / 1 m)^2`` mm per pixel (``sigma`` per image)."""
    sigma = sigma_at_1m * (depth.clamp(max=1e4) / 1000).square()
    return depth + sigma * torch.randn(depth.shape, generator=generator)
