"""MLflow tracking: where runs go and a small buffered logger for them.

The store defaults to ``sqlite:///<cwd>/mlflow.db`` (the file store is deprecated
in MLflow 3); ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` override it. MLflow's
telemetry stays off unless the user set ``MLFLOW_DISABLE_TELEMETRY`` themselves.
``mlflow`` is imported lazily: it costs over a second and ``s2r-bench list`` needs none of it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_bench.errors import S2RError, TrackingError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else ``MLFLOW_TRACKING_URI``, else ./mlflow.db."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_tracking_uri(uri: str) -> None:
    """Fail early, with the fix, when a local store cannot be created or written."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        folder = path.parent
        if not folder.is_dir():
            raise TrackingError(f"tracking store folder {folder} does not exist; create it or pass --tracking-uri")
        target = path if path.exists() else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {path} is not writable; pass --tracking-uri to a writable place")
        if path.exists():
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                    connection.execute("PRAGMA schema_version").fetchone()
            except sqlite3.DatabaseError as error:
                raise TrackingError(f"tracking store {path} is not an SQLite database ({error})") from error
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingError(
            f"tracking URI {uri!r} is a file store, which MLflow 3 no longer supports; "
            "use sqlite:///PATH/mlflow.db or an http(s):// server"
        )


def client(uri: str) -> MlflowClient:
    """An MLflow client on ``uri`` (imports mlflow on first use)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, creating it on first use."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(name)


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
    """An MLflow run for the body of a ``with``: FINISHED when it completes, KILLED on Ctrl-C, FAILED otherwise.

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
        tracker.flush()
        mlflow_client.set_terminated(created.info.run_id, status)


def serve_ui(uri: str, host: str, port: int) -> None:
    """Run ``mlflow ui`` on ``uri`` until interrupted.

    One worker and no job execution: the UI only reads the store, and MLflow's
    job runner would start background processes a local benchmark store never needs.
    """
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    try:
        subprocess.run(command, env=environment, check=True)
    except subprocess.CalledProcessError as error:
        raise TrackingError(f"the MLflow UI exited with status {error.returncode} (is port {port} free? "
                            "pass --port)") from error
