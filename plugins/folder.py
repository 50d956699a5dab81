"""``folder:PATH[?OPTIONS]``: a folder of PNG or JPEG images, with an optional ``labels.csv``.

The format (also what an export of refined images writes):

* images: ``*.png``, ``*.jpg`` or ``*.jpeg`` files directly in the folder, all
  of one size. The first image (by name) decides the channels: one for a
  grayscale image (PIL modes ``L``, ``LA``, ``1``, ``I``, ``I;16``, ``F``; 16-bit ones are scaled onto
  8 bits, not clipped),
  three otherwise; every image is converted to that. Without options images
  are used at their size: a task needs them at its own input size (gaze: 35x55
  pixels, written ``55x35`` as width x height), which ``size=`` gives.
* ``labels.csv`` (optional): a header row, then one row per sample. The first
  column names the image file (conventionally headed ``file``), each further
  column is one label, a number::

      file,pitch,yaw
      000000.png,0.1034,-0.2511

  With a ``labels.csv`` the samples are exactly its rows; without one, every
  image of the folder, unlabeled. A column headed ``split`` is not a label: its
  values, ``train`` or ``test``, put each row in that split instead of the hash
  rule (a ``labels.csv`` of only ``file,split`` splits an unlabeled folder).
* Label kind, from the label columns: the folder is of the kind of any
  registered task whose label columns (``Task.label_names``) are exactly its
  columns, in any order (``pitch,yaw``: ``gaze``, in radians and the project's
  gaze convention; the 42 ``<joint>_u``, ``<joint>_v``, ``<joint>_d`` columns of
  the 14 NYU joints: ``hand-pose``; a third-party task's columns: its kind), so
  an export of any task reads back as that task's data. No ``labels.csv`` makes
  an ``unlabeled`` folder, fit to be a refiner's target (its samples load with
  ``labels=None``); columns that no task declares make the kind
  ``csv(a,b,...)``, which no task accepts.
* Splits: about one sample in ten, by a stable hash of the file name, is test,
  unless a ``split`` column or the ``split=`` option says otherwise.

Options frame and select the folder for a task without editing its files. They
follow the path after ``?``, joined by ``&`` (quote the spec in a shell), or sit
in a ``frame.json`` beside the images with the same keys (``{"size": "55x35",
"split": "test"}``; a list works for ``crop``); an option in the spec wins over
``frame.json``. Applied to every image in this order, once, as it is decoded:

* ``crop=LEFT,TOP,RIGHT,BOTTOM``: keep that box of each image, in pixels of the
  files (PIL's box: right and bottom excluded);
* ``channels=1`` or ``channels=3``: convert to grayscale (ITU-R 601 luma, as
  PIL's ``L``) or to RGB;
* ``size=WxH``: resize to W x H pixels with PIL's bilinear filter, which is
  antialiased when it shrinks (its support widens with the scale, as
  ``torch.nn.functional.interpolate(..., antialias=True)`` does);
* ``split=test`` (or ``train``): every selected sample is in that split and the
  other split is empty: a small real labeled set is a whole test set, not a
  tenth of one;
* ``files=GLOB[,GLOB...]``: only the images whose file names match one of the
  shell patterns (``fnmatch``), e.g. one group of subjects.

The dataset's ``image_shape`` is the shape after the options. A folder whose
images differ from the task's only in size (the same channels, an aspect ratio
within :data:`~sim2real_bench.data.ASPECT_TOLERANCE`) is resized to it as a
run's target or test set without being asked: a folder of 60x36 real eye
crops used as ``--target folder:/data/real-eyes`` for the gaze task runs as
``folder:/data/real-eyes?size=55x35``, the spec its runs record. A labeled
folder of someone's own real crops is a test set as
``--target-test 'folder:/data/my-eyes?size=55x35&channels=1&split=test'``.
The layout such a test set needs: the crops as PNG or JPEG files in one
folder, all of one size, and a ``labels.csv`` with ``file,pitch,yaw`` (radians,
pitch > 0 looking up, yaw > 0 toward the image's right; looking into the
camera is (0, 0)); frame the eye as the task's crops do (the eye's corners
near the crop's sides, as MPIIGaze's normalized crops) with ``crop=`` and
``size=`` or beforehand. Real labeled images are for testing and the
``oracle`` reference only: no refiner or task trains on their labels.

* Broken input (:mod:`sim2real_bench.files` has the policy): a folder with no
  images, a ``labels.csv`` without label columns, a row naming a missing or
  repeated file, a label that is not a finite number, a ``split`` value other
  than train or test, and an image of another size are each a ``DataError``
  naming the file (and line); an image that cannot be decoded is skipped and
  counted. An unknown or malformed option, or a crop outside the images, is a
  ``ConfigError`` saying what is expected.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sim2real_bench import store
from sim2real_bench.data import SPLITS, Progress, Samples
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.files import Decoder, FileDataset, Record, hashed_split

LABELS = "labels.csv"
MANIFEST = "refiner.json"
"""What ``s2r-bench refine`` writes beside an export: among others, the input space of its images."""
FRAME = "frame.json"
SPLIT_COLUMN = "split"
SUFFIXES = (".png", ".jpg", ".jpeg")
GRAYSCALE_MODES = ("L", "LA", "1", "I", "I;16", "F")
UNLABELED = "unlabeled"
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True)
class FolderOptions:
    """How a folder is framed and split for a task: the spec's ``?OPTIONS`` over its ``frame.json``."""

    crop: tuple[int, int, int, int] | None = None
    """``(left, top, right, bottom)`` in pixels of the files; ``None``: the whole image."""
    channels: int | None = None
    """1 (grayscale) or 3 (RGB); ``None``: as the first image."""
    size: tuple[int, int] | None = None
    """``(width, height)`` after cropping; ``None``: as cropped."""
    split: str | None = None
    """``"train"`` or ``"test"``: every sample is in that split; ``None``: the ``split`` column or the hash."""
    files: tuple[str, ...] = ()
    """Shell patterns of file names to keep; empty: every file."""

    @classmethod
    def parse(cls, options: dict[str, str], where: str) -> FolderOptions:
        """Options from ``key -> text``; ``where`` names their origin in errors."""
        expected = {
            "crop": "LEFT,TOP,RIGHT,BOTTOM in pixels, e.g. crop=0,13,64,51",
            "channels": "1 or 3",
            "size": "WxH in pixels, e.g. size=55x35 for the gaze task's 35x55 crops",
            "split": "train or test",
            "files": "comma-separated file-name patterns, e.g. files=0001_*,0002_*",
        }
        unknown = sorted(set(options) - set(expected))
        if unknown:
            raise ConfigError(f"{where}: unknown folder option(s) {', '.join(unknown)}; known: "
                              f"{', '.join(expected)} (e.g. folder:PATH?size=55x35&split=test)")
        values: dict[str, Any] = {}
        for key, text in options.items():
            text = text.strip()
            try:
                values[key] = cls._value(key, text)
            except ValueError:
                raise ConfigError(f"{where}: {key}={text!r} is not valid; expected {expected[key]}") from None
        return cls(**values)

    @staticmethod
    def _value(key: str, text: str) -> Any:
        if key == "crop":
            box = tuple(int(part) for part in text.split(","))
            if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError
            return box
        if key == "channels":
            if text not in ("1", "3"):
                raise ValueError
            return int(text)
        if key == "size":
            match = _SIZE.match(text)
            if match is None or min(int(match[1]), int(match[2])) < 1:
                raise ValueError
            return int(match[1]), int(match[2])
        if key == "split":
            if text not in SPLITS:
                raise ValueError
            return text
        patterns = tuple(pattern.strip() for pattern in text.split(",") if pattern.strip())
        if not patterns:
            raise ValueError
        return patterns

    def merged_over(self, base: FolderOptions) -> FolderOptions:
        """These options, with ``base``'s where these leave one unset."""
        unset = FolderOptions()
        return dataclasses.replace(base, **{field.name: getattr(self, field.name)
                                            for field in dataclasses.fields(self)
                                            if getattr(self, field.name) != getattr(unset, field.name)})

    def selects(self, file: str) -> bool:
        """True when ``file`` passes the ``files`` patterns."""
        return not self.files or any(fnmatch.fnmatchcase(file, pattern) for pattern in self.files)


