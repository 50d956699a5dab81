"""The Ray launcher: each pending combination of a sweep is one Ray task, on a local or a remote cluster.

``s2r-bench sweep --launcher ray`` plans, skips and keeps its parent run exactly
as the serial sweep does (``sim2real_bench.sweep``); only running the pending
combinations differs.

* **Resources.** Every task asks for ``--cpus-per-job`` CPUs (default 1) and
  ``--gpus-per-job`` GPUs (default: one where the cluster has GPUs and
  ``--device`` is not ``cpu``; a fraction shares a GPU). Ray's requests do not
  limit what a process uses, so each task sets torch's threads and the file
  decoding processes (``S2R_BENCH_WORKERS``) to its CPUs: two torch processes of
  two threads each on two cores run many times slower than one (facts.md).
* **Planning.** The specs are resolved by one task with a job's resources, so
  ``--device auto`` and ``--precision auto`` mean what the workers have (a GPU
  node behind a CPU-only head) and every user mistake still surfaces before any
  combination runs.
* **Tracking.** A tracking server (``http(s)://``, e.g. ``s2r-bench ui`` or
  ``mlflow server``) takes parallel writers: each task logs its own nested run.
  Any other store (a local SQLite file takes one writer, and other nodes cannot
  see it) is written by the driver alone, from the logs each task records and
  returns (``sim2real_bench.recording``). The driver creates the store and the
  experiment before any task starts.
* **Failures.** A task whose worker dies (killed, out of memory, its node lost)
  is retried by Ray up to :data:`RETRIES` times; the retry resumes the refiner
  fit from its last checkpoint in the cache, and a run the dead worker left
  RUNNING on a tracking server is marked KILLED. A combination whose worker
  dies every time is reported failed and the sweep goes on.
* **Caches.** The driver's ``$S2R_BENCH_CACHE``, when set, is handed to every
  task: name a folder that every node mounts at that same path. Without a shared
  cache each node keeps its own, so a retry on another node and a later run
  refit from scratch: more work, never a wrong result (every entry is keyed by
  what it was computed from).

Ray is an optional extra (``pip install -e ".[ray]"``), imported only when this
launcher connects. A process already connected to Ray (library use, tests) keeps
its connection.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sim2real_bench import runner
from sim2real_bench.errors import ClusterError, ConfigError, DeviceError, S2RError
from sim2real_bench.plan import Plan, RunSpec, resolve
from sim2real_bench.recording import Recording
from sim2real_bench.registry import default_registry
from sim2real_bench.runner import RunResult
from sim2real_bench.store import CACHE_ENV
from sim2real_bench.sweep import Destination, Echo, Job, Outcome, mark_stale_runs_killed, run_job

if TYPE_CHECKING:
    from sim2real_bench.registry import Registry

RETRIES = 3
"""How often Ray reruns a task whose worker died before the combination counts as failed."""
CONNECT_SECONDS = 5.0
"""How long a ``HOST:PORT`` address gets to accept a connection (Ray itself would wait minutes)."""
WORKERS_ENV = "S2R_BENCH_WORKERS"
SERVER_SCHEMES = ("http", "https")
"""Stores that take parallel writers, so that tasks log their own runs."""


@dataclass(frozen=True)
class Recorded:
    """What a task returns when the driver writes the store: the run's logs, and its metrics or its error."""

    recording: Recording
    metrics: dict[str, float] = field(default_factory=dict)
    error: S2RError | None = None


@dataclass(frozen=True)
class Environment:
    """What a task sets in its worker process before it plans or runs: its thread count and the shared cache."""

    threads: int
    cache: str | None

    def apply(self) -> None:
        """Set torch's threads and the decoding processes to the job's CPUs; point the cache where the driver's is."""
        import torch

        torch.set_num_threads(self.threads)
        os.environ[WORKERS_ENV] = str(self.threads)
        if self.cache is not None:
            os.environ[CACHE_ENV] = self.cache


def _plan_task(specs: Sequence[RunSpec], environment: Environment) -> list[Plan] | S2RError:
    """Resolve every spec on a worker (a user mistake comes back as the error, not as a failed task)."""
    environment.apply()
    registry = default_registry()
    try:
        return [resolve(spec, registry) for spec in specs]
    except S2RError as error:
        return error


def _run_task(job: Job, destination: Destination, environment: Environment) -> Outcome | Recorded:
    """Run one combination on a worker: into a tracking server itself, else recorded for the driver to write."""
    environment.apply()
    destination = replace(destination, progress=False)
    if destination.uri.partition("://")[0].lower() in SERVER_SCHEMES:
        return run_job(job, destination)
    recording = Recording()
    tracker = recording.tracker()
    metrics, error = {}, None
    try:
        metrics = runner.execute(job.plan, tracker, progress=False)
    except S2RError as caught:
        error = caught
    tracker.flush()  # the metrics it still buffers belong in the recording
    return Recorded(recording, metrics, error)


def _write(job: Job, recorded: Recorded, destination: Destination) -> Outcome:
    """Write a task's recorded run into the store as the serial sweep would have: FAILED with its error, if any."""
    mark_stale_runs_killed(destination, job.plan.key)
    try:
        with runner.tracked(job.plan, destination.uri, destination.experiment, job.tags) as tracker:
            recorded.recording.replay(tracker)
            if recorded.error is not None:
                raise recorded.error
    except S2RError as error:
        return error
    return RunResult(tracker.run_id, job.plan.config(), recorded.metrics)


