"""``folder:PATH``: a folder of PNG or JPEG images, with an optional ``labels.csv``.

The format (also what an export of refined images writes):

* images: ``*.png``, ``*.jpg`` or ``*.jpeg`` files directly in the folder, all
  of one size. The first image (by name) decides the channels: one for a
  grayscale image (PIL modes ``L``, ``LA``, ``1``, ``I``, ``I;16``, ``F``),
  three otherwise; every image is converted to that. Images are used at their
  size, not resized: a task needs them at its own input size (gaze: 35x55).
* ``labels.csv`` (optional): a header row, then one row per sample. The first
  column names the image file (conventionally headed ``file``), each further
  column is one label, a number::

      file,pitch,yaw
      000000.png,0.1034,-0.2511

  With a ``labels.csv`` the samples are exactly its rows; without one, every
  image of the folder, unlabeled.
* Label kind, from the label columns: ``pitch`` and ``yaw`` (in any order;
  radians, in the project's gaze convention) make a ``gaze`` folder; the 42
  columns ``<joint>_u``, ``<joint>_v``, ``<joint>_d`` of the 14 NYU joints (crop
  pixels and normalized depth, as ``plugins/hands/geometry.py`` names them) make
  a ``hand-pose`` folder; no
  ``labels.csv`` makes an ``unlabeled`` folder, fit to be a refiner's target
  (its samples load with ``labels=None``); any other columns make the kind
  ``csv(a,b,...)``, which no built-in task accepts.
* Splits: about one sample in ten, by a stable hash of the file name, is test.
* Broken input (:mod:`sim2real_bench.files` has the policy): a folder with no
  images, a ``labels.csv`` without label columns, a row naming a missing or
  repeated file, a label that is not a finite number, and an image of another
  size are each a ``DataError`` naming the file (and line); an image that cannot
  be decoded is skipped and counted.
"""

from __future__ import annotations

import csv
import math
import os
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sim2real_bench import hookimpl
from sim2real_bench.errors import DataError
from sim2real_bench.files import Decoder, FileDataset, Record, hashed_split
from sim2real_bench.hookspecs import Register
from sim2real_bench.plugins.hands.domain import LABEL_KIND as HAND_POSE
from sim2real_bench.plugins.hands.geometry import LABEL_NAMES as HAND_LABEL_NAMES

LABELS = "labels.csv"
SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("L", "LA", "1", "I", "I;16", "F")
LABEL_KINDS = {"gaze": ("pitch", "yaw"), HAND_POSE: HAND_LABEL_NAMES}
"""Label kinds a folder can have, each with its label columns in order."""
UNLABELED = "unlabeled"


def known_kind(columns: list[str]) -> str | None:
    """The label kind whose columns are ``columns`` in some order, if any."""
    return next((kind for kind, names in LABEL_KINDS.items() if sorted(names) == sorted(columns)), None)


def read_labels(path: Path, images: set[str]) -> tuple[list[str], list[str], list[list[float]]]:
    """The label columns, the files and the label rows of a ``labels.csv``, each checked."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 2:
        raise DataError(f"{path} has no label columns; expected a header like 'file,pitch,yaw' "
                        "(delete it to use the folder unlabeled)")
    columns = [name.strip() for name in rows[0][1:]]
    files: list[str] = []
    labels: list[list[float]] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(columns) + 1:
            raise DataError(f"{path}:{number} has {len(row)} fields; expected {len(columns) + 1} (file, "
                            f"{', '.join(columns)})")
        file = row[0].strip()
        if file not in images:
            raise DataError(f"{path}:{number} names {file!r}, which is not a {'/'.join(SUFFIXES)} image in "
                            f"{path.parent}; fix the row or add the image")
        if file in seen:
            raise DataError(f"{path}:{number} names {file!r} a second time; each image has one row")
        seen.add(file)
        values = []
        for column, raw in zip(columns, row[1:]):
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{path}:{number}: {column} is {raw!r}; expected a finite number")
            values.append(value)
        files.append(file)
        labels.append(values)
    return columns, files, labels


def _channels(mode: str) -> int:
    return 1 if mode in GRAYSCALE_MODES else 3


def decode(root: str, height: int, width: int, channels: int, records: list[Record]) -> list[Any]:
    """Images (and labels from the index) of a chunk of samples (runs in worker processes)."""
    results: list[Any] = []
    for record in records:
        path = Path(root, record.files[0])
        try:
            with Image.open(path) as image:
                if image.size != (width, height):
                    raise DataError(f"{path} is {image.width}x{image.height}; every image of the folder must be "
                                    f"{width}x{height} (W x H), as its first one is")
                pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            results.append(f"{path.name}: {error}")
            continue
        image_array = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        label = np.array(record.extra, dtype=np.float32) if record.extra else None
        results.append((image_array, label))
    return results


class Folder(FileDataset):
    """Images in a folder with an optional labels.csv; the label kind follows its columns (pitch,yaw: gaze)."""

    split_rule: ClassVar[str] = "about one image in ten, by a stable hash of its name, is test"

    @property
    def label_kind(self) -> str:  # type: ignore[override]
        columns = self.index["columns"]
        if columns is None:
            return UNLABELED
        return known_kind(columns) or f"csv({','.join(columns)})"

    @property
    def label_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.index["columns"] or ())

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.index["shape"])  # type: ignore[return-value]

    def expected(self) -> str:
        return f"expected a folder of {'/'.join(SUFFIXES)} images with an optional {LABELS}"

    def watched(self) -> list[Path]:
        return [self.root, self.root / LABELS]

    def scan(self) -> dict[str, Any]:
        images = sorted(name for name in os.listdir(self.root) if name.lower().endswith(SUFFIXES))
        if not images:
            raise DataError(f"{self.spec}: {self.root} holds no images; {self.expected()}")
        columns, labels = None, None
        if (self.root / LABELS).exists():
            columns, images, labels = read_labels(self.root / LABELS, set(images))
            kind = known_kind(columns)
            if kind is not None:  # a known kind keeps its own column order
                labels = [[row[columns.index(name)] for name in LABEL_KINDS[kind]] for row in labels]
                columns = list(LABEL_KINDS[kind])
            if not images:
                raise DataError(f"{self.root / LABELS} has no rows; add one row per image")
        return {"files": images, "columns": columns, "labels": labels, "shape": self._shape(images)}

    def _shape(self, images: list[str]) -> list[int]:
        """``(C, H, W)`` of the first readable image."""
        for name in images:
            try:
                with Image.open(self.root / name) as image:
                    return [_channels(image.mode), image.height, image.width]
            except OSError:
                continue
        raise DataError(f"{self.spec}: none of the {len(images)} images in {self.root} can be read")

    def records(self, split: str) -> list[Record]:
        labels = self.index["labels"] or [()] * len(self.index["files"])
        return [Record(file, (file,), tuple(label)) for file, label in zip(self.index["files"], labels)
                if hashed_split(file) == split]

    def decoder(self) -> Decoder:
        channels, height, width = self.image_shape
        return partial(decode, str(self.root), height, width, channels)


@hookimpl
def register_datasets(register: Register) -> None:
    """Add ``folder``."""
    register("folder", Folder)