def split_argument(argument: str) -> tuple[str, dict[str, str]]:
    """``PATH?key=value&key=value`` to the path and its options.

    The options start at the first ``?`` after which the path is an existing
    folder (so neither a ``?`` in a folder's name nor one in a ``files=``
    pattern is taken for the start), else at the first ``?``.
    """
    if "?" not in argument or Path(argument).expanduser().is_dir():
        return argument, {}
    marks = [index for index, character in enumerate(argument) if character == "?"]
    start = next((index for index in marks if Path(argument[:index]).expanduser().is_dir()), marks[0])
    path, query = argument[:start], argument[start + 1 :]
    options: dict[str, str] = {}
    for part in filter(None, query.split("&")):
        key, equals, value = part.partition("=")
        if not equals:
            raise ConfigError(f"folder option {part!r} in {argument!r} has no value; write KEY=VALUE, "
                              "e.g. folder:PATH?size=55x35")
        if key.strip() in options:
            raise ConfigError(f"folder option {key.strip()!r} is given twice in {argument!r}")
        options[key.strip()] = value
    return path, options


def read_frame(path: Path) -> dict[str, str]:
    """The options of a ``frame.json`` as ``key -> text`` (lists joined by commas)."""
    try:
        contents = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as JSON ({error}); expected e.g. {{\"size\": \"55x35\"}}") from error
    if not isinstance(contents, dict):
        raise DataError(f"{path} holds a {type(contents).__name__}; expected an object, e.g. {{\"size\": \"55x35\"}}")
    return {str(key): ",".join(map(str, value)) if isinstance(value, list) else str(value)
            for key, value in contents.items()}


def read_labels(path: Path, images: set[str]) -> tuple[list[str], list[str], list[list[float]], list[str] | None]:
    """The label columns, the files, the label rows and the ``split`` column (if any) of a ``labels.csv``, checked."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header = [name.strip() for name in rows[0][1:]] if rows else []
    split_at = header.index(SPLIT_COLUMN) if SPLIT_COLUMN in header else None
    columns = [name for position, name in enumerate(header) if position != split_at]
    if not rows or (not columns and split_at is None):
        raise DataError(f"{path} has no label columns; expected a header like 'file,pitch,yaw' "
                        "(delete it to use the folder unlabeled)")
    files: list[str] = []
    labels: list[list[float]] = []
    splits: list[str] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header) + 1:
            raise DataError(f"{path}:{number} has {len(row)} fields; expected {len(header) + 1} (file, "
                            f"{', '.join(header)})")
        file = row[0].strip()
        if file not in images:
            raise DataError(f"{path}:{number} names {file!r}, which is not a {'/'.join(SUFFIXES)} image in "
                            f"{path.parent}; fix the row or add the image")
        if file in seen:
            raise DataError(f"{path}:{number} names {file!r} a second time; each image has one row")
        seen.add(file)
        fields = row[1:]
        if split_at is not None:
            split = fields.pop(split_at).strip().lower()
            if split not in SPLITS:
                raise DataError(f"{path}:{number}: split is {row[1 + split_at]!r}; expected train or test")
            splits.append(split)
        values = []
        for column, raw in zip(columns, fields):
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{path}:{number}: {column} is {raw!r}; expected a finite number")
            values.append(value)
        files.append(file)
        labels.append(values)
    return columns, files, labels, splits if split_at is not None else None


def _channels(mode: str) -> int:
    return 1 if mode in GRAYSCALE_MODES else 3


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit (``I;16``) or 32-bit integer grayscale image scaled onto 0..255.

    PIL's own conversion to ``L`` clips such images (a 16-bit PNG turns nearly
    white), so they are scaled here: by 1/257 when every value fits 16 bits (a
    16-bit PNG's full range onto 8 bits), else by the image's own maximum.
    """
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return image
    values = np.asarray(image, dtype=np.float64)
    scale = 257.0 if values.max(initial=0) <= 65535 else values.max() / 255.0
    return Image.fromarray(np.clip(np.rint(values / scale), 0, 255).astype(np.uint8), "L")


def decode(root: str, height: int, width: int, channels: int, options: FolderOptions,
           records: list[Record]) -> list[Any]:
    """Images (and labels from the index) of a chunk of samples, framed by ``options`` (runs in worker processes).

    ``height`` and ``width`` are the files' size, which every image must have.
    """
    results: list[Any] = []
    for record in records:
        path = Path(root, record.files[0])
        try:
            with Image.open(path) as image:
                if image.size != (width, height):
                    raise DataError(f"{path} is {image.width}x{image.height}; every image of the folder must be "
                                    f"{width}x{height} (W x H), as its first one is")
                framed = image.crop(options.crop) if options.crop is not None else image
                framed = _eight_bit(framed).convert("L" if channels == 1 else "RGB")
                if options.size is not None and framed.size != options.size:
                    framed = framed.resize(options.size, Image.Resampling.BILINEAR)
                pixels = np.asarray(framed, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            results.append(f"{path.name}: {error}")
            continue
        image_array = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
        label = np.array(record.extra, dtype=np.float32) if record.extra else None
        results.append((image_array, label))
    return results


class Folder(FileDataset):
    """Images in a folder with an optional labels.csv; the label kind follows its columns (pitch,yaw: gaze)."""

    index_version: ClassVar[int] = 3
    """2: label columns are kept in the file's order (the pipeline reads them by name).
    3: the index holds the ``split`` column (``"splits"``), which is no longer a label."""

    def __init__(self, name: str, argument: str | None = None) -> None:
        path, spec_options = split_argument(argument) if argument is not None else (None, {})
        super().__init__(name, path)
        self.argument = argument
        frame = self.root / FRAME
        options = FolderOptions.parse(spec_options, self.spec)
        if frame.is_file():
            options = options.merged_over(FolderOptions.parse(read_frame(frame), str(frame)))
        self.options = options
        self._check_crop()
        self._digest = store.key(self.index, dataclasses.asdict(options))
        self._announced = False

    def _check_crop(self) -> None:
        crop = self.options.crop
        _, height, width = self.index["shape"]
        if crop is not None and (crop[2] > width or crop[3] > height):
            raise ConfigError(f"{self.spec}: crop={','.join(map(str, crop))} reaches outside the images, which are "
                              f"{width}x{height} (W x H); keep RIGHT <= {width} and BOTTOM <= {height}")

    @property
    def split_rule(self) -> str:  # type: ignore[override]
        """How samples are assigned to splits, in words."""
        if self.options.split is not None:
            return f"the spec's split={self.options.split} puts every sample in {self.options.split}"
        if self.index["splits"] is not None:
            return f"the split column of {LABELS} decides"
        return "about one image in ten, by a stable hash of its name, is test"

    @property
    def label_kind(self) -> str | None:  # type: ignore[override]
        return UNLABELED if self.index["columns"] is None else None

    @property
    def label_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.index["columns"] or ())

    @property
    def input_space(self) -> str | None:  # type: ignore[override]
        """An export's images are already in the input space its ``refiner.json`` names (unless reframed)."""
        manifest = self.root / MANIFEST
        if not manifest.is_file() or self.options != FolderOptions():
            return None
        try:
            return json.loads(manifest.read_text()).get("input_space")
        except (OSError, ValueError, AttributeError):
            return None

    @property
    def file_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the files, before the options frame them."""
        return tuple(self.index["shape"])  # type: ignore[return-value]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images as loaded: after ``crop``, ``channels`` and ``size``."""
        channels, height, width = self.file_shape
        if self.options.crop is not None:
            left, top, right, bottom = self.options.crop
            height, width = bottom - top, right - left
        if self.options.size is not None:
            width, height = self.options.size
        return (self.options.channels or channels, height, width)

    def resized(self, height: int, width: int) -> Folder | None:
        """This folder with ``size=WxH`` added to its spec; ``None`` when the spec or ``frame.json`` sets a size.

        The spec says the resize, so runs record it, cache keys follow it, and the
        first load says it on stderr (:meth:`load`). A size the user chose is kept.
        """
        if self.options.size is not None:
            return None
        _, options = split_argument(self.argument)
        return Folder(self.name, f"{self.argument}{'&' if options else '?'}size={width}x{height}")

    def expected(self) -> str:
        return f"expected a folder of {'/'.join(SUFFIXES)} images with an optional {LABELS}"

    def watched(self) -> list[Path]:
        return [self.root, self.root / LABELS]

    def scan(self) -> dict[str, Any]:
        images = sorted(name for name in os.listdir(self.root) if name.lower().endswith(SUFFIXES))
        if not images:
            raise DataError(f"{self.spec}: {self.root} holds no images; {self.expected()}")
        columns, labels, splits = None, None, None
        if (self.root / LABELS).exists():
            columns, images, labels, splits = read_labels(self.root / LABELS, set(images))
            if not images:
                raise DataError(f"{self.root / LABELS} has no rows; add one row per image")
            if not columns:  # only file and split: an unlabeled folder with its own split
                columns, labels = None, None
        return {"files": images, "columns": columns, "labels": labels, "splits": splits, "shape": self._shape(images)}

    def _shape(self, images: list[str]) -> list[int]:
        """``(C, H, W)`` of the first readable image."""
        for name in images:
            try:
                with Image.open(self.root / name) as image:
                    return [_channels(image.mode), image.height, image.width]
            except OSError:
                continue
        raise DataError(f"{self.spec}: none of the {len(images)} images in {self.root} can be read")

    def _split_of(self, file: str, column: str | None) -> str:
        return self.options.split or column or hashed_split(file)

    def records(self, split: str) -> list[Record]:
        files = self.index["files"]
        labels = self.index["labels"] or [()] * len(files)
        splits = self.index["splits"] or [None] * len(files)
        return [Record(file, (file,), tuple(label)) for file, label, column in zip(files, labels, splits)
                if self.options.selects(file) and self._split_of(file, column) == split]

    def decoder(self) -> Decoder:
        _, height, width = self.file_shape
        return partial(decode, str(self.root), height, width, self.image_shape[0], self.options)

    def framing(self) -> str | None:
        """What the options do to every image, in words; ``None`` when images load as the files hold them."""
        channels, height, width = self.file_shape
        steps = []
        if self.options.crop is not None:
            steps.append(f"cropped to box {','.join(map(str, self.options.crop))}")
        if self.options.channels is not None and self.options.channels != channels:
            steps.append("converted to grayscale" if self.options.channels == 1 else "converted to RGB")
        _, new_height, new_width = self.image_shape
        if self.options.size is not None:
            steps.append(f"resized to {new_width}x{new_height} (bilinear, antialiased)")
        return f"{width}x{height} images {', '.join(steps)}" if steps else None

    def load(self, split: str, size: int, seed: int, progress: Progress | None = None) -> Samples:
        """As :meth:`FileDataset.load`; the first load says on stderr how the options frame the images."""
        framing = self.framing()
        if framing is not None and not self._announced:
            print(f"s2r-bench: {self.spec}: {framing}, once, as they load", file=sys.stderr, flush=True)
            self._announced = True
        return super().load(split, size, seed, progress)
