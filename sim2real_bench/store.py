"""The cache store: every cache path and key recipe of s2r-bench, behind get-or-create.

What is cached, and what decides its key (a hash: a changed setting never reuses
a stale entry, a relaunched run picks up what an earlier one finished):

* ``fits/KEY/refiner.pt``: a fitted refiner (refiner name, its config, seed, the
  task's input space, both training sets' identities); ``fits/KEY/`` is also the
  fit's checkpoint folder, so an interrupted fit resumes.
* ``fits/KEY/refined-train.pt``: the source training set as that fit refines it.
* ``probes/KEY.pt``: the source-trained task model behind label shift and KID
  (task, task config, seed, input space, source identity), made once by whichever
  run needs it first and never overwritten.
* ``indexes/NAME-KEY.json``: the file index of a dataset read from disk.

The root is ``$S2R_BENCH_CACHE`` or ``~/.cache/s2r-bench``. Files are written
atomically (temporary name, then rename), so an interrupted write never looks
finished, and read with ``torch.load(weights_only=True)``, so no pickled code
runs. An entry that is truncated, unreadable or not what its key promises (a
refined set of the wrong size, a model of other widths) is rebuilt with a
warning naming it: never a traceback, never a silently wrong result.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from sim2real_bench.errors import ConfigError

CACHE_ENV = "S2R_BENCH_CACHE"
T = TypeVar("T")


class CacheEntryWarning(UserWarning):
    """A cache entry could not be used and is being rebuilt."""


class InvalidEntry(Exception):
    """Raised by a ``check`` to say a loaded entry is not what its key promises."""


def cache_root() -> Path:
    """The cache folder (created on first use); one that cannot be written is a :class:`ConfigError` naming the fix."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "s2r-bench")
    fix = f"set {CACHE_ENV} to a folder you can write"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cache folder {root} cannot be created ({error.strerror or error}); {fix}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"cache folder {root} is not writable; {fix}")
    return root


def key(*parts: Any) -> str:
    """A short stable hash of JSON-serializable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def save(state: Any, path: Path) -> None:
    """Write ``state`` with ``torch.save`` atomically.

    torch writes through a Python file object here, so a full disk raises the
    ``OSError(ENOSPC)`` of the failed write (which the CLI reports in one line)
    rather than torch's opaque ``RuntimeError``; the partial file never outlives
    the call.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Host and pid: on a cache that cluster nodes share, two writers of one entry never share a partial file.
    partial = path.with_name(f"{path.name}.partial-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(partial, "wb") as file:
            torch.save(state, file)
        os.replace(partial, path)
    except RuntimeError as error:
        if isinstance(error.__context__, OSError):  # torch's writer failed on closing after the write failed
            raise error.__context__ from None
        raise
    finally:
        partial.unlink(missing_ok=True)


def read(path: Path, what: str) -> Any | None:
    """The state saved at ``path``; ``None`` when there is none or it is unreadable (then with a warning)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        _discard(path, what, f"unreadable: {type(error).__name__}")
        return None


def _discard(path: Path, what: str, reason: str) -> None:
    warnings.warn(f"cache entry {path} ({what}) is {reason}; rebuilding it", CacheEntryWarning, stacklevel=3)
    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Entry:
    """One cached file and what it holds (for warnings)."""

    path: Path
    what: str

    def get_or_create(self, create: Callable[[], Any], check: Callable[[Any], T]) -> tuple[T, bool]:
        """``check(stored state)`` if a usable entry exists, else ``check(create())`` after saving it.

        ``check`` turns the raw state into the value callers want and raises
        :class:`InvalidEntry` (or any error) when it is not what the key promises;
        such an entry is discarded and rebuilt. Returns the value and whether it
        came from the cache.
        """
        state = read(self.path, self.what)
        if state is not None:
            try:
                return check(state), True
            except Exception as error:  # a damaged or foreign entry, whatever it raises
                _discard(self.path, self.what, f"not usable ({error})")
        state = create()
        save(state, self.path)
        return check(state), False


@dataclass(frozen=True)
class Store:
    """The cache folder and the key recipe of every kind of entry in it."""

    root: Path

    @classmethod
    def default(cls) -> Store:
        """The store at ``$S2R_BENCH_CACHE`` or ``~/.cache/s2r-bench``."""
        return cls(cache_root())

    def fit_key(self, refiner: str, config: dict[str, Any], version: str, seed: int, input_space: str,
                source_identity: str, target_identity: str) -> str:
        """The identity of one refiner fit."""
        return key("fit", refiner, config, version, seed, input_space, source_identity, target_identity)

    def fit_folder(self, fit_key: str) -> Path:
        """The fit's own folder: its checkpoints survive an interrupted run."""
        return self.root / "fits" / fit_key

    def fitted(self, fit_key: str) -> Entry:
        """The fitted refiner's state."""
        return Entry(self.fit_folder(fit_key) / "refiner.pt", "fitted refiner")

    def refined(self, fit_key: str, refine_settings: dict[str, Any]) -> Entry:
        """The source training set as the fit refines it with ``refine_settings`` (the refiner's own)."""
        return Entry(self.fit_folder(fit_key) / f"refined-train-{key('refined', refine_settings)}.pt",
                     "refined training set")

    def probe(self, task: str, config: dict[str, Any], version: str, seed: int, input_space: str,
              source_identity: str) -> Entry:
        """The source-trained task model that label shift and KID measure with."""
        probe_key = key("probe", task, config, version, seed, input_space, source_identity)
        return Entry(self.root / "probes" / f"{probe_key}.pt", "source-trained probe")

    def index(self, dataset: str, folder: str, version: int) -> Path:
        """Where a file dataset's JSON index is kept."""
        return self.root / "indexes" / f"{dataset}-{key(folder, version)}.json"
