"""``s2r-bench ui`` lands on the comparison of refiners, and stopping it stops the whole server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench import tracking, ui
from sim2real_bench.registry import Registry

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))
PRIMARY = "target/angular_error"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module: creating one costs seconds of migrations."""
    uri = store_in(tmp_path_factory.mktemp("ui"))
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


def log_run(client: MlflowClient, experiment_id: str, refiner: str, seed: int, metrics: dict[str, float],
            parent: str | None = None, status: str = "FINISHED") -> str:
    """A benchmark run as ``s2r-bench run`` logs it (only the fields the UI and the aggregates read)."""
    tags = {"s2r.refiner": refiner, "s2r.task": "gaze", "s2r.seed": str(seed), "s2r.role": "refiner"}
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment_id, run_name=f"{refiner}-gaze-s{seed}", tags=tags).info.run_id
    client.log_param(run_id, "primary_metric", PRIMARY)
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
    client.set_terminated(run_id, status)
    return run_id


def sweep_parent(client: MlflowClient, experiment_id: str) -> str:
    return client.create_run(experiment_id, run_name="sweep", tags={"s2r.role": "sweep"}).info.run_id


def test_experiments_the_project_creates_or_logs_into_are_model_development(store: str) -> None:
    client = MlflowClient(store)
    created = tracking.experiment_id(client, "fresh")
    untagged = client.create_experiment("made-elsewhere")
    assert tracking.experiment_id(client, "made-elsewhere") == untagged
    for experiment in (created, untagged):
        assert client.get_experiment(experiment).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_a_run_interrupted_inside_tracked_run_ends_killed(store: str) -> None:
    with pytest.raises(KeyboardInterrupt), tracking.tracked_run(store, "interrupted", "r", {}) as tracker:
        raise KeyboardInterrupt
    assert MlflowClient(store).get_run(tracker.run_id).info.status == "KILLED"


def test_sweep_aggregates_are_mean_and_se_over_the_finished_seeds_per_refiner(store: str, registry: Registry) -> None:
    client = MlflowClient(store)
    experiment = tracking.experiment_id(client, "aggregates")
    parent = sweep_parent(client, experiment)
    for seed, error in enumerate([10.0, 12.0, 14.0]):
        log_run(client, experiment, "simgan", seed, {PRIMARY: error, "target/within_7deg": 50.0 + seed}, parent)
    log_run(client, experiment, "none", 0, {PRIMARY: 20.0, "target/within_7deg": 5.0}, parent)
    log_run(client, experiment, "simgan", 3, {PRIMARY: 99.0}, parent, status="FAILED")
    log_run(client, experiment, "simgan", 4, {PRIMARY: 99.0})  # no parent: another run in the experiment

    logged = tracking.log_sweep_aggregates(client, parent, registry)

    metrics = client.get_run(parent).data.metrics
    assert metrics == logged
    assert metrics["gaze/simgan/target/angular_error/mean"] == pytest.approx(12.0)
    assert metrics["gaze/simgan/target/angular_error/se"] == pytest.approx(2.0 / 3**0.5)
    assert metrics["gaze/simgan/target/within_7deg/mean"] == pytest.approx(51.0)
    assert metrics["gaze/simgan/seeds"] == 3
    assert metrics["gaze/none/target/angular_error/mean"] == 20.0
    assert "gaze/none/target/angular_error/se" not in metrics  # one seed has no standard error
    assert metrics["gaze/none/seeds"] == 1


def test_a_seed_run_twice_counts_once_with_its_latest_run(store: str, registry: Registry) -> None:
    client = MlflowClient(store)
    experiment = tracking.experiment_id(client, "rerun")
    parent = sweep_parent(client, experiment)
    log_run(client, experiment, "fda", 0, {PRIMARY: 30.0}, parent)
    time.sleep(0.01)
    log_run(client, experiment, "fda", 0, {PRIMARY: 10.0}, parent)
    logged = tracking.log_sweep_aggregates(client, parent, registry)
    assert logged["gaze/fda/target/angular_error/mean"] == 10.0 and logged["gaze/fda/seeds"] == 1


def test_metric_names_keep_to_mlflows_characters() -> None:
    assert tracking.metric_name("gaze", "my+refiner", "target/angular_error", "mean") == \
        "gaze/my_refiner/target/angular_error/mean"


