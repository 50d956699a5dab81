"""The report: per-refiner mean ± standard error and gap closed, checked by hand against MLflow runs."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pandas as pd

import pytest
from mlflow.tracking import MlflowClient

from sim2real_bench.errors import ConfigError
from sim2real_bench.cli import main
from sim2real_bench.plots import curve_points, grid_rows
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
            params = {"refiner": refiner, "seed": str(seed), "budget": "quick", "task": "gaze",
                      "role": "reference" if refiner == "oracle" else "refiner",
                      "primary_metric": "target/angular_error",
                      "target": "webcam-eyes", "target_test": "webcam-eyes", "data_versions.target": "4"}
            for key, value in params.items():
                client.log_param(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, "target/angular_error", error)
            if refiner != "oracle":
                client.log_metric(run.info.run_id, "label_shift/angular_error", 0.0 if refiner == "none" else seed + 1.0)
            for threshold in range(0, 21, 5):
                client.log_metric(run.info.run_id, f"target/within_{threshold}deg", min(100.0, threshold * 100 / error))
            client.log_image(run.info.run_id, np.full((12, 40), 20 * seed, np.uint8), artifact_file="samples/strip.png")
            client.set_terminated(run.info.run_id, "FINISHED")
    stale = client.create_run(experiment)  # an unfinished run never counts
    client.log_param(stale.info.run_id, "refiner", "simgan")
    parent = client.create_run(experiment, tags={"s2r.role": "sweep"})  # a sweep's parent holds no result
    client.log_param(parent.info.run_id, "budget", "quick")
    client.set_terminated(parent.info.run_id, "FINISHED")
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


def test_every_experiment_is_read_when_none_is_named(store: str) -> None:
    runs = finished_runs(store, None, "quick")
    assert len(runs) == 9
    assert set(runs["params.task"]) == {"gaze"}


def test_report_writes_tables_and_plots_into_a_folder(store: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    assert main(["report", "--tracking-uri", store, "--out", str(out), "--format", "html"]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "gaze-angular_error.png", "gaze-error-curve.png", "gaze-error-vs-label-shift.png", "gaze-refiners.png",
        "gaze.html"]
    page = (out / "gaze.html").read_text()
    assert "<td>5.33 ± 0.33</td>" in page and page.startswith("<!DOCTYPE html>")
    # Every plot is inside the page, byte for byte, so it opens offline without the PNGs beside it.
    for name in ("gaze-angular_error.png", "gaze-error-curve.png", "gaze-error-vs-label-shift.png", "gaze-refiners.png"):
        assert base64.b64encode((out / name).read_bytes()).decode("ascii") in page
    assert "gaze: wrote" in capsys.readouterr().out


def test_csv_keeps_the_numbers(store: str, capsys) -> None:
    assert main(["report", "--tracking-uri", store, "--format", "csv", "--task", "gaze"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("refiner,")
    assert "simgan,refiner,3," in text


def test_unknown_task_in_report_names_the_tasks_with_runs(store: str, capsys) -> None:
    assert main(["report", "--tracking-uri", store, "--task", "hand"]) == 2
    assert "tasks with runs: gaze" in capsys.readouterr().err


def test_a_report_of_a_store_that_is_not_there_says_so_and_creates_none(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "typo.db"
    assert main(["report", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert f"no tracking store at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_runs_of_one_refiner_with_different_settings_are_rows_of_their_own(store: str) -> None:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("gaze").experiment_id
    for t0, errors in (("0.3", [6.5, 6.0]), ("0.5", [5.5, 5.0])):
        for seed, error in enumerate(errors):
            run = client.create_run(experiment)
            for key, value in {"refiner": "sdedit", "seed": str(seed), "budget": "quick", "task": "gaze",
                               "role": "refiner", "primary_metric": "target/angular_error",
                               "refiner_config.t0": t0, "refiner_config.denoise_steps": "4"}.items():
                client.log_param(run.info.run_id, key, value)
            client.log_metric(run.info.run_id, "target/angular_error", error)
            client.set_terminated(run.info.run_id, "FINISHED")
    table = summarize(finished_runs(store, "gaze", "quick"))
    assert list(table.index) == ["none", "sdedit [t0=0.3]", "sdedit [t0=0.5]", "simgan", "oracle"]
    assert table.loc["sdedit [t0=0.3]", "target/angular_error"] == pytest.approx(6.25)
    assert table.loc["sdedit [t0=0.5]", "seeds"] == 2
    gaps = [(7 - 5.5) / (7 - 2), (8 - 5.0) / (8 - 2)]
    assert table.loc["sdedit [t0=0.5]", "gap_closed"] == pytest.approx(sum(gaps) / 2)


def _log_runs(store: str, refiner: str, errors: list[float], **extra: str) -> None:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("gaze").experiment_id
    for seed, error in enumerate(errors):
        run = client.create_run(experiment)
        for key, value in {"refiner": refiner, "seed": str(seed), "budget": "quick", "task": "gaze", "role": "refiner",
                           "primary_metric": "target/angular_error", "target_test": "webcam-eyes", **extra}.items():
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "target/angular_error", error)
        client.set_terminated(run.info.run_id, "FINISHED")


def test_a_refiner_fitted_to_another_target_is_a_row_of_its_own(store: str) -> None:
    # Another target has another version; its name alone tells the rows apart.
    _log_runs(store, "simgan", [4.0, 4.0, 5.0], target="folder:/data/real-eyes", **{"data_versions.target": "1"})
    table = summarize(finished_runs(store, "gaze", "quick"))
    real, standin = "simgan [target=folder:/data/real-eyes]", "simgan"  # the stand-in is the table's own target
    assert list(table.index) == ["none", standin, real, "oracle"]
    assert table.loc[standin, "target/angular_error"] == pytest.approx(16 / 3)
    gaps = [(7 - 4) / (7 - 2), (8 - 4) / (8 - 2), (6 - 5) / (6 - 2)]
    assert table.loc[real, "gap_closed"] == pytest.approx(sum(gaps) / 3)


def test_a_target_at_two_versions_names_the_version_in_its_row(store: str) -> None:
    _log_runs(store, "simgan", [4.0, 4.0, 5.0], target="folder:/data/real-eyes", **{"data_versions.target": "1"})
    _log_runs(store, "simgan", [3.0, 3.0, 3.0], target="folder:/data/real-eyes", **{"data_versions.target": "2"})
    table = summarize(finished_runs(store, "gaze", "quick"))
    assert list(table.index) == ["none", "simgan",
                                 "simgan [target=folder:/data/real-eyes, data_versions.target=1]",
                                 "simgan [target=folder:/data/real-eyes, data_versions.target=2]", "oracle"]


def test_runs_tested_on_different_data_are_refused_with_the_way_to_report_them_apart(store: str, capsys) -> None:
    _log_runs(store, "randomize", [5.0, 5.0], target="webcam-eyes", target_test="folder:/data/labeled-eyes")
    with pytest.raises(ConfigError, match=r"target_test: folder:/data/labeled-eyes, webcam-eyes.*--experiment NAME"):
        finished_runs(store, "gaze", "quick")
    assert main(["report", "--tracking-uri", store]) == 2
    assert "tested on" in capsys.readouterr().err


def test_the_second_test_set_is_a_column_and_runs_on_two_of_them_are_refused(store: str) -> None:
    client = MlflowClient(store)
    _log_runs(store, "randomize", [5.0, 6.0], real_test="folder:/data/real-eyes?split=test")
    for run in client.search_runs([client.get_experiment_by_name("gaze").experiment_id],
                                  "params.refiner = 'randomize'"):
        client.log_metric(run.info.run_id, "real/angular_error", 9.0 + int(run.data.params["seed"]))
    table = summarize(finished_runs(store, "gaze", "quick"))
    assert table.loc["randomize", "real/angular_error"] == pytest.approx(9.5)
    columns = headline_columns(table)
    assert columns.index("real/angular_error") == columns.index("target/angular_error") + 1
    assert "real_realism/classifier_accuracy" not in columns  # no run was judged against real images
    _log_runs(store, "histmatch", [5.0], real_test="folder:/data/other-eyes?split=test")
    with pytest.raises(ConfigError, match=r"real_test: folder:/data/other-eyes\?split=test, folder:/data/real-eyes"):
        finished_runs(store, "gaze", "quick")


def test_realism_against_real_images_is_a_column_and_runs_judged_against_two_sets_are_refused(store: str) -> None:
    client = MlflowClient(store)
    _log_runs(store, "fda", [5.0, 6.0], real_images="folder:/data/real-eyes")
    for run in client.search_runs([client.get_experiment_by_name("gaze").experiment_id], "params.refiner = 'fda'"):
        client.log_metric(run.info.run_id, "realism/kid", 0.01)
        client.log_metric(run.info.run_id, "real_realism/classifier_accuracy", 90.0 + int(run.data.params["seed"]))
    table = summarize(finished_runs(store, "gaze", "quick"))
    assert table.loc["fda", "real_realism/classifier_accuracy"] == pytest.approx(90.5)
    columns = headline_columns(table)
    assert columns.index("real_realism/classifier_accuracy") == columns.index("realism/kid") + 1
    _log_runs(store, "histmatch", [5.0], real_images="folder:/data/other-eyes")
    with pytest.raises(ConfigError, match=r"real_images: folder:/data/other-eyes, folder:/data/real-eyes"):
        finished_runs(store, "gaze", "quick")


def test_an_oracle_trained_on_real_crops_is_a_reference_row_beside_the_oracle_that_gap_closed_uses(store: str) -> None:
    _log_runs(store, "oracle", [9.0, 9.0, 9.0], role="reference", target="folder:/data/real-eyes?split=train")
    table = summarize(finished_runs(store, "gaze", "quick"))
    real_oracle = "oracle [target=folder:/data/real-eyes?split=train]"
    assert list(table.index) == ["none", "simgan", "oracle", real_oracle]
    assert table.loc[real_oracle, "role"] == "reference"
    assert table.loc[real_oracle, "target/angular_error"] == pytest.approx(9.0)
    gaps = [(none - simgan) / (none - oracle) for none, simgan, oracle in zip(ERRORS["none"], ERRORS["simgan"],
                                                                             ERRORS["oracle"])]
    assert table.loc["simgan", "gap_closed"] == pytest.approx(sum(gaps) / 3)
    assert "real_gap_closed" not in table  # nothing was scored on a second test set


def test_gap_closed_on_the_second_test_set_pairs_with_the_oracle_trained_on_real_crops(store: str) -> None:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("gaze").experiment_id
    real_errors = {"none": [12.0, 13.0, 12.0], "simgan": [11.0, 13.0, 13.0], "oracle": [14.0, 14.0, 14.0]}
    for refiner, errors in real_errors.items():
        for run in client.search_runs([experiment], f"params.refiner = '{refiner}' and attributes.status = 'FINISHED'"):
            client.log_metric(run.info.run_id, "real/angular_error", errors[int(run.data.params["seed"])])
    _log_runs(store, "oracle", [9.0, 9.0, 9.0], role="reference", target="folder:/data/real-eyes?split=train")
    for run in client.search_runs([experiment], "params.target = 'folder:/data/real-eyes?split=train'"):
        client.log_metric(run.info.run_id, "real/angular_error", 7.0)
    table = summarize(finished_runs(store, "gaze", "quick"))
    gaps = [(12 - 11) / (12 - 7), (13 - 13) / (13 - 7), (12 - 13) / (12 - 7)]
    assert table.loc["simgan", "real_gap_closed"] == pytest.approx(sum(gaps) / 3)
    assert table.loc["oracle [target=folder:/data/real-eyes?split=train]", "real_gap_closed"] == pytest.approx(1.0)
    assert table.loc["none", "real_gap_closed"] == pytest.approx(0.0)
    assert "real_gap_closed" in headline_columns(table)


def test_the_refiner_grid_leaves_out_an_oracle_trained_on_real_crops(store: str) -> None:
    _log_runs(store, "oracle", [9.0, 9.0, 9.0], role="reference", target="folder:/data/real-eyes?split=train")
    runs = finished_runs(store, "gaze", "quick")
    table = summarize(runs)
    assert list(grid_rows(runs, list(table.index)).index) == ["none", "simgan", "oracle"]


def test_an_error_curve_takes_only_the_thresholds_its_runs_logged() -> None:
    # A store of both tasks: gaze runs carry the hand task's within_*px columns, empty.
    runs = pd.DataFrame({"metrics.target/within_2deg": [40.0, 50.0], "metrics.target/within_10deg": [90.0, 95.0],
                         "metrics.target/within_5px": [math.nan, math.nan]})
    assert curve_points(runs) == [(2, "deg", "metrics.target/within_2deg"), (10, "deg", "metrics.target/within_10deg")]
