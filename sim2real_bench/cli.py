"""The ``s2r-bench`` command line.

Every :class:`~sim2real_bench.errors.S2RError`, and a disk that is full, becomes
one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sim2real_bench import __version__
from sim2real_bench.config import BUDGETS, DEFAULT_BUDGET, DEFAULT_EXPERIMENT, DEVICES, ORACLE, PRECISIONS
from sim2real_bench.errors import ConfigError, DataError, S2RError
from sim2real_bench.registry import KINDS, default_registry

if TYPE_CHECKING:
    from sim2real_bench.plan import RunSpec
    from sim2real_bench.sweep import Launcher

ALL = "all"
FORMATS = ("markdown", "csv", "html")
LAUNCHERS = ("serial", "ray")
SUFFIXES = {"markdown": "md", "csv": "csv", "html": "html"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2r-bench", description="Sim-to-real refinement benchmark.")
    parser.add_argument("--version", action="version", version=f"s2r-bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="train and evaluate one combination (refiner, task, seed, budget)")
    run.add_argument("--refiner", required=True, help=f"refiner name, or '{ORACLE}' for the labeled-target reference")
    run.add_argument("--task", required=True, help="task name, e.g. gaze")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--experiment", help="MLflow experiment (default: the task's name)")
    _add_combination_options(run)
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout; everything else goes to stderr")

    sweep = commands.add_parser("sweep", help="run every (refiner, task, seed) not yet finished, under one parent run")
    sweep.add_argument("--refiners", default="all", help="comma-separated refiner names, or 'all' (default)")
    sweep.add_argument("--tasks", default="all", help="comma-separated task names, or 'all' (default)")
    sweep.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    sweep.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment (default {DEFAULT_EXPERIMENT})")
    sweep.add_argument("--launcher", default="serial", choices=LAUNCHERS,
                       help="serial: one combination after another here (default); ray: one Ray task each")
    sweep.add_argument("--address", help="with --launcher ray: 'auto' (the cluster this machine is part of) or "
                       "HOST:PORT of its head (default: $RAY_ADDRESS, else a new local cluster)")
    sweep.add_argument("--cpus-per-job", type=int, help="with --launcher ray: CPUs (and torch threads) per "
                       "combination (default 1)")
    sweep.add_argument("--gpus-per-job", type=float, help="with --launcher ray: GPUs per combination, a fraction "
                       "shares one (default: 1 where the cluster has GPUs, else 0)")
    _add_combination_options(sweep)

    refine = commands.add_parser("refine", help="refine the source training set once and write it as a folder: dataset")
    refine.add_argument("--refiner", default="", help="refiner to fit (or reuse from the cache)")
    refine.add_argument("--task", default="gaze", help="task whose data and input space to use (default gaze)")
    refine.add_argument("--seed", type=int, default=0)
    refine.add_argument("--out", required=True, type=Path, help="folder to write (must be new or empty)")
    refine.add_argument("--limit", type=int, help="write only the first N samples (the fit still uses the budget's)")
    fitted = refine.add_mutually_exclusive_group()
    fitted.add_argument("--from-run", metavar="RUN_ID", help="refine with the refiner an MLflow run fitted")
    fitted.add_argument("--checkpoint", type=Path, help="refine with a refiner checkpoint file (refiner/refiner.pt)")
    refine.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    _add_combination_options(refine)

    listing = commands.add_parser("list", help="list registered refiners, datasets and tasks")
    listing.add_argument("kind", nargs="?", choices=KINDS, help="only this kind")

    commands.add_parser("plugins", help="list loaded plugins with their distribution and version")

    report = commands.add_parser("report", help="one table per task: mean ± standard error over seeds per refiner")
    report.add_argument("--experiment", help="MLflow experiment to read (default: all of them)")
    report.add_argument("--task", help="only this task (default: every task with runs)")
    report.add_argument("--budget", default=DEFAULT_BUDGET, help=f"which runs to include (default {DEFAULT_BUDGET})")
    report.add_argument("--format", default="markdown", choices=FORMATS)
    report.add_argument("--out", type=Path, help="write TASK.<format> and the PNG plots into this folder")
    report.add_argument("--tracking-uri", help="MLflow tracking URI (default: as for run)")

    ui = commands.add_parser("ui", help="start the MLflow UI on the project's tracking store")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", help="MLflow tracking URI (default: as for run)")
    ui.add_argument("--experiment", help="experiment to land on (default: the one with the newest run)")
    ui.add_argument("--open", action="store_true", help="open the landing link in a web browser once the UI answers")

    realism = commands.add_parser("realism", help="how far a set of images is from real captures: two-sample "
                                  "test, KID, image statistics")
    realism.add_argument("dataset", help="the images judged: a dataset spec NAME[:ARG] (a domain, an exported folder:)")
    realism.add_argument("--real", required=True, help="the real captures, a dataset spec, e.g. folder:PATH")
    realism.add_argument("--reference", help="other real captures (other people, another session), judged "
                         "against --real the same way: what real data scores, printed beside the candidate")
    realism.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    realism.add_argument("--count", type=int, default=2000, help="images per side at most (default 2000)")
    realism.add_argument("--split", default="train", choices=("train", "test"), help="split of both (default train)")
    realism.add_argument("--out", type=Path, help="also write realism.json, realism.md and PNGs into this folder")
    realism.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)}")

    preview = commands.add_parser("preview", help="write a grid of sample images of a dataset")
    preview.add_argument("dataset", help="dataset spec NAME[:ARG]")
    preview.add_argument("--out", required=True, type=Path, help="PNG file to write")
    preview.add_argument("--split", default="test", choices=("train", "test"))
    preview.add_argument("--count", type=int, default=48)
    preview.add_argument("--seed", type=int, default=0)
    return parser


def _add_combination_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``sweep`` share: budget, data, compute, overrides, tracking."""
    parser.add_argument("--budget", default=DEFAULT_BUDGET, help=f"one of {', '.join(BUDGETS)} (default {DEFAULT_BUDGET})")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICES)}")
    parser.add_argument("--precision", default="auto", help=f"one of {', '.join(PRECISIONS)}")
    parser.add_argument("--source", help="source dataset spec NAME[:ARG] (default: the task's)")
    parser.add_argument("--target", help="target dataset spec NAME[:ARG] (default: the task's)")
    parser.add_argument("--target-test", help="labeled dataset to test on, for a --target without labels "
                        "(default: the target's test split)")
    parser.add_argument("--real-test", help="a second labeled test set, typically real captures: the trained task "
                        "is also evaluated on it, logged as real/* (e.g. folder:PATH?split=test)")
    parser.add_argument("--real-images", help="unlabeled real captures the refined test images are also judged "
                        "against (two-sample test, KID), logged as real_realism/* (e.g. folder:PATH)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a setting, e.g. --set task.epochs=2 (repeatable)")
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run_spec(args: argparse.Namespace, refiner: str, task: str, seed: int = 0) -> RunSpec:
    """The run spec the combination options describe."""
    from sim2real_bench.plan import RunSpec

    return RunSpec(refiner=refiner, task=task, seed=seed, budget=args.budget, device=args.device,
                   precision=args.precision, source=args.source, target=args.target, target_test=args.target_test,
                   overrides=tuple(args.overrides), real_test=args.real_test, real_images=args.real_images)