def test_the_landing_view_shows_headline_metrics_sorted_by_the_primary_one_grouped_by_refiner(
        store: str, registry: Registry) -> None:
    client = MlflowClient(store)
    experiment = tracking.experiment_id(client, "landing")
    for refiner in ("none", "histmatch"):
        log_run(client, experiment, refiner, 0, {PRIMARY: 9.0, "target/within_7deg": 40.0, "source/angular_error": 3.0})

    landing = ui.prepare_landing(client, "landing", registry)

    assert landing.fragment == (f"#/experiments/{experiment}/runs?viewStateShareKey={ui.VIEW_ID}"
                                "&workflowType=machine_learning")
    assert landing.state["orderByKey"] == f"metrics.`{PRIMARY}`" and landing.state["orderByAsc"] is True
    assert landing.state["selectedColumns"][:3] == [
        f"metrics.`{PRIMARY}`", "metrics.`target/within_7deg`", "metrics.`source/angular_error`"]
    assert landing.state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "s2r.refiner"}]
    saved = json.loads(client.get_experiment(experiment).tags[ui.VIEW_TAG])
    assert saved["name"] == ui.VIEW_NAME and json.loads(saved["state"]) == landing.state


def test_a_non_loopback_host_is_allowed_with_a_warning_and_loopback_without() -> None:
    port = free_port()
    assert ui.check_address("127.0.0.1", port) and ui.check_address("localhost", port)
    assert not ui.check_address("0.0.0.0", port)
    warning = ui.exposure_warning("0.0.0.0", port)
    assert f"everyone who can reach this machine on port {port}" in warning and "--host 127.0.0.1" in warning


def group_of_children(pid: int) -> tuple[int, list[int]]:
    """The process group the ui process started its server in, and that group's processes."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    leader = next(child for child, fields in stats.items() if int(fields[1]) == pid)
    group = int(stats[leader][2])
    return group, [member for member, fields in stats.items() if int(fields[2]) == group]


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rest(port: int, path: str, body: dict | None = None) -> dict:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_ui_lands_on_the_sweep_and_a_sigterm_stops_the_whole_server(store: str, registry: Registry) -> None:
    client = MlflowClient(store)
    experiment = client.create_experiment("sweep-in-ui")  # untagged, as older versions left it
    parent = sweep_parent(client, experiment)
    for seed in (0, 1):
        log_run(client, experiment, "simgan", seed, {PRIMARY: 8.0 + seed}, parent)
    tracking.log_sweep_aggregates(client, parent, registry)
    port = free_port()
    process = subprocess.Popen([CONSOLE_SCRIPT, "ui", "--tracking-uri", store, "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == (
            f"MLflow UI for {store} at http://127.0.0.1:{port} (Ctrl-C stops it)")
        assert process.stdout.readline().strip().endswith(
            f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?viewStateShareKey={ui.VIEW_ID}"
            "&workflowType=machine_learning")
        deadline = time.monotonic() + 120
        while True:
            try:
                found = rest(port, "experiments/search?max_results=100")
                break
            except OSError:
                assert process.poll() is None, "the UI exited"
                assert time.monotonic() < deadline, "the UI did not answer within 2 minutes"
                time.sleep(0.5)
        tags = {tag["key"]: tag["value"] for tag in
                next(item for item in found["experiments"] if item["experiment_id"] == experiment)["tags"]}
        assert tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
        assert json.loads(json.loads(tags[ui.VIEW_TAG])["state"])["orderByKey"] == f"metrics.`{PRIMARY}`"
        parents = rest(port, "runs/search", {"experiment_ids": [experiment],
                                             "filter": "tags.`s2r.role` = 'sweep'"})["runs"]
        metrics = {metric["key"]: metric["value"] for metric in parents[0]["data"]["metrics"]}
        assert metrics["gaze/simgan/target/angular_error/mean"] == pytest.approx(8.5)
        assert metrics["gaze/simgan/target/angular_error/se"] == pytest.approx(0.5)
        group, members = group_of_children(process.pid)
        assert len(members) >= 2, "mlflow ui and its uvicorn server"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert stderr.strip().splitlines()[-1] == "s2r-bench: stopped the MLflow UI"
    assert not [member for member in members if alive(member)]
    assert not [pid for pid in ui._group_members(group) if alive(pid)], "a process of the server's group survived"
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_ui_refuses_a_broken_store(tmp_path: Path) -> None:
    broken = tmp_path / "mlflow.db"
    broken.write_text("not a database")
    finished = subprocess.run([CONSOLE_SCRIPT, "ui", "--tracking-uri", f"sqlite:///{broken}"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert "is not an SQLite database" in finished.stderr
