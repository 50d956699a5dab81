"""Smoke runs on real-data fixtures: UnityEyes as the source, MPIIGaze as the target, fewer images than asked; a
labeled folder as a second test set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from realdata import looking, write_folder, write_mpiigaze, write_unityeyes

from sim2real_bench.cli import main
from sim2real_bench.plan import build_dataset
from sim2real_bench.registry import Registry
from sim2real_bench.tasks.gaze import angular_error


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


def test_real_folders_are_a_second_test_set_and_a_second_realism_judge_that_change_nothing_else(
        tmp_path: Path, tracking_uri: str, capsys) -> None:
    rng = np.random.default_rng(1)
    pitch, yaw = rng.uniform(-0.3, 0.3, 24), rng.uniform(-0.4, 0.4, 24)
    labeled = write_folder(tmp_path / "real", rng.integers(0, 256, (24, 36, 60), dtype=np.uint8),
                           labels={"pitch": pitch.tolist(), "yaw": yaw.tolist()})
    unlabeled = _unlabeled_eyes(tmp_path / "unlabeled")
    argv = ["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--seed", "3",
            "--tracking-uri", tracking_uri, "--json", "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    alone = json.loads(capsys.readouterr().out)
    assert main([*argv, "--real-test", f"folder:{labeled}?split=test", "--real-images", f"folder:{unlabeled}"]) == 0, \
        capsys.readouterr().err
    both = json.loads(capsys.readouterr().out)
    # Framed to the task like any test set; evaluated on all 24 crops (split=test), with its mean-label floor.
    assert both["config"]["real_test"] == f"folder:{labeled}?split=test&size=55x35"
    assert both["config"]["real_images"] == f"folder:{unlabeled}"  # already 55x35: nothing to frame
    assert "real_test" not in alone["config"] and "real_images" not in alone["config"]
    # The refined test images are judged against the real images too, with the same two measures.
    assert 0 <= both["metrics"]["real_realism/classifier_accuracy"] <= 100
    assert math.isfinite(both["metrics"]["real_realism/kid"])
    assert both["metrics"]["real_realism/kid"] != both["metrics"]["realism/kid"]
    assert 0 <= both["metrics"]["real/angular_error"] < 180
    train_labels = build_dataset("synth-eyes", Registry()).load("train", 512, 3).labels  # the smoke source split
    floor = angular_error(train_labels.mean(0).expand(24, 2), torch.tensor(np.stack([pitch, yaw], 1))).mean()
    assert both["metrics"]["real_mean_label/angular_error"] == pytest.approx(float(floor), rel=1e-5)
    # What the task trained on and every other figure are the run without the real folders', to the last bit.
    compared = ("target", "source", "mean_label", "label_shift", "realism")
    assert {k: v for k, v in both["metrics"].items() if k.split("/")[0] in compared} == \
        {k: v for k, v in alone["metrics"].items() if k.split("/")[0] in compared}


def test_an_unlabeled_second_test_set_is_refused_before_any_work(tmp_path: Path, tracking_uri: str, capsys) -> None:
    unlabeled = _unlabeled_eyes(tmp_path / "unlabeled")
    assert main(["run", "--refiner", "none", "--task", "gaze", "--budget", "smoke", "--real-test",
                 f"folder:{unlabeled}", "--tracking-uri", tracking_uri, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "real test dataset" in err and "needs 'gaze'" in err, err
