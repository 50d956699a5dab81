"""Budgets and configuration: presets are data, overrides are ``key=value`` strings.

Every component (the data sizes here, each task, each refiner) has a config
dataclass and one preset per budget. ``smoke`` runs in seconds (tests), ``quick``
in CPU minutes (the default), ``paper`` uses the published settings (GPU hours).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from sim2real_bench.errors import ConfigError, UnknownNameError

BUDGETS = ("smoke", "quick", "paper")
DEFAULT_BUDGET = "quick"
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
ORACLE = "oracle"
"""The reference row trained on labeled target images (never a refiner)."""
IDENTITY = "none"
"""The refiner that changes nothing: its task model is the source-trained probe."""
DEFAULT_EXPERIMENT = "sweep"
"""The MLflow experiment a sweep records into unless told otherwise."""

C = TypeVar("C")


def at_least(config: Any, minimum: int, *names: str) -> list[str]:
    """A problem for each setting of ``names`` under ``minimum``."""
    return [f"{name} must be at least {minimum}, got {getattr(config, name)}"
            for name in names if not getattr(config, name) >= minimum]


def not_negative(config: Any, *names: str) -> list[str]:
    """A problem for each setting of ``names`` that is negative, NaN or infinite."""
    return [f"{name} must be a finite number >= 0, got {getattr(config, name)}"
            for name in names if not 0 <= getattr(config, name) < math.inf]


def positive(config: Any, *names: str) -> list[str]:
    """A problem for each setting of ``names`` that is not a positive finite number (NaN included)."""
    return [f"{name} must be positive and finite, got {getattr(config, name)}"
            for name in names if not 0 < getattr(config, name) < math.inf]


def one_of(config: Any, name: str, choices: Collection[str]) -> list[str]:
    """A problem when setting ``name`` is not among ``choices``."""
    value = getattr(config, name)
    return [] if value in choices else [f"{name} {value!r} is not one of {', '.join(choices)}"]


class Checked:
    """A config dataclass that validates itself when made: the one way every config is checked.

    :meth:`problems` lists what is wrong (subclasses add theirs to
    ``super().problems()``) and ``__post_init__`` raises one :class:`ConfigError`
    naming them all. ``dataclasses.replace``, which ``--set`` uses, runs it too,
    so a bad override fails when the plan is made, before any work.
    """

    section: ClassVar[str] = "config"
    """Who the settings belong to: the first word of the error (a refiner's name, ``task``, ``data``)."""
    override: ClassVar[str] = "refiner"
    """The ``--set`` section that changes them."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(f"{self.section}: {'; '.join(problems)} "
                              f"(change them with --set {self.override}.FIELD=VALUE)")

    def problems(self) -> list[str]:
        """What is wrong with these settings, one phrase each (empty when nothing is)."""
        return []


@dataclass(frozen=True)
class DataConfig(Checked):
    """How many images each split of a combination uses."""

    source_train: int
    target_train: int
    test: int
    """Size of both test splits (source and target)."""

    section: ClassVar[str] = "data"
    override: ClassVar[str] = "data"

    def problems(self) -> list[str]:
        return at_least(self, 1, "source_train", "target_train", "test")


DATA_PRESETS: dict[str, DataConfig] = {
    "smoke": DataConfig(source_train=512, target_train=512, test=256),
    "quick": DataConfig(source_train=20_000, target_train=20_000, test=4_000),
    "paper": DataConfig(source_train=1_200_000, target_train=200_000, test=45_000),
}


def check_budget(budget: str) -> str:
    """Return ``budget`` if it names a preset, else raise listing the presets."""
    if budget not in BUDGETS:
        raise UnknownNameError(f"unknown budget {budget!r}; budgets: {', '.join(BUDGETS)}")
    return budget


def preset(presets: Mapping[str, C], budget: str) -> C:
    """The preset of ``budget`` from a component's preset table."""
    return presets[check_budget(budget)]


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """Group ``section.field=value`` strings by section (``data``, ``task``, ``refiner``)."""
    grouped: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"malformed override {item!r}; expected SECTION.FIELD=VALUE, e.g. task.epochs=2")
        grouped.setdefault(section, {})[field] = value.strip()
    return grouped


def apply_overrides(config: C, overrides: Mapping[str, str], section: str) -> C:
    """A copy of ``config`` with string overrides converted to each field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name, raw in overrides.items():
        if name not in fields:
            known = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"{section} has no setting {name!r}; settings: {known}")
        current = getattr(config, name)
        changes[name] = _convert(raw, current, f"{section}.{name}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def _convert(raw: str, current: Any, key: str) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if isinstance(current, (int, float, str)):
            return type(current)(raw)
        if isinstance(current, tuple):
            return tuple(json.loads(raw))
        return json.loads(raw)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"cannot read {key}={raw!r} as {type(current).__name__}") from error


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
