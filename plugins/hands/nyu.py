"""``nyu-hand:PATH``: the NYU hand pose dataset (Tompson et al. 2014), real Kinect depth.

Layout, as NYU ships it: ``PATH/train`` and ``PATH/test``, each holding
``joint_data.mat`` (``joint_uvd`` and ``joint_xyz``, indexed
``[kinect - 1, frame - 1, 36, 3]``) and ``depth_K_NNNNNNN.png`` frames (640x480
RGB, depth in mm = ``(G << 8) | B``, 0 = no reading). Frames of the front camera
(kinect 1, the one NYU's evaluation uses) are read in order.

A few loose frames (a folder with no ``train/`` or ``test/``) work too: each
``depth_1_NNNNNNN.png`` beside a ``depth_1_NNNNNNN.joints.txt`` holding its 14
evaluation joints as 42 numbers (``u v d`` per joint, pixels and mm, in NYU's
evaluation order; whitespace or line breaks between them). They are test frames
only (real labeled frames are for testing): the train split is empty.

Each frame is cropped as the embedded hand domains are (``geometry.py``): a
300 mm cube around the centre of the 14 evaluation joints' bounding box and
their mean depth, projected with NYU's intrinsics, resampled (nearest, so depth
steps stay sharp) to the crop size, depth normalized around the centre.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.io
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from sim2real_bench.data import Dataset, Progress, Samples
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.plugins.hands.domain import LABEL_KIND
from sim2real_bench.plugins.hands.geometry import DEPTH_HALF_RANGE_MM, LABEL_NAMES, normalize_depth

EVALUATION_JOINTS = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
"""NYU's 14-joint evaluation subset of its 36 joints."""
FOCAL = (588.03, 587.07)
"""NYU Kinect intrinsics fx, fy (pixels); the principal point is (320, 240)."""
KINECT = 1
JOINTS_SUFFIX = ".joints.txt"
"""A loose frame's joints file: ``depth_1_NNNNNNN.joints.txt`` beside ``depth_1_NNNNNNN.png``."""


def read_depth(path: Path) -> Tensor:
    """A NYU depth PNG as ``(480, 640)`` float32 mm (0: no reading)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read NYU depth image {path} ({error}); re-extract the dataset") from error
    return torch.from_numpy(((pixels[..., 1] << 8) | pixels[..., 2]).astype(np.float32))


def read_joints(path: Path) -> Tensor:
    """The 14 evaluation joints' (u, v, depth mm) of kinect 1's frames, ``(F, 14, 3)``."""
    try:
        contents = scipy.io.loadmat(path, variable_names=["joint_uvd"])
    except FileNotFoundError as error:
        raise DataError(f"{path} is missing; each NYU split folder needs its joint_data.mat") from error
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"cannot read {path} as a MATLAB file ({error}); re-extract the dataset") from error
    uvd = contents.get("joint_uvd")
    if uvd is None or uvd.ndim != 4 or uvd.shape[2:] != (36, 3):
        found = "no joint_uvd" if uvd is None else f"joint_uvd of shape {uvd.shape}"
        raise DataError(f"{path} has {found}; NYU's joint_data.mat holds joint_uvd [kinect, frame, 36, 3]")
    return torch.from_numpy(np.ascontiguousarray(uvd[KINECT - 1][:, EVALUATION_JOINTS], dtype=np.float32))


def read_joints_text(path: Path) -> Tensor:
    """A loose frame's 14 evaluation joints ``(14, 3)``: u, v in image pixels, depth in mm."""
    try:
        values = np.array(path.read_text().split(), dtype=np.float32)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as numbers ({error}); expected 42 numbers, u v d of 14 joints") from error
    if values.size != 3 * len(EVALUATION_JOINTS) or not np.isfinite(values).all():
        raise DataError(f"{path} holds {values.size} numbers; expected 42 finite ones, u v d of the 14 evaluation "
                        "joints in NYU's order")
    return torch.from_numpy(values.reshape(len(EVALUATION_JOINTS), 3))


