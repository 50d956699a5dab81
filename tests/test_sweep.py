"""Sweeps: nesting under one parent run, skipping what finished, and surviving a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench.errors import ConfigError
from sim2real_bench.cli import parse_names, parse_seeds
from sim2real_bench.plan import RunSpec
from sim2real_bench.registry import Registry
from sim2real_bench.sweep import expand, refiner_names, sweep

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))
TEMPLATE = RunSpec(refiner="none", task="gaze", budget="smoke")


def specs(template: RunSpec, refiners: str, seeds: str, registry: Registry) -> list[RunSpec]:
    """The sweep's combinations as the CLI expands them."""
    return expand(template, refiners.split(","), ["gaze"], parse_seeds(seeds), registry)


def finished_runs(uri: str, experiment: str = "sweep") -> list:
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return [found for found in client.search_runs([experiment_id], "attributes.status = 'FINISHED'")
            if found.data.tags.get("s2r.role") != "sweep"]


def test_all_expands_to_every_refiner_with_none_and_oracle_first() -> None:
    names = refiner_names(Registry())
    assert names[:2] == ["none", "oracle"]
    assert {"simgan", "cyclegan", "fda"} <= set(names)
    assert parse_names("all", names, "refiners") == names


def test_unknown_names_and_bad_seeds_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="unknown refiner.*nope.*known: none"):
        parse_names("none,nope", ["none", "oracle"], "refiner(s)")
    with pytest.raises(ConfigError, match="comma-separated list of integers"):
        parse_seeds("0,x")
    with pytest.raises(ConfigError, match="no task"):
        parse_names(" , ", ["gaze"], "task(s)")


def test_sweep_nests_every_combination_and_a_relaunch_skips_them(tracking_uri: str) -> None:
    registry = Registry()
    lines: list[str] = []
    first = sweep(specs(TEMPLATE, "none,oracle", "0,1", registry), tracking_uri, progress=False, registry=registry,
                  echo=lines.append)
    assert len(first.ran) == 4 and not first.skipped and not first.failed
    client = MlflowClient(tracking_uri)
    runs = finished_runs(tracking_uri)
    assert {found.data.tags["mlflow.parentRunId"] for found in runs} == {first.parent_run_id}
    assert Counter((found.data.params["refiner"], found.data.params["seed"]) for found in runs) == Counter(
        {("none", "0"): 1, ("none", "1"): 1, ("oracle", "0"): 1, ("oracle", "1"): 1})
    assert client.get_run(first.parent_run_id).info.status == "FINISHED"

    again = sweep(specs(TEMPLATE, "none,oracle", "0,1", registry), tracking_uri, progress=False, registry=registry,
                  echo=lines.append)
    assert again.parent_run_id == first.parent_run_id
    assert not again.ran and set(again.skipped) == set(first.ran)
    assert len(finished_runs(tracking_uri)) == 4
    assert sum("skipped" in line for line in lines) == 4


def test_a_changed_setting_is_a_new_combination(tracking_uri: str) -> None:
    registry = Registry()
    sweep(specs(TEMPLATE, "none", "0", registry), tracking_uri, progress=False, registry=registry, echo=lambda _: None)
    changed = RunSpec(refiner="none", task="gaze", budget="smoke", overrides=("task.lr=0.001",))
    result = sweep(specs(changed, "none", "0", registry), tracking_uri, progress=False, registry=registry,
                   echo=lambda _: None)
    assert len(result.ran) == 1 and not result.skipped


@pytest.mark.slow  # about 30 s; the Ray test of a killed worker checks the same resume in the default run
def test_a_killed_sweep_resumes_the_interrupted_fit_and_finishes_everything_once(tmp_path: Path) -> None:
    uri = store_in(tmp_path)
    cache = tmp_path / "cache"
    env = {**os.environ, "S2R_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    command = [CONSOLE_SCRIPT, "sweep", "--refiners", "none,simgan", "--tasks", "gaze", "--seeds", "0",
               "--budget", "smoke", "--set", "refiner.steps=600", "--set", "refiner.checkpoint_every=10",
               "--tracking-uri", uri, "--no-progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(cache.glob("fits/*/checkpoint.pt")):
        assert process.poll() is None, "the sweep ended before the refiner wrote a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert [found.data.params["refiner"] for found in finished_runs(uri)] == ["none"]

    relaunched = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert relaunched.returncode == 0, relaunched.stderr
    assert "none on gaze, seed 0: finished before" in relaunched.stderr

    runs = finished_runs(uri)
    assert Counter(found.data.tags["s2r.combination"] for found in runs).most_common(1)[0][1] == 1
    assert sorted(found.data.params["refiner"] for found in runs) == ["none", "simgan"]
    simgan = next(found for found in runs if found.data.params["refiner"] == "simgan")
    assert int(simgan.data.tags["s2r.resumed_from_step"]) >= 10
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("sweep").experiment_id
    killed = client.search_runs([experiment_id], "attributes.status = 'KILLED'")
    assert [found.data.params["refiner"] for found in killed] == ["simgan"]
    parents = client.search_runs([experiment_id], "tags.`s2r.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"


def test_refiner_settings_go_to_the_refiners_that_have_them(tracking_uri: str) -> None:
    spec = RunSpec(refiner="none", task="gaze", budget="smoke", overrides=("refiner.steps=4",))
    result = sweep(specs(spec, "none,simgan", "0", Registry()), tracking_uri, progress=False, registry=Registry(),
                   echo=lambda _: None)
    assert len(result.ran) == 2
    params = {found.data.params["refiner"]: found.data.params for found in finished_runs(tracking_uri)}
    assert params["simgan"]["refiner_config.steps"] == "4"
    with pytest.raises(ConfigError, match="no refiner of this sweep has the setting.*refiner.nonsense=1"):
        specs(replace(spec, overrides=("refiner.nonsense=1",)), "none,simgan", "0", Registry())
