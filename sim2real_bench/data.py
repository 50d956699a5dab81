"""Datasets: domains of images, with labels where a split is allowed to have them.

Images are ``(N, C, H, W)`` float32 tensors in ``[-1, 1]``. Labels are float32
tensors whose meaning the dataset's ``label_kind`` names (``"gaze"``: pitch and yaw
in radians). A dataset is built from a spec, ``name`` or ``name:ARGUMENT``.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.errors import ConfigError, DataError

SPLITS = ("train", "test")
Progress = Callable[[int], None]
_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]*)(?::(?P<argument>.+))?$")


@dataclass(frozen=True)
class Samples:
    """A block of images and, when the caller may see them, their labels."""

    images: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def without_labels(self) -> Samples:
        """The same images with the labels dropped (how target training data is served)."""
        return Samples(self.images, None)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``name[:argument]``; a malformed spec is a :class:`ConfigError`."""
    match = _SPEC.match(spec.strip()) if spec else None
    if match is None:
        raise ConfigError(
            f"malformed dataset spec {spec!r}; expected NAME or NAME:ARGUMENT, "
            "e.g. 'webcam-eyes' or 'mpiigaze:/data/MPIIGaze'"
        )
    return match["name"], match["argument"]


def stable_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts``, identical across processes and platforms."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


ASPECT_TOLERANCE = 0.1
"""Largest relative difference of width/height ratios that resizing may bridge (60x36 to 55x35 is 6 %)."""


def aspects_match(shape: tuple[int, int, int], other: tuple[int, int, int]) -> bool:
    """True when ``(C, H, W)`` images of ``other`` resize to ``shape`` without distorting them (same channels)."""
    (channels, height, width), (other_channels, other_height, other_width) = shape, other
    return channels == other_channels and abs((other_width / other_height) / (width / height) - 1) <= ASPECT_TOLERANCE


def framed(dataset: Dataset, shape: tuple[int, int, int]) -> Dataset:
    """``dataset`` resized to ``shape`` (``(C, H, W)``) when only the size differs and it can resize; else as it is.

    What cannot be resized without distorting the images (other channels, another
    aspect ratio) is left for the caller's shape check to refuse with the way to frame it.
    """
    if dataset.image_shape == shape or not aspects_match(shape, dataset.image_shape):
        return dataset
    resized = dataset.resized(shape[1], shape[2])
    return dataset if resized is None else resized


class Dataset(ABC):
    """A domain of images, synthetic or real, with its splits and label geometry."""

    label_kind: ClassVar[str | None]
    """What the labels mean; a task accepts only datasets of its label kind. ``None``
    for a dataset labeled by column names only (``folder:``): its kind is the
    registered one with those columns (``Registry.label_kind_of``)."""

    label_names: ClassVar[tuple[str, ...]]
    """One name per label column, for ``labels.csv`` files and reports; the pipeline
    reads labels by these names, in the task's column order."""

    version: ClassVar[int] = 1
    """Bumped whenever the same spec and seed would give other images or labels (a renderer recalibrated).
    Runs log it beside the spec and cache keys include it, so a run made before the change stays
    readable as a run of the old domain and no cache entry of it is taken for the new one."""

    input_space: str | None = None
    """The task input space (``Task.input_space()``) the images already are in, if any:
    an export of refined images. The pipeline does not apply that space again."""

    def __init__(self, name: str, argument: str | None = None) -> None:
        self.name = name
        self.argument = argument

    @property
    def spec(self) -> str:
        """The spec this dataset was built from."""
        return self.name if self.argument is None else f"{self.name}:{self.argument}"

    @property
    @abstractmethod
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""

    @abstractmethod
    def load(self, split: str, size: int, seed: int, progress: Progress | None = None) -> Samples:
        """The first ``size`` labeled samples of ``split`` (fewer if the split is smaller).

        ``progress`` is called with the number of samples made ready since its last call.
        """

    def identity(self, split: str, size: int, seed: int) -> str:
        """A string that changes whenever ``load`` would return different data (cache keys)."""
        return f"{self.spec}|v{self.version}|{split}|{size}|{seed}"

    def resized(self, height: int, width: int) -> Dataset | None:
        """This dataset with its images resized to ``height x width`` as they load; ``None`` when it cannot.

        Real captures come at their camera's or dataset's size (MPIIGaze's crops are
        60x36, the gaze task's 55x35); a dataset that can resize its own images says
        so here, and a run frames it to the task once instead of refusing it.
        """
        return None

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r} for {self.spec}; splits: {', '.join(SPLITS)}")


