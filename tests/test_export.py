"""``s2r-bench refine``: exports that load back through ``folder:``, survive signals and reuse fitted refiners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from stores import store_in

from sim2real_bench import checkpoint
from sim2real_bench.cli import main
from sim2real_bench.device import resolve_compute
from sim2real_bench.registry import Registry
from sim2real_bench.plan import RunSpec, build_dataset, resolve
from sim2real_bench.plugins.eyes.synthetic import SynthEyes
from sim2real_bench.stages import RunContext, in_input_space, load, to_input_space
from sim2real_bench.store import Store
from sim2real_bench.tracking import Tracker
from sim2real_bench.tasks.gaze import GazeTask

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))
LIMIT = 64


def refine(tracking_uri: str, *args: str) -> int:
    return main(["refine", "--budget", "smoke", "--tracking-uri", tracking_uri, "--no-progress", *args])


def run_id(folder: Path) -> str:
    return json.loads((folder / "refiner.json").read_text())["mlflow_run_id"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("export")
    uri = store_in(root)
    assert refine(uri, "--refiner", "simgan", "--out", str(root / "refined"), "--limit", str(LIMIT)) == 0
    return uri, root / "refined"


def test_export_loads_back_through_folder_with_the_same_labels_and_images(exported, tmp_path: Path) -> None:
    uri, out = exported
    registry = Registry()
    source = build_dataset("synth-eyes", registry).load("train", LIMIT, 0)
    folder = build_dataset(f"folder:{out}", registry)
    assert registry.label_kind_of(folder) == "gaze"
    parts = [folder.load(split, LIMIT, 0) for split in ("train", "test")]
    assert sum(len(part) for part in parts) == LIMIT
    files = sorted(path.name for path in out.glob("*.png"))
    assert len(files) == LIMIT

    # Bit-exact labels, file by file.
    rows = [line.split(",") for line in (out / "labels.csv").read_text().splitlines()[1:]]
    labels = torch.tensor([[float(value) for value in row[1:]] for row in rows], dtype=torch.float32)
    assert torch.equal(labels, source.labels)

    # Images: the refined tensor, up to PNG's 8-bit quantization.
    path = Path(MlflowClient(uri).download_artifacts(run_id(out), checkpoint.ARTIFACT, str(tmp_path)))
    restored = checkpoint.load(path, registry)
    compute = resolve_compute("cpu")
    task = GazeTask(GazeTask.presets["smoke"], (1, 35, 55))
    with torch.inference_mode(), compute.autocast():
        refined = restored.refiner.refine(to_input_space(task, source, compute).images).float().clamp(-1, 1)
    written = torch.stack([torch.from_numpy(np.asarray(Image.open(out / name), dtype=np.float32)) for name in files])
    assert (written / 127.5 - 1 - refined[:, 0]).abs().max() <= 0.5 / 127.5 + 1e-6


def test_an_export_is_not_put_through_the_input_space_again(exported, tmp_path: Path) -> None:
    _, out = exported
    plan = resolve(RunSpec(refiner="none", task="gaze", budget="smoke", source=f"folder:{out}"), Registry())
    context = RunContext(plan.compute, Tracker.disabled(), 0, Store(tmp_path), progress=False)
    loaded = load(plan, context)
    converted = in_input_space(plan, loaded, context)
    assert plan.source.input_space == plan.new_task().input_space() == "equalize=True"
    assert converted.source_train.images is loaded.source_train.images
    assert not torch.equal(converted.target_train.images, loaded.target_train.images)  # webcam-eyes is equalized


def test_manifest_says_what_produced_the_export(exported) -> None:
    uri, out = exported
    manifest = json.loads((out / "refiner.json").read_text())
    assert manifest["refiner"] == "simgan" and manifest["samples"] == LIMIT
    assert manifest["config"]["refiner_config"]["steps"] > 0
    assert manifest["data"]["source"].startswith(f"synth-eyes|v{SynthEyes.version}|train")
    assert {"torch", "s2r_bench"} <= set(manifest["versions"])
    logged = MlflowClient(uri).get_run(manifest["mlflow_run_id"])
    assert logged.info.status == "FINISHED" and logged.data.tags["s2r.role"] == "export"
    artifacts = {item.path for item in MlflowClient(uri).list_artifacts(manifest["mlflow_run_id"], "samples")}
    assert "samples/synthetic_refined.png" in artifacts


def test_from_run_refines_exactly_as_the_fit_that_produced_it(exported, tmp_path: Path) -> None:
    uri, out = exported
    again = tmp_path / "again"
    assert refine(uri, "--from-run", run_id(out), "--out", str(again), "--limit", str(LIMIT)) == 0
    for name in sorted(path.name for path in out.glob("*.png")):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert (again / "labels.csv").read_text() == (out / "labels.csv").read_text()
    fitted, reused = (json.loads((folder / "refiner.json").read_text()) for folder in (out, again))
    assert reused["config"]["refiner_config"] == fitted["config"]["refiner_config"]
    assert reused["from_run"] == run_id(out)


def test_hand_exports_load_back_as_hand_pose(tmp_path: Path, tracking_uri: str) -> None:
    out = tmp_path / "hands"
    assert refine(tracking_uri, "--refiner", "histmatch", "--task", "hand", "--out", str(out), "--limit", "20") == 0
    folder = build_dataset(f"folder:{out}", Registry())
    assert Registry().label_kind_of(folder) == "hand-pose" and folder.image_shape == (1, 64, 64)


def test_bad_input_is_one_clear_line(exported, tmp_path: Path, capsys) -> None:
    uri, out = exported
    not_ours = tmp_path / "weights.pt"
    torch.save({"model": torch.zeros(2)}, not_ours)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    not_export = tmp_path / "photos"
    not_export.mkdir()
    (not_export / "holiday.png").write_bytes(b"")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    cases = [
        (["--from-run", "0123456789abcdef", "--out", str(tmp_path / "a")], "no run '0123456789abcdef'"),
        (["--checkpoint", str(not_ours), "--out", str(tmp_path / "b")], "is not a refiner checkpoint of s2r-bench"),
        (["--checkpoint", str(text_file), "--out", str(tmp_path / "c")], "is not a refiner checkpoint of s2r-bench"),
        (["--refiner", "none", "--out", "/proc/s2r-bench-export"], "cannot write in /proc"),
        (["--refiner", "none", "--out", str(out)], "is not empty; pass --overwrite"),
        (["--refiner", "none", "--out", str(not_export), "--overwrite"], "is not an export of s2r-bench"),
        (["--refiner", "none", "--out", str(link)], "is a symbolic link"),
        (["--refiner", "none", "--out", "."], "is the current folder or one above it"),
        (["--refiner", "oracle", "--out", str(tmp_path / "d")], "oracle is a reference row"),
        (["--refiner", "fda", "--from-run", run_id(out), "--out", str(tmp_path / "e")], "holds a simgan refiner"),
    ]
    for args, message in cases:
        assert refine(uri, *args) == 2, args
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], (args, error)
    assert not any((tmp_path / name).exists() for name in "abcde")
    assert (not_export / "holiday.png").exists() and not (tmp_path / "elsewhere").exists()


def test_a_second_export_to_the_same_folder_is_refused_and_the_first_stays_whole(tmp_path: Path, capsys) -> None:
    uri = store_in(tmp_path)
    env = {**os.environ, "S2R_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "refined"
    command = [CONSOLE_SCRIPT, "refine", "--refiner", "none", "--budget", "smoke", "--out", str(out),
               "--tracking-uri", uri, "--no-progress", "--set", "data.source_train=8000"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".refined.partial-*")):
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline, "the first export started nothing within 4 minutes"
        time.sleep(0.02)
    assert refine(uri, "--refiner", "none", "--out", str(out), "--limit", "8") == 2  # in process: while it writes
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "another export (pid" in error[0], error
    assert first.wait(timeout=300) == 0, first.stderr.read()
    rows = (out / "labels.csv").read_text().splitlines()
    assert len(rows) == 8001 and len(list(out.glob("*.png"))) == 8000
    assert json.loads((out / "refiner.json").read_text())["samples"] == 8000


@pytest.mark.parametrize("kill", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_an_interrupted_export_leaves_no_folder_or_the_previous_one_untouched(tmp_path: Path, kill: int) -> None:
    uri = store_in(tmp_path)
    env = {**os.environ, "S2R_BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "refined"
    command = [CONSOLE_SCRIPT, "refine", "--refiner", "none", "--budget", "smoke", "--out", str(out),
               "--tracking-uri", uri, "--no-progress"]
    if kill == signal.SIGKILL:  # a previous export that the interrupted one was to replace
        subprocess.run([*command, "--limit", "8"], env=env, check=True, capture_output=True, timeout=300)
        before = {path.name: path.read_bytes() for path in out.iterdir()}
    process = subprocess.Popen([*command, "--overwrite", "--set", "data.source_train=40000"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not any(len(list(partial.glob("*.png"))) > 50 for partial in tmp_path.glob(".refined.partial-*")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the export wrote nothing within 4 minutes"
        time.sleep(0.02)
    process.send_signal(kill)
    process.wait(timeout=60)
    if kill == signal.SIGINT:
        assert process.returncode == 130
        assert not out.exists()
        assert not list(tmp_path.glob(".refined.partial-*")), "Ctrl-C removes the partial folder"
    else:
        assert {path.name: path.read_bytes() for path in out.iterdir()} == before
