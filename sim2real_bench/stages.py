"""The stages of a run: small functions over typed values, each entered once, in order.

``load`` -> ``to_input_space`` -> ``fit_refiner`` -> ``training_set`` -> ``train_task``
-> ``evaluate`` -> ``source_probe`` + ``probe``. Each takes the run's
:class:`RunContext` (compute, tracker, seed, progress, store, stopwatch) and
hands the next stage a value, never a path or a global. Every stage that draws
random numbers draws them in its own seeded scope (:func:`~sim2real_bench.device.seeded`),
and everything cached goes through the :class:`~sim2real_bench.store.Store`,
so no figure depends on what the cache held or on what ran before.
``sim2real_bench.runner`` strings them into a run; ``export`` reuses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

import sim2real_bench
from sim2real_bench import checkpoint
from sim2real_bench.data import Dataset, Samples
from sim2real_bench.device import Compute, seeded
from sim2real_bench.errors import DataError
from sim2real_bench.images import grid
from sim2real_bench.plan import Plan
from sim2real_bench.realism import realism
from sim2real_bench.refiner import FitContext, Refiner
from sim2real_bench.store import InvalidEntry, Store
from sim2real_bench.task import BatchTransform, Task
from sim2real_bench.tracking import Tracker

SplitName = Literal["source_train", "target_train", "source_test", "target_test", "real_test", "real_images"]
SHOWN = 12
"""Images per row of a run's sample grid (``samples/synthetic_refined_target.png``)."""
STRIP_IMAGES = 8
"""Images in each run's ``samples/strip.png``: the first source test images as the
run's refiner leaves them (``oracle``: target images), for side-by-side grids."""
INPUT_SPACE_BATCH = 4096


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


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares."""

    compute: Compute
    tracker: Tracker
    seed: int
    store: Store
    progress: bool = True
    watch: Stopwatch = field(default_factory=Stopwatch)

    def seeded(self, scope: str) -> contextlib.AbstractContextManager[None]:
        """torch's generators seeded from (run seed, ``scope``) for one block, restored after."""
        return seeded(self.seed, scope, self.compute)

    def quiet(self) -> RunContext:
        """The same context logging and timing nothing: for side computations such as the probe."""
        return dataclasses.replace(self, tracker=Tracker.disabled(), watch=Stopwatch(), progress=False)


@dataclass(frozen=True)
class Splits:
    """The four splits of a run, and the second test set if it has one, in the task's input space once
    :func:`to_input_space` has run.

    Target training images carry labels only for the ``oracle`` reference.
    """

    source_train: Samples
    target_train: Samples
    source_test: Samples
    target_test: Samples
    real_test: Samples | None = None
    real_images: Samples | None = None


@dataclass(frozen=True)
class Fitted:
    """A refiner ready to refine, the identity of its fit, and the settings its refining adds to it.

    Together they key the refined set: runs that differ only in ``refine_settings`` share the fit.
    """

    refiner: Refiner
    key: str
    refine_settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSet:
    """What the task trains on: labeled images, and a per-batch transform for refiners that act at training time."""

    samples: Samples
    transform: BatchTransform | None = None


def _dataset(plan: Plan, split: SplitName) -> tuple[Dataset, str, int]:
    data = plan.data
    return {
        "source_train": (plan.source, "train", data.source_train),
        "target_train": (plan.target, "train", data.target_train),
        "source_test": (plan.source, "test", data.test),
        "target_test": (plan.target_test, "test", data.test),
        "real_test": (plan.real_test, "test", data.test),
        "real_images": (plan.real_images, "train", data.test),
    }[split]


def identity(plan: Plan, split: SplitName, size: int, seed: int) -> str:
    """What decides a split's contents, for cache keys."""
    dataset, name, _ = _dataset(plan, split)
    return dataset.identity(name, size, seed)


def load_split(plan: Plan, split: SplitName, context: RunContext, size: int | None = None) -> Samples:
    """One split as its dataset gives it (the budget's size unless ``size``), labels in the task's column order.

    Target training labels are dropped here, by construction, unless the plan is
    the ``oracle`` reference: no refiner and no task training ever sees them. Real
    images are only ever judged against, and lose their labels too.
    """
    dataset, name, budget_size = _dataset(plan, split)
    size = budget_size if size is None else size
    with tqdm(total=size, desc=f"data: {dataset.spec}/{name}", unit="img", disable=not context.progress,
              leave=False) as bar:
        samples = dataset.load(name, size, context.seed, progress=bar.update)
    if (split == "target_train" and not plan.is_reference) or split == "real_images":
        return samples.without_labels()
    wanted = plan.task_class.label_names
    if samples.labels is not None and tuple(dataset.label_names) != tuple(wanted):
        order = [list(dataset.label_names).index(name) for name in wanted]
        samples = Samples(samples.images, samples.labels[:, order])
    return samples


def load(plan: Plan, context: RunContext) -> Splits:
    """All four splits of the run, and the second test set and the real images if the plan names them."""
    with context.watch.stage("data"):
        real_test = None if plan.real_test is None else load_split(plan, "real_test", context)
        real_images = None if plan.real_images is None else load_split(plan, "real_images", context)
        return Splits(*(load_split(plan, split, context) for split in
                        ("source_train", "target_train", "source_test", "target_test")), real_test=real_test,
                      real_images=real_images)


