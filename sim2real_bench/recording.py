"""A run's logs recorded in the process that computes it and written to the store by another.

A SQLite store takes one writer, and nodes of a cluster may not see its file at
all, so a Ray worker computes its combination against a :class:`Recording` (the
part of ``MlflowClient`` that :class:`~sim2real_bench.tracking.Tracker` calls)
and returns it; the sweep's driver then writes it into the real run with
:meth:`Recording.replay`. Metrics keep the steps and timestamps they were logged
with and files their bytes, so the stored run is the one a direct run writes.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_bench.tracking import Tracker

if TYPE_CHECKING:
    from mlflow.entities import Metric, Param, RunTag

RECORDED_RUN = "recorded"
"""The run id a recording tracker logs under (the real one exists only once the driver replays it)."""


@dataclass(frozen=True)
class _File:
    """An artifact's bytes, kept because the file it was logged from is gone by the time it is replayed."""

    name: str
    data: bytes


@dataclass
class Recording:
    """Every call a :class:`Tracker` made on its client, in order, ready to be sent to another process."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def tracker(self) -> Tracker:
        """A tracker that logs into this recording."""
        return Tracker(self, RECORDED_RUN)  # type: ignore[arg-type]  # the subset of MlflowClient Tracker uses

    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
                  tags: Sequence[RunTag] = ()) -> None:
        """Record metrics, params and tags (MLflow entities, which keep their steps and timestamps)."""
        self.calls.append(("log_batch", (list(metrics), list(params), list(tags))))

    def log_image(self, run_id: str, image: np.ndarray, artifact_file: str) -> None:
        """Record an image artifact."""
        self.calls.append(("log_image", (image, artifact_file)))

    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> None:
        """Record a JSON artifact."""
        self.calls.append(("log_dict", (dictionary, artifact_file)))

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Record a run tag."""
        self.calls.append(("set_tag", (key, value)))

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Record a file artifact by its contents."""
        path = Path(local_path)
        self.calls.append(("log_artifact", (_File(path.name, path.read_bytes()), artifact_path)))

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        """Record a matplotlib figure as the image file ``artifact_file`` names (its suffix is the format)."""
        where = PurePosixPath(artifact_file)
        buffer = io.BytesIO()
        figure.savefig(buffer, format=where.suffix.lstrip(".") or "png")
        parent = str(where.parent) if str(where.parent) != "." else None
        self.calls.append(("log_artifact", (_File(where.name, buffer.getvalue()), parent)))

    def replay(self, tracker: Tracker) -> None:
        """Make every recorded call on ``tracker``'s client and run, in the order they were recorded."""
        with tempfile.TemporaryDirectory() as folder:
            for method, arguments in self.calls:
                if method == "log_artifact":
                    file, artifact_path = arguments
                    path = Path(folder) / file.name
                    path.write_bytes(file.data)
                    arguments = (str(path), artifact_path)
                getattr(tracker.client, method)(tracker.run_id, *arguments)