def parse_names(text: str, known: Sequence[str], kind: str) -> list[str]:
    """A comma-separated list of names, or ``all``; unknown names fail with the known ones listed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"no {kind} given; pass a comma-separated list or '{ALL}'")
    if names == [ALL]:
        return list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown {kind} {', '.join(unknown)}; known: {', '.join(known)}, or '{ALL}'")
    return list(dict.fromkeys(names))


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` to a list of seeds."""
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError as error:
        raise ConfigError(f"--seeds {text!r} is not a comma-separated list of integers") from error
    if not seeds:
        raise ConfigError("--seeds is empty; pass e.g. --seeds 0,1,2")
    return list(dict.fromkeys(seeds))


def _run(args: argparse.Namespace) -> None:
    from sim2real_bench.plan import resolve
    from sim2real_bench.runner import result_json, run

    plan = resolve(_run_spec(args, args.refiner, args.task, args.seed))
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with redirect:
        result = run(plan, tracking_uri=args.tracking_uri, progress=not args.no_progress, experiment=args.experiment)
    if args.json:
        print(result_json(result))
        return
    from sim2real_bench import summary, tracking

    print(summary.summary(plan, result, tracking.resolve_tracking_uri(args.tracking_uri)))


def _sweep(args: argparse.Namespace) -> None:
    from sim2real_bench.sweep import expand, refiner_names, sweep

    registry = default_registry()
    specs = expand(
        _run_spec(args, ORACLE, ""),
        parse_names(args.refiners, refiner_names(registry), "refiner(s)"),
        parse_names(args.tasks, sorted(registry.entries("tasks")), "task(s)"),
        parse_seeds(args.seeds),
        registry,
    )
    result = sweep(specs, args.tracking_uri, args.experiment, progress=not args.no_progress, registry=registry,
                   launcher=_launcher(args))
    print(f"sweep run {result.parent_run_id}: {len(result.ran)} ran, {len(result.skipped)} finished before, "
          f"{len(result.failed)} failed")
    if result.failed:
        raise S2RError(f"{len(result.failed)} combination(s) failed; see the lines above and rerun to retry them")


