"""Datasets read from a folder on disk: indexed once, split by a stable rule, decoded lazily in worker processes.

A :class:`FileDataset` subclass says four things: which files and folders decide
whether its index is current (:meth:`~FileDataset.watched`), how to list its
samples (:meth:`~FileDataset.scan`, run once and cached), which samples each split
holds (:meth:`~FileDataset.records`), and a picklable function that decodes a chunk
of samples into uint8 images (:meth:`~FileDataset.decoder`). The base class does
the rest, the same way for every format:

* **Index cache.** ``scan``'s result is stored as JSON in the cache store
  (:meth:`sim2real_bench.store.Store.index`), keyed by the dataset name and the resolved folder, and reused while the size and mtime
  of every watched path are unchanged; a million-file folder is listed once, not
  on every run. A damaged index file is simply rebuilt.
* **Splits and order.** A split's samples are ordered by a stable hash of their
  ids: the test split independently of the seed (every run is scored on the same
  images), the train split per seed. ``load(split, size)`` decodes only the first
  ``size`` of that order.
* **Identity.** The resolved folder, the index, and the size and mtime of every
  file behind the selected samples: editing one file in place changes it.
* **Workers.** Chunks of samples are decoded by a pool of ``$S2R_BENCH_WORKERS``
  processes (default: the usable CPUs, at most 8), forked where the platform can,
  so nothing is imported again; a load that fits in one chunk stays in process.

Broken input, the policy every file dataset follows:

* a missing folder, or one that holds nothing of the dataset's kind: a
  :class:`~sim2real_bench.errors.DataError` naming the folder and what was expected;
* a file that reads but says something other than the format promises (a JSON or
  .mat without the expected fields, a label that is not a number, an image of
  another size): a ``DataError`` naming the file and what was expected. A label
  is never guessed;
* a sample whose file cannot be read at all (a truncated JPEG, a JSON cut short
  by an interrupted generator): skipped, counted and reported in one
  :class:`SkippedFilesWarning` per load naming the first few; the next samples
  in the split's order take their place. When more than one sample and more than
  1 in 20 of a load's samples are unreadable, that is no accident: a ``DataError``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from sim2real_bench import store
from sim2real_bench.data import Dataset, Progress, Samples, stable_seed
from sim2real_bench.errors import ConfigError, DataError

WORKERS_ENV = "S2R_BENCH_WORKERS"
MAX_WORKERS = 8
MAX_UNREADABLE_SHARE = 0.05
"""Above this share of unreadable samples in one load (and more than one), loading fails."""
TEST_SHARE = 10
"""With :func:`hashed_split`, one sample id in this many goes to the test split."""

T = TypeVar("T")
R = TypeVar("R")


class SkippedFilesWarning(UserWarning):
    """Some samples of a file dataset could not be read and were left out."""


@dataclass(frozen=True)
class Record:
    """One sample of a file dataset: its stable id, the files behind it, and what else its decoder needs."""

    id: str
    files: tuple[str, ...]
    """Paths relative to the dataset folder; samples sharing the first are decoded together when
    :attr:`FileDataset.group_by_file` is set."""
    extra: tuple[Any, ...] = ()


Decoder = Callable[[list[Record]], list[Any]]
"""Decodes a chunk of records; per record it answers ``(uint8 image (C, H, W), float32 labels or None)``,
or a string saying why the sample is unreadable. It raises :class:`DataError` for a file that breaks the format."""


def worker_count() -> int:
    """Decoding processes: ``$S2R_BENCH_WORKERS``, else the usable CPUs (at most 8)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{WORKERS_ENV}={raw!r} is not a positive whole number of processes; "
                              f"e.g. {WORKERS_ENV}=4")
        return int(raw)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def hashed_split(sample_id: str) -> str:
    """``"test"`` for about one id in ten, else ``"train"``: stable across runs, machines and a growing folder."""
    return "test" if stable_seed("split", sample_id) % TEST_SHARE == 0 else "train"


