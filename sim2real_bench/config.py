"""Budgets and configuration: presets are data, overrides are ``key=value`` strings.

Every component (the data sizes here, each task, each refiner) has a config
dataclass and one preset per budget. ``smoke`` runs in seconds (tests), ``quick``
in CPU minutes (the default), ``paper`` uses the published settings (GPU hours).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sim2real_bench.errors import ConfigError, UnknownNameError

BUDGETS = ("smoke", "quick", "paper")
DEFAULT_BUDGET = "quick"

C = TypeVar("C")


@dataclass(frozen=True)
class DataConfig:
    """How many images each split of a combination uses."""

    source_train: int
    target_train: int
    test: int
    """Size of both test splits (source and target)."""


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
