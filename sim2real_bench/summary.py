"""The few lines ``s2r-bench run`` ends with: what a person reads in five seconds.

Every metric stays in MLflow and in ``--json``; the summary shows the task's
headline target metrics beside the reference rows of the same task, budget and
seed that the store already holds (``none``, ``oracle``) and the mean-label
floor, then source error, label shift, realism, the wall time of each stage,
the run id and the command that opens the run in the UI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim2real_bench import tracking
from sim2real_bench.config import IDENTITY, ORACLE
from sim2real_bench.plan import Plan
from sim2real_bench.runner import RunResult

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

REFERENCES = (IDENTITY, ORACLE)
STAGES = ("data", "input_space", "refiner_fit", "refine", "task_train", "eval", "realism")


def reference_metrics(client: MlflowClient, experiment: str, plan: Plan) -> dict[str, dict[str, float]]:
    """The newest FINISHED ``none`` and ``oracle`` runs of the plan's task, budget and seed in the experiment."""
    spec = plan.spec
    found: dict[str, dict[str, float]] = {}
    for refiner in REFERENCES:
        if refiner == spec.refiner:
            continue
        runs = client.search_runs(
            [experiment],
            f"attributes.status = 'FINISHED' and tags.`s2r.refiner` = '{refiner}' and tags.`s2r.task` = '{spec.task}' "
            f"and tags.`s2r.budget` = '{spec.budget}' and tags.`s2r.seed` = '{spec.seed}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            found[refiner] = dict(runs[0].data.metrics)
    return found


def _value(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[name]:.3f}" if name in metrics else "-"


def summary(plan: Plan, result: RunResult, uri: str) -> str:
    """The run's summary as lines of text."""
    spec, task = plan.spec, plan.task_class
    run_id, metrics = result.run_id, result.metrics
    client = tracking.client(uri)
    experiment = client.get_run(run_id).info.experiment_id
    references = reference_metrics(client, experiment, plan)
    role = " (reference)" if plan.is_reference else ""
    lines = [f"{spec.refiner}{role} on {spec.task}, seed {spec.seed}, budget {spec.budget}: run {run_id}"]
    names = [task.primary_metric, *task.headline_metrics]
    rows: list[tuple[str, dict[str, Any]]] = [(spec.refiner, metrics)]
    rows += list(references.items())
    width = max(len(name) for name, _ in rows + [("mean label", {})])
    lines.append(f"  {'target':{width}s}  " + "  ".join(f"{name:>14s}" for name in names))
    for name, values in rows:
        lines.append(f"  {name:{width}s}  " + "  ".join(f"{_value(values, f'target/{m}'):>14s}" for m in names))
    lines.append(f"  {'mean label':{width}s}  " +
                 "  ".join(f"{_value(metrics, f'mean_label/{m}'):>14s}" for m in names))
    if plan.real_test is not None:
        lines.append(f"  real test {plan.real_test.spec}: {spec.refiner} " +
                     ", ".join(f"{m} {_value(metrics, f'real/{m}')}" for m in names) +
                     f"; mean label {_value(metrics, f'real_mean_label/{task.primary_metric}')}")
    primary = task.primary_metric
    details = [f"source {primary} {_value(metrics, f'source/{primary}')}"]
    if f"label_shift/{primary}" in metrics and spec.refiner != IDENTITY:  # none moves nothing by definition
        details.append(f"label shift {_value(metrics, f'label_shift/{primary}')}")
    if "realism/classifier_accuracy" in metrics:
        details.append(f"realism: classifier {metrics['realism/classifier_accuracy']:.1f} % (50 = indistinguishable),"
                       f" KID {metrics['realism/kid']:.4f}")
    if "real_realism/classifier_accuracy" in metrics:
        details.append(f"against real images: classifier {metrics['real_realism/classifier_accuracy']:.1f} %, "
                       f"KID {metrics['real_realism/kid']:.4f}")
    lines.append("  " + "; ".join(details))
    times = [f"{stage} {metrics[f'time/{stage}_s']:.1f}" for stage in STAGES if f"time/{stage}_s" in metrics]
    lines.append(f"  wall time (s): {', '.join(times)}")
    ui = "s2r-bench ui" + ("" if uri == tracking.resolve_tracking_uri(None) else f" --tracking-uri {uri}")
    lines.append(f"  every metric: `{ui}`, then #/experiments/{experiment}/runs/{run_id} (or --json)")
    return "\n".join(lines)
