"""Sweeps: every (task, seed, refiner) combination under one parent MLflow run, resumable.

A combination's identity is the hash of its resolved config
(:attr:`~sim2real_bench.plan.Plan.key`), kept in the run's
``s2r.combination`` tag. Relaunching a sweep reopens its parent run (found by
the ``s2r.sweep`` tag, the hash of all its combinations) and skips every
combination that already has a FINISHED run in the experiment; a combination
that was interrupted runs again, and its refiner fit resumes from the
checkpoint in the cache, so a kill loses at most the steps since the last
checkpoint. Runs of an interrupted combination that a killed process left
RUNNING are marked KILLED when the combination starts again; one sweep per
tracking store at a time is enforced (``tracking.store_lock``). The parent run
carries the mean and standard error over seeds of every refiner's headline
metrics (``tracking.log_sweep_aggregates``), so its row already tells the story.

Planning, skipping and the parent run are this module's; running what is left
is a :class:`Launcher`'s: :class:`Serial` (the default) runs the combinations
one after another in this process, ``sim2real_bench.ray_launcher`` as tasks on
a Ray cluster.

Order: task, then seed, then refiner, so that a sweep stopped early still holds
complete seeds. No figure depends on the order: the source-trained probe behind
label shift and KID is made once per (task, seed) by whichever run needs it first.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from sim2real_bench import store, tracking
from sim2real_bench.config import DEFAULT_EXPERIMENT, IDENTITY, ORACLE, preset
from sim2real_bench.errors import ConfigError, S2RError
from sim2real_bench.plan import Plan, RunSpec, resolve
from sim2real_bench.registry import Registry, default_registry
from sim2real_bench.runner import RunResult, run

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

Echo = Callable[[str], None]


@dataclass
class SweepResult:
    """What a sweep did: run ids of the combinations it ran, skipped or lost."""

    parent_run_id: str
    ran: dict[str, str]
    skipped: dict[str, str]
    failed: dict[str, str]


def refiner_names(registry: Registry) -> list[str]:
    """Every refiner a sweep can run, in sweep order: ``none``, ``oracle``, then the rest by name."""
    others = sorted(set(registry.entries("refiners")) - {IDENTITY})
    return [IDENTITY, ORACLE, *others]


def _refiner_overrides(template: RunSpec, refiners: Sequence[str], registry: Registry) -> dict[str, tuple[str, ...]]:
    """Each refiner's share of the ``refiner.*`` overrides: those naming a field of its config.

    Refiners have different settings, so ``--set refiner.steps=600`` in a sweep
    means "for the refiners that have steps"; one that no refiner has is a typo.
    """
    general = tuple(item for item in template.overrides if not item.startswith("refiner."))
    specific = [item for item in template.overrides if item.startswith("refiner.")]
    shares: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    for refiner in refiners:
        fields = set() if refiner == ORACLE else {
            field.name for field in dataclasses.fields(preset(registry.get("refiners", refiner).presets, template.budget))}
        mine = tuple(item for item in specific if item.removeprefix("refiner.").split("=", 1)[0] in fields)
        used.update(mine)
        shares[refiner] = general + mine
    unused = [item for item in specific if item not in used]
    if unused:
        raise ConfigError(f"no refiner of this sweep has the setting(s) {', '.join(unused)}; "
                          "each refiner's config fields are in its module (`s2r-bench list refiners` names them)")
    return shares


def expand(template: RunSpec, refiners: Sequence[str], tasks: Sequence[str], seeds: Sequence[int],
           registry: Registry) -> list[RunSpec]:
    """Every combination of a sweep as a run spec, in sweep order (task, seed, refiner)."""
    overrides = _refiner_overrides(template, refiners, registry)
    return [replace(template, refiner=refiner, task=task, seed=seed, overrides=overrides[refiner])
            for task in tasks for seed in seeds for refiner in refiners]


def _label(plan: Plan) -> str:
    return f"{plan.spec.refiner} on {plan.spec.task}, seed {plan.spec.seed}"


@dataclass(frozen=True)
class Destination:
    """Where a sweep's runs go: the store and the experiment, which exists before any combination starts."""

    uri: str
    experiment: str
    experiment_id: str
    progress: bool


@dataclass(frozen=True)
class Job:
    """A combination the sweep still has to run."""

    plan: Plan
    prefix: str
    """``[N/TOTAL] REFINER on TASK, seed S``: how the sweep's lines name it."""
    tags: dict[str, str]
    """The nested run's extra tags: its parent run and its sweep."""


Outcome = RunResult | S2RError
"""A finished combination's result, or the user-facing error that stopped it."""


class Launcher(Protocol):
    """Runs a sweep's pending combinations; the sweep plans, skips and keeps the parent run whichever it is."""

    def plan(self, specs: Sequence[RunSpec], registry: Registry) -> list[Plan]:
        """Resolve every spec (every user mistake surfaces here, before any work)."""
        ...

    def launch(self, jobs: Sequence[Job], destination: Destination, echo: Echo) -> Iterator[tuple[Job, Outcome]]:
        """Run ``jobs`` and yield each with its outcome as it ends (any order)."""
        ...


