"""Run one planned combination (refiner, task, seed, budget) end to end and log it to MLflow.

A run is the list of stages of ``sim2real_bench.stages`` (design.md section 3):
load the four splits, put them in the task's input space once, fit the refiner
on labeled source and *unlabeled* target images, refine the source training set,
train the task on it, evaluate on the labeled target and source test splits,
probe label shift and realism. ``oracle`` is a reference row with its own short
path: it trains the task on labeled target images and is the only path through
which target training labels flow.
"""

from __future__ import annotations

import contextlib
import json
import platform
import re
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sim2real_bench
from sim2real_bench import stages, tracking
from sim2real_bench.allocator import keep_freed_memory
from sim2real_bench.config import flatten
from sim2real_bench.device import Compute, seed_everything
from sim2real_bench.config import IDENTITY
from sim2real_bench.plan import Plan
from sim2real_bench.stages import RunContext, TrainingSet
from sim2real_bench.store import Store


@dataclass
class RunResult:
    """What a finished combination reports (``--json`` prints it)."""

    run_id: str | None
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on, for run params and export manifests."""
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


_PROC_SELF = Path("/proc/self")


def _reset_peak_memory(compute: Compute) -> None:
    """Start a run's peak-memory count afresh, so a sweep's runs do not inherit their predecessors' peaks.

    On CUDA that is the caching allocator's peak; on Linux the kernel's
    high-water mark of resident memory, which writing 5 to ``clear_refs`` lowers
    to what the process holds now. Elsewhere the CPU figure stays the process's.
    """
    if compute.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(compute.device)
    else:
        with contextlib.suppress(OSError):  # not Linux, or a sandbox refuses it: the figure stays the process's
            (_PROC_SELF / "clear_refs").write_text("5")


def _peak_memory_mb(compute: Compute) -> float:
    """Peak memory since :func:`_reset_peak_memory`: CUDA tensors, else resident memory (what the process
    already held at the run's start included, such as the kept rendered splits)."""
    if compute.device.type == "cuda":
        return torch.cuda.max_memory_allocated(compute.device) / 2**20
    status = _PROC_SELF / "status"
    high_water = re.search(r"^VmHWM:\s*(\d+) kB", status.read_text(), re.MULTILINE) if status.exists() else None
    if high_water:
        return int(high_water.group(1)) / 1024
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20


def refine_and_evaluate(plan: Plan, context: RunContext) -> dict[str, float]:
    """A refiner's path: fit, refine the training set, train, evaluate, probe."""
    input_space = plan.new_task().input_space()
    splits = stages.in_input_space(plan, stages.load(plan, context), context)
    fitted = stages.fit_refiner(plan, splits.source_train, splits.target_train, input_space, context)
    stages.log_refiner(fitted, plan.spec.refiner, input_space, context)
    training = stages.training_set(fitted, splits.source_train, context)
    task = stages.train_task(plan, training, context)
    metrics = stages.evaluate(task, splits, splits.source_train.labels, context)
    probe = stages.source_probe(plan, splits.source_train, input_space, context,
                                trained=task if plan.spec.refiner == IDENTITY else None)
    candidate = stages.refine_images(fitted.refiner, splits.source_test.images, context.compute)
    stages.log_samples(splits.source_test.images, candidate, splits.target_train.images, context)
    metrics.update(stages.label_shift(probe, splits.source_test.images, candidate, context))
    metrics.update(stages.realism_metrics(probe, candidate, splits, context))
    return metrics


def reference(plan: Plan, context: RunContext) -> dict[str, float]:
    """The ``oracle`` row: the task trained on labeled target images; its realism is the target's own."""
    input_space = plan.new_task().input_space()
    splits = stages.in_input_space(plan, stages.load(plan, context), context)
    task = stages.train_task(plan, TrainingSet(splits.target_train), context)
    metrics = stages.evaluate(task, splits, splits.target_train.labels, context)
    probe = stages.source_probe(plan, splits.source_train, input_space, context)
    candidate = splits.target_train.images[: len(splits.target_test)]
    stages.log_samples(None, candidate, splits.target_test.images, context)
    metrics.update(stages.realism_metrics(probe, candidate, splits, context))
    return metrics


def run(
    plan: Plan,
    tracking_uri: str | None = None,
    progress: bool = True,
    experiment: str | None = None,
    tags: dict[str, str] | None = None,
    store: Store | None = None,
) -> RunResult:
    """Execute and log one planned combination; the MLflow run is marked FAILED on error.

    Runs go to the MLflow experiment named after the task unless ``experiment``
    says otherwise; ``tags`` are added to the run's own (a sweep nests its runs
    with ``mlflow.parentRunId``).
    """
    with tracked(plan, tracking.resolve_tracking_uri(tracking_uri), experiment, tags) as tracker:
        metrics = execute(plan, tracker, progress, store)
    return RunResult(tracker.run_id, plan.config(), metrics)


def tracked(plan: Plan, uri: str, experiment: str | None = None,
            tags: dict[str, str] | None = None) -> contextlib.AbstractContextManager[tracking.Tracker]:
    """The MLflow run of ``plan``: its name and ``s2r.*`` tags (plus ``tags``), in ``experiment`` or the task's.

    Apart from :func:`run`, a launcher whose workers cannot reach the store opens it
    to write what a worker's :func:`execute` recorded.
    """
    spec = plan.spec
    tags = {
        "s2r.refiner": spec.refiner,
        "s2r.role": plan.config()["role"],
        "s2r.task": spec.task,
        "s2r.budget": spec.budget,
        "s2r.seed": str(spec.seed),
        "s2r.combination": plan.key,
        **(tags or {}),
    }
    run_name = f"{spec.refiner}-{spec.task}-s{spec.seed}-{spec.budget}"
    return tracking.tracked_run(uri, experiment or spec.task, run_name, tags)


def execute(plan: Plan, tracker: tracking.Tracker, progress: bool = True, store: Store | None = None) -> dict[str, float]:
    """Do one combination's work, logging params, per-stage metrics and artifacts to ``tracker``; return its metrics.

    Here, not only in the CLI, the process is told to reuse freed memory: a Ray worker runs nothing else.
    """
    keep_freed_memory()
    config = plan.config()
    tracker.log_params({
        **flatten(config),
        **{f"version.{k}": v for k, v in versions().items()},
        "device.name": plan.compute.describe(),
        "primary_metric": f"target/{plan.task_class.primary_metric}",
    })
    tracker.log_dict(config, "config.json")
    context = RunContext(plan.compute, tracker, plan.spec.seed, store or Store.default(), progress)
    seed_everything(plan.spec.seed)
    _reset_peak_memory(plan.compute)
    metrics = (reference if plan.is_reference else refine_and_evaluate)(plan, context)
    metrics.update(context.watch.metrics)
    metrics["memory/peak_mb"] = _peak_memory_mb(plan.compute)
    tracker.log_metrics(metrics)
    return metrics


def result_json(result: RunResult) -> str:
    """The one JSON object ``--json`` prints."""
    return json.dumps({"run_id": result.run_id, "config": result.config, "metrics": result.metrics}, indent=2)
