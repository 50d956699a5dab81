"""``s2r-bench refine``: refine a synthetic set once and write it as a ``folder:`` dataset.

The output is what ``folder:DIR`` reads (``plugins/folder.py`` documents the
format): one lossless 8-bit PNG per sample, ``labels.csv`` with the source
labels (written with full float precision, so they read back bit-exact), and
``refiner.json`` saying what produced it. Images are written in the task's
input space, i.e. as the task and the refiner see them (gaze: equalized);
``refiner.json`` names that space, so a run reading the export back does not
apply it a second time.

Writing is atomic at the folder level: everything goes to a hidden sibling
``.DIR.partial-PID`` that is renamed to DIR only when complete, so an
interrupted export leaves no DIR (or the previous one, untouched). A process
killed outright can leave the hidden folder behind; the next export to the
same DIR removes it. One export per DIR at a time: a second one is refused
(``destination_lock``), and ``--overwrite`` replaces only an earlier export.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from sim2real_bench import checkpoint, locks, stages, tracking
from sim2real_bench.config import flatten
from sim2real_bench.data import Samples
from sim2real_bench.device import seed_everything
from sim2real_bench.errors import ConfigError, DataError, TrackingError
from sim2real_bench.images import grid, to_uint8
from sim2real_bench.config import ORACLE
from sim2real_bench.plan import Plan, RunSpec, resolve
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry, default_registry
from sim2real_bench.runner import versions
from sim2real_bench.stages import Fitted, RunContext
from sim2real_bench.store import Store

LABELS = "labels.csv"
MANIFEST = "refiner.json"
BATCH = 512


@dataclass(frozen=True)
class ExportSpec:
    """What ``s2r-bench refine`` was asked for."""

    run: RunSpec
    out: Path
    limit: int | None = None
    from_run: str | None = None
    checkpoint: Path | None = None
    overwrite: bool = False


@dataclass
class ExportResult:
    """Where the export went and how fast it was written."""

    out: Path
    count: int
    run_id: str
    images_per_second: float


def check_destination(out: Path, overwrite: bool) -> Path:
    """Refuse, with the fix, an output folder that cannot be written or would lose data; return it resolved."""
    if out.is_symlink():
        raise ConfigError(f"--out {out} is a symbolic link (to {os.readlink(out)}); give the folder's real path")
    out = out.resolve()
    if out == Path.cwd() or out in Path.cwd().parents:
        raise ConfigError(f"--out {out} is the current folder or one above it; name a new folder, e.g. --out refined")
    parent = out.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: folder {parent} does not exist; create it first")
    try:  # a real write, not os.access: root passes access checks on read-only file systems
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot write in {parent} ({error.strerror}); choose another --out") from error
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {out} is not empty; pass --overwrite to replace an earlier export")
        if not (out / MANIFEST).is_file():
            raise ConfigError(f"--out {out} is not an export of s2r-bench (it has no {MANIFEST}); --overwrite "
                              "replaces only exports: choose a new or empty folder")
    return out


def destination_lock(out: Path) -> contextlib.AbstractContextManager[None]:
    """One export per destination at a time (a lock ``.DIR.lock`` beside it): a second one is refused at once,
    naming the first; so only the holder ever cleans up partial folders, and two exports never both succeed."""
    def refused(holder: str) -> ConfigError:
        return ConfigError(f"another export (pid {holder}) is writing --out {out}; wait for it to finish or "
                           "choose another --out")

    return locks.held(out.parent / f".{out.name}.lock", refused)


def _restored(spec: ExportSpec, uri: str, registry: Registry, folder: Path) -> checkpoint.Restored:
    """The refiner of ``--checkpoint`` or ``--from-run``."""
    path = spec.checkpoint
    if spec.from_run is not None:
        from mlflow.exceptions import MlflowException

        client = tracking.client(uri)
        try:
            client.get_run(spec.from_run)
        except MlflowException as error:
            raise TrackingError(f"no run {spec.from_run!r} in {uri}; `s2r-bench ui` or `s2r-bench report` "
                                "lists the runs") from error
        try:
            path = Path(client.download_artifacts(spec.from_run, checkpoint.ARTIFACT, str(folder)))
        except (MlflowException, OSError) as error:
            raise TrackingError(f"run {spec.from_run} has no fitted refiner ({checkpoint.ARTIFACT}); runs of "
                                "`s2r-bench run`, `sweep` and `refine` with a refiner log one") from error
    assert path is not None
    return checkpoint.load(path, registry)


def write_samples(refiner: Refiner, source: Samples, resolved: Plan, folder: Path, progress: bool) -> None:
    """Refine ``source`` in batches and write the PNGs and ``labels.csv`` (the task's columns) into ``folder``."""
    names = resolved.task_class.label_names
    width = max(6, len(str(len(source) - 1)))
    with (folder / LABELS).open("w", newline="") as handle, \
            tqdm(total=len(source), desc="refine: write", unit="img", disable=not progress) as bar:
        writer = csv.writer(handle)
        writer.writerow(["file", *names])
        labels = source.labels.tolist()
        for start in range(0, len(source), BATCH):
            batch = stages.refine_images(refiner, source.images[start : start + BATCH], resolved.compute)
            pixels = to_uint8(batch).numpy()
            for offset, image in enumerate(pixels):
                index = start + offset
                name = f"{index:0{width}d}.png"
                mode = "L" if image.shape[0] == 1 else "RGB"
                array = image[0] if mode == "L" else image.transpose(1, 2, 0)
                Image.fromarray(array, mode).save(folder / name, compress_level=1)
                writer.writerow([name, *map(repr, labels[index])])
            bar.update(len(pixels))


def _replace(partial: Path, out: Path) -> None:
    """Move the finished ``partial`` folder to ``out``; an old ``out`` is removed only after."""
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, retired)
        os.replace(partial, out)
        shutil.rmtree(retired)
    else:
        os.replace(partial, out)