def mark_stale_runs_killed(destination: Destination, key: str) -> None:
    """Mark KILLED the runs of combination ``key`` left RUNNING by a killed process (before it runs again)."""
    client = tracking.client(destination.uri)
    stale = client.search_runs([destination.experiment_id],
                               f"tags.`s2r.combination` = '{key}' and attributes.status = 'RUNNING'")
    for found in stale:
        client.set_terminated(found.info.run_id, "KILLED")


def run_job(job: Job, destination: Destination) -> Outcome:
    """Run one combination into the store as a nested run of its sweep."""
    mark_stale_runs_killed(destination, job.plan.key)
    try:
        return run(job.plan, destination.uri, destination.progress, destination.experiment, job.tags)
    except S2RError as error:
        return error


class Serial:
    """The default launcher: one combination after another, in sweep order, in this process."""

    def plan(self, specs: Sequence[RunSpec], registry: Registry) -> list[Plan]:
        """Resolve every spec here."""
        return [resolve(spec, registry) for spec in specs]

    def launch(self, jobs: Sequence[Job], destination: Destination, echo: Echo) -> Iterator[tuple[Job, Outcome]]:
        """Run each job in turn."""
        for job in jobs:
            echo(f"{job.prefix}: running")
            yield job, run_job(job, destination)


def _finished(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """``combination key -> run id`` of the experiment's FINISHED runs."""
    finished = {}
    for found in client.search_runs([experiment_id], "attributes.status = 'FINISHED'", max_results=50000):
        key = found.data.tags.get("s2r.combination")
        if key is not None:
            finished.setdefault(key, found.info.run_id)
    return finished


def _parent_run(client: MlflowClient, experiment_id: str, sweep_key: str, planned: Sequence[Plan], budget: str) -> str:
    existing = client.search_runs([experiment_id], f"tags.`s2r.sweep` = '{sweep_key}' and tags.`s2r.role` = 'sweep'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    parent = client.create_run(experiment_id, run_name=f"sweep-{budget}-{sweep_key[:8]}",
                               tags={"s2r.sweep": sweep_key, "s2r.role": "sweep"})
    tracker = tracking.Tracker(client, parent.info.run_id)
    tracker.log_params({
        "budget": budget,
        "refiners": ",".join(dict.fromkeys(plan.spec.refiner for plan in planned)),
        "tasks": ",".join(dict.fromkeys(plan.spec.task for plan in planned)),
        "seeds": ",".join(dict.fromkeys(str(plan.spec.seed) for plan in planned)),
        "combinations": len(planned),
    })
    return parent.info.run_id


def sweep(
    specs: Sequence[RunSpec],
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    progress: bool = True,
    registry: Registry | None = None,
    echo: Echo = lambda line: print(line, file=sys.stderr, flush=True),
    launcher: Launcher | None = None,
) -> SweepResult:
    """Run every combination not yet finished; a failed one is reported and the sweep goes on.

    Every spec is resolved up front (by the launcher, where its jobs run), so a
    typo fails before hours of work, not after.
    """
    if not specs:
        raise ConfigError("the sweep has no combinations; name at least one refiner, task and seed")
    registry = registry or default_registry()
    launcher = launcher or Serial()
    planned = launcher.plan(specs, registry)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri)
    with tracking.store_lock(uri):
        return _sweep(planned, uri, experiment, progress, registry, echo, launcher)


def _sweep(planned: Sequence[Plan], uri: str, experiment: str, progress: bool, registry: Registry,
           echo: Echo, launcher: Launcher) -> SweepResult:
    client = tracking.client(uri)  # creates a new store here, before any job can race to create it
    destination = Destination(uri, experiment, tracking.experiment_id(client, experiment), progress)
    sweep_key = store.key("sweep", sorted(plan.key for plan in planned))
    parent_id = _parent_run(client, destination.experiment_id, sweep_key, planned, planned[0].spec.budget)
    finished = _finished(client, destination.experiment_id)
    result = SweepResult(parent_id, {}, {}, {})
    jobs = []
    for number, plan in enumerate(planned, 1):
        prefix = f"[{number}/{len(planned)}] {_label(plan)}"
        if plan.key in finished:
            result.skipped[plan.key] = finished[plan.key]
            echo(f"{prefix}: finished before (run {finished[plan.key]}), skipped")
        else:
            jobs.append(Job(plan, prefix, {"mlflow.parentRunId": parent_id, "s2r.sweep": sweep_key}))
    status = "FAILED"
    try:
        for job, outcome in launcher.launch(jobs, destination, echo):
            if isinstance(outcome, S2RError):
                result.failed[job.plan.key] = str(outcome)
                echo(f"{job.prefix}: failed: {outcome}")
                continue
            result.ran[job.plan.key] = outcome.run_id
            primary = f"target/{job.plan.task_class.primary_metric}"
            echo(f"{job.prefix}: {primary} = {outcome.metrics[primary]:.4f} (run {outcome.run_id})")
        status = "FAILED" if result.failed else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.log_sweep_aggregates(client, parent_id, registry)
        client.set_terminated(parent_id, status)
    return result
