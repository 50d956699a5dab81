"""The NYU hand loader on a tiny fixture written in NYU's exact formats, and on the real frame in ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from realdata import REAL_HAND, shared_path

from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.plugins.hands.geometry import DEPTH_HALF_RANGE_MM
from sim2real_bench.plugins.hands.nyu import EVALUATION_JOINTS, FOCAL, NyuHands, crop_hand, read_depth, read_joints_text

FRAMES = 2
DEPTH_MM = 700


def joints_uvd(frame: int) -> np.ndarray:
    """36 joints of one frame; the 14 evaluated ones span a box centred at (300 + 10 * frame, 200)."""
    uvd = np.zeros((36, 3))
    uvd[:, 0], uvd[:, 1], uvd[:, 2] = 300 + 10 * frame, 200, DEPTH_MM
    uvd[EVALUATION_JOINTS, 0] += np.linspace(-40, 40, 14)
    uvd[EVALUATION_JOINTS, 1] += np.linspace(-50, 50, 14)
    uvd[EVALUATION_JOINTS, 2] += np.linspace(-20, 20, 14)
    return uvd


def write_png(path: Path, depth_mm: np.ndarray) -> None:
    rgb = np.zeros((*depth_mm.shape, 3), dtype=np.uint8)
    rgb[..., 1], rgb[..., 2] = depth_mm >> 8, depth_mm & 0xFF
    Image.fromarray(rgb).save(path)


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nyu")
    for split in ("train", "test"):
        folder = root / split
        folder.mkdir()
        uvd = np.stack([joints_uvd(frame) for frame in range(FRAMES)])[None].repeat(3, 0)  # 3 kinects
        scipy.io.savemat(folder / "joint_data.mat", {"joint_uvd": uvd, "joint_xyz": np.zeros_like(uvd)})
        for frame in range(FRAMES):
            depth = np.zeros((480, 640), dtype=np.int64)  # 0: no reading
            u, v = 300 + 10 * frame, 200
            depth[v - 60 : v + 60, u - 50 : u + 50] = DEPTH_MM  # the "hand": a flat patch at 700 mm
            write_png(folder / f"depth_1_{frame + 1:07d}.png", depth)
    return root


def test_frames_load_as_64x64_crops_with_labels(nyu_root: Path) -> None:
    samples = NyuHands("nyu-hand", str(nyu_root)).load("test", 10, seed=0)
    assert samples.images.shape == (FRAMES, 1, 64, 64) and samples.labels.shape == (FRAMES, 42)
    assert samples.images.min() >= -1 and samples.images.max() <= 1


def test_joints_land_where_the_crop_convention_puts_them(nyu_root: Path) -> None:
    joints = NyuHands("nyu-hand", str(nyu_root)).load("train", 1, seed=0).labels.view(14, 3)
    half_u = FOCAL[0] * DEPTH_HALF_RANGE_MM / DEPTH_MM  # a 300 mm cube at 700 mm, in image pixels
    expected_u = 32 + torch.linspace(-40, 40, 14) * 32 / half_u
    torch.testing.assert_close(joints[:, 0], expected_u, atol=1e-3, rtol=0)
    torch.testing.assert_close(joints[:, 2], torch.linspace(-20, 20, 14) / DEPTH_HALF_RANGE_MM, atol=1e-4, rtol=0)
    assert joints[0, 1] < joints[-1, 1]


def test_depth_is_normalized_around_the_hand_and_no_reading_is_background(nyu_root: Path) -> None:
    image = NyuHands("nyu-hand", str(nyu_root)).load("train", 1, seed=0).images[0, 0]
    assert image[32, 32].item() == pytest.approx(0.0, abs=1e-3)  # the patch is at the joints' mean depth
    assert image[0, 0].item() == 1.0


def test_a_corrupt_png_names_the_file(nyu_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    (broken / "test").mkdir(parents=True)
    (broken / "test" / "joint_data.mat").write_bytes((nyu_root / "test" / "joint_data.mat").read_bytes())
    (broken / "test" / "depth_1_0000001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="depth_1_0000001.png"):
        NyuHands("nyu-hand", str(broken)).load("test", 1, seed=0)


def test_a_mat_without_joint_uvd_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    scipy.io.savemat(tmp_path / "train" / "joint_data.mat", {"joint_xyz": np.zeros((1, 1, 36, 3))})
    with pytest.raises(DataError, match=r"joint_data\.mat has no joint_uvd"):
        NyuHands("nyu-hand", str(tmp_path)).load("train", 1, seed=0)


def test_the_folder_is_required_and_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nyu-hand:/"):
        NyuHands("nyu-hand")
    with pytest.raises(DataError, match="does not exist"):
        NyuHands("nyu-hand", str(tmp_path / "missing"))


def write_loose_frame(folder: Path, number: int, uvd: np.ndarray) -> None:
    """A loose frame: ``depth_1_NNNNNNN.png`` (a flat patch at 700 mm) and its ``.joints.txt`` (14 x u v d)."""
    depth = np.zeros((480, 640), dtype=np.int64)
    depth[150:250, 250:350] = DEPTH_MM
    write_png(folder / f"depth_1_{number:07d}.png", depth)
    (folder / f"depth_1_{number:07d}.joints.txt").write_text(" ".join(f"{value:.3f}" for value in uvd.ravel()))


def test_loose_frames_with_joints_files_are_test_frames(tmp_path: Path) -> None:
    for number in (1, 2):
        write_loose_frame(tmp_path, number, joints_uvd(number)[list(EVALUATION_JOINTS)])
    dataset = NyuHands("nyu-hand", str(tmp_path))
    samples = dataset.load("test", 10, seed=0)
    assert samples.images.shape == (2, 1, 64, 64) and samples.labels.shape == (2, 42)
    joints = read_joints_text(tmp_path / "depth_1_0000001.joints.txt")
    torch.testing.assert_close(joints, torch.tensor(joints_uvd(1)[list(EVALUATION_JOINTS)], dtype=torch.float32),
                               atol=1e-3, rtol=0)
    expected = crop_hand(read_depth(tmp_path / "depth_1_0000001.png"), joints, 64)
    torch.testing.assert_close(samples.images[0], expected[0])
    torch.testing.assert_close(samples.labels[0], expected[1])
    with pytest.raises(DataError, match="test frames only"):
        dataset.load("train", 10, seed=0)


def test_a_joints_file_without_42_numbers_names_the_file(tmp_path: Path) -> None:
    write_loose_frame(tmp_path, 1, np.zeros((13, 3)))
    with pytest.raises(DataError, match=r"depth_1_0000001.joints.txt holds 39 numbers; expected 42"):
        NyuHands("nyu-hand", str(tmp_path)).load("test", 1, seed=0)


# The real NYU test frame in ../shared (skipped where it is absent).

JOINT_DEPTH_BELOW_SURFACE_MM = (0.0, 45.0)
"""A joint lies inside the hand: the depth sensor sees the skin in front of it, up to about a finger's or the
palm's half-thickness nearer the camera (measured on the real frame: 3 to 35 mm)."""


