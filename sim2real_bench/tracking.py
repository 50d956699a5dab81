"""MLflow tracking: where runs go, what the UI shows of them, and a small buffered logger.

The store defaults to ``sqlite:///<cwd>/mlflow.db`` (the file store is deprecated
in MLflow 3); ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` override it. MLflow's
telemetry stays off unless the user set ``MLFLOW_DISABLE_TELEMETRY`` themselves.
``mlflow`` is imported lazily: it costs over a second and ``s2r-bench list`` needs none of it.

Every experiment the project creates or logs into is tagged
``mlflow.experimentKind=custom_model_development``: without it MLflow 3's UI
opens experiments on its GenAI views (traces, token usage) instead of the runs table.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_bench import locks
from sim2real_bench.errors import S2RError, TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from sim2real_bench.registry import Registry

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``MLFLOW_TRACKING_URI``, else ./mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


SUPPORTED_STORES = ("sqlite:///PATH (a local file), http(s)://HOST (a tracking server), "
                    "postgresql://... or mysql://...")
_SCHEMES = {"sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks"}
"""URI schemes MLflow stores; a driver suffix (``postgresql+psycopg2``) is allowed."""
_MLFLOW_TABLES = {"alembic_version", "experiments"}
"""Tables every MLflow SQL store has; a non-empty database without them belongs to someone else."""


def check_tracking_uri(uri: str) -> None:
    """Refuse, with the fix, a tracking URI that MLflow would hang on, misread, or that would harm someone's file.

    Runs before any data is loaded; it only touches the local file system (no server is contacted).
    """
    scheme, separator, _ = uri.partition("://")
    if uri.startswith("file:") or not separator:
        if uri.strip().lower() == "databricks":
            return
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 no longer supports; "
            "use sqlite:///PATH/mlflow.db or an http(s):// server"
        )
    if scheme.split("+", 1)[0].lower() not in _SCHEMES:
        raise TrackingError(f"tracking URI {uri!r} has the unknown scheme {scheme + '://'!r}; "
                            f"supported: {SUPPORTED_STORES}")
    if scheme.lower() == "sqlite":
        _check_sqlite_store(uri)


def check_store_exists(uri: str) -> None:
    """Refuse a local store file that is not there: a command that only reads it would create an empty one."""
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(f"no tracking store at {path}; pass the --tracking-uri that run or sweep wrote to "
                            "(default: mlflow.db in the folder they ran in)")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the current folder unless absolute), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _check_sqlite_store(uri: str) -> None:
    path = sqlite_path(uri)
    rest = uri.removeprefix("sqlite://").split("?", 1)[0]
    if path is None and rest and rest != ":memory:":
        raise TrackingError(
            f"tracking URI {uri!r} has two slashes after 'sqlite:', so {rest.split('/', 1)[0]!r} is read as a "
            f"host name; use sqlite:///{rest} (three slashes: relative to the current folder) or "
            f"sqlite:////absolute/path/{Path(rest).name or 'mlflow.db'}"
        )
    if path is None or str(path) in ("", ".", ":memory:"):
        raise TrackingError(f"tracking URI {uri!r} is an in-memory database that is lost when the command ends; "
                            "use sqlite:///mlflow.db or an absolute path")
    folder = path.parent
    if not folder.is_dir():
        raise TrackingError(f"tracking store folder {folder} does not exist; create it or pass --tracking-uri")
    if path.is_dir():
        raise TrackingError(f"tracking store {path} is a folder, not a database file; "
                            f"pass --tracking-uri sqlite:///{path / 'mlflow.db'}")
    _check_writable(folder, path)
    if path.exists() and path.stat().st_size > 0:
        _check_mlflow_database(path)


def _check_writable(folder: Path, path: Path) -> None:
    """Write a scratch file beside the store (SQLite writes its journal there), and open the store for writing.

    A real write, not ``os.access``: root passes ``os.access`` on /proc and on
    read-only mounts, where SQLite then retries for minutes before failing.
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".s2r-write-test-"):
            pass
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
    except OSError as error:
        where = f"tracking store {path}" if path.exists() else f"folder {folder} of tracking store {path.name}"
        raise TrackingError(f"cannot write to the {where} ({error.strerror}); pass --tracking-uri "
                            "sqlite:///PATH/mlflow.db in a folder you can write") from error