class RenderedSplits:
    """Splits this process has rendered, kept for the next run that asks for one of them again.

    A sweep runs its combinations task by task and seed by seed (``sweep.expand``),
    so every refiner of one task and seed asks for the same splits, and rendering
    them again cost 6-17 s of each quick run. A procedural split depends only on
    its class and identity (chunks are drawn from seeded generators), so a kept
    split is, bit for bit, what rendering it again would give. Callers get a copy:
    one that edits its tensors in place cannot change what a later run is given.
    The least recently used splits go first once the kept ones exceed ``budget_bytes``.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._kept: OrderedDict[tuple[type, str], Samples] = OrderedDict()

    @staticmethod
    def _bytes(samples: Samples) -> int:
        tensors = [samples.images] if samples.labels is None else [samples.images, samples.labels]
        return sum(tensor.numel() * tensor.element_size() for tensor in tensors)

    @staticmethod
    def _copy(samples: Samples) -> Samples:
        return Samples(samples.images.clone(), None if samples.labels is None else samples.labels.clone())

    def get(self, key: tuple[type, str]) -> Samples | None:
        """A copy of the split kept under ``key``, or ``None``."""
        if key not in self._kept:
            return None
        self._kept.move_to_end(key)
        return self._copy(self._kept[key])

    def keep(self, key: tuple[type, str], samples: Samples) -> None:
        """Keep a copy of ``samples`` under ``key``, dropping the oldest splits to stay within the budget."""
        size = self._bytes(samples)
        if size > self.budget_bytes:
            return
        while self._kept and sum(map(self._bytes, self._kept.values())) + size > self.budget_bytes:
            self._kept.popitem(last=False)
        self._kept[key] = self._copy(samples)

    def clear(self) -> None:
        """Forget every kept split."""
        self._kept.clear()


RENDERED = RenderedSplits(budget_bytes=2 * 1024**3)
"""This process's rendered splits: 2 GiB holds every split of one quick-budget task and seed (hand: 0.8 GB)."""


class ProceduralDataset(Dataset):
    """A dataset generated on the fly, in fixed chunks, deterministic per seed.

    Chunk ``k`` of a split is drawn from a generator seeded by (name, split, seed, k),
    so the first ``n`` samples never depend on how many were asked for, and the
    train and test splits never share a draw.
    """

    chunk_size: ClassVar[int] = 1024

    def __init__(self, name: str, argument: str | None = None) -> None:
        if argument is not None:
            raise ConfigError(f"dataset {name!r} is generated in memory and takes no argument; use '{name}'")
        super().__init__(name, argument)

    @abstractmethod
    def generate(self, count: int, generator: torch.Generator) -> Samples:
        """Render ``count`` labeled samples using only ``generator`` for randomness."""

    def load(self, split: str, size: int, seed: int, progress: Progress | None = None) -> Samples:
        """Render the first ``size`` samples of ``split`` chunk by chunk, or copy them if this process already did."""
        self._check_split(split)
        key = (type(self), self.identity(split, size, seed))
        kept = RENDERED.get(key)
        if kept is None:
            kept = self._render(split, size, seed, progress)
            RENDERED.keep(key, kept)
        elif progress is not None:
            progress(len(kept))
        return kept

    def _render(self, split: str, size: int, seed: int, progress: Progress | None) -> Samples:
        images, labels = [], []
        for index, start in enumerate(range(0, size, self.chunk_size)):
            generator = torch.Generator().manual_seed(stable_seed(self.name, split, seed, index))
            chunk = self.generate(self.chunk_size, generator)
            keep = min(self.chunk_size, size - start)
            images.append(chunk.images[:keep])
            labels.append(chunk.labels[:keep])
            if progress is not None:
                progress(keep)
        if not images:
            raise DataError(f"asked for 0 samples of {self.spec}/{split}; sizes must be positive")
        return Samples(torch.cat(images), torch.cat(labels))
