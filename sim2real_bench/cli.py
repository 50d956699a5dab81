"""The ``s2r-bench`` command line.

Every :class:`~sim2real_bench.errors.S2RError` becomes one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from sim2real_bench import __version__
from sim2real_bench.config import BUDGETS, DEFAULT_BUDGET
from sim2real_bench.device import DEVICES, PRECISIONS
from sim2real_bench.errors import ConfigError, DataError, S2RError
from sim2real_bench.registry import KINDS, default_registry
from sim2real_bench.runner import ORACLE
from sim2real_bench.sweep import DEFAULT_EXPERIMENT

FORMATS = ("markdown", "csv", "html")
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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override a setting, e.g. --set task.epochs=2 (repeatable)")
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run(args: argparse.Namespace) -> None:
    from sim2real_bench.runner import RunSpec, result_json, run

    spec = RunSpec(
        refiner=args.refiner, task=args.task, seed=args.seed, budget=args.budget, device=args.device,
        precision=args.precision, source=args.source, target=args.target, target_test=args.target_test,
        overrides=tuple(args.overrides),
    )
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with redirect:
        result = run(spec, tracking_uri=args.tracking_uri, progress=not args.no_progress, experiment=args.experiment)
    if args.json:
        print(result_json(result))
        return
    role = " (reference)" if args.refiner == ORACLE else ""
    print(f"{args.refiner}{role} on {args.task}, seed {args.seed}, budget {args.budget}: run {result.run_id}")
    for name, value in sorted(result.metrics.items()):
        print(f"  {name:36s} {value:12.4f}")


def _sweep(args: argparse.Namespace) -> None:
    from sim2real_bench.runner import RunSpec
    from sim2real_bench.sweep import sweep

    template = RunSpec(
        refiner=ORACLE, task="", budget=args.budget, device=args.device, precision=args.precision,
        source=args.source, target=args.target, target_test=args.target_test, overrides=tuple(args.overrides),
    )
    result = sweep(template, args.refiners, args.tasks, args.seeds, args.tracking_uri, args.experiment,
                   progress=not args.no_progress)
    print(f"sweep run {result.parent_run_id}: {len(result.ran)} ran, {len(result.skipped)} finished before, "
          f"{len(result.failed)} failed")
    if result.failed:
        raise S2RError(f"{len(result.failed)} combination(s) failed; see the lines above and rerun to retry them")


def _refine(args: argparse.Namespace) -> None:
    from sim2real_bench.export import ExportSpec, export
    from sim2real_bench.runner import RunSpec

    spec = ExportSpec(
        run=RunSpec(refiner=args.refiner, task=args.task, seed=args.seed, budget=args.budget, device=args.device,
                    precision=args.precision, source=args.source, target=args.target, target_test=args.target_test,
                    overrides=tuple(args.overrides)),
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
            doc = (entry.factory.__doc__ or "").strip().splitlines()
            print(f"  {name:16s} {doc[0] if doc else ''}  [{entry.plugin}]")
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
        written[0].write_text(text + "\n")
        task_runs = runs[runs["params.task"] == task]
        primary = f"target/{table.attrs['primary_metric']}"
        bars = args.out / f"{task}-{table.attrs['primary_metric']}.png"
        plots.metric_bars(table, primary, bars, f"{task}: {primary}, mean ± s.e. over seeds")
        written.append(bars)
        curve = args.out / f"{task}-error-curve.png"
        if plots.error_curves(task_runs, curve, f"{task}: error curve"):
            written.append(curve)
        samples = args.out / f"{task}-refiners.png"
        if plots.refiner_grid(client, task_runs, list(table.index), samples, f"{task}: the same images per refiner"):
            written.append(samples)
        print(f"{task}: wrote " + ", ".join(str(path) for path in written))


def _ui(args: argparse.Namespace) -> None:
    from sim2real_bench import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    tracking.check_tracking_uri(uri)
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    tracking.serve_ui(uri, args.host, args.port)


def _preview(args: argparse.Namespace) -> None:
    from PIL import Image

    from sim2real_bench.images import grid
    from sim2real_bench.runner import build_dataset

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


COMMANDS = {"run": _run, "sweep": _sweep, "refine": _refine, "ui": _ui, "list": _list, "plugins": _plugins, "preview": _preview, "report": _report}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``s2r-bench`` console script."""
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except S2RError as error:
        print(f"s2r-bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s2r-bench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
