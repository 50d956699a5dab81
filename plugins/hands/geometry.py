"""Hand geometry shared by every hand domain: the articulated model and the crop.

Both embedded domains draw hands from this one sampler, so the gap between them
is in image formation only, never in the labels. The NYU loader crops real
frames with the same convention, so labels mean the same thing everywhere.

Crop convention (as NYU hand pipelines crop a metric cube around the hand):

* the crop shows a cube of ``CUBE_MM`` (300 mm) centred on the hand: the centre
  of the 14 joints' 2D bounding box and their mean depth;
* ``u`` (right) and ``v`` (down) are crop pixels, ``0..W`` and ``0..H``; one crop
  pixel is ``CUBE_MM / W`` mm at the centre depth (4.69 mm at 64x64);
* depth is normalized around the centre depth ``zc``:
  ``d = (z - zc) / (CUBE_MM / 2)``, so -1 is 150 mm nearer than the centre, +1
  150 mm farther; images clip it to [-1, 1] and background (or no reading) is 1.

Inside a crop the projection is weak-perspective (orthographic at the centre
depth's scale): a hand spans ~200 mm at 0.5-1 m, where perspective bends joint
positions by well under a crop pixel. Hence 3D errors in mm follow from crop
labels alone (``(du, dv) * CUBE_MM / W`` and ``dd * CUBE_MM / 2``).

The hand: a palm of four metacarpal capsules, four fingers of three phalanges
and a thumb of three bones, joint angles in anatomical ranges (flexion of all
fingers partly shared, as grasps are), any wrist rotation within +/-60 degrees
in the image plane and +/-50 degrees out of it, a size scale of 0.85-1.15 and a
hand centre jittered in the crop as a hand detector's is. Sizes are an adult
hand's, in mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

CUBE_MM = 300.0
"""Side of the metric cube a crop shows (mm), in u, v and depth."""
DEPTH_HALF_RANGE_MM = CUBE_MM / 2
"""Depth normalization: ``d = (z - zc) / DEPTH_HALF_RANGE_MM``."""
DISTANCE_RANGE_MM = (550.0, 1000.0)
"""Distance of the hand from the camera (used by the sensor model)."""

JOINT_NAMES = (
    "pinky_tip", "pinky_pip", "ring_tip", "ring_pip", "middle_tip", "middle_pip", "index_tip", "index_pip",
    "thumb_tip", "thumb_ip", "thumb_mcp", "wrist_radial", "wrist_ulnar", "palm",
)
"""The 14 NYU evaluation joints in NYU's order (their indices 0, 3, ..., 32 in joint_data.mat)."""
LABEL_NAMES = tuple(f"{joint}_{axis}" for joint in JOINT_NAMES for axis in ("u", "v", "d"))
"""Label columns: joint-major ``(u0, v0, d0, u1, ...)``."""

# Hand frame (mm, scale 1): origin at the palm centre, x toward the thumb, y toward the
# fingers, z out of the palm. Fingers listed little, ring, middle, index (NYU's order).
_MCP = torch.tensor([[-26.0, 34.0], [-9.0, 40.0], [9.0, 43.0], [27.0, 40.0]])
_PHALANGES = torch.tensor([[33.0, 20.0, 18.0], [42.0, 27.0, 21.0], [45.0, 28.0, 22.0], [40.0, 24.0, 20.0]])
_SPLAY = torch.tensor([-16.0, -6.0, 0.0, 7.0]) * math.pi / 180
_WRIST = torch.tensor([[22.0, -42.0], [-22.0, -42.0]])
_THUMB_BASE = torch.tensor([20.0, -26.0, 4.0])
_THUMB_BONES = (42.0, 32.0, 26.0)
_FINGER_RADII = (9.0, 8.0, 7.0, 6.0)
_PALM_RADIUS = 11.0


