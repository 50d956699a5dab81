"""``mpiigaze:PATH``: MPIIGaze's normalized eye images, read from ``PATH/Data/Normalized/pXX/dayNN.mat``.

``PATH`` is the MPIIGaze root (the folder holding ``Data/`` and, optionally,
``Evaluation Subset/``). Each ``dayNN.mat`` (loaded with ``scipy.io.loadmat(...,
struct_as_record=False, squeeze_me=True)``) holds ``data.left`` and
``data.right``, each with ``image`` (N, 36, 60) uint8 histogram-equalized
grayscale and ``gaze`` (N, 3) unit vectors, and ``filenames`` (N) naming the
webcam frames.

* Images: both eyes of every frame are samples; right eyes are flipped
  horizontally (so every crop looks like a left eye) and resized from 36x60 to
  the gaze task's 35x55 (antialiased bilinear).
* Labels: gaze (pitch, yaw) in radians in the project's convention
  (:mod:`sim2real_bench.plugins.eyes.geometry`: x to the image right, y up, z
  toward the camera). The normalized camera frame is OpenCV's, x to the image
  right, y *down*, z *away* from the camera (looking into the lens is
  ``(0, 0, -1)``), so the project's vector is ``(x, -y, -z)``:
  ``pitch = asin(-y)`` and ``yaw = atan2(x, -z)``. Many loaders write
  ``yaw = atan2(-x, -z)``: yaw mirrored, positive toward the image's left. Here
  yaw is positive toward the image's right, as for every gaze dataset of the
  project. A flipped right eye has its yaw negated.
* Splits, by person, fixed: the test persons are those whose number is a
  multiple of 3 (p00, p03, p06, p09, p12), the train split holds the other ten,
  so the unlabeled target images a refiner sees never show a test person. When
  ``Evaluation Subset/sample list for eye image/pXX.txt`` exists (lines
  ``dayNN/NNNN.jpg left``), a test person contributes only the listed samples
  (MPIIGaze's evaluation protocol: 1,500 left and 1,500 right eyes per person);
  without it, all of that person's samples.
* Broken input (:mod:`sim2real_bench.files` has the policy): no
  ``Data/Normalized/pXX/dayNN.mat`` under ``PATH``, a ``.mat`` that does not load
  or lacks a field, arrays of other shapes, a gaze that is not a direction, or a
  malformed or dangling evaluation-list line are each a ``DataError`` naming the
  file and what was expected: one day file holds hundreds of samples, so none is
  skipped quietly.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.io
from PIL import Image

from sim2real_bench.errors import DataError
from sim2real_bench.files import Decoder, FileDataset, Record, map_in_workers
from sim2real_bench.plugins.eyes.domain import EyeDomain

SIDES = ("left", "right")
IMAGE_SIZE = (36, 60)
"""Height and width of MPIIGaze's normalized eye images."""
TEST_PERSON_EVERY = 3
"""Persons whose number is a multiple of this are the test split."""
NORMALIZED = Path("Data", "Normalized")
EVALUATION_LISTS = Path("Evaluation Subset", "sample list for eye image")
_PERSON = re.compile(r"^p(\d+)$")
_DAY = re.compile(r"^day\d+\.mat$")
_FIELDS = "data.left.image, data.left.gaze, data.right.image, data.right.gaze (N, 36, 60 and N, 3) and filenames (N)"


def is_test_person(person: str) -> bool:
    """Whether ``pXX`` belongs to the test split."""
    match = _PERSON.match(person)
    return match is not None and int(match[1]) % TEST_PERSON_EVERY == 0


def gaze_from_vector(vector: np.ndarray, where: str = "gaze") -> np.ndarray:
    """Project-convention ``(pitch, yaw)`` in radians from an MPIIGaze gaze vector (x right, y down, z away)."""
    norm = float(np.linalg.norm(vector))
    if not norm > 0 or not math.isfinite(norm):
        raise DataError(f"{where} is {tuple(vector)}; expected a gaze direction")
    x, y, z = np.asarray(vector, dtype=np.float64) / norm
    return np.array([math.asin(-y), math.atan2(x, -z)], dtype=np.float32)


def _field(struct: Any, dotted: str, path: Path) -> Any:
    for key in dotted.split("."):
        if not hasattr(struct, key):
            raise DataError(f"{path} has no data.{dotted}; an MPIIGaze Normalized .mat holds {_FIELDS}")
        struct = getattr(struct, key)
    return struct


def read_day(path: Path) -> dict[str, Any]:
    """The images ``(N, 36, 60)``, gaze vectors ``(N, 3)`` per side and the frame names of one ``dayNN.mat``."""
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as error:  # scipy raises many types for a file that is not MATLAB's
        raise DataError(f"{path} is not a readable MATLAB file ({error}); expected MPIIGaze's dayNN.mat") from error
    if "data" not in mat or "filenames" not in mat:
        raise DataError(f"{path} has no {'data' if 'data' not in mat else 'filenames'}; "
                        f"an MPIIGaze Normalized .mat holds {_FIELDS}")
    filenames = [str(name) for name in np.atleast_1d(mat["filenames"])]
    day: dict[str, Any] = {"filenames": filenames}
    for side in SIDES:
        # squeeze_me turns a day with one frame into a single (36, 60) image and one (3,) vector.
        images = np.asarray(_field(mat["data"], f"{side}.image", path))
        try:
            gazes = np.asarray(_field(mat["data"], f"{side}.gaze", path), dtype=np.float64)
        except (TypeError, ValueError) as error:  # text or objects where numbers belong
            raise DataError(f"{path}: data.{side}.gaze is not numbers ({error}); expected (N, 3) gaze "
                            "vectors") from None
        images = images.reshape(-1, *images.shape[-2:]) if images.ndim >= 2 else images
        gazes = gazes.reshape(-1, gazes.shape[-1]) if gazes.ndim >= 1 else gazes
        if images.ndim != 3 or images.shape[1:] != IMAGE_SIZE or images.dtype != np.uint8:
            raise DataError(f"{path}: data.{side}.image is {images.dtype} {images.shape}; expected uint8 (N, 36, 60)")
        if gazes.ndim != 2 or gazes.shape != (len(filenames), 3):
            raise DataError(f"{path}: data.{side}.gaze has shape {gazes.shape}; expected ({len(filenames)}, 3), "
                            "one vector per entry of filenames")
        if len(images) != len(filenames):
            raise DataError(f"{path}: data.{side}.image holds {len(images)} images for {len(filenames)} filenames")
        norms = np.linalg.norm(gazes, axis=1)
        broken = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(broken):
            raise DataError(f"{path}: data.{side}.gaze row {broken[0]} is {tuple(gazes[broken[0]])}; "
                            "expected a gaze direction")
        day[side] = (images, gazes)
    return day


