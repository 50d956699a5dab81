"""What one combination is: the user's spec, resolved against the registry before any work.

A :class:`RunSpec` is what the user asked for (names and strings, as typed);
:func:`resolve` turns it into a :class:`Plan` (classes, validated configs,
datasets, compute) and is where every user mistake surfaces: unknown names,
bad settings, label kinds or image shapes that do not fit, sizes that cannot
fit in memory. Runs, sweeps and exports all start from a plan.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import sim2real_bench
from sim2real_bench import store
from sim2real_bench.config import DATA_PRESETS, ORACLE, DataConfig, apply_overrides, check_budget, parse_overrides, preset
from sim2real_bench.data import Dataset, aspects_match, framed, parse_spec
from sim2real_bench.device import Compute, resolve_compute
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry, default_registry
from sim2real_bench.task import Task

MAX_SEED = 2**63 - 1
MEMORY_COPIES = 3
"""Copies of the image tensors a run holds at its peak (as loaded, in the input space, refined)."""


@dataclass(frozen=True)
class RunSpec:
    """What the user asked for: one combination and where it runs."""

    refiner: str
    task: str
    seed: int = 0
    budget: str = "quick"
    device: str = "auto"
    precision: str = "auto"
    source: str | None = None
    target: str | None = None
    target_test: str | None = None
    """A labeled dataset to test on when ``target`` has no labels (e.g. an unlabeled ``folder:``)."""
    overrides: tuple[str, ...] = ()
    real_test: str | None = None
    """A second labeled test set, typically real captures: the trained task is evaluated on it too (``real/*``)."""
    real_images: str | None = None
    """Unlabeled real captures the run's refined test images are judged against (``real_realism/*``)."""


@dataclass(frozen=True)
class Plan:
    """A spec resolved against the registry: classes, configs and datasets."""

    spec: RunSpec
    task_class: type[Task]
    refiner_class: type[Refiner] | None
    task_config: Any
    refiner_config: Any
    data: DataConfig
    source: Dataset
    target: Dataset
    target_test: Dataset
    """Where the labeled target test split comes from: ``target`` unless ``--target-test`` names another."""
    compute: Compute
    real_test: Dataset | None = None
    """Where the ``real/*`` metrics are measured, when the spec names a second test set."""
    real_images: Dataset | None = None
    """The real captures of the ``real_realism/*`` metrics, when the spec names them."""

    @property
    def is_reference(self) -> bool:
        """True for the ``oracle`` reference row."""
        return self.refiner_class is None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image of the run."""
        return self.source.image_shape

    def new_task(self) -> Task:
        """A fresh, untrained task of the plan."""
        return self.task_class(self.task_config, self.image_shape)

    def new_refiner(self) -> Refiner:
        """A fresh, unfitted refiner of the plan."""
        assert self.refiner_class is not None, "the oracle reference has no refiner"
        return self.refiner_class(self.refiner_config, self.image_shape)

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as logged and printed.

        A second test set and real images are in it only when named, so runs without them keep the keys they had.
        """
        config = {
            "refiner": self.spec.refiner,
            "role": "reference" if self.is_reference else "refiner",
            "task": self.spec.task,
            "seed": self.spec.seed,
            "budget": self.spec.budget,
            "source": self.source.spec,
            "target": self.target.spec,
            "target_test": self.target_test.spec,
            "data_versions": {"source": self.source.version, "target": self.target.version,
                              "target_test": self.target_test.version},
            "device": str(self.compute.device),
            "precision": self.compute.precision,
            "data": dataclasses.asdict(self.data),
            "task_config": dataclasses.asdict(self.task_config),
            "refiner_config": dataclasses.asdict(self.refiner_config) if self.refiner_config is not None else {},
        }
        if self.real_test is not None:
            config["real_test"] = self.real_test.spec
            config["data_versions"]["real_test"] = self.real_test.version
        if self.real_images is not None:
            config["real_images"] = self.real_images.spec
            config["data_versions"]["real_images"] = self.real_images.version
        return config

    @property
    def key(self) -> str:
        """The combination's identity: the hash of its resolved config (a sweep skips keys already finished)."""
        return store.key("combination", self.config(), sim2real_bench.__version__)


def build_dataset(spec: str, registry: Registry) -> Dataset:
    """A dataset from its spec, ``name`` or ``name:ARGUMENT``."""
    name, argument = parse_spec(spec)
    return registry.get("datasets", name)(name, argument)


def _check_label_kinds(spec: RunSpec, task_class: type[Task], reference: bool, source: Dataset, target: Dataset,
                       target_test: Dataset, real_test: Dataset | None, registry: Registry) -> None:
    labeled = [("source", source)]
    if reference or spec.target_test is None:
        labeled.append(("target", target))
    if spec.target_test is not None:
        labeled.append(("target test", target_test))
    if real_test is not None:
        labeled.append(("real test", real_test))
    for role, dataset in labeled:
        kind = registry.label_kind_of(dataset)
        if kind != task_class.label_kind:
            fix = ""
            if role == "target":
                fix = (" (the oracle reference trains on labeled target images)" if reference
                       else "; to adapt to unlabeled target images, name a labeled test set with --target-test")
            raise ConfigError(
                f"{role} dataset {dataset.spec} has label kind {kind!r} but task {spec.task!r} "
                f"needs {task_class.label_kind!r} (columns {', '.join(task_class.label_names)}){fix}"
            )


def _available_memory() -> int | None:
    """Bytes of memory this process can still use (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_memory(data: DataConfig, image_shape: tuple[int, int, int], test_splits: int = 2) -> None:
    """Refuse split sizes whose image tensors cannot fit in memory, before anything is loaded."""
    images = data.source_train + data.target_train + test_splits * data.test
    needed = images * math.prod(image_shape) * 4 * MEMORY_COPIES
    available = _available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"the data sizes ({data.source_train:,} + {data.target_train:,} training and {test_splits} x "
            f"{data.test:,} test images of {image_shape}) need about {needed / 2**30:,.1f} GiB of memory but "
            f"{available / 2**30:,.1f} GiB is available; lower data.source_train / data.target_train / data.test"
        )


def resolve(spec: RunSpec, registry: Registry | None = None) -> Plan:
    """Resolve names, presets and overrides; every user mistake surfaces here, before any work."""
    registry = registry or default_registry()
    check_budget(spec.budget)
    store.cache_root()  # a cache that cannot be written fails here, not when the first entry is saved
    if not 0 <= spec.seed <= MAX_SEED:
        raise ConfigError(f"--seed {spec.seed} is out of range; seeds are integers from 0 to 2**63 - 1")
    task_class = registry.get("tasks", spec.task)
    refiner_class = None if spec.refiner == ORACLE else registry.get("refiners", spec.refiner)
    overrides = parse_overrides(spec.overrides)
    unknown = set(overrides) - {"data", "task", "refiner"}
    if unknown:
        raise ConfigError(f"unknown override section(s) {', '.join(sorted(unknown))}; use data., task. or refiner.")
    if refiner_class is None and "refiner" in overrides:
        raise ConfigError("the oracle reference has no refiner settings to override")
    data = apply_overrides(preset(DATA_PRESETS, spec.budget), overrides.get("data", {}), "data")
    task_config = apply_overrides(preset(task_class.presets, spec.budget), overrides.get("task", {}), "task")
    refiner_config = None
    if refiner_class is not None:
        refiner_config = apply_overrides(refiner_class.preset_for(spec.budget, task_class.label_kind),
                                         overrides.get("refiner", {}), "refiner")
    source = build_dataset(task_class.default_source if spec.source is None else spec.source, registry)

    def framed_like_source(named: str) -> Dataset:
        return framed(build_dataset(named, registry), source.image_shape)

    target = framed_like_source(task_class.default_target if spec.target is None else spec.target)
    target_test = target if spec.target_test is None else framed_like_source(spec.target_test)
    real_test = None if spec.real_test is None else framed_like_source(spec.real_test)
    real_images = None if spec.real_images is None else framed_like_source(spec.real_images)
    _check_label_kinds(spec, task_class, refiner_class is None, source, target, target_test, real_test, registry)
    tested = {"target": target, "target test": target_test, "real test": real_test, "real images": real_images}
    for role, dataset in tested.items():
        if dataset is not None and source.image_shape != dataset.image_shape:
            channels, height, width = source.image_shape
            crop = "" if aspects_match((channels, height, width), (channels, *dataset.image_shape[1:])) else \
                "crop=LEFT,TOP,RIGHT,BOTTOM&"  # a resize alone would squash the images
            raise DataError(
                f"source {source.spec} images are {source.image_shape} but {role} {dataset.spec} images are "
                f"{dataset.image_shape} (C, H, W); all domains must share one shape (frame a folder to it with "
                f"folder:PATH?{crop}size={width}x{height}&channels={channels})"
            )
    _check_memory(data, source.image_shape, test_splits=2 + (real_test is not None) + (real_images is not None))
    compute = resolve_compute(spec.device, spec.precision)
    return Plan(spec, task_class, refiner_class, task_config, refiner_config, data, source, target, target_test,
                compute, real_test, real_images)

