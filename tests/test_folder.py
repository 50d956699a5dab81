"""``folder:PATH``: PNG/JPEG images with an optional labels.csv; label kinds, pixels, splits, broken input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from realdata import write_folder

from sim2real_bench.errors import DataError
from sim2real_bench.files import SkippedFilesWarning
from sim2real_bench.plugins.folder import Folder

COUNT = 30


def pictures(count: int = COUNT, height: int = 35, width: int = 55) -> np.ndarray:
    """Distinct uint8 grayscale images: image ``k`` is filled with ``8 * k``."""
    return np.stack([np.full((height, width), 8 * k, dtype=np.uint8) for k in range(count)])


GAZE = {"pitch": [k / 100 for k in range(COUNT)], "yaw": [-k / 50 for k in range(COUNT)]}


@pytest.fixture(scope="module")
def gaze_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("folder"), pictures(), GAZE)


@pytest.fixture
def broken_copy(gaze_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(gaze_folder, tmp_path / "folder"))


def load_all(dataset: Folder):
    train, test = dataset.load("train", 1000, seed=0), dataset.load("test", 1000, seed=0)
    labels = None if train.labels is None else torch.cat([train.labels, test.labels])
    return torch.cat([train.images, test.images]), labels


def test_pitch_and_yaw_columns_make_a_gaze_folder(gaze_folder: Path) -> None:
    dataset = Folder("folder", str(gaze_folder))
    assert dataset.label_kind == "gaze" and dataset.label_names == ("pitch", "yaw")
    assert dataset.image_shape == (1, 35, 55)


def test_images_and_labels_load_exactly(gaze_folder: Path) -> None:
    images, labels = load_all(Folder("folder", str(gaze_folder)))
    assert images.shape == (COUNT, 1, 35, 55)
    fill = ((images[:, 0, 0, 0] + 1) * 127.5).round() / 8  # image k is filled with 8 k and labeled (k/100, -k/50)
    assert torch.allclose(labels, torch.stack([fill / 100, -fill / 50], 1))
    assert torch.equal(images, images[:, :, :1, :1].expand_as(images))


def test_columns_in_another_order_are_put_in_gaze_order(tmp_path: Path) -> None:
    write_folder(tmp_path, pictures(12), {"yaw": [0.5] * 12, "pitch": [0.25] * 12})
    dataset = Folder("folder", str(tmp_path))
    assert dataset.label_kind == "gaze"
    assert load_all(dataset)[1].unique(dim=0).tolist() == [[0.25, 0.5]]


def test_a_folder_without_labels_is_an_unlabeled_target(tmp_path: Path) -> None:
    dataset = Folder("folder", str(write_folder(tmp_path, pictures(12))))
    assert dataset.label_kind == "unlabeled"
    images, labels = load_all(dataset)
    assert labels is None and len(images) == 12


def test_other_columns_name_their_own_kind(tmp_path: Path) -> None:
    write_folder(tmp_path, pictures(12), {"u": [1.0] * 12, "v": [2.0] * 12})
    assert Folder("folder", str(tmp_path)).label_kind == "csv(u,v)"


def test_colour_images_keep_three_channels(tmp_path: Path) -> None:
    write_folder(tmp_path, np.stack([np.full((8, 10, 3), (10, 20, 30), dtype=np.uint8)] * 12))
    dataset = Folder("folder", str(tmp_path))
    assert dataset.image_shape == (3, 8, 10)
    assert ((load_all(dataset)[0][0, :, 0, 0] + 1) * 127.5).round().tolist() == [10, 20, 30]


def test_about_one_image_in_ten_is_test_whatever_the_seed(gaze_folder: Path) -> None:
    dataset = Folder("folder", str(gaze_folder))
    test = dataset.load("test", 100, seed=0)
    assert 1 <= len(test) <= 8 and len(test) + len(dataset.load("train", 100, seed=0)) == COUNT
    assert torch.equal(test.images, dataset.load("test", 100, seed=9).images)


def test_an_empty_split_is_a_data_error(tmp_path: Path) -> None:
    dataset = Folder("folder", str(write_folder(tmp_path, pictures(1))))
    split = "test" if not dataset.records("test") else "train"
    with pytest.raises(DataError, match=f"the {split} split of folder:.* is empty"):
        dataset.load(split, 10, seed=0)


def test_an_edited_labels_csv_is_read_again(broken_copy: Path) -> None:
    Folder("folder", str(broken_copy))
    lines = (broken_copy / "labels.csv").read_text().splitlines()
    (broken_copy / "labels.csv").write_text("\n".join([lines[0], "000000.png,0.5,0.5", *lines[2:]]) + "\n")
    assert Folder("folder", str(broken_copy)).index["labels"][0] == [0.5, 0.5]


def test_a_folder_without_images_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="holds no images; expected a folder of .png/.jpg/.jpeg images"):
        Folder("folder", str(tmp_path))


def test_a_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Folder("folder", str(tmp_path / "nowhere"))


@pytest.mark.parametrize(("row", "message"), [
    ("000001.png,0.1,abc", r"labels.csv:3: yaw is 'abc'; expected a finite number"),
    ("000001.png,0.1,nan", r"labels.csv:3: yaw is 'nan'; expected a finite number"),
    ("missing.png,0.1,0.2", r"labels.csv:3 names 'missing.png', which is not a .png/.jpg/.jpeg image"),
    ("000000.png,0.1,0.2", r"labels.csv:3 names '000000.png' a second time"),
    ("000001.png,0.1", r"labels.csv:3 has 2 fields; expected 3 \(file, pitch, yaw\)"),
])
def test_a_bad_labels_row_names_file_and_line(broken_copy: Path, row: str, message: str) -> None:
    lines = (broken_copy / "labels.csv").read_text().splitlines()
    (broken_copy / "labels.csv").write_text("\n".join([*lines[:2], row, *lines[3:]]) + "\n")
    with pytest.raises(DataError, match=message):
        Folder("folder", str(broken_copy))


def test_a_labels_csv_without_label_columns_is_a_data_error(broken_copy: Path) -> None:
    (broken_copy / "labels.csv").write_text("file\n000000.png\n")
    with pytest.raises(DataError, match="has no label columns"):
        Folder("folder", str(broken_copy))


def test_an_undecodable_image_is_skipped_and_counted(broken_copy: Path) -> None:
    dataset = Folder("folder", str(broken_copy))
    victim = dataset.records("train")[-1].id
    (broken_copy / victim).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(SkippedFilesWarning, match=f"1 of {len(dataset.records('train'))} .* unreadable \\({victim}"):
        assert len(dataset.load("train", 100, seed=0)) == len(dataset.records("train")) - 1


def test_an_image_of_another_size_is_a_data_error(broken_copy: Path) -> None:
    dataset = Folder("folder", str(broken_copy))
    victim = dataset.records("train")[-1].id
    Image.fromarray(np.zeros((36, 60), dtype=np.uint8)).save(broken_copy / victim)
    with pytest.raises(DataError, match=f"{victim} is 60x36; every image of the folder must be 55x35"):
        dataset.load("train", 100, seed=0)
