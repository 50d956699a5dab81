"""The embedded hand domains and their renderer: shapes, ranges, labels (determinism: test_procedural_datasets.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sim2real_bench.plugins.hands.kinect import KinectHands
from sim2real_bench.plugins.hands.synthetic import SynthHands
from sim2real_bench.plugins.hands.geometry import DEPTH_HALF_RANGE_MM, LABEL_NAMES
from sim2real_bench.plugins.hands.render import render_capsules
from sim2real_bench.plugins.hands.sensor import neighbourhood_extreme, projector_shadow, quantize_disparity

DOMAINS = [SynthHands("synth-hands"), KinectHands("kinect-hands")]
ids = [d.name for d in DOMAINS]


@pytest.fixture(scope="module", params=DOMAINS, ids=ids)
def domain_and_samples(request) -> tuple:
    domain = request.param
    return domain, domain.load("test", 300, seed=0)


def test_images_are_64x64_depth_in_range(domain_and_samples) -> None:
    domain, samples = domain_and_samples
    assert domain.image_shape == (1, 64, 64)
    assert samples.images.shape == (300, 1, 64, 64)
    assert samples.images.dtype == torch.float32
    assert samples.images.min() >= -1 and samples.images.max() <= 1


def test_every_image_shows_a_hand_nearer_than_the_background(domain_and_samples) -> None:
    _, samples = domain_and_samples
    assert ((samples.images < 0.5).flatten(1).float().mean(1) > 0.02).all()


def test_labels_are_42_joint_major_values_inside_the_crop(domain_and_samples) -> None:
    _, samples = domain_and_samples
    joints = samples.labels.view(300, 14, 3)
    assert samples.labels.shape == (300, 42) and len(LABEL_NAMES) == 42
    assert joints[..., :2].min() >= 0 and joints[..., :2].max() <= 64
    assert joints[..., 2].abs().max() < 1
    assert joints[..., :2].std() > 5


def test_depth_at_a_joints_pixel_matches_its_label_depth() -> None:
    # The surface at a joint's pixel is never behind the joint (joints lie inside their bones),
    # and for most joints it is the joint's own bone, a few mm in front of it.
    samples = SynthHands("synth-hands").load("test", 200, seed=0)
    joints = samples.labels.view(-1, 14, 3)
    u, v = joints[..., 0].long().clamp(0, 63), joints[..., 1].long().clamp(0, 63)
    surface = samples.images[torch.arange(200).view(-1, 1), 0, v, u]
    assert (surface <= joints[..., 2] + 5 / DEPTH_HALF_RANGE_MM).all()
    assert ((joints[..., 2] - surface) < 20 / DEPTH_HALF_RANGE_MM).float().mean() > 0.7


def test_both_domains_share_label_geometry() -> None:
    synthetic, kinect = (d.load("test", 512, seed=0).labels.view(-1, 14, 3) for d in DOMAINS)
    torch.testing.assert_close(synthetic.mean(0), kinect.mean(0), atol=1.5, rtol=0)
    torch.testing.assert_close(synthetic.std(0), kinect.std(0), atol=1.0, rtol=0)


def test_only_the_kinect_stand_in_shows_a_forearm_leaving_the_crop() -> None:
    def touches_border(images: torch.Tensor) -> torch.Tensor:
        border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
        return (border < 1).flatten(1).any(1).float().mean()

    synthetic, kinect = (d.load("test", 200, seed=0).images for d in DOMAINS)
    assert touches_border(synthetic) == 0
    assert touches_border(kinect) > 0.1


def test_a_capsule_parallel_to_the_image_is_rendered_with_its_front_surface() -> None:
    bones = torch.tensor([[[[10.0, 20.0, 50.0], [40.0, 20.0, 50.0]]]])
    depth = render_capsules(bones, torch.full((1, 1, 2), 12.0), 32, 64, mm_per_pixel=4.0)
    assert depth.shape == (1, 1, 32, 64)
    assert depth[0, 0, 19, 25].item() == pytest.approx(50 - math.sqrt(144 - 0.25 * 16), abs=1e-3)
    assert math.isinf(depth[0, 0, 5, 25].item()) and math.isinf(depth[0, 0, 20, 50].item())


def test_an_absent_capsule_changes_no_pixel_of_its_own_image_or_another() -> None:
    # Kinect scenes carry optional objects as capsules of radius 0; the renderer skips their windows.
    bones = torch.tensor([[[10.0, 20.0, 50.0], [40.0, 20.0, 50.0]], [[5.0, 5.0, 20.0], [30.0, 30.0, 80.0]]])
    radii = torch.tensor([[12.0, 12.0], [20.0, 8.0]])
    scene = bones.view(1, 2, 2, 3).expand(3, 2, 2, 3) + torch.tensor([0.0, 0.0, 1.0]) * torch.arange(3.0).view(3, 1, 1, 1)
    present = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).unsqueeze(-1)
    depth = render_capsules(scene, radii * present, 32, 64, mm_per_pixel=4.0)
    for image in range(3):
        shown = present[image, :, 0].bool()
        alone = render_capsules(scene[image : image + 1, shown], radii[shown].unsqueeze(0), 32, 64, mm_per_pixel=4.0)
        assert torch.equal(depth[image], alone[0])
    assert 0 < torch.isfinite(depth[1]).sum() < torch.isfinite(depth[0]).sum()


def test_disparity_quantization_coarsens_with_distance() -> None:
    def step(distance: float) -> float:
        values = quantize_disparity(torch.linspace(distance, distance + 100, 2000), 75.0, 0.125).unique()
        return (values[1:] - values[:-1]).median().item()

    assert 3.5 < step(1000) / step(500) < 4.5


def test_projector_shadow_falls_beside_a_near_object_on_one_side() -> None:
    depth = torch.full((1, 1, 8, 32), 1000.0)
    depth[..., 12:20] = 600.0
    shadow = projector_shadow(depth, torch.tensor([100.0]), baseline_mm=75.0)[0, 0, 0]
    assert shadow[:12].any() and not shadow[12:].any()


def test_neighbourhood_extremes_are_a_3x3_pooling_of_the_depth_map() -> None:
    depth = torch.rand(4, 1, 16, 20, generator=torch.Generator().manual_seed(0)) * 1000
    depth[0, 0, 3:6, 4:9] = math.inf  # no reading
    assert torch.equal(neighbourhood_extreme(depth, torch.maximum), F.max_pool2d(depth, 3, 1, 1))
    assert torch.equal(neighbourhood_extreme(depth, torch.minimum), -F.max_pool2d(-depth, 3, 1, 1))