def _outcome(job: Job, reference: Any, destination: Destination) -> Outcome:
    """A finished task's outcome; a recorded run is written to the store first."""
    import ray

    try:
        returned = ray.get(reference)
    except ray.exceptions.RayTaskError:
        raise  # a bug in the job: its traceback, as the serial sweep would show it
    except ray.exceptions.RayError as error:
        first_line = (str(error).splitlines() or ["no details"])[0]
        return ClusterError(f"its Ray worker died {RETRIES + 1} times ({type(error).__name__}: {first_line}); "
                            "`ray logs` has the workers' output")
    return _write(job, returned, destination) if isinstance(returned, Recorded) else returned


def _check_reachable(address: str) -> None:
    """Refuse at once an address where nothing listens (``ray.init`` would retry it for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is neither 'auto' nor HOST:PORT (e.g. 10.0.0.5:6379, the "
                          "address `ray start --head` prints)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ClusterError(f"no Ray cluster answers at {address} ({error.strerror or error}); start its head "
                           "there with `ray start --head`, or fix --address") from None


def _join(ray: Any, address: str | None) -> None:
    """Connect to the cluster at ``address`` (``None``: ``$RAY_ADDRESS``, else a new local one) unless connected."""
    if address not in (None, "auto"):
        _check_reachable(address)
    if ray.is_initialized():
        return
    try:
        ray.init(address=address)
    except ConnectionError as error:
        raise ClusterError(f"no running Ray cluster found for --address {address} ({error}); start one with "
                           "`ray start --head`, pass its HOST:PORT, or leave --address out to start a local one") \
            from None


def _largest_node(ray: Any, resource: str) -> float:
    """The most of ``resource`` (``CPU``, ``GPU``) any live node of the cluster has."""
    return max((node["Resources"].get(resource, 0.0) for node in ray.nodes() if node["Alive"]), default=0.0)


def connect(address: str | None = None, cpus_per_job: int = 1, gpus_per_job: float | None = None,
            device: str = "auto") -> RayLauncher:
    """Import Ray, join or start the cluster, and check that one job fits a node; each mistake is one clear error.

    ``gpus_per_job=None`` gives each job a GPU where the cluster has them (and ``device`` is not ``cpu``).
    """
    if cpus_per_job < 1:
        raise ConfigError(f"--cpus-per-job {cpus_per_job}: a job needs at least 1 CPU (its torch threads)")
    if gpus_per_job is not None and (gpus_per_job < 0 or (gpus_per_job > 1 and not gpus_per_job.is_integer())):
        raise ConfigError(f"--gpus-per-job {gpus_per_job:g}: pass a fraction up to 1 (jobs share a GPU) or a "
                          "whole number")
    try:
        import ray
    except ImportError:
        raise ClusterError('--launcher ray needs Ray, which is not installed; pip install -e ".[ray]" '
                           "(or leave --launcher out for the serial sweep)") from None
    _join(ray, address)
    cpus, gpus = _largest_node(ray, "CPU"), _largest_node(ray, "GPU")
    if gpus_per_job is None:
        gpus_per_job = 1.0 if gpus >= 1 and device != "cpu" else 0.0
    if gpus_per_job > gpus:
        where = "the Ray cluster has none" if not gpus else f"no node of the Ray cluster has more than {gpus:g}"
        raise DeviceError(f"--gpus-per-job {gpus_per_job:g} asks for GPUs but {where}; pass --gpus-per-job 0 "
                          "for CPU jobs, or add GPU nodes to the cluster")
    if cpus_per_job > cpus:
        raise ClusterError(f"--cpus-per-job {cpus_per_job}: no node of the Ray cluster has more than {cpus:g} "
                           f"CPUs; pass --cpus-per-job {max(1, int(cpus))} or less")
    return RayLauncher(cpus_per_job, gpus_per_job, Environment(cpus_per_job, os.environ.get(CACHE_ENV)))


@dataclass(frozen=True)
class RayLauncher:
    """Runs a sweep's jobs as Ray tasks of ``cpus`` CPUs and ``gpus`` GPUs each; made by :func:`connect`."""

    cpus: int
    gpus: float
    environment: Environment

    def _options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def plan(self, specs: Sequence[RunSpec], registry: Registry) -> list[Plan]:
        """Resolve every spec in one task with a job's resources (the registry there is the workers' own)."""
        import ray

        planned = ray.get(ray.remote(_plan_task).options(**self._options(), max_retries=RETRIES)
                          .remote(list(specs), self.environment))
        if isinstance(planned, S2RError):
            raise planned
        return planned

    def launch(self, jobs: Sequence[Job], destination: Destination, echo: Echo) -> Iterator[tuple[Job, Outcome]]:
        """Submit every job at once; yield each as it ends, the driver writing the recorded ones to the store."""
        import ray

        task = ray.remote(_run_task).options(**self._options(), max_retries=RETRIES)
        cluster = ray.cluster_resources()
        echo(f"Ray: {len(jobs)} combination(s) as tasks of {self.cpus} CPU(s) and {self.gpus:g} GPU(s) on a "
             f"cluster of {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g} GPUs")
        pending = {task.remote(job, destination, self.environment): job for job in jobs}
        for job in jobs:
            echo(f"{job.prefix}: queued")
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done)
                yield job, _outcome(job, done, destination)
        finally:
            for reference in pending:  # Ctrl-C or a bug in one job: nothing keeps running on the cluster
                ray.cancel(reference, force=True)