@dataclass(frozen=True)
class HandGeometry:
    """Per-image hand shapes placed in a ``height x width`` crop (u, v in pixels, z in mm from ``zc``)."""

    joints: Tensor
    """``(N, 14, 3)``: u, v (crop pixels) and z (mm relative to the crop's centre depth)."""
    bones: Tensor
    """``(N, B, 2, 3)``: capsule end points, same units as ``joints``."""
    radii: Tensor
    """``(N, B, 2)``: capsule radius at each end point (mm)."""
    axes: Tensor
    """``(N, 3, 3)``: the hand frame's x (thumb), y (fingers), z (palm) unit axes in camera axes (u, v, z)."""
    distance: Tensor
    """``(N,)``: the crop centre's distance from the camera (mm)."""
    mm_per_pixel: float

    def moved(self, offset: Tensor) -> HandGeometry:
        """The same hands shifted by ``(N, 3)`` (pixels, pixels, mm) in the crop, as a re-centred crop sees them."""
        shift = offset.view(-1, 1, 3)
        return replace(self, joints=self.joints + shift, bones=self.bones + shift.unsqueeze(1))

    @property
    def labels(self) -> Tensor:
        """``(N, 42)`` labels: u, v in crop pixels, d = z / DEPTH_HALF_RANGE_MM, joint-major."""
        scale = torch.tensor([1.0, 1.0, 1.0 / DEPTH_HALF_RANGE_MM])
        return (self.joints * scale).flatten(1)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.empty(shape).uniform_(low, high, generator=generator)


def _rotation(axis: int, angle: Tensor) -> Tensor:
    """``(N, 3, 3)`` rotations by ``angle`` about coordinate ``axis``."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = torch.eye(3).repeat(len(angle), 1, 1)
    matrix[:, i, i], matrix[:, j, j] = cos, cos
    matrix[:, i, j], matrix[:, j, i] = -sin, sin
    return matrix


def _chain(base: Tensor, direction: Tensor, bend: Tensor, angles: Tensor, lengths: Tensor) -> Tensor:
    """Joint positions ``(N, F, K + 1, 3)`` of planar chains bending from ``direction`` toward ``bend``."""
    total = angles.cumsum(-1).unsqueeze(-1)
    segments = direction.unsqueeze(-2) * torch.cos(total) + bend.unsqueeze(-2) * torch.sin(total)
    steps = segments * lengths.unsqueeze(-1)
    return torch.cat([base.unsqueeze(-2), base.unsqueeze(-2) + steps.cumsum(-2)], -2)


def _articulate(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Joints ``(N, 14, 3)``, bones ``(N, B, 2, 3)`` and radii ``(N, B, 2)`` in the hand frame (mm)."""
    deg = math.pi / 180
    grasp = _uniform((count, 1), 0, 1, generator)
    curl = (grasp + _uniform((count, 4), -0.45, 0.45, generator)).clamp(0, 1)
    mcp = -10 * deg + curl * 95 * deg + _uniform((count, 4), -8, 8, generator) * deg
    pip = (curl + _uniform((count, 4), -0.2, 0.2, generator)).clamp(0, 1) * 100 * deg
    dip = pip * _uniform((count, 4), 0.5, 0.8, generator)
    splay = _SPLAY * (1 - 0.7 * curl) + _uniform((count, 4), -8, 8, generator) * deg
    zeros = torch.zeros(count, 4)
    base = torch.stack([_MCP[:, 0].expand(count, 4), _MCP[:, 1].expand(count, 4), zeros], -1)
    direction = torch.stack([torch.sin(splay), torch.cos(splay), zeros], -1)
    bend = torch.tensor([0.0, 0.0, 1.0]).expand(count, 4, 3)
    fingers = _chain(base, direction, bend, torch.stack([mcp, pip, dip], -1), _PHALANGES.expand(count, 4, 3))

    # Thumb: from its base toward the index side and out of the palm plane, bending toward the palm.
    spread = _uniform((count,), 35, 65, generator) * deg
    opposition = _uniform((count,), 0, 55, generator) * deg
    direction = torch.stack(
        [torch.sin(spread) * torch.cos(opposition), torch.cos(spread) * torch.cos(opposition), torch.sin(opposition)], -1
    )
    inward = torch.tensor([-1.0, 0.3, 1.0]).expand(count, 3)
    bend = inward - (inward * direction).sum(-1, keepdim=True) * direction
    bend = bend / bend.norm(dim=-1, keepdim=True)
    thumb_curl = (grasp.squeeze(1) + _uniform((count,), -0.4, 0.4, generator)).clamp(0, 1)
    thumb_angles = torch.stack([torch.zeros(count), thumb_curl * 55 * deg, thumb_curl * 70 * deg], -1)
    thumb = _chain(
        _THUMB_BASE.expand(count, 3).unsqueeze(1), direction.unsqueeze(1), bend.unsqueeze(1),
        thumb_angles.unsqueeze(1), torch.tensor(_THUMB_BONES).expand(count, 1, 3),
    )[:, 0]

    wrist = torch.cat([_WRIST, torch.zeros(2, 1)], -1).expand(count, 2, 3)
    palm = torch.zeros(count, 1, 3)
    tips_and_pips = fingers[:, :, [3, 1]].reshape(count, 8, 3)
    joints = torch.cat([tips_and_pips, thumb[:, [3, 2, 1]], wrist, palm], 1)

    carpal = torch.stack([_MCP[:, 0] * 0.55, torch.full((4,), -34.0), torch.zeros(4)], -1).expand(count, 4, 3)
    metacarpals = torch.stack([carpal, fingers[:, :, 0]], 2)
    phalanges = torch.stack([fingers[:, :, :-1], fingers[:, :, 1:]], 3).flatten(1, 2)
    thumb_bones = torch.stack([thumb[:, :-1], thumb[:, 1:]], 2)
    wrist_bone = torch.stack([wrist[:, 0] * 0.8, wrist[:, 1] * 0.8], 1).unsqueeze(1)
    bones = torch.cat([metacarpals, phalanges, thumb_bones, wrist_bone], 1)
    finger_radii = torch.tensor(_FINGER_RADII)
    radii = torch.cat([
        torch.full((count, 4, 2), _PALM_RADIUS),
        torch.stack([finger_radii[:-1], finger_radii[1:]], -1).repeat(4, 1).expand(count, 12, 2),
        torch.tensor([[12.0, 10.0], [10.0, 8.5], [8.5, 7.0]]).expand(count, 3, 2),
        torch.full((count, 1, 2), 13.0),
    ], 1)
    return joints, bones, radii


