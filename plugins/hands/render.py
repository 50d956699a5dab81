"""A cheap z-buffer renderer of capsules (sphere-swept segments) into depth maps.

Each bone is a capsule whose radius tapers linearly between its ends. Per pixel,
the front surface of a capsule is taken at the axis point nearest the pixel in
the image (exact where the bone lies parallel to the image, close otherwise),
and at the near end's sphere (exact for bones pointing at the camera); the
z-buffer keeps the nearest surface over all bones. Projection is orthographic in
crop pixels, as the crop convention of :mod:`.geometry` has it. Each capsule is
evaluated only in a square window around it, so the cost grows with the crop's
hand area, not with the crop.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FAR = math.inf
"""Depth of pixels that no capsule covers."""


def render_capsules(bones: Tensor, radii: Tensor, height: int, width: int, mm_per_pixel: float) -> Tensor:
    """Depth ``(N, 1, H, W)`` in mm of the nearest capsule surface (``FAR`` where none).

    ``bones`` is ``(N, B, 2, 3)`` end points (u, v in pixels, z in mm), ``radii``
    ``(N, B, 2)`` in mm; a capsule of radius 0 at both ends is absent (a scene's
    optional objects). Bones are drawn in passes by size (windows of up to 8, 16,
    32, ... pixels), so each pass's window fits its own bones.
    """
    count = bones.shape[0]
    ends = bones / torch.tensor([1.0, 1.0, mm_per_pixel])  # everything in pixels
    radius = radii / mm_per_pixel
    extent = ((ends[:, :, 0, :2] - ends[:, :, 1, :2]).abs().amax(-1) + 2 * radius.amax(-1)).amax(0)
    passes = torch.log2(extent.clamp_min(8)).ceil()
    present = radius.amax(-1) > 0  # an absent capsule covers no pixel: skip its window
    zbuffer = torch.full((count * height * width,), FAR)
    for size in passes.unique():
        group = passes == size
        image, bone = (present & group).nonzero(as_tuple=True)
        window = int(extent[group].max().ceil()) + 2
        _splat(ends[image, bone], radius[image, bone], image, window, height, width, zbuffer)
    return zbuffer.view(count, 1, height, width) * mm_per_pixel


def _splat(ends: Tensor, radius: Tensor, image: Tensor, window: int, height: int, width: int, zbuffer: Tensor) -> None:
    """Draw capsules ``(K, 2, 3)`` (pixel units) of images ``image`` ``(K,)`` into the flat ``zbuffer``,
    each in a ``window``-pixel square around it."""
    window = min(window, max(height, width))
    a, b = ends[:, 0], ends[:, 1]
    origin = ((a[..., :2] + b[..., :2]) / 2 - window / 2).floor()
    limit = torch.tensor([width - window, height - window], dtype=origin.dtype).clamp_min(0)
    origin = torch.minimum(origin.clamp_min(0), limit)

    steps = torch.arange(window, dtype=torch.float32)
    xs = origin[..., 0, None, None] + steps.view(1, 1, -1)  # (K, 1, w)
    ys = origin[..., 1, None, None] + steps.view(1, -1, 1)  # (K, w, 1)
    px, py = xs + 0.5 - a[..., 0, None, None], ys + 0.5 - a[..., 1, None, None]
    dx, dy, dz = ((b - a)[..., i, None, None] for i in range(3))
    ra, rb = radius[..., 0, None, None], radius[..., 1, None, None]
    t = ((px * dx + py * dy) / (dx.square() + dy.square()).clamp_min(1e-6)).clamp(0, 1)
    r = ra + t * (rb - ra)
    h2 = r.square() - (px - t * dx).square() - (py - t * dy).square()
    depth = torch.where(h2 > 0, a[..., 2, None, None] + t * dz - h2.clamp_min(0).sqrt(), FAR)
    a_is_near = dz > 0
    near_r = torch.where(a_is_near, ra, rb)
    cx, cy = torch.where(a_is_near, 0.0, dx), torch.where(a_is_near, 0.0, dy)
    cap = near_r.square() - (px - cx).square() - (py - cy).square()
    near_z = a[..., 2, None, None] + torch.where(a_is_near, 0.0, dz)
    depth = torch.minimum(depth, torch.where(cap > 0, near_z - cap.clamp_min(0).sqrt(), FAR))

    depth = torch.where((xs < width) & (ys < height), depth, FAR)
    index = (ys.clamp(max=height - 1) * width + xs.clamp(max=width - 1)).long()
    index = index + image.view(-1, 1, 1) * (height * width)
    zbuffer.scatter_reduce_(0, index.expand_as(depth).flatten(), depth.flatten(), reduce="amin")
