"""Run one combination (refiner, task, seed, budget) end to end and log it to MLflow.

The stages follow ``../shared/design.md`` section 3: resolve plugins and
configs, seed, load the domains, fit the refiner on labeled source and
*unlabeled* target images, refine the source training set, train the task on it,
evaluate on the labeled target and source test splits, log everything.
``oracle`` is a reference row, not a refiner: it trains the task on labeled
target images and is the only path through which target training labels flow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import sim2real_bench
from sim2real_bench import cache, checkpoint, tracking
from sim2real_bench.config import DATA_PRESETS, DataConfig, apply_overrides, check_budget, flatten, parse_overrides, preset
from sim2real_bench.data import Dataset, Samples, parse_spec
from sim2real_bench.device import Compute, resolve_compute, seed_everything
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.images import grid
from sim2real_bench.realism import realism
from sim2real_bench.refiner import FitContext, Refiner
from sim2real_bench.registry import Registry, default_registry
from sim2real_bench.task import Task

ORACLE = "oracle"
"""The reference row trained on labeled target images (never a refiner)."""
IDENTITY = "none"
"""The refiner that changes nothing: its task model is the source-trained model."""
STRIP_IMAGES = 8
"""Images in each run's ``samples/strip.png``: the first source test images as the
run's refiner leaves them (``oracle``: target images), for side-by-side grids."""


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


@dataclass
class RunResult:
    """What a finished combination reports (``--json`` prints it)."""

    run_id: str | None
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
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

    @property
    def is_reference(self) -> bool:
        """True for the ``oracle`` reference row."""
        return self.refiner_class is None

    def config(self) -> dict[str, Any]:
        """The resolved configuration, as logged and printed."""
        return {
            "refiner": self.spec.refiner,
            "role": "reference" if self.is_reference else "refiner",
            "task": self.spec.task,
            "seed": self.spec.seed,
            "budget": self.spec.budget,
            "source": self.source.spec,
            "target": self.target.spec,
            "target_test": self.target_test.spec,
            "device": str(self.compute.device),
            "precision": self.compute.precision,
            "data": dataclasses.asdict(self.data),
            "task_config": dataclasses.asdict(self.task_config),
            "refiner_config": dataclasses.asdict(self.refiner_config) if self.refiner_config is not None else {},
        }


def build_dataset(spec: str, registry: Registry) -> Dataset:
    """A dataset from its spec, ``name`` or ``name:ARGUMENT``."""
    name, argument = parse_spec(spec)
    return registry.get("datasets", name)(name, argument)


def plan(spec: RunSpec, registry: Registry | None = None) -> Plan:
    """Resolve names, presets and overrides; every user mistake surfaces here, before any work."""
    registry = registry or default_registry()
    check_budget(spec.budget)
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
    target = build_dataset(task_class.default_target if spec.target is None else spec.target, registry)
    target_test = target if spec.target_test is None else build_dataset(spec.target_test, registry)
    labeled = [("source", source)]
    if refiner_class is None or spec.target_test is None:
        labeled.append(("target", target))
    if spec.target_test is not None:
        labeled.append(("target test", target_test))
    for role, dataset in labeled:
        if dataset.label_kind != task_class.label_kind:
            fix = ""
            if role == "target":
                fix = (" (the oracle reference trains on labeled target images)" if refiner_class is None
                       else "; to adapt to unlabeled target images, name a labeled test set with --target-test")
            raise ConfigError(
                f"{role} dataset {dataset.spec} has label kind {dataset.label_kind!r} but task {spec.task!r} "
                f"needs {task_class.label_kind!r}{fix}"
            )
    for role, dataset in (("target", target), ("target test", target_test)):
        if source.image_shape != dataset.image_shape:
            raise DataError(
                f"source {source.spec} images are {source.image_shape} but {role} {dataset.spec} images are "
                f"{dataset.image_shape} (C, H, W); all domains must share one shape"
            )
    compute = resolve_compute(spec.device, spec.precision)
    return Plan(spec, task_class, refiner_class, task_config, refiner_config, data, source, target, target_test,
                compute)


