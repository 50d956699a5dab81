"""Benchmark tables from MLflow: one row per refiner, mean ± standard error over seeds.

Built from ``mlflow.search_runs`` so that anything in the UI and any table here
agree. *Gap closed* is computed per seed, paired with the ``none`` and
``oracle`` runs of the same seed, then averaged:
``(err_none - err_refiner) / (err_none - err_oracle)`` for a lower-is-better metric.
"""

from __future__ import annotations

import math

import pandas as pd

from sim2real_bench import tracking
from sim2real_bench.errors import ConfigError
from sim2real_bench.runner import IDENTITY, ORACLE


def finished_runs(tracking_uri: str, experiment: str, budget: str) -> pd.DataFrame:
    """The latest finished run of every (refiner, seed) of ``experiment`` at ``budget``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise ConfigError(f"no experiment {experiment!r} in {tracking_uri}; run `s2r-bench run --task {experiment}` first")
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string=f"attributes.status = 'FINISHED' and params.budget = '{budget}'",
        order_by=["attributes.start_time DESC"],
    )
    if runs.empty:
        raise ConfigError(f"no finished {budget!r} runs in experiment {experiment!r} of {tracking_uri}")
    return runs.drop_duplicates(subset=["params.refiner", "params.seed"], keep="first")


def _mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna().astype(float)
    if values.empty:
        return math.nan, math.nan
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), float(se)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per refiner: mean and standard error over seeds of the logged metrics, and gap closed."""
    primary = runs["params.primary_metric"].iloc[0]
    by_seed = runs.set_index(["params.refiner", "params.seed"])[f"metrics.{primary}"]
    rows = []
    for refiner, group in runs.groupby("params.refiner"):
        row: dict[str, object] = {"refiner": refiner, "role": group["params.role"].iloc[0], "seeds": len(group)}
        for column in sorted(c for c in group.columns if c.startswith("metrics.")):
            mean, se = _mean_se(group[column])
            if not math.isnan(mean):
                row[column.removeprefix("metrics.")] = mean
                row[column.removeprefix("metrics.") + " se"] = se
        gaps = []
        for seed in group["params.seed"]:
            try:
                none, oracle, mine = by_seed[(IDENTITY, seed)], by_seed[(ORACLE, seed)], by_seed[(refiner, seed)]
            except KeyError:
                continue
            gaps.append((none - mine) / (none - oracle))
        row["gap_closed"], row["gap_closed se"] = _mean_se(pd.Series(gaps, dtype=float))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("refiner")
    table.attrs["primary_metric"] = primary.removeprefix("target/")
    order = [IDENTITY] + sorted(set(table.index) - {IDENTITY, ORACLE}) + [ORACLE]
    return table.loc[[name for name in order if name in table.index]]


def headline_columns(table: pd.DataFrame) -> list[str]:
    """The columns a leaderboard shows: target metrics, source and label shift of the primary one, gap, fit time."""
    primary = table.attrs["primary_metric"]
    target = [f"target/{primary}"] + sorted(
        c for c in table.columns if c.startswith("target/") and not c.endswith(" se") and c != f"target/{primary}")
    rest = [f"source/{primary}", f"label_shift/{primary}", f"mean_label/{primary}", "gap_closed", "time/refiner_fit_s"]
    return target + [c for c in rest if c in table.columns]


def markdown(table: pd.DataFrame, columns: list[str]) -> str:
    """A markdown table of ``mean ± se`` cells for ``columns``."""
    header = "| refiner | seeds | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for refiner, row in table.iterrows():
        name = f"{refiner} (reference)" if row["role"] == "reference" else refiner
        cells = []
        for column in columns:
            mean, se = row.get(column, math.nan), row.get(f"{column} se", math.nan)
            cells.append("" if pd.isna(mean) else f"{mean:.2f}" + ("" if pd.isna(se) else f" ± {se:.2f}"))
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load(tracking_uri: str | None, experiment: str, budget: str) -> pd.DataFrame:
    """Summarize an experiment of the tracking store."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    return summarize(finished_runs(uri, experiment, budget))
