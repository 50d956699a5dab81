"""The example plugin package, installed for real with pip, seen and run by the ``s2r-bench`` console script.

pip installs it into a private folder on ``PYTHONPATH`` (offline: no build
isolation, no dependencies), so the shared environment never changes and there
is nothing to uninstall. Runs use small ``--set data.*`` sizes: the point is
that they finish and what they log, not their figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from itertools import takewhile
from pathlib import Path

import pytest
from stores import store_in

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "s2r-bench-example-plugin"
DOCS = REPOSITORY / "docs" / "writing-a-plugin.md"
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))
SMALL = ("--budget", "smoke", "--no-progress", "--set", "data.source_train=256", "--set", "data.target_train=256",
         "--set", "data.test=32")
"""Options of every run here: the smoke budget with fewer images (32 test images keep the realism metrics)."""
EXPORTED = 200
"""Samples the round trip exports: about one in ten becomes the folder's test split."""
TIMING = ("time/", "throughput/", "memory/")


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python finds the example plugin, installed by pip from a copy of its folder."""
    root = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, root / "source")  # building leaves files behind: not in the repository
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, timeout=300)
    return {**os.environ, "PYTHONPATH": str(site), "S2R_BENCH_CACHE": str(root / "cache"),
            "MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    """One MLflow store for the module's runs (creating its tables once)."""
    return store_in(tmp_path_factory.mktemp("tracking"))


def s2r_bench(env: dict[str, str], *args: str) -> str:
    finished = subprocess.run([CONSOLE_SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def run_json(env: dict[str, str], tracking_uri: str, *args: str) -> dict:
    """``s2r-bench run ... --json``: the run's config and metrics."""
    return json.loads(s2r_bench(env, "run", *args, *SMALL, "--tracking-uri", tracking_uri, "--json"))


def figures(result: dict) -> dict[str, float]:
    """A run's metrics without the timing and memory ones, which no two runs share."""
    return {name: value for name, value in result["metrics"].items() if not name.startswith(TIMING)}


def section(listing: str, kind: str) -> list[str]:
    """The entries of one section (``tasks:``, ...) of ``s2r-bench list``."""
    lines = listing.splitlines()
    return list(takewhile(lambda line: line.startswith("  "), lines[lines.index(f"{kind}:") + 1 :]))


def test_plugins_lists_each_of_its_modules_with_its_distribution(plugin_env) -> None:
    lines = s2r_bench(plugin_env, "plugins").splitlines()
    assert "example          s2r-bench-example-plugin 0.1.0" in lines
    assert "example-pupil    s2r-bench-example-plugin 0.1.0" in lines


def test_list_shows_its_refiner_datasets_and_task(plugin_env) -> None:
    listing = s2r_bench(plugin_env, "list")
    assert any(line.split()[0] == "example-blur" for line in section(listing, "refiners"))
    datasets = {line.split()[0] for line in section(listing, "datasets")}
    assert {"example-dots", "example-eyes", "example-webcam"} <= datasets
    tasks = [line for line in section(listing, "tasks") if line.split()[0] == "example-pupil"]
    assert tasks and tasks[0].endswith("[example-pupil]")


def test_a_bad_setting_of_its_refiner_is_one_config_error_before_any_work(plugin_env, tracking_uri) -> None:
    finished = subprocess.run([CONSOLE_SCRIPT, "run", "--refiner", "example-blur", "--task", "example-pupil",
                               "--set", "refiner.steps=0", "--tracking-uri", tracking_uri],
                              env=plugin_env, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "s2r-bench: error: example-blur: steps must be at least 1, got 0 (change them with --set refiner.FIELD=VALUE)"]


def test_its_refiner_runs_on_its_dataset(plugin_env, tracking_uri) -> None:
    result = run_json(plugin_env, tracking_uri, "--refiner", "example-blur", "--task", "gaze",
                      "--source", "example-dots", "--target", "example-dots")
    assert (result["config"]["refiner"], result["config"]["source"]) == ("example-blur", "example-dots")
    assert "target/angular_error" in result["metrics"]


@pytest.mark.slow  # three console-script runs; test_export reads exports back through folder: in the default run
def test_its_task_round_trips_through_export_and_folder(plugin_env, tracking_uri, tmp_path: Path) -> None:
    out = tmp_path / "refined-pupils"
    s2r_bench(plugin_env, "refine", "--refiner", "example-blur", "--task", "example-pupil", "--out", str(out),
              "--limit", str(EXPORTED), *SMALL, "--tracking-uri", tracking_uri)
    assert (out / "labels.csv").read_text().splitlines()[0] == "file,pupil_x,pupil_y"

    # Read back as the pupil-centre kind: a folder of any other kind is refused before the run starts (exit 2).
    result = run_json(plugin_env, tracking_uri, "--refiner", "none", "--task", "example-pupil",
                      "--source", f"folder:{out}")
    assert (result["config"]["source"], result["config"]["target"]) == (f"folder:{out}", "example-webcam")
    assert {"target/pixel_error", "target/within_2px"} <= set(result["metrics"])


@pytest.mark.slow  # two console-script runs; test_runner and test_store check the refined-set cache in process
def test_its_refiner_trains_the_second_run_on_the_cached_refined_set(plugin_env, tracking_uri, tmp_path) -> None:
    env = {**plugin_env, "S2R_BENCH_CACHE": str(tmp_path / "cache")}
    spec = ("--refiner", "example-blur", "--task", "example-pupil")
    first = run_json(env, tracking_uri, *spec)
    [refined] = (tmp_path / "cache").glob("fits/*/refined-train-*.pt")
    written = refined.stat().st_mtime_ns

    second = run_json(env, tracking_uri, *spec)
    assert refined.stat().st_mtime_ns == written, "the second run refined the training set again"
    assert figures(second) == figures(first)


@pytest.mark.parametrize("path", [Path("pyproject.toml"), *sorted(
    path.relative_to(EXAMPLE) for path in (EXAMPLE / "s2r_bench_example").glob("*.py"))], ids=str)
def test_the_docs_show_the_example_as_it_is(path: Path) -> None:
    assert (EXAMPLE / path).read_text() in DOCS.read_text(), f"docs/writing-a-plugin.md is out of date for {path}"
