"""Benchmark tables from MLflow: one row per refiner, mean ± standard error over seeds.

Built from ``mlflow.search_runs`` so that anything in the UI and any table here
agree. *Gap closed* is computed per seed, paired with the ``none`` and
``oracle`` runs of the same seed, then averaged:
``(err_none - err_refiner) / (err_none - err_oracle)`` for a lower-is-better metric.

A row is a refiner, or, where the reported runs of one refiner differ in its
settings (a ``t0`` sweep of ``sdedit``, ILVR on and off) or in the target it adapted
to (the stand-in, a folder of real captures), one row per setting:
``sdedit [ilvr_factor=4, t0=0.3]``, ``simgan [target=folder:/data/real-eyes]``.
Nothing of two configurations is averaged together. A table compares runs on one
test set, trained from one source with one task config: runs of a task that
differ there are refused, with the way to report them apart.
"""

from __future__ import annotations

import base64
import html as html_text
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim2real_bench import tracking
from sim2real_bench.errors import ConfigError
from sim2real_bench.config import IDENTITY, ORACLE

ROW = "row"
"""The column of :func:`finished_runs` naming each run's row: its refiner, and the settings that set it apart."""
REFINER_SETTING = "params.refiner_config."
TARGET = ("params.target", "params.data_versions.target")
"""What a refiner adapts to: runs of one refiner that differ here are rows of their own, like its settings."""
TASK_SETTING = "params.task_config."
COMPARED_ON = ("params.source", "params.data_versions.source", "params.data.source_train",
               "params.target_test", "params.data_versions.target_test", "params.data.test",
               "params.real_test", "params.data_versions.real_test", "params.real_images",
               "params.data_versions.real_images")
"""What every run of one table shares, with the task config: where the task trains from and what it is tested on."""


def finished_runs(tracking_uri: str, experiment: str | None, budget: str) -> pd.DataFrame:
    """The latest finished run of every (task, refiner, seed) at ``budget``, in ``experiment`` or in all of them.

    Sweep parents and exports hold no result (no primary metric) and are left out.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if experiment is None:
        names = [found.name for found in mlflow.search_experiments()]
    elif mlflow.get_experiment_by_name(experiment) is None:
        raise ConfigError(f"no experiment {experiment!r} in {tracking_uri}; run `s2r-bench run` or `s2r-bench sweep` "
                          "first, or pass --experiment with one that exists")
    else:
        names = [experiment]
    runs = mlflow.search_runs(
        experiment_names=names, filter_string=f"attributes.status = 'FINISHED' and params.budget = '{budget}'",
        order_by=["attributes.start_time DESC"],
    ) if names else pd.DataFrame()
    where = f"experiment {experiment!r}" if experiment else "any experiment"
    if runs.empty or "params.refiner" not in runs:
        raise ConfigError(f"no finished {budget!r} runs in {where} of {tracking_uri}")
    runs = runs[runs["params.primary_metric"].notna()] if "params.primary_metric" in runs else runs.iloc[:0]
    if runs.empty:
        raise ConfigError(f"no finished {budget!r} runs with results in {where} of {tracking_uri}")
    runs = runs.assign(**{ROW: row_names(runs)})
    latest = runs.drop_duplicates(subset=["params.task", ROW, "params.seed"], keep="first")
    check_comparable(latest, f"{where} of {tracking_uri}")
    return latest


def _setting(column: str) -> str:
    return column.removeprefix(REFINER_SETTING).removeprefix("params.")


def row_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's row: its refiner, plus ``[setting=value, ...]`` for the settings and target in which runs of
    that refiner and task differ.

    A run whose target is the domain the table tests on (``--target`` not named, or the same as
    ``--target-test``) is not labeled by its target: ``oracle`` stays the row that gap closed pairs with, and
    an ``oracle`` trained on labeled real crops is ``oracle [target=folder:...]`` beside it.
    """
    # in a fixed order (target first), not in the order the store happened to return its columns
    settings = [column for column in TARGET if column in runs]
    settings += sorted(column for column in runs.columns if column.startswith(REFINER_SETTING))
    names = runs["params.refiner"].copy()
    for _, group in runs.groupby(["params.task", "params.refiner"]):
        varying = [column for column in settings if group[column].nunique() > 1]
        if set(TARGET) <= set(varying) and group.groupby(TARGET[0])[TARGET[1]].nunique().max() == 1:
            varying.remove(TARGET[1])  # each target has one version: its name says which row it is
        for index, run in group.iterrows():
            at_home = run.get("params.target") == run.get("params.target_test")
            shown = [column for column in varying if not (at_home and column in TARGET)]
            if shown:
                label = ", ".join(f"{_setting(column)}={run[column]}" for column in shown)
                names[index] = f"{run['params.refiner']} [{label}]"
    return names