def export(spec: ExportSpec, registry: Registry | None = None, tracking_uri: str | None = None,
           progress: bool = True) -> ExportResult:
    """Fit (or restore) a refiner, refine the source training set and write it as a ``folder:`` dataset."""
    registry = registry or default_registry()
    if spec.run.refiner == ORACLE:
        raise ConfigError("oracle is a reference row, not a refiner; there is nothing to export")
    if spec.limit is not None and spec.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {spec.limit}")
    spec = replace(spec, out=check_destination(spec.out, spec.overwrite))
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri)
    with destination_lock(spec.out), tempfile.TemporaryDirectory() as downloads:
        restored = None
        if spec.from_run is not None or spec.checkpoint is not None:
            restored = _restored(spec, uri, registry, Path(downloads))
        run_spec = spec.run
        if restored is not None:
            if run_spec.refiner not in ("", restored.name):
                raise ConfigError(f"--refiner {run_spec.refiner} but the checkpoint holds a {restored.name} refiner; "
                                  "leave --refiner out with --from-run or --checkpoint")
            run_spec = replace(run_spec, refiner=restored.name)
        elif not run_spec.refiner:
            raise ConfigError("name a refiner with --refiner, or give a fitted one with --from-run or --checkpoint")
        resolved = resolve(run_spec, registry)
        if restored is not None:
            if restored.refiner.image_shape != resolved.source.image_shape:
                raise DataError(f"the checkpoint's refiner takes {restored.refiner.image_shape} images but "
                                f"{resolved.source.spec} has {resolved.source.image_shape} (C, H, W)")
            resolved = replace(resolved, refiner_config=restored.refiner.config)  # the manifest says what was used
        tags = {"s2r.role": "export", "s2r.refiner": run_spec.refiner, "s2r.task": run_spec.task}
        name = f"export-{run_spec.refiner}-{run_spec.task}-s{run_spec.seed}-{run_spec.budget}"
        with tracking.tracked_run(uri, run_spec.task, name, tags) as tracker:
            return _export(spec, resolved, restored, tracker, progress)


def _export(spec: ExportSpec, resolved: Plan, restored: checkpoint.Restored | None, tracker: tracking.Tracker,
            progress: bool) -> ExportResult:
    run_spec, data, compute = resolved.spec, resolved.data, resolved.compute
    config = resolved.config()
    tracker.log_params({**flatten(config), "out": str(spec.out.resolve()), "limit": spec.limit,
                        "from_run": spec.from_run, "checkpoint": spec.checkpoint})
    seed_everything(run_spec.seed)
    context = RunContext(compute, tracker, run_spec.seed, Store.default(), progress)
    task = resolved.new_task()
    size = data.source_train if spec.limit is None else min(spec.limit, data.source_train)
    if restored is None:
        with context.watch.stage("data"):
            source, target = (
                stages.split_in_input_space(resolved, split, stages.load_split(resolved, split, context), task, compute)
                for split in ("source_train", "target_train"))
        fitted = stages.fit_refiner(resolved, source, target, task.input_space(), context)
        stages.log_refiner(fitted, run_spec.refiner, task.input_space(), context)
        source = Samples(source.images[:size], source.labels[:size])
    else:
        if restored.input_space != task.input_space():
            raise DataError(f"the checkpoint's refiner was fitted on images with {restored.input_space} but task "
                            f"{run_spec.task!r} feeds {task.input_space()}; export with the task it was fitted for")
        restored.refiner.to(compute.device)
        fitted = Fitted(restored.refiner, "")
        with context.watch.stage("data"):
            source = stages.split_in_input_space(resolved, "source_train",
                                                 stages.load_split(resolved, "source_train", context, size), task,
                                                 compute)
    refiner = fitted.refiner
    partial = spec.out.resolve().parent / f".{spec.out.name}.partial-{os.getpid()}"
    for stale in spec.out.resolve().parent.glob(f".{spec.out.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial.mkdir()
    try:
        start = time.perf_counter()
        write_samples(refiner, source, resolved, partial, progress)
        seconds = time.perf_counter() - start
        manifest = {
            "refiner": run_spec.refiner,
            "task": run_spec.task,
            "samples": len(source),
            "config": config,
            "data": {"source": resolved.source.identity("train", len(source), run_spec.seed),
                     "target": resolved.target.identity("train", data.target_train, run_spec.seed)},
            "input_space": task.input_space(),
            "label_names": list(resolved.task_class.label_names),
            "versions": versions(),
            "mlflow_run_id": tracker.run_id,
            "from_run": spec.from_run,
            "checkpoint": None if spec.checkpoint is None else str(spec.checkpoint),
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace(partial, spec.out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    shown = source.images[: stages.SHOWN]
    tracker.log_image(grid([shown, stages.refine_images(refiner, shown, compute)]), "samples/synthetic_refined.png")
    tracker.log_dict(manifest, MANIFEST)
    metrics = {**context.watch.metrics, "export/samples": len(source), "time/export_s": seconds,
               "throughput/export_img_s": len(source) / seconds}
    tracker.log_metrics(metrics)
    return ExportResult(spec.out, len(source), tracker.run_id or "", metrics["throughput/export_img_s"])