def _check_mlflow_database(path: Path) -> None:
    """An existing database must be SQLite and, unless it is empty, an MLflow store: never migrate a stranger's."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError as error:
        raise TrackingError(f"tracking store {path} cannot be read ({error}); close what holds it, "
                            "or pass --tracking-uri with another file") from error
    except sqlite3.DatabaseError as error:
        raise TrackingError(f"tracking store {path} is not an SQLite database ({error}); "
                            "pass --tracking-uri with a new file or an MLflow store") from error
    if tables and not _MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TrackingError(f"tracking store {path} is another application's SQLite database (tables: {shown}), "
                            "not an MLflow store, and MLflow would add its tables to it; pass --tracking-uri "
                            "sqlite:///PATH with a new file")


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold the tracking store for one sweep: a second sweep on the same store fails at once, naming the first.

    An exclusive, non-blocking ``flock`` on ``<database>.lock`` beside a
    ``sqlite:///`` store; the kernel releases it when the holder exits, however it
    exits. Other stores (a tracking server, a SQL server) are not locked.
    """
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    lock = path.with_name(path.name + ".lock")

    def refused(holder: str) -> TrackingError:
        return TrackingError(f"another sweep (pid {holder}) is using the tracking store {path}; wait for it to "
                             "finish (one sweep per store), or pass --tracking-uri with another store")

    try:
        lock.touch(exist_ok=True)
    except OSError as error:
        raise TrackingError(f"cannot create the lock file {lock} ({error.strerror}); "
                            "pass --tracking-uri in a folder you can write") from error
    with locks.held(lock, refused):
        yield


def client(uri: str) -> MlflowClient:
    """An MLflow client on ``uri`` (imports mlflow on first use)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The experiment kind of MLflow 3's model-training views (runs table, metric charts)."""


