"""The plugin manager and the registries of refiners, datasets and tasks.

Built-in plugins and third-party ones load through the same entry-point group
(``sim2real_bench``); the built-ins are simply the entry points declared by this
project's own distribution. Setting ``S2R_BENCH_DISABLE_PLUGIN_AUTOLOAD`` keeps
only those, as ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does for pytest.

A plugin registers either a class or a reference to one, ``"module:Class"``. A
reference is imported only when the class is first needed, and its one-line
summary is read from the module's source, so ``s2r-bench list`` never imports
torch (the built-ins all register references).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from sim2real_bench import PROJECT_NAME, hookspecs
from sim2real_bench.errors import ConfigError, DuplicateNameError, UnknownNameError

if TYPE_CHECKING:
    from sim2real_bench.data import Dataset

DISTRIBUTION = "s2r-bench"
DISABLE_AUTOLOAD_ENV = "S2R_BENCH_DISABLE_PLUGIN_AUTOLOAD"

Kind = Literal["refiners", "datasets", "tasks"]
KINDS: tuple[Kind, ...] = ("refiners", "datasets", "tasks")


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from, for ``s2r-bench plugins``."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Entry:
    """One registered thing: its name, its class (or a ``"module:Class"`` reference to it) and the plugin that added it."""

    name: str
    target: Any
    plugin: str

    @cached_property
    def factory(self) -> Any:
        """The registered class, imported on first use when it was registered by reference."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attribute = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"plugin {self.plugin!r} registered {self.name!r} as {self.target!r}, which cannot be "
                              f"imported ({error}); reinstall or fix that plugin") from error

    @property
    def summary(self) -> str:
        """The first line of the class's docstring, read from source for a reference not yet imported."""
        doc = None
        if isinstance(self.target, str) and self.target.partition(":")[0] not in sys.modules:
            doc = _docstring_in_source(self.target)
        if doc is None:
            doc = self.factory.__doc__ or ""
        lines = doc.strip().splitlines()
        return lines[0] if lines else ""


def _docstring_in_source(reference: str) -> str | None:
    """The docstring of the class a ``"module:Class"`` reference names, parsed from the module's source
    without running it (as ``pydoc`` reads a synopsis); None when the class is not found there."""
    module, _, attribute = reference.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        source = spec.loader.get_source(module) if spec is not None and spec.loader is not None else None
    except (ImportError, AttributeError, ValueError):
        return None
    if source is None:
        return None
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attribute:
            return ast.get_docstring(node) or ""
    return None


def autoload_disabled() -> bool:
    """True when the user switched third-party plugin loading off."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Registry:
    """Plugins loaded into one pluggy manager, and the names they registered."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.plugin_info: dict[str, PluginInfo] = {}
        self._entries: dict[Kind, dict[str, Entry]] | None = None
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        builtins_only = autoload_disabled()
        for entry_point in importlib.metadata.entry_points(group=PROJECT_NAME):
            dist = entry_point.dist
            dist_name = dist.name if dist is not None else "unknown"
            if builtins_only and dist_name != DISTRIBUTION:
                continue
            if self.manager.get_plugin(entry_point.name) is not None:
                continue
            self.manager.register(entry_point.load(), name=entry_point.name)
            version = dist.version if dist is not None else "unknown"
            self.plugin_info[entry_point.name] = PluginInfo(entry_point.name, dist_name, version)

    def add_plugin(self, plugin: object, name: str) -> None:
        """Register a plugin object directly (tests, notebooks)."""
        self.manager.register(plugin, name=name)
        self.plugin_info[name] = PluginInfo(name, "(registered in process)", "")
        self._entries = None

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin added with :meth:`add_plugin`."""
        self.manager.unregister(name=name)
        self.plugin_info.pop(name, None)
        self._entries = None

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin, sorted by name."""
        return sorted(self.plugin_info.values(), key=lambda info: info.name)

    def entries(self, kind: Kind) -> dict[str, Entry]:
        """Everything of one kind that the loaded plugins registered, by name."""
        if self._entries is None:
            self._entries = {k: self._collect(k) for k in KINDS}
        return self._entries[kind]

    def get(self, kind: Kind, name: str) -> Any:
        """The class registered under ``name``; an error lists the known names."""
        entries = self.entries(kind)
        if name not in entries:
            known = ", ".join(sorted(entries)) or "(none)"
            raise UnknownNameError(f"unknown {kind[:-1]} {name!r}; known {kind}: {known}")
        return entries[name].factory

    def label_kinds(self) -> dict[str, tuple[str, ...]]:
        """Every label kind the registered tasks declare, with its label columns in order."""
        kinds: dict[str, tuple[str, ...]] = {}
        declared_by: dict[str, str] = {}
        for name, entry in sorted(self.entries("tasks").items()):
            kind, columns = entry.factory.label_kind, tuple(entry.factory.label_names)
            if kind in kinds and kinds[kind] != columns:
                raise DuplicateNameError(
                    f"label kind {kind!r} has columns {', '.join(kinds[kind])} in task {declared_by[kind]!r} but "
                    f"{', '.join(columns)} in task {name!r} (plugin {entry.plugin!r}); one kind has one set of columns"
                )
            same = [other for other, names in kinds.items() if other != kind and sorted(names) == sorted(columns)]
            if same:
                raise DuplicateNameError(
                    f"label kinds {same[0]!r} (task {declared_by[same[0]]!r}) and {kind!r} (task {name!r}, plugin "
                    f"{entry.plugin!r}) have the same columns, so a labels.csv cannot tell them apart; rename one's columns"
                )
            kinds[kind], declared_by[kind] = columns, name
        return kinds

    def label_kind_of(self, dataset: Dataset) -> str:
        """A dataset's label kind: its own, or, for one labeled by column names only (a ``folder:``),
        the registered kind with exactly those columns in some order."""
        if dataset.label_kind is not None:
            return dataset.label_kind
        columns = sorted(dataset.label_names)
        found = [kind for kind, names in self.label_kinds().items() if sorted(names) == columns]
        return found[0] if found else f"csv({','.join(dataset.label_names)})"

    def _collect(self, kind: Kind) -> dict[str, Entry]:
        found: dict[str, Entry] = {}

        def register(plugin: str, name: str, factory: Any) -> None:
            if isinstance(factory, str) and factory.count(":") != 1:
                raise ConfigError(f"plugin {plugin!r} registered {name!r} as {factory!r}; a reference is "
                                  "'module:Class'")
            if name in found:
                raise DuplicateNameError(
                    f"{kind[:-1]} {name!r} is registered twice: by plugin "
                    f"{found[name].plugin!r} and by plugin {plugin!r}; uninstall one of them "
                    f"or set {DISABLE_AUTOLOAD_ENV}=1 to load only the built-ins"
                )
            found[name] = Entry(name, factory, plugin)

        hook = getattr(self.manager.hook, f"register_{kind}")
        for impl in reversed(hook.get_hookimpls()):
            impl.function(register=partial(register, impl.plugin_name))
        return found


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loading entry points on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
