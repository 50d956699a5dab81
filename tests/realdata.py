"""Writers of tiny fixtures in the exact on-disk formats of the real datasets.

* UnityEyes: ``N.jpg`` + ``N.json`` with string tuples and screen y pointing up.
* MPIIGaze: ``Data/Normalized/pXX/dayNN.mat`` in the Normalized struct layout
  (written with ``scipy.io.savemat``), and evaluation lists.
* Folders: PNG images with an optional ``labels.csv``.

And the way to the real captures beside the project (``../shared``, never
copied in): :func:`shared_path` gives a path under it or skips the test, with
the reason, where it is absent (a fresh clone has none).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

SHARED_ENV = "S2R_BENCH_SHARED"
"""Where the real captures are, if not ``../shared`` beside the repository."""
SHARED = Path(os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[2] / "shared")
REAL_EYES = ("real-eyes", "mpiigaze")
"""1,500 unlabeled real MPIIGaze normalized eye crops, 60x36 PNG, histogram-equalized."""
REAL_EYES_LABELED = ("real-eyes", "columbia")
"""1,008 labeled Columbia Gaze eye patches, 64x64 RGB JPEG, with ``labels.csv`` (file,pitch,yaw)."""
REAL_HAND = ("real-hands", "nyu")
"""One real NYU test frame, ``depth_1_0000001.png``, and its 14 joints, ``depth_1_0000001.joints.txt``."""


def shared_path(*parts: str) -> Path:
    """``SHARED/parts...``, or skip the calling test when it is absent (the real captures are not part of the project)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the real captures at {path}, which are not part of the project (set {SHARED_ENV} to "
                    "the folder holding real-eyes/ and real-hands/)")
    return path


RENDER_SIZE = (120, 160)
"""Height and width of the fixture UnityEyes renders (real ones are larger)."""
EYE_CENTRE = (70.0, 40.0)
"""x, y in image pixels (y down) of the fixture eye: off the vertical middle, so a missed y flip shows."""
EYE_HALF_SIZE = (30.0, 13.0)
IRIS_RADIUS = 9.0
IRIS_TRAVEL = 14.0
"""Pixels the iris moves per unit of look_vec x or y."""


def unity_tuple(values: Sequence[float]) -> str:
    """A UnityEyes string tuple: ``"(1.0000, -2.0000, 3.0000)"``."""
    return "(" + ", ".join(f"{value:.4f}" for value in values) + ")"


def unity_annotation(look_vec: Sequence[float], height: int = RENDER_SIZE[0]) -> dict:
    """A UnityEyes JSON annotation of the fixture eye looking along ``look_vec`` (Unity camera frame)."""
    centre_x, centre_y = EYE_CENTRE
    half_w, half_h = EYE_HALF_SIZE
    iris_x, iris_y = centre_x + IRIS_TRAVEL * look_vec[0], centre_y - IRIS_TRAVEL * look_vec[1]

    def ring(x: float, y: float, rx: float, ry: float, count: int) -> list[str]:
        angles = [2 * math.pi * k / count for k in range(count)]
        return [unity_tuple((x + rx * math.cos(a), height - (y + ry * math.sin(a)), 10.0)) for a in angles]

    return {
        "interior_margin_2d": ring(centre_x, centre_y, half_w, half_h, 16),
        "caruncle_2d": ring(centre_x - half_w, centre_y, 3, 2, 7),
        "iris_2d": ring(iris_x, iris_y, IRIS_RADIUS, IRIS_RADIUS, 32),
        "eye_details": {"look_vec": unity_tuple((*look_vec, 0.0)), "pupil_size": "0.0500", "iris_size": "0.9000"},
        "head_pose": unity_tuple((0.0, 180.0, 0.0)),
    }


def unity_render(look_vec: Sequence[float]) -> Image.Image:
    """An RGB render of the fixture eye: skin, a bright eye opening, a dark iris moved by ``look_vec``."""
    height, width = RENDER_SIZE
    image = Image.new("RGB", (width, height), (120, 95, 85))
    draw = ImageDraw.Draw(image)
    (x, y), (half_w, half_h) = EYE_CENTRE, EYE_HALF_SIZE
    draw.ellipse((x - half_w, y - half_h, x + half_w, y + half_h), fill=(235, 235, 230))
    iris_x, iris_y = x + IRIS_TRAVEL * look_vec[0], y - IRIS_TRAVEL * look_vec[1]
    radius = IRIS_RADIUS
    draw.ellipse((iris_x - radius, iris_y - radius, iris_x + radius, iris_y + radius), fill=(20, 20, 20))
    return image


def write_unityeyes(folder: Path, look_vecs: Sequence[Sequence[float]]) -> Path:
    """A UnityEyes folder with one ``N.jpg`` + ``N.json`` pair per look vector, ``N`` counting from 1."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, look_vec in enumerate(look_vecs, start=1):
        (folder / f"{number}.json").write_text(json.dumps(unity_annotation(look_vec), indent=1))
        unity_render(look_vec).save(folder / f"{number}.jpg", quality=95)
    return folder


def looking(pitch: float, yaw: float) -> tuple[float, float, float]:
    """The UnityEyes look_vec (x right, y up, z away from the camera) of a gaze written out by hand."""
    return (math.cos(pitch) * math.sin(yaw), math.sin(pitch), -math.cos(pitch) * math.cos(yaw))


def mpii_eye() -> np.ndarray:
    """A (36, 60) uint8 eye image whose left quarter is bright, so a flip shows."""
    image = np.full((36, 60), 60, dtype=np.uint8)
    image[:, :15] = 250
    return image


def write_mpiigaze_day(path: Path, left_gazes: np.ndarray, right_gazes: np.ndarray,
                       images: np.ndarray | None = None, fields: dict | None = None) -> Path:
    """One ``dayNN.mat`` in MPIIGaze's Normalized struct layout; ``fields`` replaces parts of it."""
    count = len(left_gazes)
    images = np.stack([mpii_eye()] * count) if images is None else images

    def side(gazes: np.ndarray) -> dict:
        return {"image": images, "gaze": np.asarray(gazes, dtype=np.float64), "pose": np.zeros((count, 3))}

    contents = {
        "data": {"left": side(left_gazes), "right": side(right_gazes)},
        "filenames": np.array([f"{index + 1:04d}.jpg" for index in range(count)], dtype=object),
    }
    contents.update(fields or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, contents)
    return path


def write_mpiigaze(root: Path, days: dict[str, np.ndarray]) -> Path:
    """An MPIIGaze root with ``Data/Normalized/<key>.mat`` per entry (``"p00/day01"``): the same gazes for both eyes."""
    for key, gazes in days.items():
        write_mpiigaze_day(root / "Data" / "Normalized" / f"{key}.mat", gazes, gazes)
    return root


def write_evaluation_list(root: Path, person: str, lines: Sequence[str]) -> Path:
    """``Evaluation Subset/sample list for eye image/pXX.txt`` with ``dayNN/NNNN.jpg side`` lines."""
    path = root / "Evaluation Subset" / "sample list for eye image" / f"{person}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def write_folder(folder: Path, images: np.ndarray, labels: dict[str, Sequence[float]] | None = None) -> Path:
    """PNG images ``000000.png`` ... (uint8 ``(N, H, W)`` or ``(N, H, W, 3)``) and, given labels, a ``labels.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{index:06d}.png" for index in range(len(images))]
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / name)
    if labels is not None:
        with (folder / "labels.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", *labels])
            writer.writerows([name, *values] for name, values in zip(names, zip(*labels.values())))
    return folder