class Stopwatch:
    """Wall time and throughput of the run's stages."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, int]]:
        """Time a stage; set ``["images"]`` on the yielded dict to get images/s."""
        counter = {"images": 0}
        start = time.perf_counter()
        yield counter
        seconds = time.perf_counter() - start
        self.metrics[f"time/{name}_s"] = seconds
        if counter["images"]:
            self.metrics[f"throughput/{name}_img_s"] = counter["images"] / seconds


def load_split(dataset: Dataset, split: str, size: int, seed: int, progress: bool) -> Samples:
    """The first ``size`` samples of a split, with a progress bar."""
    with tqdm(total=size, desc=f"data: {dataset.spec}/{split}", unit="img", disable=not progress, leave=False) as bar:
        return dataset.load(split, size, seed, progress=bar.update)


@torch.inference_mode()
def refine_all(refiner: Refiner, images: torch.Tensor, compute: Compute, batch_size: int = 1024, progress: bool = True) -> torch.Tensor:
    """Refine a block of images in batches on ``compute``; returns CPU float32."""
    refined = []
    for start in tqdm(range(0, len(images), batch_size), desc="refine", unit="batch", disable=not progress, leave=False):
        batch = images[start : start + batch_size].to(compute.device)
        with compute.autocast():
            refined.append(refiner.refine(batch).float().cpu())
    return torch.cat(refined)


@torch.inference_mode()
def normalized(task: Task, samples: Samples, compute: Compute, batch_size: int = 4096) -> Samples:
    """``samples`` in the task's input space (gaze: equalized), where refiners work too.

    Refining in the space the task sees keeps refiners from spending their
    capacity on differences the task's own input normalization removes anyway.
    """
    images = torch.cat([task.preprocess(samples.images[start : start + batch_size].to(compute.device)).float().cpu()
                        for start in range(0, len(samples), batch_size)])
    return Samples(images.contiguous(), samples.labels)


def versions() -> dict[str, str]:
    import kornia
    import mlflow
    import pluggy
    import timm

    return {
        "s2r_bench": sim2real_bench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "kornia": kornia.__version__,
        "pluggy": pluggy.__version__,
        "mlflow": mlflow.__version__,
    }


def _peak_memory_mb(compute: Compute) -> float:
    if compute.device.type == "cuda":
        return torch.cuda.max_memory_allocated(compute.device) / 2**20
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20


def _cuda_devices(compute: Compute) -> list[int]:
    return [compute.device.index or 0] if compute.device.type == "cuda" else []


def fit_refiner(resolved: Plan, task: Task, source: Samples, target: Samples, tracker: tracking.Tracker,
                watch: Stopwatch, progress: bool) -> tuple[Refiner, str]:
    """Fit the planned refiner, or restore it from the cache; return it and its fit key."""
    spec, data = resolved.spec, resolved.data
    refiner = resolved.refiner_class(resolved.refiner_config, resolved.source.image_shape)
    fit_key = cache.key(
        "fit", spec.refiner, dataclasses.asdict(resolved.refiner_config), sim2real_bench.__version__, spec.seed,
        task.input_space(),
        resolved.source.identity("train", data.source_train, spec.seed),
        resolved.target.identity("train", data.target_train, spec.seed),
    )
    fit_dir = cache.cache_root() / "fits" / fit_key
    fitted = fit_dir / "refiner.pt"
    if refiner.trains and fitted.exists():
        refiner.load_state_dict(cache.load(fitted))
        tracker.set_tags({"s2r.fit": "cached"})
    else:
        with contextlib.ExitStack() as stack, watch.stage("refiner_fit") as fit:
            if refiner.trains:
                folder = fit_dir
                # A cached fit draws nothing from the global RNG, so a fresh one must not either:
                # the task model's initialization after it would differ, and a result depend on the cache.
                stack.enter_context(torch.random.fork_rng(devices=_cuda_devices(resolved.compute)))
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            context = FitContext(resolved.compute, tracker, spec.seed, folder, progress)
            fit["images"] = refiner.fit(source, target, context)
        if refiner.trains:
            cache.save(refiner.state_dict(), fitted)
            tracker.set_tags({"s2r.fit": "fitted"})
    refiner.to(resolved.compute.device)
    return refiner, fit_key


def log_refiner(tracker: tracking.Tracker, name: str, refiner: Refiner, input_space: str) -> None:
    """Log the fitted refiner as the run's checkpoint artifact (what ``refine --from-run`` reads)."""
    if tracker.client is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(checkpoint.ARTIFACT).name
        checkpoint.save(name, refiner, input_space, path)
        tracker.log_artifact(path, str(Path(checkpoint.ARTIFACT).parent))


