"""``unityeyes:PATH``: a folder of UnityEyes renders, ``N.jpg`` + ``N.json`` pairs as UnityEyes writes them.

Each JSON holds the eye's landmarks and gaze as strings of tuples: the
``interior_margin_2d`` (the lid margin, 16 points) and ``iris_2d`` (32 points)
items are ``"(x, y, z)"`` in screen pixels with y pointing *up* (image
``y = H - y``), ``eye_details.look_vec`` is ``"(x, y, z, 0)"`` and ``head_pose``
is ``"(pitch, yaw, roll)"`` in degrees. All four are read and checked; the crop
uses the margin and the label uses ``look_vec``.

* Crop: as the community does (e.g. GazeML), centred on the middle of the
  interior margin's bounding box, 1.5 times the margin's width wide, as tall as
  the gaze task's 35x55 aspect asks, converted to grayscale and resized to 35x55
  (antialiased bilinear). Pixels outside the render are black.
* Label: gaze (pitch, yaw) in radians in the project's convention
  (:mod:`sim2real_bench.plugins.eyes.geometry`: x to the image right, y up, z
  toward the camera). ``look_vec`` lives in Unity's camera frame, x to the image
  right, y up and z *away* from the camera (an eye looking into the lens has
  ``look_vec = (0, 0, -1)``), so the project's vector is ``(x, y, -z)``:
  ``pitch = asin(y)`` (looking up is positive) and ``yaw = atan2(x, -z)``
  (looking toward the image's right is positive, where the iris moves).
  GazeML writes ``yaw = atan2(-x, -z)``: the same frame with yaw mirrored, its
  own convention, which MPIIGaze loaders there mirror too.
* Splits: about one sample in ten (by a stable hash of ``N``) is test.
* Broken input (:mod:`sim2real_bench.files` has the policy): no ``N.json`` in
  the folder, or no ``N.jpg`` beside them, is a ``DataError``; a JSON that parses
  but lacks a field, or whose field is not a tuple of numbers, is a ``DataError``
  naming the file and the field; a JPEG that cannot be decoded or a JSON that
  does not parse (a render cut short) is skipped and counted. A ``N.jpg`` without
  its ``N.json`` (or the reverse) is left out of the index with a warning.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sim2real_bench.errors import DataError
from sim2real_bench.files import Decoder, FileDataset, Record, SkippedFilesWarning, hashed_split
from sim2real_bench.plugins.eyes.domain import EyeDomain

CROP_SCALE = 1.5
"""Crop width over the interior margin's width."""
_TUPLE = re.compile(r"^\s*\((.*)\)\s*$")
_NUMERIC_STEM = re.compile(r"^\d+$")


def parse_tuple(text: Any, length: int, where: str) -> tuple[float, ...]:
    """The first ``length`` numbers of a UnityEyes string tuple such as ``"(1.5, -2, 3)"``."""
    match = _TUPLE.match(text) if isinstance(text, str) else None
    try:
        numbers = tuple(float(part) for part in match[1].split(",")) if match else ()
    except ValueError:
        numbers = ()
    if len(numbers) < length or not all(map(math.isfinite, numbers)):
        raise DataError(f"{where} is {text!r}; expected a string tuple of {length} numbers like '(1.0, 2.0, 3.0)'")
    return numbers[:length]


def _field(annotation: dict[str, Any], dotted: str, path: Path) -> Any:
    value: Any = annotation
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise DataError(
                f"{path} has no {dotted!r}; a UnityEyes annotation has eye_details.look_vec, "
                "interior_margin_2d, iris_2d and head_pose"
            )
        value = value[key]
    return value


def _points(annotation: dict[str, Any], key: str, path: Path, minimum: int) -> np.ndarray:
    items = _field(annotation, key, path)
    if not isinstance(items, list) or len(items) < minimum:
        raise DataError(f"{path}: {key!r} should list at least {minimum} '(x, y, z)' points")
    return np.array([parse_tuple(item, 3, f"{path}: an item of {key!r}") for item in items])


