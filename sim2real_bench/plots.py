"""The report's figures, drawn from MLflow runs: metric bars, error curves, error against label shift, a grid of
refined samples.

Every figure is a PNG written with matplotlib's Agg backend (no display needed).
The sample grid reads each run's ``samples/strip.png`` artifact: the first
source test images as that run's refiner left them, the same images for every
refiner of a seed because the data are deterministic.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from PIL import Image  # noqa: E402

from mlflow.tracking import MlflowClient  # noqa: E402

from sim2real_bench.config import ORACLE  # noqa: E402
from sim2real_bench.report import ROW, display_name  # noqa: E402

CURVE_METRIC = re.compile(r"^metrics\.target/within_(\d+)([a-z]+)$")
LABEL_WIDTH = 32
"""Characters per line of a row's name in a figure: a row fitted to a folder names the whole spec."""


def plot_label(name: str) -> str:
    """A row's name wrapped to :data:`LABEL_WIDTH`, so a long one does not squeeze the axes out of the figure."""
    return "\n".join(textwrap.wrap(name, LABEL_WIDTH)) or name


def metric_bars(table: pd.DataFrame, column: str, path: Path, title: str) -> None:
    """One bar per refiner: mean of ``column`` over seeds, with the standard error as the error bar."""
    names = [plot_label(display_name(refiner, row)) for refiner, row in table.iterrows()]
    means = table[column].to_numpy(dtype=float)
    errors = table[f"{column} se"].to_numpy(dtype=float) if f"{column} se" in table else np.zeros(len(table))
    colors = ["tab:gray" if role == "reference" else "tab:blue" for role in table["role"]]
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * len(names), 3.6))
    axes.bar(names, means, yerr=np.nan_to_num(errors), color=colors, capsize=4)
    axes.set_ylabel(column)
    axes.set_title(title)
    axes.tick_params(axis="x", rotation=40)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def curve_points(runs: pd.DataFrame) -> list[tuple[int, str, str]]:
    """``(threshold, unit, column)`` of every ``target/within_*`` metric the runs logged, by threshold.

    A store of both tasks gives every run the other task's columns too, empty: mixed into the curve, their
    gaps broke each line into single points, so the plot showed axes and a legend without a line.
    """
    return sorted((int(match[1]), match[2], column) for column in runs.columns
                  if (match := CURVE_METRIC.match(column)) and runs[column].notna().any())


def error_curves(runs: pd.DataFrame, path: Path, title: str) -> bool:
    """Share of test samples within each error threshold, one curve per refiner (mean over seeds).

    Returns False, writing nothing, when the runs logged no ``target/within_*`` curve.
    """
    points = curve_points(runs)
    if not points:
        return False
    thresholds = [threshold for threshold, _, _ in points]
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for refiner, group in runs.groupby(ROW, sort=True):
        shares = [group[column].astype(float).mean() for _, _, column in points]
        axes.plot(thresholds, shares, label=plot_label(refiner), linestyle="--" if refiner == "oracle" else "-")
    axes.set_xlabel(f"error threshold ({points[0][1]})")
    axes.set_ylabel("target test samples within threshold (%)")
    axes.set_title(title)
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return True


def error_against_label_shift(table: pd.DataFrame, path: Path, title: str) -> bool:
    """One point per row: its target error against its label shift, mean ± s.e. over seeds both ways.

    The trade-off a refiner makes: how much it moves the probe's predictions on
    the images it refines against what it buys on target data. The reference
    row refines nothing and is drawn as a dashed line. Returns False, writing
    nothing, when no row logged a label shift.
    """
    primary = table.attrs["primary_metric"]
    error, shift = f"target/{primary}", f"label_shift/{primary}"
    if shift not in table or table[shift].isna().all():
        return False
    figure, axes = plt.subplots(figsize=(9.0, 4.4))
    colors, markers = plt.get_cmap("tab20").colors, "os^DvP*Xph<>"
    for index, (name, row) in enumerate(table.iterrows()):
        if row["role"] == "reference":
            axes.axhline(row[error], color="tab:gray", linestyle="--", linewidth=1,
                         label=plot_label(display_name(name, row)))
        elif not pd.isna(row[shift]):
            axes.errorbar(row[shift], row[error], xerr=np.nan_to_num(row.get(f"{shift} se", 0.0)),
                          yerr=np.nan_to_num(row.get(f"{error} se", 0.0)), fmt=markers[index % len(markers)],
                          color=colors[index % len(colors)], capsize=3, label=plot_label(name))
    axes.set_xlabel(f"{shift} (synthetic vs refined, probe's predictions)")
    axes.set_ylabel(error)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    # Names go in a legend beside the axes, each with its own colour and marker: labels written at the
    # points overlapped wherever rows cluster (the settings of one refiner, or refiners of similar shift).
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return True


def grid_rows(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The lowest seed's run of each row :func:`refiner_grid` may draw, in ``order``: every row but the references
    other than ``oracle`` (an ``oracle`` trained on labeled real crops would put real captures into a committed
    figure)."""
    seed = runs["params.seed"].astype(int).min()
    chosen = runs[runs["params.seed"].astype(int) == seed].set_index(ROW)
    drawn = [row for row in order if row in chosen.index
             and (chosen.loc[row, "params.role"] != "reference" or row == ORACLE)]
    return chosen.loc[drawn]


def refiner_grid(client: MlflowClient, runs: pd.DataFrame, order: list[str], path: Path, title: str) -> bool:
    """The same synthetic images through every refiner, one row each, from the lowest seed's runs.

    Returns False, writing nothing, when no run has the ``samples/strip.png`` artifact; :func:`grid_rows` says
    which rows are drawn.
    """
    seed = runs["params.seed"].astype(int).min()
    chosen = grid_rows(runs, order)
    rows: list[tuple[str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as folder:
        for refiner in chosen.index:
            try:
                local = client.download_artifacts(chosen.loc[refiner, "run_id"], "samples/strip.png", folder)
            except (MlflowException, OSError):  # runs of older versions have no strip
                continue
            label = "target images (oracle)" if chosen.loc[refiner, "params.role"] == "reference" else refiner
            rows.append((plot_label(label), np.asarray(Image.open(local).convert("L"))))
    if not rows:
        return False
    height, width = rows[0][1].shape
    figure, axes = plt.subplots(len(rows), 1, figsize=(width / 100 + 1.8, len(rows) * height / 100 + 0.6), squeeze=False)
    for axis, (label, strip) in zip(axes[:, 0], rows):
        axis.imshow(strip, cmap="gray", vmin=0, vmax=255)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    figure.suptitle(f"{title} (seed {seed})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
