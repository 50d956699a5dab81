"""``unityeyes:PATH``: JSON parsing, the gaze conversion, the crop, splits, the index cache, broken input."""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import looking, unity_annotation, write_unityeyes

from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.files import WORKERS_ENV, SkippedFilesWarning
from sim2real_bench.plugins.unityeyes import UnityEyes, gaze_from_look_vec, parse_tuple

GAZES = [(pitch, yaw) for pitch in (-0.3, 0.0, 0.3) for yaw in (-0.4, -0.1, 0.2, 0.5)]
"""Twelve gazes; the fixture holds each twice (24 samples: 21 train, 3 test)."""


@pytest.fixture(scope="module")
def unityeyes_folder(tmp_path_factory) -> Path:
    return write_unityeyes(tmp_path_factory.mktemp("unityeyes"), [looking(*gaze) for gaze in GAZES] * 2)


@pytest.fixture
def broken_copy(unityeyes_folder: Path, tmp_path: Path) -> Path:
    """A private copy of the fixture folder to damage."""
    return Path(shutil.copytree(unityeyes_folder, tmp_path / "unityeyes"))


def load_all(dataset: UnityEyes) -> tuple[torch.Tensor, torch.Tensor]:
    train, test = dataset.load("train", 1000, seed=0), dataset.load("test", 1000, seed=0)
    return torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels])


@pytest.mark.parametrize(("look_vec", "pitch_yaw"), [
    ((0.0, 0.0, -1.0), (0.0, 0.0)),                                    # into the lens
    ((0.0, math.sin(0.3), -math.cos(0.3)), (0.3, 0.0)),                # up
    ((0.0, -math.sin(0.2), -math.cos(0.2)), (-0.2, 0.0)),              # down
    ((math.sin(0.4), 0.0, -math.cos(0.4)), (0.0, 0.4)),                # toward the image's right
    ((-2 * math.sin(0.4), 0.0, -2 * math.cos(0.4)), (0.0, -0.4)),      # left, not unit length
])
def test_look_vec_converts_to_the_project_convention(look_vec, pitch_yaw) -> None:
    assert gaze_from_look_vec(np.array(look_vec)) == pytest.approx(pitch_yaw, abs=1e-6)


def test_string_tuples_parse_and_keep_the_first_numbers() -> None:
    assert parse_tuple("(0.0542, -0.1915, -0.9800, 0.0000)", 3, "look_vec") == pytest.approx((0.0542, -0.1915, -0.98))


@pytest.mark.parametrize("text", ["(1.0, 2.0)", "1.0, 2.0, 3.0", "(a, b, c)", [1.0, 2.0, 3.0], "(nan, 0, 0)"])
def test_malformed_string_tuples_are_data_errors(text) -> None:
    with pytest.raises(DataError, match="expected a string tuple of 3 numbers"):
        parse_tuple(text, 3, "look_vec")


def test_labels_are_the_written_gazes_end_to_end(unityeyes_folder: Path) -> None:
    _, labels = load_all(UnityEyes("unityeyes", str(unityeyes_folder)))
    found = sorted(tuple(round(value, 4) for value in label) for label in labels.tolist())
    assert found == sorted(GAZES * 2)


def test_crops_are_35x55_grayscale_centred_on_the_eye(unityeyes_folder: Path) -> None:
    images, _ = load_all(UnityEyes("unityeyes", str(unityeyes_folder)))
    assert images.shape == (24, 1, 35, 55) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    # The eye opening (bright) fills the middle; skin is at the crop's corners. A missed y flip shows only skin.
    assert images[:, 0, 15:20, 10:45].amax((1, 2)).min() > 0.5
    assert images[:, 0, :3, :3].mean() < 0


def test_iris_moves_the_way_the_label_says(unityeyes_folder: Path) -> None:
    images, labels = load_all(UnityEyes("unityeyes", str(unityeyes_folder)))
    darkness = (images[:, 0] < -0.6).float()
    columns = (darkness.sum(1) * torch.arange(55)).sum(1) / darkness.sum((1, 2))
    rows = (darkness.sum(2) * torch.arange(35)).sum(1) / darkness.sum((1, 2))
    assert torch.corrcoef(torch.stack([columns, labels[:, 1]]))[0, 1] > 0.9   # yaw > 0: iris to the right
    assert torch.corrcoef(torch.stack([rows, labels[:, 0]]))[0, 1] < -0.9     # pitch > 0: iris up


