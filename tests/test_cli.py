"""The command line: listings, previews and one clear line for every user mistake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stores import store_in

from sim2real_bench.cli import main


def fails_cleanly(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("s2r-bench: error:") and message in err
    assert "Traceback" not in err


def test_unknown_refiner_lists_the_known_ones(capsys) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "simgna", "--task", "gaze"], "known refiners: ")


def test_unknown_task_lists_the_known_ones(capsys) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "pose"], "known tasks: gaze")


def test_unknown_budget_lists_the_budgets(capsys) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--budget", "huge"], "budgets: smoke, quick, paper")


@pytest.mark.parametrize("spec", ["", ":/data", "Synth Eyes"])
def test_malformed_dataset_spec(capsys, spec: str) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--source", spec], "malformed dataset spec")


def test_unknown_dataset_lists_the_known_ones(capsys) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--target", "mpiigazr:/x"], "known datasets:")


def test_tracking_store_in_a_missing_folder(capsys, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--tracking-uri", uri],
                  "does not exist")


def test_tracking_store_that_is_not_a_database(capsys, tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    store.write_text("not a database")
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--tracking-uri",
                           f"sqlite:///{store}"], "is not an SQLite database")


def test_file_store_uri_is_refused(capsys, tmp_path: Path) -> None:
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--tracking-uri", str(tmp_path)],
                  "file store")


def test_cuda_without_gpu_is_a_clear_error(capsys, monkeypatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    fails_cleanly(capsys, ["run", "--refiner", "none", "--task", "gaze", "--device", "cuda"], "no usable CUDA GPU")


def test_list_shows_every_kind_and_the_oracle_reference(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("none", "histmatch", "oracle", "synth-eyes", "webcam-eyes", "gaze"):
        assert name in out
    assert "reference" in out


def test_plugins_show_distribution_and_version(capsys) -> None:
    assert main(["plugins"]) == 0
    assert "eyes             s2r-bench 0.1.0" in capsys.readouterr().out


def test_preview_writes_a_png(tmp_path: Path, capsys) -> None:
    out = tmp_path / "grid.png"
    assert main(["preview", "webcam-eyes", "--out", str(out), "--count", "16"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_mode_prints_exactly_one_object(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sim2real_bench.cli", "run", "--refiner", "none", "--task", "gaze",
               "--budget", "smoke", "--json", "--tracking-uri", store_in(tmp_path)]
    finished = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert finished.returncode == 0, finished.stderr
    result = json.loads(finished.stdout)
    assert set(result) == {"run_id", "config", "metrics"}
    assert result["config"]["budget"] == "smoke"
    assert "target/angular_error" in result["metrics"]


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    finished = subprocess.run(["s2r-bench", "run", "--refiner", "nope", "--task", "gaze"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("s2r-bench: error: unknown refiner 'nope'; known refiners: ")
    assert "none" in lines[0]


def test_a_reader_that_has_left_ends_the_output_quietly(tmp_path: Path) -> None:
    """``s2r-bench list | head -1``: writing to a pipe nobody reads stops as a killed pipe writer does."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written: every write fails
    try:
        finished = subprocess.run(["s2r-bench", "list"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                                  cwd=tmp_path, timeout=60)
    finally:
        os.close(write_end)
    assert finished.returncode == 141
    assert "Traceback" not in finished.stderr and "BrokenPipeError" not in finished.stderr
