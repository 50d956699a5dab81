"""The report: per-refiner mean ± standard error and gap closed, checked by hand against MLflow runs."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from sim2real_bench.errors import ConfigError
from sim2real_bench.report import finished_runs, headline_columns, markdown, summarize

ERRORS = {  # refiner -> target angular error per seed 0, 1, 2
    "none": [7.0, 8.0, 6.0],
    "oracle": [2.0, 2.0, 2.0],
    "simgan": [6.0, 5.0, 5.0],
}


@pytest.fixture
def store(tracking_uri: str) -> str:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("gaze")
    for refiner, errors in ERRORS.items():
        for seed, error in enumerate(errors):
            run = client.create_run(experiment)
            params = {"refiner": refiner, "seed": str(seed), "budget": "quick",
                      "role": "reference" if refiner == "oracle" else "refiner",
                      "primary_metric": "target/angular_error"}
            for key, value in params.items():
                client.log_param(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, "target/angular_error", error)
            client.set_terminated(run.info.run_id, "FINISHED")
    stale = client.create_run(experiment)  # an unfinished run never counts
    client.log_param(stale.info.run_id, "refiner", "simgan")
    return tracking_uri


def test_mean_and_standard_error_over_seeds(store: str) -> None:
    table = summarize(finished_runs(store, "gaze", "quick"))
    assert list(table.index) == ["none", "simgan", "oracle"]
    assert table.loc["simgan", "seeds"] == 3
    assert table.loc["simgan", "target/angular_error"] == pytest.approx(16 / 3)
    standard_error = math.sqrt(((6 - 16 / 3) ** 2 + 2 * (5 - 16 / 3) ** 2) / 2) / math.sqrt(3)
    assert table.loc["simgan", "target/angular_error se"] == pytest.approx(standard_error)


def test_gap_closed_is_paired_by_seed(store: str) -> None:
    table = summarize(finished_runs(store, "gaze", "quick"))
    gaps = [(7 - 6) / (7 - 2), (8 - 5) / (8 - 2), (6 - 5) / (6 - 2)]
    assert table.loc["simgan", "gap_closed"] == pytest.approx(sum(gaps) / 3)
    assert table.loc["none", "gap_closed"] == pytest.approx(0)
    assert table.loc["oracle", "gap_closed"] == pytest.approx(1)


def test_markdown_marks_the_reference(store: str) -> None:
    table = summarize(finished_runs(store, "gaze", "quick"))
    text = markdown(table, headline_columns(table))
    assert "| oracle (reference) | 3 | 2.00 ± 0.00 |" in text
    assert "| simgan | 3 | 5.33 ± 0.33 |" in text


def test_missing_experiment_is_a_clear_error(tracking_uri: str) -> None:
    with pytest.raises(ConfigError, match="no experiment 'hand'"):
        finished_runs(tracking_uri, "hand", "quick")