def test_splits_are_disjoint_and_the_test_split_ignores_the_seed(unityeyes_folder: Path) -> None:
    dataset = UnityEyes("unityeyes", str(unityeyes_folder))
    train, test = dataset.records("train"), dataset.records("test")
    assert {r.id for r in train}.isdisjoint({r.id for r in test}) and len(train) + len(test) == 24
    assert torch.equal(dataset.load("test", 10, seed=0).images, dataset.load("test", 10, seed=5).images)
    first, other = dataset.load("train", 100, seed=0), dataset.load("train", 100, seed=1)
    assert not torch.equal(first.images, other.images)
    assert sorted(first.labels.tolist()) == sorted(other.labels.tolist())


def test_a_smaller_load_is_the_start_of_a_larger_one(unityeyes_folder: Path) -> None:
    dataset = UnityEyes("unityeyes", str(unityeyes_folder))
    assert torch.equal(dataset.load("train", 5, seed=3).labels, dataset.load("train", 100, seed=3).labels[:5])


def test_a_split_smaller_than_asked_returns_what_it_has(unityeyes_folder: Path) -> None:
    assert len(UnityEyes("unityeyes", str(unityeyes_folder)).load("train", 512, seed=0)) == 21


def test_worker_processes_decode_the_same_samples(unityeyes_folder: Path, monkeypatch) -> None:
    in_process = UnityEyes("unityeyes", str(unityeyes_folder)).load("train", 100, seed=0)
    monkeypatch.setattr(UnityEyes, "chunk_size", 4)
    monkeypatch.setenv(WORKERS_ENV, "2")
    ticks: list[int] = []
    in_workers = UnityEyes("unityeyes", str(unityeyes_folder)).load("train", 100, seed=0, progress=ticks.append)
    assert torch.equal(in_process.images, in_workers.images) and torch.equal(in_process.labels, in_workers.labels)
    assert sum(ticks) == 21 and len(ticks) == 6


def test_a_format_error_in_a_worker_reaches_the_caller(broken_copy: Path, monkeypatch) -> None:
    monkeypatch.setattr(UnityEyes, "chunk_size", 4)
    monkeypatch.setenv(WORKERS_ENV, "2")
    dataset = UnityEyes("unityeyes", str(broken_copy))
    victim = dataset.records("train")[-1].id
    (broken_copy / f"{victim}.json").write_text(json.dumps({"eye_details": {}}))
    with pytest.raises(DataError, match=f"{victim}.json has no 'interior_margin_2d'"):
        dataset.load("train", 100, seed=0)


def test_the_index_is_reused_until_the_folder_changes(broken_copy: Path, monkeypatch) -> None:
    scans = []
    scan = UnityEyes.scan
    monkeypatch.setattr(UnityEyes, "scan", lambda self: scans.append(1) or scan(self))
    UnityEyes("unityeyes", str(broken_copy))
    UnityEyes("unityeyes", str(broken_copy))
    assert len(scans) == 1
    shutil.copy(broken_copy / "1.json", broken_copy / "100.json")
    shutil.copy(broken_copy / "1.jpg", broken_copy / "100.jpg")
    assert len(UnityEyes("unityeyes", str(broken_copy)).index["stems"]) == 25
    assert len(scans) == 2


def test_identity_changes_when_a_selected_file_is_edited(broken_copy: Path) -> None:
    before = UnityEyes("unityeyes", str(broken_copy)).identity("train", 100, seed=0)
    assert UnityEyes("unityeyes", str(broken_copy)).identity("train", 100, seed=0) == before
    edited = broken_copy / "1.json"
    edited.write_text(json.dumps(unity_annotation(looking(0.1, 0.1))))
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))
    assert UnityEyes("unityeyes", str(broken_copy)).identity("train", 100, seed=0) != before