def _launcher(args: argparse.Namespace) -> Launcher | None:
    """The sweep's launcher; Ray is imported (and its cluster joined) only for ``--launcher ray``."""
    ray_options = {"--address": args.address, "--cpus-per-job": args.cpus_per_job, "--gpus-per-job": args.gpus_per_job}
    if args.launcher == "serial":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to --launcher ray; add --launcher ray or drop them")
        return None
    from sim2real_bench.ray_launcher import connect

    cpus = 1 if args.cpus_per_job is None else args.cpus_per_job
    return connect(args.address, cpus, args.gpus_per_job, args.device)


def _refine(args: argparse.Namespace) -> None:
    from sim2real_bench.export import ExportSpec, export

    spec = ExportSpec(
        run=_run_spec(args, args.refiner, args.task, args.seed),
        out=args.out, limit=args.limit, from_run=args.from_run, checkpoint=args.checkpoint, overwrite=args.overwrite,
    )
    result = export(spec, tracking_uri=args.tracking_uri, progress=not args.no_progress)
    print(f"wrote {result.count} refined samples to {result.out} ({result.images_per_second:.0f} img/s; "
          f"run {result.run_id}); train on them with --source folder:{result.out}")


def _list(args: argparse.Namespace) -> None:
    registry = default_registry()
    for kind in [args.kind] if args.kind else KINDS:
        print(f"{kind}:")
        for name, entry in sorted(registry.entries(kind).items()):
            print(f"  {name:16s} {entry.summary}  [{entry.plugin}]")
        if kind == "refiners":
            print(f"  {ORACLE:16s} reference row: the task trained on labeled target images (not a refiner)")


def _plugins(_: argparse.Namespace) -> None:
    for info in default_registry().plugins():
        print(f"{info.name:16s} {info.distribution} {info.version}".rstrip())


def _report(args: argparse.Namespace) -> None:
    from sim2real_bench import plots, report, tracking

    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist; create it first")
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.check_store_exists(uri)
    runs, tables = report.load(uri, args.experiment, args.budget)
    if args.task is not None:
        if args.task not in tables:
            raise ConfigError(f"no finished {args.budget!r} runs of task {args.task!r}; tasks with runs: "
                              f"{', '.join(tables)}")
        tables = {args.task: tables[args.task]}
    registry = default_registry()
    client = tracking.client(uri)
    for task, table in tables.items():
        headline = registry.get("tasks", task).headline_metrics if task in registry.entries("tasks") else ()
        text = report.render(table, report.headline_columns(table, headline), args.format)
        if args.out is None:
            print(f"## {task}\n\n{text}\n" if args.format == "markdown" else text)
            continue
        args.out.mkdir(exist_ok=True)
        written = [args.out / f"{task}.{SUFFIXES[args.format]}"]
        task_runs = runs[runs["params.task"] == task]
        primary = f"target/{table.attrs['primary_metric']}"
        bars = args.out / f"{task}-{table.attrs['primary_metric']}.png"
        plots.metric_bars(table, primary, bars, f"{task}: {primary}, mean ± s.e. over seeds")
        written.append(bars)
        curve = args.out / f"{task}-error-curve.png"
        if plots.error_curves(task_runs, curve, f"{task}: error curve"):
            written.append(curve)
        trade_off = args.out / f"{task}-error-vs-label-shift.png"
        if plots.error_against_label_shift(table, trade_off, f"{task}: target error against label shift"):
            written.append(trade_off)
        samples = args.out / f"{task}-refiners.png"
        if plots.refiner_grid(client, task_runs, list(table.index), samples, f"{task}: the same images per refiner"):
            written.append(samples)
        if args.format == "html":  # one file that opens anywhere, the plots inside it
            text = report.html_page(f"{task}: s2r-bench report", text, written[1:])
        written[0].write_text(text + "\n")
        print(f"{task}: wrote " + ", ".join(str(path) for path in written))


