"""Sweep throughput: combinations per minute of one smoke sweep, serial (2 threads) vs Ray (1 and 2 workers of 1).

Every round sweeps the same 8 combinations (none, fda, histmatch, simgan on
gaze, seeds 0 and 1) into a copy of a store made once (so the 68 migrations of
a new SQLite store are timed once, as ``store_creation_s``) and a new cache (so
every fit and probe is computed). ``extra_info`` says where the time goes:

* ``combinations_per_minute``: the benchmark's figure (the sweep call, mean over rounds);
* ``ratio_to_serial``: that over the serial sweep's, measured earlier in the same session;
* ``ray_start_s``: starting the local cluster (once, outside the rounds),
  ``with_start_per_minute``: the throughput of one round that pays it;
* ``planning_s``: the task that resolves the specs on the cluster (its first
  round also starts a worker process); ``store_writes_s``: the driver writing
  the runs the workers recorded;
* ``stages_s``: the runs' own stage times summed (the work), and ``rest_s``: the
  sweep's wall time not spent in a stage of some run, divided by the workers.

Run on demand: ``python -m pytest tests/benchmarks/test_sweep_throughput.py -m benchmark``,
on an otherwise idle machine (two torch processes sharing cores measure nothing).
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from sim2real_bench import ray_launcher, tracking
from sim2real_bench.plan import RunSpec
from sim2real_bench.registry import Registry
from sim2real_bench.store import CACHE_ENV
from sim2real_bench.config import DEFAULT_EXPERIMENT
from sim2real_bench.sweep import expand, sweep

REFINERS = ["none", "fda", "histmatch", "simgan"]
SEEDS = [0, 1]
COMBINATIONS = len(REFINERS) * len(SEEDS)
ROUNDS = 2
SERIAL_THREADS = 2
RESULTS: dict[str, float] = {}
"""Combinations per minute by launcher, shared by the module's benchmarks (serial runs first)."""


@pytest.fixture(scope="module")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the sweep experiment, made once; every round sweeps into a copy."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    start = time.perf_counter()
    tracking.experiment_id(tracking.client(f"sqlite:///{path}"), DEFAULT_EXPERIMENT)
    RESULTS["store_creation_s"] = time.perf_counter() - start
    return path


def rounds(tmp_path: Path, template: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], tuple[tuple, dict]]:
    """A pedantic ``setup``: each round gets a copy of the template store and a new cache."""
    numbers = itertools.count()

    def setup() -> tuple[tuple, dict]:
        folder = tmp_path / f"round-{next(numbers)}"
        folder.mkdir()
        shutil.copy(template, folder / "mlflow.db")
        monkeypatch.setenv(CACHE_ENV, str(folder / "cache"))
        return (f"sqlite:///{folder / 'mlflow.db'}",), {}

    return setup


def sweep_once(uri: str, launcher: object | None) -> None:
    """The benchmarked sweep; every combination must finish."""
    registry = Registry()
    specs = expand(RunSpec(refiner="none", task="gaze", budget="smoke"), REFINERS, ["gaze"], SEEDS, registry)
    result = sweep(specs, uri, progress=False, registry=registry, echo=lambda _: None, launcher=launcher)
    assert len(result.ran) == COMBINATIONS and not result.failed


def stage_seconds(tmp_path: Path) -> float:
    """The stage times of every run of every round, summed, per round."""
    total = 0.0
    for store in tmp_path.glob("round-*/mlflow.db"):
        client = MlflowClient(f"sqlite:///{store}")
        experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
        total += sum(value for found in client.search_runs([experiment])
                     for name, value in found.data.metrics.items() if name.startswith("time/"))
    return total / ROUNDS


def report(benchmark, name: str, workers: int, stages: float) -> None:
    """Fill ``extra_info`` with the throughput, the ratio to serial and where the rest of the time went."""
    mean = benchmark.stats.stats.mean
    RESULTS[name] = COMBINATIONS * 60 / mean
    benchmark.extra_info.update({
        "combinations": COMBINATIONS,
        "combinations_per_minute": RESULTS[name],
        "store_creation_s": RESULTS["store_creation_s"],
        "stages_s": stages,
        "rest_s": mean - stages / workers,
    })
    if "serial" in RESULTS:
        benchmark.extra_info["ratio_to_serial"] = RESULTS[name] / RESULTS["serial"]


def test_serial_sweep_with_two_threads(benchmark, tmp_path: Path, template_store: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(SERIAL_THREADS)
    try:
        benchmark.pedantic(lambda uri: sweep_once(uri, None), setup=rounds(tmp_path, template_store, monkeypatch),
                           rounds=ROUNDS)
    finally:
        torch.set_num_threads(threads)
    benchmark.extra_info["threads"] = SERIAL_THREADS
    report(benchmark, "serial", 1, stage_seconds(tmp_path))


@pytest.fixture
def ray_cluster(request: pytest.FixtureRequest) -> Iterator[float]:
    """A local Ray cluster of ``request.param`` CPUs; yields the seconds it took to start."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    start = time.perf_counter()
    ray.init(num_cpus=request.param, include_dashboard=False, log_to_driver=False)
    yield time.perf_counter() - start
    ray.shutdown()


@pytest.mark.parametrize("ray_cluster", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_ray_sweep_with_workers_of_one_thread(benchmark, ray_cluster: float, tmp_path: Path, template_store: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    workers = int(ray.cluster_resources()["CPU"])
    spent = {"planning_s": 0.0, "store_writes_s": 0.0}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                spent[name] += time.perf_counter() - start
        return wrapper

    monkeypatch.setattr(ray_launcher, "_write", timed("store_writes_s", ray_launcher._write))
    monkeypatch.setattr(ray_launcher.RayLauncher, "plan", timed("planning_s", ray_launcher.RayLauncher.plan))

    def on_ray(uri: str) -> None:
        sweep_once(uri, ray_launcher.connect(cpus_per_job=1))  # connect after setup: tasks get the round's cache

    benchmark.pedantic(on_ray, setup=rounds(tmp_path, template_store, monkeypatch), rounds=ROUNDS)
    report(benchmark, f"ray-{workers}", workers, stage_seconds(tmp_path))
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update({
        "workers": workers,
        "threads_per_worker": 1,
        "ray_start_s": ray_cluster,
        "with_start_per_minute": COMBINATIONS * 60 / (mean + ray_cluster),
        **{name: seconds / ROUNDS for name, seconds in spent.items()},
    })