def check_comparable(runs: pd.DataFrame, where: str) -> None:
    """Refuse a table of runs tested on different data, or trained from another source or task config.

    Their errors are not on one scale, and gap closed pairs each run with the
    ``none`` and ``oracle`` runs of its seed; the latest run of each row would
    otherwise decide silently which test set a row reports.
    """
    shared = [column for column in runs.columns if column in COMPARED_ON or column.startswith(TASK_SETTING)]
    for task, group in runs.groupby("params.task"):
        varying = {_setting(column): sorted(group[column].dropna().unique()) for column in shared
                   if group[column].nunique() > 1}
        if varying:
            what = "; ".join(f"{name}: {', '.join(values)}" for name, values in varying.items())
            raise ConfigError(f"the {task} runs in {where} differ in what they train from or are tested on ({what}); "
                              "a table compares runs on one test set: give each set of runs its own experiment "
                              "(`--experiment NAME` when running, then `report --experiment NAME`) or store "
                              "(`--tracking-uri`)")


def tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One summarized table per task, by task name."""
    return {task: summarize(group) for task, group in sorted(runs.groupby("params.task"))}


def _mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna().astype(float)
    if values.empty:
        return math.nan, math.nan
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), float(se)


def real_oracle_row(runs: pd.DataFrame, real_metric: str) -> str | None:
    """The row that closes the whole real gap: the one reference besides ``oracle`` scored on the second test set
    (an ``oracle`` trained on labeled real crops); ``None`` when there is none, or several to choose from."""
    if real_metric not in runs:
        return None
    scored = runs[(runs["params.role"] == "reference") & (runs[ROW] != ORACLE) & runs[real_metric].notna()]
    rows = scored[ROW].unique()
    return str(rows[0]) if len(rows) == 1 else None


def gap_closed(by_seed: pd.Series, row: str, seeds: Sequence[str], oracle: str) -> tuple[float, float]:
    """Mean and s.e. over ``seeds`` of ``(none - row) / (none - oracle)`` in ``by_seed``, a seed's run missing
    from any of the three leaving that seed out."""
    gaps = []
    for seed in seeds:
        try:
            none, best, mine = by_seed[(IDENTITY, seed)], by_seed[(oracle, seed)], by_seed[(row, seed)]
        except KeyError:
            continue
        gaps.append((none - mine) / (none - best))
    return _mean_se(pd.Series(gaps, dtype=float))


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per refiner (or setting, :data:`ROW`): mean and standard error over seeds of the logged metrics,
    and gap closed: on the target against ``oracle``, and on the second test set (``real_gap_closed``) against
    :func:`real_oracle_row` when the table has one."""
    primary = runs["params.primary_metric"].iloc[0]
    real = "metrics.real/" + primary.removeprefix("target/")
    indexed = runs.set_index([ROW, "params.seed"])
    by_seed = indexed[f"metrics.{primary}"]
    real_oracle = real_oracle_row(runs, real)
    real_by_seed = indexed[real] if real_oracle is not None else None
    rows = []
    for refiner, group in runs.groupby(ROW):
        row: dict[str, object] = {"refiner": refiner, "role": group["params.role"].iloc[0], "seeds": len(group)}
        for column in sorted(c for c in group.columns if c.startswith("metrics.")):
            mean, se = _mean_se(group[column])
            if not math.isnan(mean):
                row[column.removeprefix("metrics.")] = mean
                row[column.removeprefix("metrics.") + " se"] = se
        row["gap_closed"], row["gap_closed se"] = gap_closed(by_seed, refiner, group["params.seed"], ORACLE)
        if real_by_seed is not None:
            row["real_gap_closed"], row["real_gap_closed se"] = gap_closed(real_by_seed, refiner, group["params.seed"],
                                                                           real_oracle)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("refiner")
    table.attrs["primary_metric"] = primary.removeprefix("target/")
    references = sorted(name for name in table.index if table.loc[name, "role"] == "reference" and name != ORACLE)
    order = [IDENTITY] + sorted(set(table.index) - {IDENTITY, ORACLE, *references}) + [ORACLE, *references]
    return table.loc[[name for name in order if name in table.index]]