@torch.inference_mode()
def to_input_space(task: Task, samples: Samples, compute: Compute) -> Samples:
    """``samples`` in the task's input space (gaze: equalized): applied once here, never again downstream."""
    images = torch.cat([task.to_input_space(samples.images[start : start + INPUT_SPACE_BATCH].to(compute.device))
                        .float().cpu() for start in range(0, len(samples), INPUT_SPACE_BATCH)])
    return Samples(images.contiguous(), samples.labels)


def split_in_input_space(plan: Plan, split: SplitName, samples: Samples, task: Task, compute: Compute) -> Samples:
    """One split through :func:`to_input_space`, unless its dataset already is in that space (an export)."""
    if _dataset(plan, split)[0].input_space == task.input_space():
        return samples
    return to_input_space(task, samples, compute)


def in_input_space(plan: Plan, splits: Splits, context: RunContext) -> Splits:
    """Every split through :func:`split_in_input_space`."""
    task = plan.new_task()
    with context.watch.stage("input_space"):
        loaded = {field.name: getattr(splits, field.name) for field in dataclasses.fields(Splits)}
        return Splits(**{name: None if samples is None else
                         split_in_input_space(plan, name, samples, task, context.compute)
                         for name, samples in loaded.items()})


@torch.inference_mode()
def refine_images(refiner: Refiner, images: Tensor, compute: Compute, progress: bool = False) -> Tensor:
    """Refine a block of images in the refiner's batch size on ``compute``; returns CPU float32.

    A refiner that hands back another shape is a :class:`DataError` here, not a
    crash stages later.
    """
    refined = []
    size = refiner.refine_batch_size
    for start in tqdm(range(0, len(images), size), desc="refine", unit="batch", disable=not progress, leave=False):
        batch = images[start : start + size].to(compute.device)
        with compute.autocast():
            output = _checked(refiner, batch, refiner.refine(batch))
        refined.append(output.float().cpu())
    return torch.cat(refined)


def _checked(refiner: Refiner, batch: Tensor, output: Tensor) -> Tensor:
    """``output``, if it has ``batch``'s shape: a refiner that changes it is a clear error, not a crash later."""
    if output.shape != batch.shape:
        raise DataError(f"refiner {type(refiner).__name__} returned images of shape {tuple(output.shape)} for "
                        f"a batch of {tuple(batch.shape)}; refine must keep the shape (N, C, H, W)")
    return output


def fit_refiner(plan: Plan, source_train: Samples, target_train: Samples, input_space: str,
                context: RunContext) -> Fitted:
    """Fit the planned refiner on labeled source and unlabeled target training images, or restore its cached fit.

    A fit and its refiner's construction draw from the ``refiner`` scope; a
    cached fit's state is loaded into a fresh refiner exactly as a new fit's is,
    so both give the same refiner.
    """
    seed = context.seed
    settings = dataclasses.asdict(plan.refiner_config)
    refine_settings = {name: settings.pop(name) for name in plan.refiner_class.refine_settings}
    fit_key = context.store.fit_key(
        plan.spec.refiner, settings, sim2real_bench.__version__, seed, input_space,
        identity(plan, "source_train", len(source_train), seed),
        identity(plan, "target_train", len(target_train), seed),
    )

    def fit(folder: Path) -> Refiner:
        with context.seeded("refiner"), context.watch.stage("refiner_fit") as stage:
            refiner = plan.new_refiner()
            fit_context = FitContext(context.compute, context.tracker, seed, folder, context.progress)
            stage["images"] = refiner.fit(source_train, target_train, fit_context)
        return refiner

    def restore(state: dict) -> Refiner:
        refiner = plan.new_refiner()
        refiner.load_state_dict(state)
        return refiner

    if plan.refiner_class.fit_cached:
        refiner, cached = context.store.fitted(fit_key).get_or_create(
            lambda: fit(context.store.fit_folder(fit_key)).state_dict(), restore)
        context.tracker.set_tags({"s2r.fit": "cached" if cached else "fitted"})
    else:
        with tempfile.TemporaryDirectory() as folder:
            refiner = fit(Path(folder))
    refiner.to(context.compute.device)
    return Fitted(refiner, fit_key, refine_settings)


def log_refiner(fitted: Fitted, name: str, input_space: str, context: RunContext) -> None:
    """Log the fitted refiner as the run's checkpoint artifact (what ``refine --from-run`` reads)."""
    if context.tracker.client is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(checkpoint.ARTIFACT).name
        checkpoint.save(name, fitted.refiner, input_space, path)
        context.tracker.log_artifact(path, str(Path(checkpoint.ARTIFACT).parent))