def _stat(path: Path) -> list[int]:
    try:
        status = path.stat()
    except OSError:
        return [-1, -1]
    return [status.st_size, status.st_mtime_ns]


@contextmanager
def _pool(workers: int) -> Iterator[Executor]:
    """Worker processes; on an error, tasks not yet started are dropped instead of awaited."""
    # Decoders never touch torch, so forking a process that has it loaded is safe and instant.
    fork = "fork" in multiprocessing.get_all_start_methods()
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork") if fork else None)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def map_in_workers(function: Callable[[T], R], items: list[T], description: str) -> list[R]:
    """``[function(item) for item in items]`` spread over worker processes, with a progress bar when it is slow."""
    workers = min(worker_count(), len(items))
    with ExitStack() as stack:
        mapped = stack.enter_context(_pool(workers)).map(function, items) if workers > 1 else map(function, items)
        return list(tqdm(mapped, total=len(items), desc=description, unit="file", delay=2, leave=False))


class FileDataset(Dataset):
    """A dataset read from the folder its spec names (``name:PATH``), with a cached index."""

    index_version: ClassVar[int] = 1
    """Bump when :meth:`scan`'s output changes meaning, so old cached indexes are rebuilt."""
    chunk_size: ClassVar[int] = 256
    """Samples per decoding task."""
    group_by_file: ClassVar[bool] = False
    """Decode all selected samples that share a file in one task (many samples per file)."""
    split_rule: ClassVar[str]
    """How samples are assigned to splits, in words (for error messages)."""

    def __init__(self, name: str, argument: str | None = None) -> None:
        if argument is None:
            raise ConfigError(f"dataset {name!r} reads a folder; give its path: '{name}:/path/to/folder'")
        super().__init__(name, argument)
        try:
            self.root = Path(argument).expanduser().resolve(strict=False)
        except (RuntimeError, OSError) as error:  # a symlink loop: RuntimeError before 3.13, OSError after
            raise DataError(f"{self.spec}: {argument} cannot be resolved ({error}); give the folder's real path") from None
        if not self.root.is_dir():
            raise DataError(f"{self.spec}: folder {self.root} does not exist; {self.expected()}")
        self.index = self._cached_index()
        self._digest = store.key(self.index)
        self._orders: dict[tuple[str, int], list[Record]] = {}
        self._identities: dict[tuple[str, int, int], str] = {}

    @abstractmethod
    def expected(self) -> str:
        """What the folder should hold, in words, for error messages."""

    @abstractmethod
    def watched(self) -> list[Path]:
        """Files and folders whose size and mtime decide whether the cached index is still current."""

    @abstractmethod
    def scan(self) -> Any:
        """List the folder's samples as JSON-serializable data (run once, then cached)."""

    @abstractmethod
    def records(self, split: str) -> list[Record]:
        """Every sample of ``split``, from :attr:`index`, in a canonical order."""

    @abstractmethod
    def decoder(self) -> Decoder:
        """A picklable function that decodes a chunk of records (run in worker processes)."""

    def _cached_index(self) -> Any:
        path = store.Store.default().index(self.name, str(self.root), self.index_version)
        stats = {str(p.relative_to(self.root)): _stat(p) for p in self.watched()}
        try:
            stored = json.loads(path.read_text())
            if stored["stats"] == stats:
                return stored["index"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no index yet, or a damaged one: rebuild it
        index = self.scan()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            partial.write_text(json.dumps({"root": str(self.root), "stats": stats, "index": index}))
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return index

    def _ordered(self, split: str, seed: int) -> list[Record]:
        salt = seed if split == "train" else "test"
        if (split, salt) not in self._orders:
            records = self.records(split)
            self._orders[split, salt] = sorted(records, key=lambda record: stable_seed(salt, record.id))
        return self._orders[split, salt]

    def identity(self, split: str, size: int, seed: int) -> str:
        """:meth:`Dataset.identity` (spec, version, split, size, seed) and a digest of the folder, its index and the
        size and mtime of every file behind the selected samples."""
        self._check_split(split)
        if (split, size, seed) not in self._identities:
            files = sorted({file for record in self._ordered(split, seed)[:size] for file in record.files})
            stats = [(file, *_stat(self.root / file)) for file in files]
            digest = store.key(str(self.root), self._digest, stats)
            self._identities[split, size, seed] = f"{super().identity(split, size, seed)}|{digest}"
        return self._identities[split, size, seed]

    def load(self, split: str, size: int, seed: int, progress: Progress | None = None) -> Samples:
        """Decode the first ``size`` readable samples of ``split`` (fewer if the split is smaller)."""
        self._check_split(split)
        if size < 1:
            raise DataError(f"asked for {size} samples of {self.spec}/{split}; sizes must be positive")
        order = self._ordered(split, seed)
        if not order:
            raise DataError(f"the {split} split of {self.spec} is empty ({self.split_rule}); add samples to the folder")
        decoded: list[tuple[np.ndarray, np.ndarray | None]] = []
        unreadable: list[str] = []
        start = 0
        workers = worker_count()
        with ExitStack() as stack:
            executor: Executor | None = None
            while len(decoded) < size and start < len(order):
                groups = self._groups(order[start : start + size - len(decoded)])
                start += sum(len(positions) for positions, _ in groups)
                if executor is None and len(groups) > 1 and workers > 1:
                    executor = stack.enter_context(_pool(min(workers, len(groups))))
                for result in self._decode(groups, executor, progress):
                    (unreadable if isinstance(result, str) else decoded).append(result)
        self._report(split, unreadable, len(decoded) + len(unreadable))
        if not decoded:
            raise DataError(f"no readable samples in the {split} split of {self.spec}")
        images = torch.from_numpy(np.stack([image for image, _ in decoded])).float().div_(127.5).sub_(1)
        labels = None
        if decoded[0][1] is not None:
            labels = torch.from_numpy(np.stack([label for _, label in decoded]).astype(np.float32))
        return Samples(images, labels)

    def _groups(self, batch: list[Record]) -> list[tuple[list[int], list[Record]]]:
        """``batch`` cut into decoding tasks, each with the positions its records hold in ``batch``."""
        if not self.group_by_file:
            return [(list(range(start, start + len(chunk))), chunk)
                    for start in range(0, len(batch), self.chunk_size)
                    for chunk in [batch[start : start + self.chunk_size]]]
        groups: dict[str, tuple[list[int], list[Record]]] = {}
        for position, record in enumerate(batch):
            positions, records = groups.setdefault(record.files[0], ([], []))
            positions.append(position)
            records.append(record)
        return list(groups.values())

    def _decode(self, groups: list[tuple[list[int], list[Record]]], executor: Executor | None,
                progress: Progress | None) -> list[Any]:
        """Decoder results of every record in ``groups``, back in batch order."""
        decoder = self.decoder()
        chunks = [records for _, records in groups]
        results = executor.map(decoder, chunks) if executor is not None else map(decoder, chunks)
        placed: list[Any] = [None] * sum(len(chunk) for chunk in chunks)
        for (positions, _), chunk_results in zip(groups, results):
            for position, result in zip(positions, chunk_results):
                placed[position] = result
            if progress is not None:
                progress(sum(not isinstance(result, str) for result in chunk_results))
        return placed

    def _report(self, split: str, unreadable: list[str], attempted: int) -> None:
        if not unreadable:
            return
        examples = "; ".join(unreadable[:3])
        message = f"{len(unreadable)} of {attempted} samples of {self.spec}/{split} are unreadable ({examples})"
        if len(unreadable) > 1 and len(unreadable) > MAX_UNREADABLE_SHARE * attempted:
            raise DataError(f"{message}; more than 1 in {round(1 / MAX_UNREADABLE_SHARE)} is no accident: "
                            "check the files, or remove the broken ones")
        warnings.warn(f"{message}; skipped them and used the next samples instead", SkippedFilesWarning, stacklevel=3)
