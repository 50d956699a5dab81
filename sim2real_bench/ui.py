"""``s2r-bench ui``: MLflow's UI on the project's store, opening on the comparison of refiners.

MLflow 3.17's runs table reads only filter and sort from the URL (``searchFilter``,
``orderByKey``, ``orderByAsc``, ``startTime``, ``lifecycleFilter``,
``modelVersionFilter``, ``datasetsFilter``); visible columns and grouping are
UI state, kept in the browser. A *saved view* carries both: an experiment tag
``mlflow.sharedViewState.<id>`` holding ``{"name", "createdAt", "state"}``,
opened by ``#/experiments/<id>/runs?viewStateShareKey=<id>`` and listed in the
UI's "Saved views" menu. The landing link is such a view, rewritten at every start;
``workflowType=machine_learning`` in the link switches the sidebar to model training.
The UI's Assistant panel opens by itself on a browser's first visit (browser
state, nothing the server or the link can switch off).

The server runs in its own process group, so stopping ``ui`` (Ctrl-C, SIGTERM)
stops every process MLflow started (its uvicorn server among them).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim2real_bench import signals, tracking
from sim2real_bench.errors import ConfigError, TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from sim2real_bench.registry import Registry

VIEW_ID = "s2r-bench"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
VIEW_NAME = "s2r-bench: refiners compared"
GROUP_TAG = "s2r.refiner"
MAX_VIEW_CHARS = 20000
"""The longest saved view the UI accepts (and MLflow's limit on an experiment tag's value)."""
READY_SECONDS = 120.0
"""How long ``--open`` waits for the server to answer before giving up on the browser."""
STOP_SECONDS = 10.0
"""How long the server gets to exit after SIGTERM before its process group is killed."""
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def check_address(host: str, port: int) -> bool:
    """Refuse a port or host the server could not listen on (by binding it here first); True for a loopback host."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port; pass one from 1 to 65535, e.g. --port 5000")
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({error.strerror}); "
                          "pass --host 127.0.0.1") from error
    with socket.socket(family, kind, protocol) as probe:
        # As uvicorn does; without it a port that served a moment ago would look busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except PermissionError as error:
            raise ConfigError(f"--port {port} needs administrator rights on this machine; pass a port above 1023, "
                              "e.g. --port 5000") from error
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use (another MLflow UI?); stop that program or pass "
                                  f"--port {free_port(host, port)}") from error
            raise ConfigError(f"cannot listen on {host} port {port} ({error.strerror}); "
                              "pass --host 127.0.0.1 or another --port") from error
    return host.lower() in LOOPBACK_NAMES or ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback


def free_port(host: str, after: int) -> int:
    """A port near ``after`` that ``host`` can listen on now (for the suggestion in a refusal)."""
    for port in [*range(after + 1, min(after + 50, 65535) + 1), 0]:
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                return probe.getsockname()[1]
        except OSError:
            continue
    return after + 1


def exposure_warning(host: str, port: int) -> str:
    """The one line printed when the UI listens beyond this machine."""
    return (f"s2r-bench: warning: --host {host} serves the MLflow UI to the network: everyone who can reach this "
            f"machine on port {port} can read and change the tracking store (there is no login); "
            "pass --host 127.0.0.1 to keep it to this machine")


def base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server listening on ``host``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class Landing:
    """What the UI opens on: the runs of one experiment with the benchmark's saved view, or the experiment list."""

    fragment: str
    """The part of the URL after the server's address, e.g. ``#/experiments/1/runs?viewStateShareKey=s2r-bench``
    (``workflowType=machine_learning`` too: the UI's sidebar otherwise starts in its GenAI mode)."""
    experiment: str | None = None
    """The experiment's name; None when the store has no runs yet."""
    state: dict[str, Any] | None = None
    """The saved view's state (sort, columns, grouping)."""

    def url(self, base: str) -> str:
        """The full link on the server at ``base``."""
        return f"{base}/{self.fragment}"


def _key(kind: str, name: str) -> str:
    """A column or sort key as the runs table names it."""
    return f"{kind}.`{name}`"


def _task_classes(registry: Registry | None) -> dict[str, Any]:
    if registry is None:
        from sim2real_bench.registry import default_registry

        registry = default_registry()
    return {name: entry.factory for name, entry in registry.entries("tasks").items()}