def _ui(args: argparse.Namespace) -> None:
    import webbrowser

    from sim2real_bench import tracking, ui

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.check_tracking_uri(uri)
    if not ui.check_address(args.host, args.port):
        print(ui.exposure_warning(args.host, args.port), file=sys.stderr, flush=True)
    landing = ui.prepare_landing(tracking.client(uri), args.experiment, default_registry())
    base = ui.base_url(args.host, args.port)
    link = landing.url(base)
    print(f"MLflow UI for {uri} at {base} (Ctrl-C stops it)", flush=True)
    where = f"the runs of experiment {landing.experiment!r}" if landing.experiment else "the experiments (no runs yet)"
    print(f"open {where}, refiners compared: {link}", flush=True)

    def open_browser() -> None:
        if not webbrowser.open(link):
            print("s2r-bench: no web browser found here; open the link above", file=sys.stderr, flush=True)

    try:
        ui.serve(uri, args.host, args.port, open_browser if args.open else None)
    except KeyboardInterrupt:
        print("s2r-bench: stopped the MLflow UI", file=sys.stderr)


def _preview(args: argparse.Namespace) -> None:
    from PIL import Image

    from sim2real_bench.images import grid
    from sim2real_bench.plan import build_dataset

    if args.count < 1:
        raise ConfigError("--count must be at least 1")
    if args.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out} must end in .png")
    if not args.out.parent.exists():
        raise DataError(f"folder {args.out.parent} does not exist; create it first")
    dataset = build_dataset(args.dataset, default_registry())
    images = dataset.load(args.split, args.count, args.seed).images
    Image.fromarray(grid([images[start : start + 8] for start in range(0, len(images), 8)])).save(args.out)
    print(f"wrote {len(images)} {dataset.spec}/{args.split} images to {args.out}")


def _realism(args: argparse.Namespace) -> None:
    from sim2real_bench import yardstick
    from sim2real_bench.device import resolve_compute
    from sim2real_bench.plan import build_dataset

    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist; create it first")
    seeds = parse_seeds(args.seeds)
    registry = default_registry()
    candidate, real = build_dataset(args.dataset, registry), build_dataset(args.real, registry)
    reference = None if args.reference is None else yardstick.framed_like(candidate,
                                                                          build_dataset(args.reference, registry))
    compute = resolve_compute(args.device, "fp32")
    comparison = yardstick.measure(candidate, real, seeds, compute, count=args.count, split=args.split,
                                   reference=reference)
    print(comparison.table())
    if args.out is not None:
        print("wrote " + ", ".join(str(path) for path in yardstick.write(comparison, args.out)))


COMMANDS = {"run": _run, "sweep": _sweep, "refine": _refine, "ui": _ui, "list": _list, "plugins": _plugins, "preview": _preview, "realism": _realism, "report": _report}


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def full_disk_message(error: OSError) -> str:
    """The one line for a write that ran out of space: what was being written and where the space can come from."""
    where = f" writing {error.filename}" if error.filename else ""
    return (f"no space left on the device{where}: free some space, or put the cache (S2R_BENCH_CACHE), the store "
            "(--tracking-uri) and exports (--out) on a disk with room; finished runs and cache entries are intact")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``s2r-bench`` console script.

    SIGTERM is handled like Ctrl-C (runs end KILLED, partial outputs are removed),
    a tracking store that cannot be used is refused before any work starts, and
    freed memory is kept for reuse (:mod:`sim2real_bench.allocator`) by every command.
    """
    from sim2real_bench.allocator import keep_freed_memory
    from sim2real_bench.signals import Terminated, sigterm_as_interrupt

    keep_freed_memory()
    args = _parser().parse_args(argv)
    with sigterm_as_interrupt():
        try:
            if hasattr(args, "tracking_uri"):
                from sim2real_bench import tracking

                tracking.check_tracking_uri(tracking.resolve_tracking_uri(args.tracking_uri))
            COMMANDS[args.command](args)
        except S2RError as error:
            print(f"s2r-bench: error: {error}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # The reader of our output left (``s2r-bench list | head``): stop as a killed pipe writer does,
            # without a traceback, and keep Python's final flush of stdout from raising again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        except OSError as error:
            if error.errno not in FULL_DISK:
                raise
            print(f"s2r-bench: error: {full_disk_message(error)}", file=sys.stderr)
            return 2
        except Terminated:
            print("s2r-bench: terminated (SIGTERM)", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print("s2r-bench: interrupted", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