def frame_names(path: str) -> list[str]:
    """The frame names of one ``dayNN.mat``, after checking all its fields (indexing runs this in workers)."""
    return read_day(Path(path))["filenames"]


def decode(root: str, height: int, width: int, records: list[Record]) -> list[Any]:
    """Eye crops and gaze labels of samples that share one ``dayNN.mat`` (runs in worker processes)."""
    path = Path(root, records[0].files[0])
    day = read_day(path)
    results: list[Any] = []
    for record in records:
        side, row = record.extra
        images, gazes = day[side]
        image, gaze = images[row], gaze_from_vector(gazes[row], f"{path}: data.{side}.gaze row {row}")
        if side == "right":
            image, gaze = image[:, ::-1], gaze * np.array([1, -1], dtype=np.float32)
        resized = Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.Resampling.BILINEAR)
        results.append((np.asarray(resized, dtype=np.uint8)[None], gaze))
    return results


class MPIIGaze(FileDataset):
    """MPIIGaze's normalized eyes: 35x55 grayscale crops labeled with gaze (pitch, yaw); test persons p00, p03, ...."""

    label_kind: ClassVar[str] = EyeDomain.label_kind
    label_names: ClassVar[tuple[str, ...]] = EyeDomain.label_names
    group_by_file: ClassVar[bool] = True
    split_rule: ClassVar[str] = "test persons are p00, p03, p06, p09 and p12, train persons the others"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, EyeDomain.height, EyeDomain.width)

    def expected(self) -> str:
        return "expected the MPIIGaze root folder, holding Data/Normalized/pXX/dayNN.mat"

    def _day_files(self) -> list[Path]:
        persons = sorted(p for p in (self.root / NORMALIZED).glob("p*") if _PERSON.match(p.name) and p.is_dir())
        return [day for person in persons for day in sorted(person.iterdir()) if _DAY.match(day.name)]

    def _evaluation_lists(self) -> list[Path]:
        return sorted((self.root / EVALUATION_LISTS).glob("p*.txt"))

    def watched(self) -> list[Path]:
        return [self.root / NORMALIZED, *self._day_files(), *self._evaluation_lists()]

    def scan(self) -> dict[str, Any]:
        files = self._day_files()
        if not files:
            raise DataError(f"{self.spec}: {self.root} holds no Data/Normalized/pXX/dayNN.mat files; {self.expected()}")
        names = map_in_workers(frame_names, [str(file) for file in files], f"index: {self.spec}")
        days = {file.relative_to(self.root / NORMALIZED).as_posix(): frames for file, frames in zip(files, names)}
        evaluation = {}
        for listing in self._evaluation_lists():
            if any(day.startswith(f"{listing.stem}/") for day in days):
                evaluation[listing.stem] = self._read_evaluation_list(listing, days)
        return {"days": days, "evaluation": evaluation}

    @staticmethod
    def _read_evaluation_list(listing: Path, days: dict[str, list[str]]) -> list[str]:
        """The ``dayNN/NNNN.jpg side`` lines of one person's evaluation list, each checked against the data."""
        person = listing.stem
        known = {f"{day.split('/')[1][: -len('.mat')]}/{frame}"
                 for day, frames in days.items() if day.startswith(f"{person}/") for frame in frames}
        entries = []
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] not in SIDES or "/" not in parts[0]:
                raise DataError(f"{listing}:{number} is {line!r}; expected 'dayNN/NNNN.jpg left' or '... right'")
            if parts[0] not in known:
                raise DataError(f"{listing}:{number} names {parts[0]}, which no {person}/dayNN.mat under "
                                f"{NORMALIZED} holds; the list and the data do not belong together")
            entries.append(" ".join(parts))
        return entries

    def records(self, split: str) -> list[Record]:
        evaluation = {person: set(lines) for person, lines in self.index["evaluation"].items()}
        records = []
        for file, frames in self.index["days"].items():
            person, day = file.split("/")[0], file.split("/")[1][: -len(".mat")]
            if (split == "test") != is_test_person(person):
                continue
            listed = evaluation.get(person) if split == "test" else None
            for row, frame in enumerate(frames):
                for side in SIDES:
                    if listed is None or f"{day}/{frame} {side}" in listed:
                        records.append(Record(f"{person}/{day}/{frame}/{side}", (f"{NORMALIZED.as_posix()}/{file}",),
                                              (side, row)))
        return records

    def decoder(self) -> Decoder:
        return partial(decode, str(self.root), EyeDomain.height, EyeDomain.width)
