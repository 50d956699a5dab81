"""Sweeps: every (task, seed, refiner) combination under one parent MLflow run, resumable.

A combination's identity is the hash of its resolved config
(:func:`~sim2real_bench.runner.combination_key`), kept in the run's
``s2r.combination`` tag. Relaunching a sweep reopens its parent run (found by
the ``s2r.sweep`` tag, the hash of all its combinations) and skips every
combination that already has a FINISHED run in the experiment; a combination
that was interrupted runs again, and its refiner fit resumes from the
checkpoint in the cache, so a kill loses at most the steps since the last
checkpoint. Runs of an interrupted combination that a killed process left
RUNNING are marked KILLED when the combination starts again, so one sweep
process per tracking store is assumed.

Order: task, then seed, then refiner, so that a sweep stopped early still holds
complete seeds; ``none`` goes first because every other refiner reuses the
source-trained model it caches (for label shift and the realism features).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sim2real_bench import cache, tracking
from sim2real_bench.config import preset
from sim2real_bench.errors import ConfigError, S2RError
from sim2real_bench.registry import Registry, default_registry
from sim2real_bench.runner import IDENTITY, ORACLE, Plan, RunSpec, combination_key, plan, run

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ALL = "all"
DEFAULT_EXPERIMENT = "sweep"


@dataclass(frozen=True)
class Combination:
    """One planned run of a sweep and its identity."""

    spec: RunSpec
    resolved: Plan
    key: str

    @property
    def label(self) -> str:
        """How progress lines name it."""
        return f"{self.spec.refiner} on {self.spec.task}, seed {self.spec.seed}"


@dataclass
class SweepResult:
    """What a sweep did: run ids of the combinations it ran, skipped or lost."""

    parent_run_id: str
    ran: dict[str, str]
    skipped: dict[str, str]
    failed: dict[str, str]


def parse_names(text: str, known: Sequence[str], kind: str) -> list[str]:
    """A comma-separated list of names, or ``all``; unknown names fail with the known ones listed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"no {kind} given; pass a comma-separated list or '{ALL}'")
    if names == [ALL]:
        return list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown {kind} {', '.join(unknown)}; known: {', '.join(known)}, or '{ALL}'")
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` to a list of seeds."""
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError as error:
        raise ConfigError(f"--seeds {text!r} is not a comma-separated list of integers") from error
    if not seeds:
        raise ConfigError("--seeds is empty; pass e.g. --seeds 0,1,2")
    return list(dict.fromkeys(seeds))


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


def combinations(template: RunSpec, refiners: Sequence[str], tasks: Sequence[str], seeds: Sequence[int],
                 registry: Registry) -> list[Combination]:
    """Plan every combination up front, so a typo fails before hours of work, not after."""
    ordered = sorted(refiners, key=lambda name: name != IDENTITY)
    overrides = _refiner_overrides(template, ordered, registry)
    planned = []
    for task in tasks:
        for seed in seeds:
            for refiner in ordered:
                spec = replace(template, refiner=refiner, task=task, seed=seed, overrides=overrides[refiner])
                resolved = plan(spec, registry)
                planned.append(Combination(spec, resolved, combination_key(resolved)))
    return planned


def _finished(client: MlflowClient, experiment_id: str) -> dict[str, str]:
    """``combination key -> run id`` of the experiment's FINISHED runs."""
    finished = {}
    for found in client.search_runs([experiment_id], "attributes.status = 'FINISHED'", max_results=50000):
        key = found.data.tags.get("s2r.combination")
        if key is not None:
            finished.setdefault(key, found.info.run_id)
    return finished


def _mark_stale_runs_killed(client: MlflowClient, experiment_id: str, key: str) -> None:
    stale = client.search_runs([experiment_id], f"tags.`s2r.combination` = '{key}' and attributes.status = 'RUNNING'")
    for found in stale:
        client.set_terminated(found.info.run_id, "KILLED")


def _parent_run(client: MlflowClient, experiment_id: str, sweep_key: str, planned: Sequence[Combination], budget: str) -> str:
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
        "refiners": ",".join(dict.fromkeys(c.spec.refiner for c in planned)),
        "tasks": ",".join(dict.fromkeys(c.spec.task for c in planned)),
        "seeds": ",".join(dict.fromkeys(str(c.spec.seed) for c in planned)),
        "combinations": len(planned),
    })
    return parent.info.run_id


def sweep(
    template: RunSpec,
    refiners: str,
    tasks: str,
    seeds: str,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    progress: bool = True,
    registry: Registry | None = None,
    echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> SweepResult:
    """Run every combination not yet finished; a failed one is reported and the sweep goes on."""
    registry = registry or default_registry()
    planned = combinations(
        template,
        parse_names(refiners, refiner_names(registry), "refiner(s)"),
        parse_names(tasks, sorted(registry.entries("tasks")), "task(s)"),
        parse_seeds(seeds),
        registry,
    )
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri)
    client = tracking.client(uri)
    experiment_id = tracking.experiment_id(client, experiment)
    sweep_key = cache.key("sweep", sorted(c.key for c in planned))
    parent_id = _parent_run(client, experiment_id, sweep_key, planned, template.budget)
    finished = _finished(client, experiment_id)
    result = SweepResult(parent_id, {}, {}, {})
    status = "FAILED"
    try:
        for number, combination in enumerate(planned, 1):
            prefix = f"[{number}/{len(planned)}] {combination.label}"
            if combination.key in finished:
                result.skipped[combination.key] = finished[combination.key]
                echo(f"{prefix}: finished before (run {finished[combination.key]}), skipped")
                continue
            _mark_stale_runs_killed(client, experiment_id, combination.key)
            echo(f"{prefix}: running")
            try:
                done = run(combination.spec, registry, uri, progress, experiment,
                           {"mlflow.parentRunId": parent_id, "s2r.sweep": sweep_key}, combination.resolved)
            except S2RError as error:
                result.failed[combination.key] = str(error)
                echo(f"{prefix}: failed: {error}")
                continue
            result.ran[combination.key] = done.run_id
            primary = f"target/{combination.resolved.task_class.primary_metric}"
            echo(f"{prefix}: {primary} = {done.metrics[primary]:.4f} (run {done.run_id})")
        status = "FAILED" if result.failed else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(parent_id, status)
    return result