def artifact_folder(uri: str, name: str) -> str | None:
    """Where a new experiment of a local SQLite store keeps its artifacts: ``mlruns/NAME`` beside the database.

    MLflow's own default, ``./mlruns``, follows the folder the experiment's first
    run started in, so one store's artifacts would scatter over every folder
    that ``s2r-bench`` ran from. None for other stores (a server keeps its own).
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    return str(database.parent / "mlruns" / re.sub(r"[^\w.-]", "_", name))


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, creating it on first use; either way tagged as model development."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return mlflow_client.create_experiment(name, artifact_location=artifact_folder(mlflow_client.tracking_uri, name),
                                               tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(f"experiment {name!r} was deleted in this store; restore it with "
                            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
                            "or pass --experiment with another name")
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def metric_name(*parts: str) -> str:
    """Join ``parts`` with slashes into a name MLflow accepts (other characters become ``_``)."""
    cleaned = (re.sub(r"[^\w.\- :/]", "_", part) for part in parts)
    return "/".join(re.sub(r"/+", "/", part).strip("/") or "_" for part in cleaned)


def _runs(mlflow_client: MlflowClient, experiment: str, filter_string: str) -> list[Run]:
    """Every run of ``experiment`` matching ``filter_string``, newest first (all pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow_client.search_runs([experiment], filter_string, max_results=5000,
                                         order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def log_sweep_aggregates(mlflow_client: MlflowClient, parent_run_id: str,
                         registry: Registry | None = None) -> dict[str, float]:
    """Log on a sweep's parent run, per task and refiner, the mean and standard error over seeds of the
    primary and headline target metrics of its FINISHED child runs; return what was logged.

    Names are ``TASK/REFINER/METRIC/mean`` and ``.../se`` (no ``se`` for a single
    seed) plus ``TASK/REFINER/seeds``, e.g. ``gaze/simgan/target/angular_error/mean``,
    so the parent's row in the MLflow runs table already tells the sweep's story.
    A seed run more than once counts once, with its latest run.
    """
    from mlflow.entities import Metric

    if registry is None:
        from sim2real_bench.registry import default_registry

        registry = default_registry()
    tasks = registry.entries("tasks")
    parent = mlflow_client.get_run(parent_run_id)
    children = _runs(mlflow_client, parent.info.experiment_id,
                     f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'")
    latest: dict[tuple[str, str, str], Run] = {}
    for child in children:
        tags = child.data.tags
        if "s2r.task" in tags and "s2r.refiner" in tags and "primary_metric" in child.data.params:
            latest.setdefault((tags["s2r.task"], tags["s2r.refiner"], tags.get("s2r.seed", child.info.run_id)), child)
    groups: dict[tuple[str, str], list[Run]] = {}
    for (task, refiner, _), child in latest.items():
        groups.setdefault((task, refiner), []).append(child)
    aggregates: dict[str, float] = {}
    for (task, refiner), members in sorted(groups.items()):
        headline = tasks[task].factory.headline_metrics if task in tasks else ()
        names = [members[0].data.params["primary_metric"], *(f"target/{name}" for name in headline)]
        for name in dict.fromkeys(names):
            values = [run.data.metrics[name] for run in members
                      if name in run.data.metrics and math.isfinite(run.data.metrics[name])]
            if not values:
                continue
            mean, se = _mean_se(values)
            aggregates[metric_name(task, refiner, name, "mean")] = mean
            if se is not None:
                aggregates[metric_name(task, refiner, name, "se")] = se
        aggregates[metric_name(task, refiner, "seeds")] = float(len(members))
    stamp = int(time.time() * 1000)
    metrics = [Metric(key, value, stamp, 0) for key, value in aggregates.items()]
    for start in range(0, len(metrics), 1000):
        mlflow_client.log_batch(parent_run_id, metrics=metrics[start : start + 1000])
    return aggregates


class Tracker:
    """Logs one run's params, per-step metrics and artifacts; metrics go in batches.

    Logging every step straight to SQLite costs milliseconds a call; buffering
    keeps tracking out of the training loop's time.
    """

    flush_every = 500
    flush_seconds = 15.0
    """Queued metrics are written at least this often, so the UI follows a long fit."""

    def __init__(self, mlflow_client: MlflowClient | None, run_id: str | None) -> None:
        self.client = mlflow_client
        self.run_id = run_id
        self._metrics: list[Any] = []
        self._flushed_at = time.monotonic()

    @classmethod
    def disabled(cls) -> Tracker:
        """A tracker that records nothing (unit tests, library use without MLflow)."""
        return cls(None, None)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log run parameters (values are stringified by MLflow)."""
        if self.client is None:
            return
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Queue metrics at ``step``; they are written in batches."""
        if self.client is None:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._metrics.extend(Metric(key, float(value), stamp, step) for key, value in metrics.items())
        if len(self._metrics) >= self.flush_every or time.monotonic() - self._flushed_at > self.flush_seconds:
            self.flush()

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        """Log an ``(H, W)`` or ``(H, W, 3)`` uint8 image as a PNG artifact."""
        if self.client is not None:
            self.client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        """Copy a local file into the run's artifacts under ``artifact_path``."""
        if self.client is not None:
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Log a JSON artifact."""
        if self.client is not None:
            self.client.log_dict(self.run_id, data, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as an artifact."""
        if self.client is not None:
            self.client.log_figure(self.run_id, figure, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set run tags."""
        if self.client is None:
            return
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def flush(self) -> None:
        """Write queued metrics."""
        if self.client is None or not self._metrics:
            return
        for start in range(0, len(self._metrics), 1000):
            self.client.log_batch(self.run_id, metrics=self._metrics[start : start + 1000])
        self._metrics = []
        self._flushed_at = time.monotonic()


@contextmanager
def tracked_run(uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Tracker]:
    """An MLflow run for the body of a ``with``: FINISHED when it completes, KILLED on Ctrl-C or SIGTERM (which
    the CLI delivers as :class:`KeyboardInterrupt`), FAILED otherwise.

    A user-facing error (:class:`S2RError`) is kept as the run's ``s2r.failure`` tag.
    """
    check_tracking_uri(uri)
    mlflow_client = client(uri)
    created = mlflow_client.create_run(experiment_id(mlflow_client, experiment), run_name=run_name, tags=tags)
    tracker = Tracker(mlflow_client, created.info.run_id)
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except S2RError as error:
        tracker.set_tags({"s2r.failure": str(error)})
        raise
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            tracker.flush()
        finally:
            mlflow_client.set_terminated(created.info.run_id, status)
