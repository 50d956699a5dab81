"""The Ray launcher: the serial sweep's plan, skips, parent run and metrics, with combinations run as Ray tasks.

One local Ray cluster of 2 CPUs serves the module (it takes seconds to start).
Its workers run a setup hook that, while a marker file is armed, SIGKILLs the
first worker that writes a fit checkpoint: a worker killed mid-fit, once,
deterministically.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench import ray_launcher
from sim2real_bench.cli import main
from sim2real_bench.plan import RunSpec
from sim2real_bench.plugins.simgan.refiner import SMOKE as SIMGAN_SMOKE
from sim2real_bench.registry import Registry
from sim2real_bench.store import CACHE_ENV
from sim2real_bench.sweep import SweepResult, expand, sweep

SMOKE = RunSpec(refiner="none", task="gaze", budget="smoke")
TIMING = ("time/", "throughput/", "memory/")
"""Metrics that measure the machine, not the result."""
SWEEP_ARGS = ["sweep", "--refiners", "none", "--tasks", "gaze", "--seeds", "0", "--budget", "smoke", "--no-progress"]


def _kill_once_after_a_checkpoint(marker: Path) -> Callable[[], None]:
    """A worker setup hook: the first fit checkpoint saved while ``marker/armed`` exists SIGKILLs its process."""

    def install() -> None:
        from sim2real_bench import store

        save = store.save

        def save_then_die(state: object, path: Path) -> None:
            save(state, path)
            if path.name != "checkpoint.pt":
                return
            try:
                os.rename(marker / "armed", marker / "killed")  # atomic: exactly one worker wins
            except FileNotFoundError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

        store.save = save_then_die

    return install


@pytest.fixture(scope="module")
def kill_marker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray cluster of 2 CPUs for the module; yields the folder in which ``armed`` arms the kill."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    marker = tmp_path_factory.mktemp("kill")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _kill_once_after_a_checkpoint(marker)})
    yield marker
    ray.shutdown()


@dataclass(frozen=True)
class Swept:
    """A sweep that ran, and where its runs are."""

    result: SweepResult
    uri: str
    lines: list[str]


def swept(folder: Path, refiners: str, seeds: list[int], launcher: object | None, spec: RunSpec = SMOKE) -> Swept:
    """Sweep gaze with ``refiners`` x ``seeds`` into a new store and cache under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = store_in(folder)
    lines: list[str] = []
    registry = Registry()
    specs = expand(spec, refiners.split(","), ["gaze"], seeds, registry)
    result = sweep(specs, uri, progress=False, registry=registry, echo=lines.append, launcher=launcher)
    return Swept(result, uri, lines)


def on_ray(cache: Path) -> ray_launcher.RayLauncher:
    """A launcher of 1-CPU jobs on the module's cluster, its tasks caching under ``cache``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(cache))
        return ray_launcher.connect(cpus_per_job=1)


def runs(uri: str) -> list:
    """Every combination's run in the sweep experiment (not the parent), any status."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    return [found for found in client.search_runs([experiment]) if found.data.tags.get("s2r.role") != "sweep"]


def result_metrics(found) -> dict[str, float]:
    return {name: value for name, value in found.data.metrics.items() if not name.startswith(TIMING)}