def sample_geometry(count: int, height: int, width: int, generator: torch.Generator) -> HandGeometry:
    """Draw ``count`` articulated hands, posed and placed in a ``height x width`` crop."""
    deg = math.pi / 180
    joints, bones, radii = _articulate(count, generator)
    scale = _uniform((count, 1, 1), 0.85, 1.15, generator)
    # Fingers up, palm toward the camera, then rotated: in the image plane, then out of it.
    upright = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    rotation = (
        _rotation(2, _uniform((count,), -60, 60, generator) * deg)
        @ _rotation(0, _uniform((count,), -50, 50, generator) * deg)
        @ _rotation(1, _uniform((count,), -50, 50, generator) * deg)
        @ upright
    )
    mm_per_pixel = CUBE_MM / width
    camera = (joints * scale) @ rotation.transpose(1, 2)
    ends = (bones.flatten(1, 2) * scale) @ rotation.transpose(1, 2)
    lower, upper = camera[..., :2].amin(1, keepdim=True), camera[..., :2].amax(1, keepdim=True)
    centre = torch.cat([(lower + upper) / 2, camera[..., 2:].mean(1, keepdim=True)], -1)
    jitter = torch.cat([
        _uniform((count, 1, 2), -0.06, 0.06, generator) * CUBE_MM,
        _uniform((count, 1, 1), -10, 10, generator),
    ], -1)
    centre = centre + jitter
    to_crop = torch.tensor([1 / mm_per_pixel, 1 / mm_per_pixel, 1.0])
    offset = torch.tensor([width / 2, height / 2, 0.0])
    return HandGeometry(
        joints=(camera - centre) * to_crop + offset,
        bones=((ends - centre) * to_crop + offset).view(bones.shape),
        radii=radii * scale,
        axes=rotation.transpose(1, 2),
        distance=_uniform((count,), *DISTANCE_RANGE_MM, generator),
        mm_per_pixel=mm_per_pixel,
    )


def normalize_depth(depth: Tensor) -> Tensor:
    """Depth in mm relative to the crop centre to images in [-1, 1]; no reading (inf or nan) is 1."""
    return (depth / DEPTH_HALF_RANGE_MM).nan_to_num(1.0, posinf=1.0).clamp(-1, 1)