def read_annotation(annotation: dict[str, Any], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The interior margin ``(n, 2)`` (screen pixels, y up) and ``look_vec`` ``(3,)`` of a parsed UnityEyes JSON.

    ``iris_2d`` and ``head_pose`` are checked too, so a foreign or partial JSON never yields a label.
    """
    margin = _points(annotation, "interior_margin_2d", path, 3)[:, :2]
    _points(annotation, "iris_2d", path, 3)
    parse_tuple(_field(annotation, "head_pose", path), 3, f"{path}: 'head_pose'")
    look_vec = np.array(parse_tuple(_field(annotation, "eye_details.look_vec", path), 3, f"{path}: 'look_vec'"))
    if np.ptp(margin[:, 0]) <= 0:
        raise DataError(f"{path}: 'interior_margin_2d' has no width; expected the eyelid margin's points")
    return margin, look_vec


def gaze_from_look_vec(look_vec: np.ndarray, where: str = "look_vec") -> np.ndarray:
    """Project-convention ``(pitch, yaw)`` in radians from a UnityEyes ``look_vec`` (x right, y up, z away)."""
    norm = float(np.linalg.norm(look_vec))
    if not norm > 0:
        raise DataError(f"{where} is {tuple(look_vec)}; expected a gaze direction, not a zero vector")
    x, y, z = np.asarray(look_vec, dtype=np.float64) / norm
    return np.array([math.asin(y), math.atan2(x, -z)], dtype=np.float32)


def crop_eye(image: Image.Image, margin: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``(height, width)`` uint8 grayscale crop centred on the interior margin (screen pixels, y up)."""
    xs, ys = margin[:, 0], image.height - margin[:, 1]
    centre_x, centre_y = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    crop_width = CROP_SCALE * np.ptp(xs)
    crop_height = crop_width * height / width
    box = (centre_x - crop_width / 2, centre_y - crop_height / 2, centre_x + crop_width / 2, centre_y + crop_height / 2)
    left, top = math.floor(box[0]), math.floor(box[1])
    region = image.convert("L").crop((left, top, math.ceil(box[2]), math.ceil(box[3])))
    inside = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    return np.asarray(region.resize((width, height), Image.Resampling.BILINEAR, box=inside), dtype=np.uint8)


def decode(root: str, height: int, width: int, records: list[Record]) -> list[Any]:
    """Eye crops and gaze labels of a chunk of samples (runs in worker processes)."""
    results: list[Any] = []
    for record in records:
        json_path, jpg_path = (Path(root, file) for file in record.files)
        try:
            annotation = json.loads(json_path.read_text())
        except (OSError, ValueError) as error:
            results.append(f"{json_path.name}: {error}")
            continue
        if not isinstance(annotation, dict):
            raise DataError(f"{json_path} holds a {type(annotation).__name__}; expected a UnityEyes annotation object")
        margin, look_vec = read_annotation(annotation, json_path)
        try:
            with Image.open(jpg_path) as image:
                crop = crop_eye(image, margin, height, width)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            results.append(f"{jpg_path.name}: {error}")
            continue
        results.append((crop[None], gaze_from_look_vec(look_vec, f"{json_path}: 'look_vec'")))
    return results


def _stem_order(stem: str) -> tuple[int, int | str]:
    return (0, int(stem)) if _NUMERIC_STEM.match(stem) else (1, stem)


class UnityEyes(FileDataset):
    """UnityEyes renders (``N.jpg`` + ``N.json``): 35x55 grayscale eye crops labeled with gaze (pitch, yaw)."""

    label_kind: ClassVar[str] = EyeDomain.label_kind
    label_names: ClassVar[tuple[str, ...]] = EyeDomain.label_names
    split_rule: ClassVar[str] = "about one sample in ten, by a stable hash of N, is test"

    def __init__(self, name: str, argument: str | None = None) -> None:
        super().__init__(name, argument)
        if self.index["unpaired"]:
            warnings.warn(f"{self.spec}: left out {self.index['unpaired']} N.jpg or N.json files that lack their "
                          "other half", SkippedFilesWarning, stacklevel=2)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, EyeDomain.height, EyeDomain.width)

    def expected(self) -> str:
        return "expected a folder of N.jpg + N.json pairs as UnityEyes writes them"

    def watched(self) -> list[Path]:
        return [self.root]

    def scan(self) -> dict[str, Any]:
        names = os.listdir(self.root)
        annotated = {name[: -len(".json")] for name in names if name.endswith(".json")}
        rendered = {name[: -len(".jpg")] for name in names if name.endswith(".jpg")}
        if not annotated:
            raise DataError(f"{self.spec}: {self.root} holds no N.json files; {self.expected()}")
        pairs = sorted(annotated & rendered, key=_stem_order)
        if not pairs:
            raise DataError(f"{self.spec}: {self.root} holds N.json files but no N.jpg beside them; {self.expected()}")
        return {"stems": pairs, "unpaired": len(annotated ^ rendered)}

    def records(self, split: str) -> list[Record]:
        return [Record(stem, (f"{stem}.json", f"{stem}.jpg")) for stem in self.index["stems"]
                if hashed_split(stem) == split]

    def decoder(self) -> Decoder:
        return partial(decode, str(self.root), EyeDomain.height, EyeDomain.width)