def refined_training_set(resolved: Plan, refiner: Refiner, fit_key: str, source: Samples, watch: Stopwatch,
                         progress: bool) -> Samples:
    """Refine the source training set once in batches (cached for refiners that train)."""
    path = cache.cache_root() / "fits" / fit_key / "refined-train.pt"
    if refiner.trains and path.exists():
        return Samples(cache.load(path).float(), source.labels)
    with watch.stage("refine") as refine:
        images = refine_all(refiner, source.images, resolved.compute, progress=progress)
        refine["images"] = len(images)
    if refiner.trains:  # the task trains on what the cache holds, so a cached fit gives the same result
        stored = images.half()
        cache.save(stored, path)
        images = stored.float()
    return Samples(images, source.labels)


def _source_model_path(resolved: Plan, source: Samples) -> Path:
    spec = resolved.spec
    model_key = cache.key("source-model", spec.task, dataclasses.asdict(resolved.task_config), spec.seed,
                          sim2real_bench.__version__, resolved.source.identity("train", len(source), spec.seed))
    return cache.cache_root() / "source-models" / f"{model_key}.pt"


def source_model(resolved: Plan, source: Samples, progress: bool) -> Task:
    """The task trained on raw source images (what ``none`` trains), from the cache when it exists.

    It measures label preservation: how far its prediction moves when an image is refined.
    """
    task = resolved.task_class(resolved.task_config, resolved.source.image_shape, source.labels.shape[1])
    path = _source_model_path(resolved, source)
    if path.exists():
        task.load_state_dict(cache.load(path), resolved.compute)
    else:
        task.fit(source, resolved.compute, tracking.Tracker.disabled(), resolved.spec.seed, progress=progress)
        cache.save(task.state_dict(), path)
    return task


def label_shift(task: Task, synthetic: torch.Tensor, refined: torch.Tensor, compute: Compute) -> dict[str, float]:
    """How far a source-trained model's predictions move between synthetic images and their refined versions."""
    moved = task.metrics(task.predict(refined, compute), task.predict(synthetic, compute))
    return {f"label_shift/{name}": value for name, value in moved.items()}