def training_set(fitted: Fitted, source_train: Samples, context: RunContext) -> TrainingSet:
    """The refined source training set, refined once in batches (cached for refiners that say so).

    A cached refined set is stored in float16 and the task always trains on what
    the cache holds, so a fresh and a cached run give the same result.
    """
    refiner = fitted.refiner
    if refiner.per_batch:
        return TrainingSet(source_train, lambda batch: _checked(refiner, batch, refiner.refine(batch)))

    def refine() -> Tensor:
        with context.watch.stage("refine") as stage:
            images = refine_images(refiner, source_train.images, context.compute, context.progress)
            stage["images"] = len(images)
        return images.half() if refiner.refined_cached else images

    if not refiner.refined_cached:
        return TrainingSet(Samples(refine(), source_train.labels))

    def check(stored: object) -> Samples:
        if not isinstance(stored, Tensor) or stored.dtype != torch.float16 or stored.shape != source_train.images.shape:
            shape = tuple(stored.shape) if isinstance(stored, Tensor) else type(stored).__name__
            raise InvalidEntry(f"holds {shape}, expected float16 {tuple(source_train.images.shape)}")
        return Samples(stored.float(), source_train.labels)

    samples, _ = context.store.refined(fitted.key, fitted.refine_settings).get_or_create(refine, check)
    return TrainingSet(samples)


def train_task(plan: Plan, training: TrainingSet, context: RunContext) -> Task:
    """A fresh task model trained on ``training``, in the ``task`` scope."""
    with context.seeded("task"), context.watch.stage("task_train") as stage:
        task = plan.new_task()
        stage["images"] = task.fit(training.samples, context.compute, context.tracker, context.seed,
                                   training.transform, context.progress)
    return task


def evaluate(task: Task, splits: Splits, train_labels: Tensor, context: RunContext) -> dict[str, float]:
    """The task's metrics on the target and source test splits (and on the second test set, as ``real/*``), and
    those of predicting the mean training label on each target-side set (``mean_label/*``, ``real_mean_label/*``)."""
    metrics: dict[str, float] = {}
    tested = [("target", splits.target_test), ("source", splits.source_test)]
    floors = [("mean_label", splits.target_test)]
    if splits.real_test is not None:
        tested.append(("real", splits.real_test))
        floors.append(("real_mean_label", splits.real_test))
    with context.watch.stage("eval") as stage:
        for name, split in tested:
            metrics.update({f"{name}/{k}": v for k, v in task.evaluate(split, context.compute).items()})
        for name, split in floors:
            mean = train_labels.mean(0).expand_as(split.labels)
            metrics.update({f"{name}/{k}": v for k, v in task.metrics(mean, split.labels).items()})
        stage["images"] = sum(len(split) for _, split in tested)
    return metrics


def source_probe(plan: Plan, source_train: Samples, input_space: str, context: RunContext,
                 trained: Task | None = None) -> Task:
    """The task trained on raw source images (what ``none`` trains), made once per (task config, source data, seed).

    It measures label shift and gives the KID features. Whichever run needs it
    first trains it, in the same ``task`` scope as ``none``'s own model (so
    ``none`` may hand over its ``trained`` model: it is the same one); it is
    never overwritten.
    """
    seed = context.seed
    entry = context.store.probe(plan.spec.task, dataclasses.asdict(plan.task_config), sim2real_bench.__version__,
                                seed, input_space, identity(plan, "source_train", len(source_train), seed))

    def train() -> dict:
        model = trained or train_task(plan, TrainingSet(source_train), context.quiet())
        return model.state_dict()

    def restore(state: dict) -> Task:
        task = plan.new_task()
        task.load_state_dict(state, context.compute)
        return task

    probe, _ = entry.get_or_create(train, restore)
    return probe


def label_shift(probe: Task, synthetic: Tensor, refined: Tensor, context: RunContext) -> dict[str, float]:
    """How far the probe's predictions move between synthetic images and their refined versions."""
    moved = probe.metrics(probe.predict(refined, context.compute), probe.predict(synthetic, context.compute))
    return {f"label_shift/{name}": value for name, value in moved.items()}


def realism_metrics(probe: Task, candidate: Tensor, splits: Splits, context: RunContext) -> dict[str, float]:
    """How real ``candidate`` images look (two-sample test, KID in the probe's features): against the target test
    images as ``realism/*``, and against the plan's real images, when it names them, as ``real_realism/*``.

    The stand-in target is what the refiners adapt to; the real images say whether looking like it is looking real.
    """
    def features(images: Tensor) -> Tensor:
        return probe.features(images, context.compute)

    with context.watch.stage("realism"):
        metrics = realism(candidate, splits.target_test.images, features, context.compute, context.seed)
        if splits.real_images is not None:
            against_real = realism(candidate, splits.real_images.images, features, context.compute, context.seed)
            metrics.update({f"real_{name}": value for name, value in against_real.items()})
    return metrics


def log_samples(synthetic: Tensor | None, candidate: Tensor, target: Tensor, context: RunContext) -> None:
    """The run's picture: synthetic, refined and target rows, and the strip that reports put side by side."""
    if synthetic is not None:
        context.tracker.log_image(grid([synthetic[:SHOWN], candidate[:SHOWN], target[:SHOWN]]),
                                  "samples/synthetic_refined_target.png")
    context.tracker.log_image(grid([candidate[:STRIP_IMAGES]]), "samples/strip.png")
