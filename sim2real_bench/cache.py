"""The on-disk cache: fitted refiners, their checkpoints, refined sets, source models.

Everything is keyed by a hash of what determines it (names, resolved configs,
data identities, seed), so a changed setting never reuses a stale entry and a
relaunched run picks up what an earlier one finished. The root is
``$S2R_BENCH_CACHE`` or ``~/.cache/s2r-bench``. Files are written atomically
(temporary name, then rename) so an interrupted write never looks finished, and
read with ``torch.load(weights_only=True)`` so no pickled code ever runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from sim2real_bench.errors import DataError

CACHE_ENV = "S2R_BENCH_CACHE"


def cache_root() -> Path:
    """The cache folder (created on first use)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "s2r-bench")
    root.mkdir(parents=True, exist_ok=True)
    return root


def key(*parts: Any) -> str:
    """A short stable hash of JSON-serializable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def save(state: Any, path: Path) -> None:
    """Write ``state`` with ``torch.save`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load(path: Path) -> Any:
    """Read a file written by :func:`save`; a corrupt file is a clear :class:`DataError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise DataError(f"cache file {path} is unreadable ({error}); delete it to recompute") from error
