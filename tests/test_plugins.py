"""The plugin contract: registrar hooks, duplicate names, autoload switch."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from sim2real_bench import hookimpl
from sim2real_bench.errors import ConfigError, DuplicateNameError, UnknownNameError
from sim2real_bench.registry import DISABLE_AUTOLOAD_ENV, Registry
from sim2real_bench.refiner import Refiner


class TwiceRefiner(Refiner):
    """Doubles the images (a test plugin's refiner)."""

    Config = dataclass(frozen=True)(type("TwiceConfig", (), {}))
    presets: dict = {}

    def refine(self, images):
        return images * 2


class ThirdPartyPlugin:
    @hookimpl
    def register_refiners(self, register):
        register("twice", TwiceRefiner)


class ClashingPlugin:
    @hookimpl
    def register_refiners(self, register):
        register("none", TwiceRefiner)


@pytest.fixture
def with_test_plugin(registry: Registry):
    registry.add_plugin(ThirdPartyPlugin(), name="third-party")
    yield registry
    registry.remove_plugin("third-party")


def test_builtins_are_loaded_through_entry_points(registry: Registry) -> None:
    distributions = {info.name: info.distribution for info in registry.plugins()}
    assert distributions["eyes"] == "s2r-bench"
    assert {"none", "histmatch"} <= set(registry.entries("refiners"))
    assert {"synth-eyes", "webcam-eyes"} <= set(registry.entries("datasets"))
    assert "gaze" in registry.entries("tasks")


def test_registered_plugin_adds_its_refiner(with_test_plugin: Registry) -> None:
    entry = with_test_plugin.entries("refiners")["twice"]
    assert entry.factory is TwiceRefiner
    assert entry.plugin == "third-party"


def test_unregistered_plugin_takes_its_refiner_away(with_test_plugin: Registry) -> None:
    with_test_plugin.remove_plugin("third-party")
    assert "twice" not in with_test_plugin.entries("refiners")


def test_duplicate_name_names_both_plugins(registry: Registry) -> None:
    registry.add_plugin(ClashingPlugin(), name="clashing")
    with pytest.raises(DuplicateNameError, match=r"'none'.*'none'.*'clashing'|'none'.*'clashing'.*'none'"):
        registry.entries("refiners")


def test_unknown_name_lists_known_names(registry: Registry) -> None:
    with pytest.raises(UnknownNameError, match="known refiners: .*histmatch.*none"):
        registry.get("refiners", "simgna")


def test_autoload_switch_keeps_only_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []
    foreign = SimpleNamespace(
        name="foreign", dist=SimpleNamespace(name="someone-elses", version="1.0"),
        load=lambda: loaded.append("foreign") or ThirdPartyPlugin(),
    )
    real = importlib.metadata.entry_points

    def entry_points(group: str):
        return [*real(group=group), foreign]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "twice" in Registry().entries("refiners")
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    loaded.clear()
    registry = Registry()
    assert loaded == []
    assert "twice" not in registry.entries("refiners")
    assert "none" in registry.entries("refiners")


class ByReferencePlugin:
    @hookimpl
    def register_refiners(self, register):
        register("twice-lazy", f"{__name__}:TwiceRefiner")
        register("missing", f"{__name__}:NoSuchRefiner")


def test_a_reference_is_imported_when_needed_and_summarized_from_source(registry: Registry) -> None:
    registry.add_plugin(ByReferencePlugin(), name="by-reference")
    try:
        entry = registry.entries("refiners")["twice-lazy"]
        assert entry.summary == "Doubles the images (a test plugin's refiner)."
        assert registry.get("refiners", "twice-lazy") is TwiceRefiner
        with pytest.raises(ConfigError, match=r"plugin 'by-reference' registered 'missing' as .*:NoSuchRefiner'"):
            registry.get("refiners", "missing")
    finally:
        registry.remove_plugin("by-reference")


def test_a_reference_without_a_colon_is_refused_naming_the_plugin(registry: Registry) -> None:
    class Malformed:
        @hookimpl
        def register_refiners(self, register):
            register("malformed", "some.module.Class")

    registry.add_plugin(Malformed(), name="malformed-plugin")
    try:
        with pytest.raises(ConfigError, match="plugin 'malformed-plugin' registered 'malformed'.*'module:Class'"):
            registry.entries("refiners")
    finally:
        registry.remove_plugin("malformed-plugin")


def test_the_summary_is_read_from_source_without_importing_the_module() -> None:
    code = ("import sys\nfrom sim2real_bench.registry import Registry\n"
            "entry = Registry().entries('refiners')['simgan']\n"
            "print(entry.summary)\nprint('sim2real_bench.plugins.simgan.refiner' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["SimGAN refiner: adversarial training with self-regularization and an image history.", "False"]


@pytest.mark.parametrize("command", [["--help"], ["list"], ["plugins"]])
def test_help_list_and_plugins_import_neither_torch_nor_mlflow(command: list[str]) -> None:
    code = (f"import contextlib, sys\nfrom sim2real_bench.cli import main\n"
            f"with contextlib.suppress(SystemExit):\n    main({command!r})\n"
            "print(sorted(name for name in ('torch', 'mlflow', 'timm', 'diffusers') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
