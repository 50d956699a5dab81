"""``folder:PATH``: PNG/JPEG images with an optional labels.csv; label kinds, pixels, splits, broken input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from realdata import REAL_EYES, REAL_EYES_LABELED, shared_path, write_folder

from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.files import SkippedFilesWarning
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.plugins.folder import Folder
from sim2real_bench.registry import Registry
from sim2real_bench.stages import RunContext, load_split
from sim2real_bench.store import Store
from sim2real_bench.tracking import Tracker

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
    assert Registry().label_kind_of(dataset) == "gaze" and dataset.label_names == ("pitch", "yaw")
    assert dataset.image_shape == (1, 35, 55)


def test_images_and_labels_load_exactly(gaze_folder: Path) -> None:
    images, labels = load_all(Folder("folder", str(gaze_folder)))
    assert images.shape == (COUNT, 1, 35, 55)
    fill = ((images[:, 0, 0, 0] + 1) * 127.5).round() / 8  # image k is filled with 8 k and labeled (k/100, -k/50)
    assert torch.allclose(labels, torch.stack([fill / 100, -fill / 50], 1))
    assert torch.equal(images, images[:, :, :1, :1].expand_as(images))


def test_columns_in_another_order_reach_the_task_in_its_order(tmp_path: Path) -> None:
    write_folder(tmp_path / "data", pictures(12), {"yaw": [0.5] * 12, "pitch": [0.25] * 12})
    registry = Registry()
    plan = resolve(RunSpec(refiner="none", task="gaze", budget="smoke", source=f"folder:{tmp_path / 'data'}"),
                   registry)
    assert registry.label_kind_of(plan.source) == "gaze" and plan.source.label_names == ("yaw", "pitch")
    context = RunContext(plan.compute, Tracker.disabled(), 0, Store(tmp_path / "cache"), progress=False)
    assert load_split(plan, "source_train", context).labels.unique(dim=0).tolist() == [[0.25, 0.5]]


def test_a_folder_without_labels_is_an_unlabeled_target(tmp_path: Path) -> None:
    dataset = Folder("folder", str(write_folder(tmp_path, pictures(12))))
    assert dataset.label_kind == "unlabeled"
    images, labels = load_all(dataset)
    assert labels is None and len(images) == 12


def test_columns_no_task_declares_name_their_own_kind(tmp_path: Path) -> None:
    write_folder(tmp_path, pictures(12), {"u": [1.0] * 12, "v": [2.0] * 12})
    assert Registry().label_kind_of(Folder("folder", str(tmp_path))) == "csv(u,v)"


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


# Options: framing and splits declared in the spec or in frame.json, never by editing the files.

def real_sized(count: int = 20) -> np.ndarray:
    """60x36 crops (the size of MPIIGaze's normalized eyes) whose left half is dark and right half bright."""
    images = np.full((count, 36, 60), 220, dtype=np.uint8)
    images[:, :, :30] = 20
    return images


def test_size_resizes_every_image_once_and_the_shape_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dataset = Folder("folder", f"{write_folder(tmp_path, real_sized())}?size=55x35")
    assert dataset.image_shape == (1, 35, 55) and dataset.file_shape == (1, 36, 60)
    images = dataset.load("train", 100, seed=0).images
    assert images.shape[1:] == (1, 35, 55)
    pixels = ((images[0, 0] + 1) * 127.5).round()
    assert pixels[0, 0] == 20 and pixels[0, -1] == 220 and 20 < pixels[0, 27] < 220  # bilinear: a soft edge
    assert "60x36 images resized to 55x35 (bilinear, antialiased), once, as they load" in capsys.readouterr().err
    dataset.load("test", 100, seed=0)
    assert capsys.readouterr().err == ""  # said once per dataset


def test_a_folder_of_real_sized_crops_is_resized_to_the_task_as_its_target(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "unlabeled", real_sized())
    labeled = write_folder(tmp_path / "labeled", real_sized(), labels={"pitch": [0.0] * 20, "yaw": [0.1] * 20})
    explicit = resolve(RunSpec(refiner="none", task="gaze", budget="smoke", target=f"folder:{folder}?size=55x35",
                               target_test="webcam-eyes"), Registry())
    framed = resolve(RunSpec(refiner="none", task="gaze", budget="smoke", target=f"folder:{folder}",
                             target_test=f"folder:{labeled}?split=test"), Registry())
    # The run records the resize in the spec, so it is the explicit run's data and cache entry.
    assert framed.target.spec == explicit.target.spec == f"folder:{folder}?size=55x35"
    assert framed.target_test.spec == f"folder:{labeled}?split=test&size=55x35"
    assert framed.target.image_shape == framed.target_test.image_shape == (1, 35, 55)


def test_a_folder_is_not_resized_against_its_own_size_or_aspect_ratio(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, real_sized())
    with pytest.raises(DataError, match=r"images are \(1, 30, 50\).*folder:PATH\?size=55x35&channels=1\)"):
        resolve(RunSpec(refiner="none", task="gaze", budget="smoke", target=f"folder:{folder}?size=50x30",
                        target_test="webcam-eyes"), Registry())
    square = write_folder(tmp_path / "square", np.zeros((4, 64, 64), dtype=np.uint8))
    with pytest.raises(DataError, match=r"\(1, 64, 64\).*crop=LEFT,TOP,RIGHT,BOTTOM&size=55x35"):
        resolve(RunSpec(refiner="none", task="gaze", budget="smoke", target=f"folder:{square}",
                        target_test="webcam-eyes"), Registry())


def test_crop_and_channels_frame_colour_patches_as_gray_eye_crops(tmp_path: Path) -> None:
    patches = np.zeros((12, 64, 64, 3), dtype=np.uint8)
    patches[:, 13:51] = (200, 100, 50)  # the band a crop keeps; outside it stays black
    dataset = Folder("folder", f"{write_folder(tmp_path, patches)}?crop=0,13,64,51&channels=1&size=55x35")
    assert dataset.image_shape == (1, 35, 55)
    images, _ = load_all(dataset)
    luma = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # PIL's L conversion
    assert images.shape == (12, 1, 35, 55)
    assert ((images + 1) * 127.5).round().unique().tolist() == [luma]


def test_frame_json_beside_the_images_frames_them_and_the_spec_wins(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, real_sized())
    (folder / "frame.json").write_text('{"size": "55x35", "crop": [0, 0, 60, 36]}')
    assert Folder("folder", str(folder)).image_shape == (1, 35, 55)
    assert Folder("folder", f"{folder}?size=30x18").image_shape == (1, 18, 30)


def test_options_change_the_identity_so_caches_never_mix_framings(gaze_folder: Path) -> None:
    plain, resized = Folder("folder", str(gaze_folder)), Folder("folder", f"{gaze_folder}?size=30x20")
    assert plain.identity("train", 10, 0) != resized.identity("train", 10, 0)


def test_a_split_column_puts_each_row_in_its_split(tmp_path: Path) -> None:
    splits = ["test" if k % 3 == 0 else "train" for k in range(COUNT)]
    write_folder(tmp_path, pictures(), {**GAZE, "split": splits})
    dataset = Folder("folder", str(tmp_path))
    assert dataset.label_names == ("pitch", "yaw") and Registry().label_kind_of(dataset) == "gaze"
    test = dataset.load("test", 100, seed=0)
    fill = ((test.images[:, 0, 0, 0] + 1) * 127.5).round() / 8
    assert sorted(fill.int().tolist()) == list(range(0, COUNT, 3))
    assert torch.allclose(test.labels, torch.stack([fill / 100, -fill / 50], 1))


def test_a_split_column_alone_splits_an_unlabeled_folder(tmp_path: Path) -> None:
    write_folder(tmp_path, pictures(12), {"split": ["test"] * 4 + ["train"] * 8})
    dataset = Folder("folder", str(tmp_path))
    assert dataset.label_kind == "unlabeled"
    assert len(dataset.load("test", 100, seed=0)) == 4 and dataset.load("train", 100, seed=0).labels is None


def test_a_bad_split_value_names_file_and_line(tmp_path: Path) -> None:
    write_folder(tmp_path, pictures(3), {"pitch": [0.0] * 3, "yaw": [0.0] * 3, "split": ["train", "val", "test"]})
    with pytest.raises(DataError, match=r"labels.csv:3: split is 'val'; expected train or test"):
        Folder("folder", str(tmp_path))


def test_split_test_makes_a_labeled_folder_a_whole_test_set(gaze_folder: Path) -> None:
    dataset = Folder("folder", f"{gaze_folder}?split=test")
    assert len(dataset.load("test", 100, seed=0)) == COUNT
    with pytest.raises(DataError, match="the train split of .* is empty \\(the spec's split=test"):
        dataset.load("train", 100, seed=0)


def test_files_keeps_only_the_images_matching_a_pattern(gaze_folder: Path) -> None:
    dataset = Folder("folder", f"{gaze_folder}?files=00000*,000010.png&split=test")
    assert sorted(record.id for record in dataset.records("test")) == [f"{k:06d}.png" for k in range(11)]
    question_mark = Folder("folder", f"{gaze_folder}?split=test&files=00001?.png")  # a pattern's ? is not the path's
    assert len(question_mark.records("test")) == 10


def test_a_question_mark_in_a_folders_name_is_part_of_the_path(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "what?", pictures(12))
    assert Folder("folder", str(folder)).root == folder.resolve()
    assert Folder("folder", f"{folder}?size=11x7").image_shape == (1, 7, 11)


@pytest.mark.parametrize(("options", "message"), [
    ("size=55", r"size='55' is not valid; expected WxH"),
    ("crop=1,2,3", r"crop='1,2,3' is not valid; expected LEFT,TOP,RIGHT,BOTTOM"),
    ("channels=2", r"channels='2' is not valid; expected 1 or 3"),
    ("split=val", r"split='val' is not valid; expected train or test"),
    ("zoom=2", r"unknown folder option\(s\) zoom; known: crop, channels, size, split, files"),
    ("size", r"folder option 'size' .* has no value"),
    ("crop=0,0,56,35", r"crop=0,0,56,35 reaches outside the images, which are 55x35"),
])
def test_a_bad_option_is_a_config_error_saying_what_is_expected(gaze_folder: Path, options: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Folder("folder", f"{gaze_folder}?{options}")


def test_the_real_eye_crops_load_at_the_gaze_tasks_size() -> None:
    dataset = Folder("folder", f"{shared_path(*REAL_EYES)}?size=55x35")
    assert dataset.label_kind == "unlabeled" and dataset.file_shape == (1, 36, 60)
    images = dataset.load("train", 64, seed=0).images
    assert images.shape == (64, 1, 35, 55) and images.min() >= -1 and images.max() <= 1


def test_the_labeled_real_eye_patches_frame_as_a_gaze_test_set() -> None:
    spec = f"folder:{shared_path(*REAL_EYES_LABELED)}?crop=0,13,64,51&size=55x35&channels=1&split=test"
    registry = Registry()
    plan = resolve(RunSpec(refiner="none", task="gaze", budget="smoke", target_test=spec), registry)
    dataset = plan.target_test
    assert registry.label_kind_of(dataset) == "gaze" and dataset.image_shape == (1, 35, 55)
    assert len(dataset.records("test")) == 1008 and not dataset.records("train")
    labels = dataset.load("test", 1008, seed=0).labels
    assert labels.abs().max() <= math.radians(15) + 1e-6  # gaze within +/-10 deg vertically, +/-15 horizontally


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(35 * 55, dtype=np.uint32).reshape(35, 55) * 34).astype(np.uint16)  # 0 .. 65416
    for index in range(4):
        Image.fromarray(ramp).save(tmp_path / f"{index:02d}.png")
    images = Folder("folder", f"{tmp_path}?split=test").load("test", 4, seed=0).images
    pixels = ((images[0, 0] + 1) * 127.5).round()
    assert pixels.min() == 0 and pixels.max() == 255
    assert (pixels == 255).float().mean() < 0.01
    expected = torch.from_numpy(np.rint(ramp / 257.0).astype(np.float32))
    assert (pixels - expected).abs().max() <= 1
