"""Fitted-refiner checkpoints: one file that holds a refiner, its config and where it applies.

A run logs one as the MLflow artifact ``refiner/refiner.pt``; ``s2r-bench refine
--from-run RUN_ID`` or ``--checkpoint PATH`` refines with it instead of fitting
again. The file is a plain dict of tensors, numbers, strings, lists and tuples,
read with ``torch.load(weights_only=True)``: loading one never runs code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from sim2real_bench import store
from sim2real_bench.errors import DataError, S2RError
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry

FORMAT = "s2r-bench refiner checkpoint"
VERSION = 1
ARTIFACT = "refiner/refiner.pt"
"""Where a run keeps its fitted refiner among its MLflow artifacts."""


def save(name: str, refiner: Refiner, input_space: str, path: Path) -> None:
    """Write ``refiner`` (registered as ``name``), fitted on images in the task's ``input_space``."""
    store.save({
        "format": FORMAT,
        "version": VERSION,
        "refiner": name,
        "config": dataclasses.asdict(refiner.config),
        "image_shape": tuple(refiner.image_shape),
        "input_space": input_space,
        "state": refiner.state_dict(),
    }, path)


@dataclasses.dataclass(frozen=True)
class Restored:
    """A refiner read back from a checkpoint, with what it was fitted for."""

    name: str
    refiner: Refiner
    input_space: str


def load(path: Path, registry: Registry) -> Restored:
    """Read a checkpoint written by :func:`save`; anything else is a :class:`DataError` naming the file."""
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise DataError(f"checkpoint {path} does not exist") from error
    except Exception as error:  # torch raises many types for files that are not its own
        # torch's message may advise turning weights-only loading off, i.e. running the file's code: never pass it on.
        raise DataError(f"{path} is not a refiner checkpoint of s2r-bench (it does not load as plain tensors "
                        f"and data: {type(error).__name__}); use the {ARTIFACT} artifact of a run") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(f"{path} is not a refiner checkpoint of s2r-bench; use the {ARTIFACT} artifact of a run "
                        "(or --from-run RUN_ID)")
    if state.get("version") != VERSION:
        raise DataError(f"{path} is a version {state.get('version')} checkpoint; this s2r-bench reads version {VERSION}")
    try:
        refiner_class = registry.get("refiners", state["refiner"])
        config = refiner_class.Config(**state["config"])
        refiner = refiner_class(config, tuple(state["image_shape"]))
        refiner.load_state_dict(state["state"])
        return Restored(state["refiner"], refiner, str(state["input_space"]))
    except S2RError as error:
        raise DataError(f"{path} holds a refiner this installation cannot build: {error}") from None
    except Exception as error:  # a crafted or damaged file: missing keys, other widths, wrong types
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise DataError(f"{path} is a damaged refiner checkpoint ({reason}); use the {ARTIFACT} artifact of a "
                        "run") from None