def view_state(runs: Sequence[Run], task_classes: dict[str, Any]) -> dict[str, Any]:
    """The runs table's state for ``runs`` (newest first): the headline metrics of their tasks as columns, sorted
    by the newest run's primary metric (best first), runs grouped by refiner with the mean over each group,
    and for sweep parents the per-refiner means of the primary metric that :func:`tracking.log_sweep_aggregates`
    logs."""
    logged = {name for run in runs for name in run.data.metrics}
    results = [run for run in runs if "primary_metric" in run.data.params and "s2r.task" in run.data.tags]
    tasks = list(dict.fromkeys(run.data.tags["s2r.task"] for run in results))
    primary = {task: next(run.data.params["primary_metric"] for run in results if run.data.tags["s2r.task"] == task)
               for task in tasks}
    metrics: list[str] = []
    for task in tasks:
        headline = getattr(task_classes.get(task), "headline_metrics", ())
        short = primary[task].removeprefix("target/")
        metrics += [primary[task], *(f"target/{name}" for name in headline), f"source/{short}",
                    f"label_shift/{short}", "realism/classifier_accuracy"]
    refiners = sorted({run.data.tags.get("s2r.refiner", "") for run in results} - {""},
                      key=lambda name: (name != "none", name == "oracle", name))
    for task in tasks:
        metrics += [tracking.metric_name(task, refiner, primary[task], "mean") for refiner in refiners]
    columns = [_key("metrics", name) for name in dict.fromkeys(metrics) if name in logged]
    columns += [_key("tags", "s2r.seed"), _key("attributes", "Duration")]
    state: dict[str, Any] = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {column: 150 for column in columns if column.startswith("metrics.")},
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
        # Runs without the tag (sweep parents) fall in "Additional runs", collapsed unless its id says otherwise.
        "groupsExpanded": {f"tag.{GROUP_TAG}": True},
    }
    if tasks:
        lower_is_better = getattr(task_classes.get(tasks[0]), "lower_is_better", True)
        state.update(orderByKey=_key("metrics", primary[tasks[0]]), orderByAsc=bool(lower_is_better))
    return state


def _tag_benchmark_experiments(mlflow_client: MlflowClient, experiments: Sequence[Any]) -> None:
    """Tag as model development every experiment holding s2r-bench runs that no one gave a kind."""
    for experiment in experiments:
        if tracking.EXPERIMENT_KIND_TAG in experiment.tags:
            continue
        if mlflow_client.search_runs([experiment.experiment_id], "tags.`s2r.role` LIKE '%'", max_results=1):
            mlflow_client.set_experiment_tag(experiment.experiment_id, tracking.EXPERIMENT_KIND_TAG,
                                             tracking.EXPERIMENT_KIND)


def prepare_landing(mlflow_client: MlflowClient, experiment: str | None = None,
                    registry: Registry | None = None) -> Landing:
    """Write the benchmark's saved view into ``experiment`` (default: the one with the newest run) and link to it."""
    experiments = mlflow_client.search_experiments()
    _tag_benchmark_experiments(mlflow_client, experiments)
    if experiment is not None:
        chosen = mlflow_client.get_experiment_by_name(experiment)
        if chosen is None or chosen.lifecycle_stage != "active":
            known = ", ".join(sorted(found.name for found in experiments)) or "(none)"
            raise ConfigError(f"no experiment {experiment!r} in this store; experiments: {known}")
        chosen_id = chosen.experiment_id
    else:
        newest = mlflow_client.search_runs([found.experiment_id for found in experiments], max_results=1,
                                           order_by=["attributes.start_time DESC"]) if experiments else []
        if not newest:
            return Landing("#/experiments")
        chosen_id = newest[0].info.experiment_id
    runs = mlflow_client.search_runs([chosen_id], max_results=500, order_by=["attributes.start_time DESC"])
    state = view_state(runs, _task_classes(registry))
    now = int(time.time() * 1000)
    envelope = json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state)})
    if len(envelope) > MAX_VIEW_CHARS:  # very many tasks and refiners: keep the columns, lose order and widths
        state = {key: value for key, value in state.items() if key not in ("columnOrder", "columnWidths")}
        envelope = json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": json.dumps(state)})
    mlflow_client.set_experiment_tag(chosen_id, VIEW_TAG, envelope)
    if tracking.EXPERIMENT_KIND_TAG not in mlflow_client.get_experiment(chosen_id).tags:
        mlflow_client.set_experiment_tag(chosen_id, tracking.EXPERIMENT_KIND_TAG, tracking.EXPERIMENT_KIND)
    name = mlflow_client.get_experiment(chosen_id).name
    return Landing(f"#/experiments/{chosen_id}/runs?viewStateShareKey={VIEW_ID}&workflowType=machine_learning",
                   name, state)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes of process group ``group``."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name (which may hold spaces): state, ppid, pgrp.
            state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group led by ``process``, wait for all of it, SIGKILL what is left after a while."""
    with signals.signals_ignored():
        for number in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, number)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + STOP_SECONDS
            while time.monotonic() < deadline:
                if process.poll() is not None and not _group_members(process.pid):
                    return
                time.sleep(0.1)


def serve(uri: str, host: str, port: int, on_ready: Callable[[], None] | None = None) -> None:
    """Run ``mlflow ui`` on ``uri`` until it exits or this process is interrupted, then stop all of it.

    One worker and no job execution: the UI only reads the store, and MLflow's
    job runner would start background processes a local benchmark store never needs.
    ``on_ready`` is called once the server answers (``--open`` opens the browser then).
    """
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    process = subprocess.Popen(command, env=environment, start_new_session=True)
    try:
        if on_ready is not None:
            health = f"{base_url(host, port)}/health"
            deadline = time.monotonic() + READY_SECONDS
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(health):
                    on_ready()
                    break
                time.sleep(0.5)
        status = process.wait()
    finally:
        stop_group(process)
    if status != 0:
        raise TrackingError(f"the MLflow UI exited with status {status} (its messages are above); "
                            f"check --tracking-uri and that port {port} is free")