def real_frame() -> tuple[Path, torch.Tensor]:
    folder = shared_path(*REAL_HAND)
    return folder / "depth_1_0000001.png", read_joints_text(folder / "depth_1_0000001.joints.txt")


def test_the_real_frame_decodes_to_the_hand_surface_at_every_joint() -> None:
    png, joints = real_frame()
    depth = read_depth(png)
    assert depth.shape == (480, 640) and 500 < depth[depth > 0].min() < 800
    surface = depth[joints[:, 1].long(), joints[:, 0].long()]
    below = joints[:, 2] - surface
    low, high = JOINT_DEPTH_BELOW_SURFACE_MM
    assert ((below >= low) & (below <= high)).all(), below


def test_the_real_frame_crops_with_every_joint_inside_as_the_crop_convention_places_it() -> None:
    png, joints = real_frame()
    samples = NyuHands("nyu-hand", str(png.parent)).load("test", 1, seed=0)
    labels = samples.labels.view(14, 3)
    assert ((labels[:, :2] > 0) & (labels[:, :2] < 64)).all()
    # The convention of geometry.py, computed here from the README's numbers: a 300 mm cube around the centre
    # of the joints' bounding box at their mean depth, u and v in crop pixels, d = (z - zc) / 150 mm.
    depth_centre = joints[:, 2].mean()
    half = torch.tensor(FOCAL) * DEPTH_HALF_RANGE_MM / depth_centre
    centre = (joints[:, :2].amin(0) + joints[:, :2].amax(0)) / 2
    torch.testing.assert_close(labels[:, :2], (joints[:, :2] - centre + half) * 64 / (2 * half))
    torch.testing.assert_close(labels[:, 2], (joints[:, 2] - depth_centre) / DEPTH_HALF_RANGE_MM)
    # At each joint's crop pixel the image shows the hand's surface, a little nearer than the joint.
    image = samples.images[0, 0]
    seen = image[labels[:, 1].long(), labels[:, 0].long()]
    low, high = (bound / DEPTH_HALF_RANGE_MM for bound in JOINT_DEPTH_BELOW_SURFACE_MM)
    assert ((labels[:, 2] - seen >= low - 0.02) & (labels[:, 2] - seen <= high)).all()