def execute(resolved: Plan, tracker: tracking.Tracker, progress: bool = True) -> dict[str, float]:
    """Run the stages of a resolved plan; return its final metrics."""
    spec, data = resolved.spec, resolved.data
    compute = resolved.compute
    seed_everything(spec.seed)
    watch = Stopwatch()
    with watch.stage("data"):
        source_train = load_split(resolved.source, "train", data.source_train, spec.seed, progress)
        source_test = load_split(resolved.source, "test", data.test, spec.seed, progress)
        target_train = load_split(resolved.target, "train", data.target_train, spec.seed, progress)
        target_test = load_split(resolved.target_test, "test", data.test, spec.seed, progress)
    task = resolved.task_class(resolved.task_config, resolved.source.image_shape, source_train.labels.shape[1])
    source_train, source_test, target_train, target_test = (
        normalized(task, split, compute) for split in (source_train, source_test, target_train, target_test))
    if not resolved.is_reference:
        target_train = target_train.without_labels()

    metrics: dict[str, float] = {}
    transform = None
    if resolved.is_reference:
        train = target_train
    else:
        refiner, fit_key = fit_refiner(resolved, task, source_train, target_train, tracker, watch, progress)
        log_refiner(tracker, spec.refiner, refiner, task.input_space())
        if refiner.per_batch:
            train, transform = source_train, refiner.refine
        else:
            train = refined_training_set(resolved, refiner, fit_key, source_train, watch, progress)
        shown = slice(0, 12)
        preview = refine_all(refiner, source_train.images[shown], compute, progress=False)
        tracker.log_image(grid([source_train.images[shown], preview, target_train.images[shown]]),
                          "samples/synthetic_refined_target.png")

    with watch.stage("task_train") as task_train:
        task_train["images"] = task.fit(train, compute, tracker, spec.seed, transform, progress)
    if spec.refiner == IDENTITY:
        cache.save(task.state_dict(), _source_model_path(resolved, source_train))
    with watch.stage("eval") as evaluation:
        for split_name, split in (("target", target_test), ("source", source_test)):
            metrics.update({f"{split_name}/{k}": v for k, v in task.evaluate(split, compute).items()})
        metrics.update({f"mean_label/{k}": v for k, v in task.mean_label_metrics(target_test).items()})
        evaluation["images"] = len(target_test) + len(source_test)
    probe = task if spec.refiner == IDENTITY else source_model(resolved, source_train, progress)
    if resolved.is_reference:
        candidate = target_train.images[: len(target_test)]
    else:
        candidate = refine_all(refiner, source_test.images, compute, progress=False)
        metrics.update(label_shift(probe, source_test.images, candidate, compute))
    tracker.log_image(grid([candidate[:STRIP_IMAGES]]), "samples/strip.png")
    with watch.stage("realism"):
        metrics.update(realism(candidate, target_test.images, lambda images: probe.features(images, compute),
                               compute, spec.seed))
    metrics.update(watch.metrics)
    metrics["memory/peak_mb"] = _peak_memory_mb(compute)
    return metrics


def combination_key(resolved: Plan) -> str:
    """A combination's identity: the hash of its resolved config (a sweep skips keys already finished)."""
    return cache.key("combination", resolved.config(), sim2real_bench.__version__)


def run(
    spec: RunSpec,
    registry: Registry | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
    resolved: Plan | None = None,
) -> RunResult:
    """Plan, execute and log one combination; the MLflow run is marked FAILED on error.

    Runs go to the MLflow experiment named after the task unless ``experiment``
    says otherwise; ``tags`` are added to the run's own (a sweep nests its runs
    with ``mlflow.parentRunId``). ``resolved`` skips planning when the caller has done it.
    """
    resolved = resolved or plan(spec, registry)
    config = resolved.config()
    tags = {
        "s2r.refiner": spec.refiner,
        "s2r.role": config["role"],
        "s2r.task": spec.task,
        "s2r.budget": spec.budget,
        "s2r.seed": str(spec.seed),
        "s2r.combination": combination_key(resolved),
        **(tags or {}),
    }
    run_name = f"{spec.refiner}-{spec.task}-s{spec.seed}-{spec.budget}"
    uri = tracking.resolve_tracking_uri(tracking_uri)
    with tracking.tracked_run(uri, experiment or spec.task, run_name, tags) as tracker:
        tracker.log_params({
            **flatten(config),
            **{f"version.{k}": v for k, v in versions().items()},
            "device.name": resolved.compute.describe(),
            "primary_metric": f"target/{resolved.task_class.primary_metric}",
        })
        tracker.log_dict(config, "config.json")
        metrics = execute(resolved, tracker, progress)
        tracker.log_metrics(metrics)
    return RunResult(tracker.run_id, config, metrics)


def result_json(result: RunResult) -> str:
    """The one JSON object ``--json`` prints."""
    return json.dumps({"run_id": result.run_id, "config": result.config, "metrics": result.metrics}, indent=2)