STAGES = ("refiner_fit", "refine", "task_train", "eval")


def headline_columns(table: pd.DataFrame, headline: Sequence[str] = ()) -> list[str]:
    """What a leaderboard shows: the task's headline target metrics (its primary one when none are given),
    the primary one on the second test set (``--real-test``) with its mean-label floor and gap closed there,
    source error, gap closed, label shift, realism (against the target, then against real images where the runs
    name them) and the throughput of every stage."""
    primary = table.attrs["primary_metric"]
    target = [f"target/{name}" for name in dict.fromkeys([primary, *headline])]
    real = [f"real/{primary}", f"real_mean_label/{primary}", "real_gap_closed"]
    rest = [*real, f"source/{primary}", "gap_closed", f"label_shift/{primary}", "realism/classifier_accuracy",
            "realism/kid", "real_realism/classifier_accuracy", "real_realism/kid",
            *(f"throughput/{stage}_img_s" for stage in STAGES), "time/refiner_fit_s"]
    return [c for c in target + rest if c in table.columns]


def _decimals(value: float) -> int:
    """Two decimals in the usual range, none for large counts, two significant digits for small values."""
    size = abs(value)
    if size >= 100:
        return 0
    if size >= 0.1 or size == 0:
        return 2
    return 1 - math.floor(math.log10(size))


def cell(row: pd.Series, column: str) -> str:
    """``mean ± se`` of ``column`` in a summarized row, both to the mean's decimals; empty when not logged."""
    mean, se = row.get(column, math.nan), row.get(f"{column} se", math.nan)
    if pd.isna(mean):
        return ""
    decimals = _decimals(mean)
    return f"{mean:.{decimals}f}" + ("" if pd.isna(se) else f" ± {se:.{decimals}f}")


def display_name(refiner: str, row: pd.Series) -> str:
    """The refiner as a leaderboard names it: the reference row is marked."""
    return f"{refiner} (reference)" if row["role"] == "reference" else refiner


def formatted(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``table`` as text cells, one ``mean ± se`` per column: what markdown and HTML show."""
    rows = {display_name(refiner, row): {"seeds": row["seeds"], **{c: cell(row, c) for c in columns}}
            for refiner, row in table.iterrows()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("refiner")


def markdown(table: pd.DataFrame, columns: list[str]) -> str:
    """A markdown table of ``mean ± se`` cells for ``columns``."""
    text = formatted(table, columns)
    lines = ["| refiner | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    lines += [f"| {name} | " + " | ".join(str(value) for value in row) + " |" for name, row in text.iterrows()]
    return "\n".join(lines)


def html(table: pd.DataFrame, columns: list[str]) -> str:
    """An HTML table of ``mean ± se`` cells for ``columns``."""
    return formatted(table, columns).to_html()


def html_page(title: str, table_html: str, pictures: Sequence[Path]) -> str:
    """A page that opens offline from anywhere: the table, then every picture inline as a base64 PNG."""
    figures = "\n".join(
        f'<figure><img alt="{html_text.escape(path.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}"><figcaption>{html_text.escape(path.name)}'
        "</figcaption></figure>" for path in pictures)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html_text.escape(title)}</title></head>\n"
            f"<body>\n<h1>{html_text.escape(title)}</h1>\n{table_html}\n{figures}\n</body></html>")


def render(table: pd.DataFrame, columns: list[str], output_format: str) -> str:
    """A summarized table as ``markdown``, ``html`` or ``csv`` (CSV keeps every column, as numbers)."""
    if output_format == "csv":
        return table.to_csv()
    return markdown(table, columns) if output_format == "markdown" else html(table, columns)


def load(tracking_uri: str | None, experiment: str | None, budget: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The finished runs of the tracking store and their summary table per task."""
    runs = finished_runs(tracking.resolve_tracking_uri(tracking_uri), experiment, budget)
    return runs, tables(runs)