@pytest.fixture(scope="module")
def ray_sweep(kill_marker: Path, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """none and fda on gaze, seeds 0 and 1 (4 combinations), on 2 Ray workers of 1 CPU each."""
    folder = tmp_path_factory.mktemp("ray-sweep")
    return swept(folder, "none,fda", [0, 1], on_ray(folder / "cache"))


def test_every_combination_finishes_exactly_once_under_one_parent(ray_sweep: Swept) -> None:
    result = ray_sweep.result
    assert len(result.ran) == 4 and not result.skipped and not result.failed
    found = runs(ray_sweep.uri)
    assert [run.info.status for run in found] == ["FINISHED"] * 4
    assert Counter(run.data.tags["s2r.combination"] for run in found) == Counter({key: 1 for key in result.ran})
    assert {run.data.tags["mlflow.parentRunId"] for run in found} == {result.parent_run_id}
    parent = MlflowClient(ray_sweep.uri).get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["gaze/fda/seeds"] == 2


def test_each_job_runs_torch_with_as_many_threads_as_its_cpus(ray_sweep: Swept) -> None:
    assert {run.data.params["device.name"] for run in runs(ray_sweep.uri)} == {"cpu (1 threads)"}


def test_recorded_runs_reach_the_store_whole(ray_sweep: Swept) -> None:
    client = MlflowClient(ray_sweep.uri)
    fda = next(run for run in runs(ray_sweep.uri) if run.data.params["refiner"] == "fda")
    artifacts = {item.path for item in client.list_artifacts(fda.info.run_id)}
    assert {"config.json", "samples", "refiner"} <= artifacts
    curve = client.get_metric_history(fda.info.run_id, "task/train_loss")
    assert curve and all(point.step > 0 for point in curve)


def test_metrics_equal_those_of_the_serial_launcher(ray_sweep: Swept, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray job: results may depend on the thread count in the last bits
    try:
        serial = swept(tmp_path, "none,fda", [1], None)  # two of the four, computed afresh (a new cache)
    finally:
        torch.set_num_threads(threads)
    here = {run.data.tags["s2r.combination"]: result_metrics(run) for run in runs(serial.uri)}
    on_cluster = {run.data.tags["s2r.combination"]: result_metrics(run) for run in runs(ray_sweep.uri)}
    assert len(here) == 2 and set(here) <= set(on_cluster)
    assert {key: on_cluster[key] for key in here} == here
    assert all(math.isfinite(value) for metrics in here.values() for value in metrics.values())


def test_a_relaunch_skips_every_finished_combination(ray_sweep: Swept) -> None:
    folder = Path(ray_sweep.uri.removeprefix("sqlite:///")).parent
    again = swept(folder, "none,fda", [0, 1], on_ray(folder / "cache"))
    assert again.result.parent_run_id == ray_sweep.result.parent_run_id
    assert not again.result.ran and set(again.result.skipped) == set(ray_sweep.result.ran)
    assert len(runs(ray_sweep.uri)) == 4


def test_a_worker_killed_mid_fit_is_retried_and_resumes_from_its_checkpoint(kill_marker: Path,
                                                                           tmp_path: Path) -> None:
    (kill_marker / "armed").touch()
    done = swept(tmp_path, "simgan", [0], on_ray(tmp_path / "cache"))
    assert (kill_marker / "killed").exists(), "no worker was killed: the fit wrote no checkpoint"
    assert len(done.result.ran) == 1 and not done.result.failed
    [found] = runs(done.uri)
    assert found.info.status == "FINISHED"
    assert found.data.tags["s2r.resumed_from_step"] == str(SIMGAN_SMOKE.checkpoint_every)  # its first checkpoint
    assert (tmp_path / "cache" / "fits").is_dir()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    """An MLflow tracking server on a new SQLite store, serving artifacts; yields its http:// URI."""
    port = _free_port()
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert server.poll() is None, "the MLflow server exited"
            assert time.monotonic() < deadline, "the MLflow server did not answer within 2 minutes"
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow  # starts an MLflow server as well as the cluster
def test_with_a_tracking_server_workers_log_their_own_runs(kill_marker: Path, tracking_server: str,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def driver_writes(*_: object) -> None:
        raise AssertionError("the driver wrote a run that a worker could have logged")

    monkeypatch.setattr(ray_launcher, "_write", driver_writes)
    registry = Registry()
    specs = expand(SMOKE, ["none"], ["gaze"], [0], registry)
    result = sweep(specs, tracking_server, progress=False, registry=registry, echo=lambda _: None,
                   launcher=on_ray(tmp_path / "cache"))
    assert len(result.ran) == 1 and not result.failed
    [found] = runs(tracking_server)
    assert found.info.status == "FINISHED" and found.data.tags["mlflow.parentRunId"] == result.parent_run_id
    client = MlflowClient(tracking_server)
    assert "config.json" in {item.path for item in client.list_artifacts(found.info.run_id)}


def fails_in_one_line(capsys: pytest.CaptureFixture, argv: list[str], says: str) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s2r-bench: error: "), lines
    assert says in lines[0]


def test_launcher_ray_without_ray_installed_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    fails_in_one_line(capsys, [*SWEEP_ARGS, "--launcher", "ray", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
                      'pip install -e ".[ray]"')
    assert not (tmp_path / "m.db").exists()


def test_an_unreachable_address_is_one_line_at_once(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    start = time.monotonic()
    fails_in_one_line(capsys, [*SWEEP_ARGS, "--launcher", "ray", "--address", f"127.0.0.1:{_free_port()}",
                               "--tracking-uri", f"sqlite:///{tmp_path}/m.db"], "no Ray cluster answers at 127.0.0.1:")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "m.db").exists()


def test_gpus_asked_for_on_a_cluster_without_any_are_one_line(kill_marker: Path, capsys: pytest.CaptureFixture,
                                                              tmp_path: Path) -> None:
    fails_in_one_line(capsys, [*SWEEP_ARGS, "--launcher", "ray", "--gpus-per-job", "1",
                               "--tracking-uri", f"sqlite:///{tmp_path}/m.db"], "asks for GPUs but the Ray cluster has none")
    assert not (tmp_path / "m.db").exists()


def test_ray_options_without_launcher_ray_are_refused(capsys: pytest.CaptureFixture) -> None:
    fails_in_one_line(capsys, [*SWEEP_ARGS, "--cpus-per-job", "2"], "only apply to --launcher ray")


def test_the_serial_launcher_never_imports_ray() -> None:
    probe = ("import sys\n"
             "from sim2real_bench.cli import _launcher, _parser\n"
             "from sim2real_bench import runner, stages, sweep\n"
             "from sim2real_bench.registry import default_registry\n"
             "default_registry()\n"
             f"assert _launcher(_parser().parse_args({SWEEP_ARGS!r})) is None\n"
             "sys.exit(10 if 'ray' in sys.modules else 0)\n")
    assert subprocess.run([sys.executable, "-c", probe], check=False, timeout=300).returncode == 0