def crop_hand(depth: Tensor, joints: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Crop one frame around its hand: an image ``(1, size, size)`` in [-1, 1] and labels ``(42,)``."""
    lower, upper = joints[:, :2].amin(0), joints[:, :2].amax(0)
    centre, depth_centre = (lower + upper) / 2, joints[:, 2].mean()
    half = torch.tensor(FOCAL) * DEPTH_HALF_RANGE_MM / depth_centre
    corner = centre - half
    steps = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    columns = (corner[0] + steps * 2 * half[0]).floor().long()
    rows = (corner[1] + steps * 2 * half[1]).floor().long()
    height, width = depth.shape
    inside = ((rows >= 0) & (rows < height)).view(-1, 1) & ((columns >= 0) & (columns < width)).view(1, -1)
    crop = depth[rows.clamp(0, height - 1).view(-1, 1), columns.clamp(0, width - 1).view(1, -1)]
    crop = torch.where(inside & (crop > 0), crop - depth_centre, torch.inf)
    labels = torch.cat([(joints[:, :2] - corner) * size / (2 * half), (joints[:, 2:] - depth_centre) / DEPTH_HALF_RANGE_MM], 1)
    return normalize_depth(crop).unsqueeze(0), labels.flatten()


class NyuHands(Dataset):
    """NYU hands (real Kinect depth, ``nyu-hand:PATH``), cropped to 64x64 like ``synth-hands``."""

    label_kind: ClassVar[str] = LABEL_KIND
    label_names: ClassVar[tuple[str, ...]] = LABEL_NAMES
    size: ClassVar[int] = 64

    def __init__(self, name: str, argument: str | None = None) -> None:
        if argument is None:
            raise ConfigError(f"dataset {name!r} needs the dataset folder: use '{name}:/data/nyu_hand_dataset_v2'")
        super().__init__(name, argument)
        self.root = Path(argument).expanduser()
        if not self.root.is_dir():
            raise DataError(f"NYU hand folder {self.root} does not exist; point {name}:PATH at the folder holding train/ and test/")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.size, self.size)

    def loose_frames(self) -> list[Path]:
        """The depth PNGs of a folder of loose frames, each with its joints file (empty for NYU's own layout)."""
        if (self.root / "train").is_dir() or (self.root / "test").is_dir():
            return []
        joints = sorted(self.root.glob(f"depth_{KINECT}_*{JOINTS_SUFFIX}"))
        return [path.with_name(path.name.removesuffix(JOINTS_SUFFIX) + ".png") for path in joints]

    def _frames(self, split: str, size: int) -> list[tuple[Path, Tensor]]:
        """``(depth PNG, joints (14, 3))`` of the first ``size`` frames of ``split``."""
        loose = self.loose_frames()
        if loose:
            if split == "train":
                raise DataError(f"{self.spec} holds loose frames ({len(loose)} with {JOINTS_SUFFIX} files), which "
                                "are test frames only; use it as a test set (--target-test), not for training")
            return [(png, read_joints_text(png.with_name(png.stem + JOINTS_SUFFIX))) for png in loose[:size]]
        folder = self.root / split
        joints = read_joints(folder / "joint_data.mat")[:size]
        if len(joints) == 0:
            raise DataError(f"{folder / 'joint_data.mat'} lists no frames; asked for {size}")
        return [(folder / f"depth_{KINECT}_{index + 1:07d}.png", frame) for index, frame in enumerate(joints)]

    def load(self, split: str, size: int, seed: int, progress: Progress | None = None) -> Samples:
        """The first ``size`` frames of ``split`` in NYU's order (``seed`` is unused: the data is fixed)."""
        self._check_split(split)
        images, labels = [], []
        for png, frame_joints in self._frames(split, size):
            image, label = crop_hand(read_depth(png), frame_joints, self.size)
            images.append(image)
            labels.append(label)
            if progress is not None:
                progress(1)
        return Samples(torch.stack(images), torch.stack(labels))
