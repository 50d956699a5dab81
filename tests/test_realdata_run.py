"""A smoke run on real-data fixtures: UnityEyes as the source, MPIIGaze as the target, fewer images than asked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image
from realdata import looking, write_mpiigaze, write_unityeyes

from sim2real_bench.cli import main


def test_smoke_run_from_unityeyes_to_mpiigaze(tmp_path: Path, tracking_uri: str, capsys) -> None:
    gazes = [(pitch, yaw) for pitch in (-0.3, 0.0, 0.3) for yaw in (-0.4, 0.0, 0.4)]
    source = write_unityeyes(tmp_path / "UnityEyes", [looking(*gaze) for gaze in gazes] * 2)
    vectors = np.array([[math.cos(p) * math.sin(y), -math.sin(p), -math.cos(p) * math.cos(y)] for p, y in gazes])
    target = write_mpiigaze(tmp_path / "MPIIGaze", {"p00/day01": vectors, "p01/day01": vectors, "p02/day01": vectors})
    argv = ["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--source", f"unityeyes:{source}",
            "--target", f"mpiigaze:{target}", "--tracking-uri", tracking_uri, "--json", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["source"] == f"unityeyes:{source}"
    assert result["config"]["target"] == f"mpiigaze:{target}"
    assert 0 <= result["metrics"]["target/angular_error"] < 180


def _unlabeled_eyes(folder: Path, count: int = 40) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (35, 55), dtype=np.uint8)).save(folder / f"{index:03d}.png")
    return folder


def test_an_unlabeled_folder_is_a_target_when_a_labeled_test_set_is_named(tmp_path: Path, tracking_uri: str,
                                                                          capsys) -> None:
    unlabeled = _unlabeled_eyes(tmp_path / "webcam")
    argv = ["run", "--refiner", "histmatch", "--task", "gaze", "--budget", "smoke", "--target", f"folder:{unlabeled}",
            "--tracking-uri", tracking_uri, "--json", "--no-progress"]
    assert main(argv) == 2
    assert "to adapt to unlabeled target images, name a labeled test set with --target-test" in capsys.readouterr().err
    assert main([*argv, "--target-test", "webcam-eyes"]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["target"] == f"folder:{unlabeled}"
    assert result["config"]["target_test"] == "webcam-eyes"
    assert 0 <= result["metrics"]["target/angular_error"] < 180
    oracle = ["run", "--refiner", "oracle", "--task", "gaze", "--budget", "smoke", "--target", f"folder:{unlabeled}",
              "--target-test", "webcam-eyes", "--tracking-uri", tracking_uri]
    assert main(oracle) == 2
    assert "the oracle reference trains on labeled target images" in capsys.readouterr().err