def test_a_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; expected a folder of N.jpg \\+ N.json pairs"):
        UnityEyes("unityeyes", str(tmp_path / "nowhere"))


def test_a_spec_without_a_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'unityeyes:/path/to/folder'"):
        UnityEyes("unityeyes")


def test_a_folder_without_json_is_not_unityeyes(broken_copy: Path) -> None:
    for annotation in broken_copy.glob("*.json"):
        annotation.unlink()
    with pytest.raises(DataError, match="holds no N.json files"):
        UnityEyes("unityeyes", str(broken_copy))


def test_json_without_images_is_a_data_error(broken_copy: Path) -> None:
    for render in broken_copy.glob("*.jpg"):
        render.unlink()
    with pytest.raises(DataError, match="no N.jpg beside them"):
        UnityEyes("unityeyes", str(broken_copy))


def test_half_pairs_are_left_out_with_a_warning(broken_copy: Path) -> None:
    (broken_copy / "7.jpg").unlink()
    with pytest.warns(SkippedFilesWarning, match="left out 1 "):
        dataset = UnityEyes("unityeyes", str(broken_copy))
    assert "7" not in dataset.index["stems"]


def test_one_unreadable_jpg_is_skipped_and_counted(broken_copy: Path) -> None:
    dataset = UnityEyes("unityeyes", str(broken_copy))
    victim = dataset.records("train")[0].id
    (broken_copy / f"{victim}.jpg").write_bytes((broken_copy / f"{victim}.jpg").read_bytes()[:300])
    with pytest.warns(SkippedFilesWarning, match=f"1 of 21 samples .* unreadable \\({victim}.jpg"):
        assert len(dataset.load("train", 100, seed=0)) == 20


def test_a_json_cut_short_is_skipped_and_the_next_sample_takes_its_place(broken_copy: Path) -> None:
    dataset = UnityEyes("unityeyes", str(broken_copy))
    victim = dataset._ordered("train", 0)[1].id
    (broken_copy / f"{victim}.json").write_text('{"interior_margin_2d": ["(1.0, 2')
    with pytest.warns(SkippedFilesWarning, match=f"{victim}.json"):
        assert len(dataset.load("train", 5, seed=0)) == 5


def test_many_unreadable_files_are_a_data_error(broken_copy: Path) -> None:
    for render in list(broken_copy.glob("*.jpg"))[:4]:
        render.write_bytes(b"not a jpeg")
    dataset = UnityEyes("unityeyes", str(broken_copy))
    with warnings.catch_warnings(), pytest.raises(DataError, match="more than 1 in 20 is no accident"):
        warnings.simplefilter("ignore", SkippedFilesWarning)
        dataset.load("train", 100, seed=0)
        dataset.load("test", 100, seed=0)


@pytest.mark.parametrize(("field", "message"), [
    ("look_vec", "has no 'eye_details.look_vec'"),
    ("interior_margin_2d", "has no 'interior_margin_2d'"),
    ("head_pose", "has no 'head_pose'"),
])
def test_a_json_without_an_expected_field_names_file_and_field(broken_copy: Path, field: str, message: str) -> None:
    dataset = UnityEyes("unityeyes", str(broken_copy))
    victim = dataset.records("train")[0].id
    annotation = unity_annotation(looking(0.0, 0.0))
    annotation["eye_details"].pop(field, None)
    annotation.pop(field, None)
    (broken_copy / f"{victim}.json").write_text(json.dumps(annotation))
    with pytest.raises(DataError, match=f"{victim}.json {message}"):
        dataset.load("train", 100, seed=0)


def test_a_zero_look_vec_is_a_data_error(broken_copy: Path) -> None:
    dataset = UnityEyes("unityeyes", str(broken_copy))
    victim = dataset.records("train")[0].id
    (broken_copy / f"{victim}.json").write_text(json.dumps(unity_annotation((0.0, 0.0, 0.0))))
    with pytest.raises(DataError, match="expected a gaze direction"):
        dataset.load("train", 100, seed=0)
