"""``kinect-hands``: a procedural STAND-IN for real depth captures such as NYU hands.

It is not real data. It draws the same hand geometry as ``synth-hands`` (so labels
mean the same thing) and forms the depth map the way a Kinect v1 in front of a
person does, adding what the clean renderer lacks:

* scene: in part of the images the forearm leaving the crop from the wrist, a
  wall or body behind the hand (a tilted plane), blobs of clutter (capsule
  spheres) at random depths;
* crop: a hand centre estimated from noisy data, so an extra jitter of the crop
  (labels move with it: they are measured in the crop);
* sensor (:mod:`.sensor`): projector shadows, no reading at depth steps and in
  random dropout patches, noise growing as ``Z^2``, a low-frequency wobble,
  disparity quantization coarsening with distance.

The strengths are the fields of :class:`CaptureConfig`; their defaults are the
calibration documented in ``results/calibration-hands.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim2real_bench.plugins import imaging
from sim2real_bench.plugins.hands import sensor
from sim2real_bench.plugins.hands.domain import HandDomain
from sim2real_bench.plugins.hands.geometry import HandGeometry
from sim2real_bench.plugins.hands.render import render_capsules
from sim2real_bench.plugins.imaging import uniform


@dataclass(frozen=True)
class CaptureConfig:
    """Strength of each effect of the capture model (probabilities, or upper ends of per-image draws)."""

    crop_jitter_px: float = 2.0
    crop_jitter_mm: float = 15.0
    forearm: float = 0.2
    """Share of images showing the forearm."""
    background: float = 0.2
    """Share of images with a wall or body surface behind the hand."""
    clutter_objects: int = 3
    clutter: float = 0.1
    """Chance of each clutter blob being present."""
    baseline_mm: float = 75.0
    disparity_step_px: float = 0.125
    noise_mm: float = 3.0
    """Per-pixel depth noise std at 1 m (grows as Z^2)."""
    wobble_mm: float = 3.0
    """Low-frequency depth error std at 1 m."""
    edge_jump_mm: float = 25.0
    edge_dropout: float = 0.5
    """Chance that a pixel on the far side of a depth step reads nothing."""
    edge_erosion: float = 0.1
    """Chance that a pixel on the near side of a depth step reads nothing (ragged silhouettes)."""
    hole_threshold: float = 2.6
    """Dropout patches where a unit-std 1/f field exceeds this (higher: fewer holes)."""


def forearm(geometry: HandGeometry, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A capsule ``(N, 1, 2, 3)`` from the wrist away from the fingers, and its radii ``(N, 1, 2)``."""
    count = geometry.joints.shape[0]
    wrist = geometry.joints[:, 11:13].mean(1)
    to_crop = torch.tensor([1 / geometry.mm_per_pixel, 1 / geometry.mm_per_pixel, 1.0])
    down = -geometry.axes[:, 1] * to_crop
    length = uniform(count, 250, 350, generator).view(-1, 1)
    ends = torch.stack([wrist + 15 * down, wrist + length * down], 1)
    radii = torch.cat([uniform(count, 22, 27, generator), uniform(count, 30, 38, generator)], 1).view(-1, 1, 2)
    return ends.unsqueeze(1), radii


def clutter(count: int, size: int, config: CaptureConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sphere blobs behind the hand: capsules ``(N, K, 2, 3)`` with radii ``(N, K, 2)`` (0: absent)."""
    shape = (count, config.clutter_objects)
    centre = torch.stack([
        torch.empty(shape).uniform_(0, size, generator=generator),
        torch.empty(shape).uniform_(0, size, generator=generator),
        torch.empty(shape).uniform_(30, 250, generator=generator),
    ], -1)
    present = torch.rand(shape, generator=generator) < config.clutter
    radius = torch.empty(shape).uniform_(25, 70, generator=generator) * present
    return centre.unsqueeze(2).expand(*shape, 2, 3), radius.unsqueeze(-1).expand(*shape, 2)


def background(count: int, size: int, config: CaptureConfig, mm_per_pixel: float, generator: torch.Generator) -> Tensor:
    """A tilted surface behind the hand (inf where an image has none), mm from the crop centre."""
    steps = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    slope_u, slope_v = (uniform(count, -0.8, 0.8, generator) * mm_per_pixel for _ in range(2))
    plane = uniform(count, 80, 400, generator) + slope_u * steps.view(1, 1, 1, -1) + slope_v * steps.view(1, 1, -1, 1)
    present = torch.rand(count, 1, 1, 1, generator=generator) < config.background
    return torch.where(present, plane, torch.inf)


class KinectHands(HandDomain):
    """Stand-in for real Kinect hand crops (NYU-like), 64x64 depth, not real data.

    Same label geometry as ``synth-hands``; see the module docstring for the
    capture model. Results on it are a benchmark of method mechanics, to be
    confirmed on NYU hands with the ``nyu-hand:PATH`` loader.
    """

    capture_config = CaptureConfig()

    def capture(self, geometry: HandGeometry, generator: torch.Generator) -> tuple[Tensor, HandGeometry]:
        config, size, mm = self.capture_config, self.size, geometry.mm_per_pixel
        count = geometry.joints.shape[0]
        jitter = torch.cat([
            torch.empty(count, 2).uniform_(-config.crop_jitter_px, config.crop_jitter_px, generator=generator),
            torch.empty(count, 1).uniform_(-config.crop_jitter_mm, config.crop_jitter_mm, generator=generator),
        ], 1)
        geometry = geometry.moved(jitter)

        arm, arm_radii = forearm(geometry, generator)
        arm_radii = arm_radii * (torch.rand(count, 1, 1, generator=generator) < config.forearm)
        blobs, blob_radii = clutter(count, size, config, generator)
        bones = torch.cat([geometry.bones, arm, blobs], 1)
        radii = torch.cat([geometry.radii, arm_radii, blob_radii], 1)
        scene = render_capsules(bones, radii, size, size, mm)
        scene = torch.minimum(scene, background(count, size, config, mm, generator))

        distance = geometry.distance.view(-1, 1, 1, 1)
        depth = scene + distance
        invalid = sensor.projector_shadow(depth, geometry.distance / mm, config.baseline_mm)
        far_side, near_side = sensor.depth_steps(depth, config.edge_jump_mm)
        chance = torch.rand(depth.shape, generator=generator)
        invalid |= (far_side & (chance < config.edge_dropout)) | (near_side & (chance < config.edge_erosion))
        invalid |= imaging.pink_noise(count, size, size, 2.0, generator) > config.hole_threshold
        depth = sensor.depth_noise(depth, uniform(count, 0.5, 1.0, generator) * config.noise_mm, generator)
        wobble = uniform(count, 0.0, 1.0, generator) * config.wobble_mm * (depth.clamp(max=1e4) / 1000).square()
        depth = depth + wobble * imaging.pink_noise(count, size, size, 3.0, generator)
        depth = sensor.quantize_disparity(depth, config.baseline_mm, config.disparity_step_px)
        return torch.where(invalid | depth.isinf(), torch.inf, depth - distance), geometry
