"""``mpiigaze:PATH``: the Normalized .mat layout, the gaze conversion, right-eye flips, person splits, broken input."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import mpii_eye, write_evaluation_list, write_mpiigaze, write_mpiigaze_day

from sim2real_bench.errors import DataError
from sim2real_bench.plugins.mpiigaze import MPIIGaze, gaze_from_vector, is_test_person


def opencv(pitch: float, yaw: float) -> list[float]:
    """An MPIIGaze gaze vector (x right, y down, z away from the camera) written out by hand."""
    return [math.cos(pitch) * math.sin(yaw), -math.sin(pitch), -math.cos(pitch) * math.cos(yaw)]


GAZES = [(0.1, 0.2), (-0.2, 0.3), (0.25, -0.1), (0.0, 0.0)]
"""The gazes of each day file, in row order."""


@pytest.fixture(scope="module")
def mpiigaze_root(tmp_path_factory) -> Path:
    vectors = np.array([opencv(*gaze) for gaze in GAZES])
    return write_mpiigaze(tmp_path_factory.mktemp("mpiigaze"), {
        "p00/day01": vectors, "p00/day02": vectors, "p01/day01": vectors, "p02/day03": vectors,
    })


@pytest.fixture
def broken_copy(mpiigaze_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mpiigaze_root, tmp_path / "mpiigaze"))


def sides_and_labels(images: torch.Tensor, labels: torch.Tensor) -> list[tuple[str, float, float]]:
    """Which side of each loaded image is bright, with its label (rounded), sorted."""
    bright_left = images[:, 0, :, :10].mean((1, 2)) > images[:, 0, :, -10:].mean((1, 2))
    return sorted((("left" if left else "right"), round(p, 4), round(y, 4))
                  for left, (p, y) in zip(bright_left.tolist(), labels.tolist()))


@pytest.mark.parametrize(("vector", "pitch_yaw"), [
    ((0.0, 0.0, -1.0), (0.0, 0.0)),                                  # into the lens
    ((0.0, -math.sin(0.3), -math.cos(0.3)), (0.3, 0.0)),             # up (y points down)
    ((math.sin(0.4), 0.0, -math.cos(0.4)), (0.0, 0.4)),              # toward the image's right
    ((0.0, 2 * math.sin(0.2), -2 * math.cos(0.2)), (-0.2, 0.0)),     # down, not unit length
])
def test_gaze_vectors_convert_to_the_project_convention(vector, pitch_yaw) -> None:
    assert gaze_from_vector(np.array(vector)) == pytest.approx(pitch_yaw, abs=1e-6)


def test_every_third_person_is_test() -> None:
    assert [is_test_person(f"p{n:02d}") for n in range(15)].count(True) == 5
    assert is_test_person("p00") and is_test_person("p12") and not is_test_person("p01")


def test_test_split_holds_test_persons_with_both_eyes_right_ones_flipped(mpiigaze_root: Path) -> None:
    test = MPIIGaze("mpiigaze", str(mpiigaze_root)).load("test", 1000, seed=0)
    assert test.images.shape == (16, 1, 35, 55)
    expected = [("left", *gaze) for gaze in GAZES] + [("right", gaze[0], -gaze[1]) for gaze in GAZES]
    assert sides_and_labels(test.images, test.labels) == sorted(expected * 2)


def test_train_split_holds_the_other_persons(mpiigaze_root: Path) -> None:
    dataset = MPIIGaze("mpiigaze", str(mpiigaze_root))
    assert {record.id.split("/")[0] for record in dataset.records("train")} == {"p01", "p02"}
    assert len(dataset.load("train", 1000, seed=0)) == 16


def test_images_keep_their_pixels_through_the_resize(mpiigaze_root: Path) -> None:
    images = MPIIGaze("mpiigaze", str(mpiigaze_root)).load("test", 1, seed=0).images
    assert images.min() == pytest.approx(60 / 127.5 - 1, abs=0.01)
    assert images.max() == pytest.approx(250 / 127.5 - 1, abs=0.01)


def test_evaluation_list_picks_the_test_samples(broken_copy: Path) -> None:
    write_evaluation_list(broken_copy, "p00", ["day01/0001.jpg left", "day02/0003.jpg right"])
    write_evaluation_list(broken_copy, "p01", ["day01/0002.jpg left"])  # a train person: all samples stay
    dataset = MPIIGaze("mpiigaze", str(broken_copy))
    test = dataset.load("test", 1000, seed=0)
    assert sides_and_labels(test.images, test.labels) == sorted([("left", 0.1, 0.2), ("right", 0.25, 0.1)])
    assert len(dataset.load("train", 1000, seed=0)) == 16


def test_a_day_with_one_frame_loads(tmp_path: Path) -> None:
    write_mpiigaze(tmp_path, {"p03/day01": np.array([opencv(0.1, 0.2)])})
    labels = MPIIGaze("mpiigaze", str(tmp_path)).load("test", 10, seed=0).labels
    assert sorted(labels[:, 1].tolist()) == pytest.approx([-0.2, 0.2])
    assert labels[:, 0].tolist() == pytest.approx([0.1, 0.1])


def test_a_folder_without_normalized_data_is_not_mpiigaze(tmp_path: Path) -> None:
    (tmp_path / "Data").mkdir()
    with pytest.raises(DataError, match="holds no Data/Normalized/pXX/dayNN.mat files; expected the MPIIGaze root"):
        MPIIGaze("mpiigaze", str(tmp_path))


def test_a_file_that_is_not_matlab_is_a_data_error(broken_copy: Path) -> None:
    (broken_copy / "Data/Normalized/p01/day01.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="p01/day01.mat is not a readable MATLAB file"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_a_mat_without_gaze_names_the_missing_field(broken_copy: Path) -> None:
    gazes = np.array([opencv(0, 0)] * 2)
    write_mpiigaze_day(broken_copy / "Data/Normalized/p01/day01.mat", gazes, gazes, fields={
        "data": {"left": {"image": np.stack([mpii_eye()] * 2), "gaze": gazes},
                 "right": {"image": np.stack([mpii_eye()] * 2)}}})
    with pytest.raises(DataError, match="day01.mat has no data.right.gaze; an MPIIGaze Normalized .mat holds"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_a_gaze_that_is_text_is_a_data_error(broken_copy: Path) -> None:
    gazes = np.array([opencv(0, 0)] * 2)
    write_mpiigaze_day(broken_copy / "Data/Normalized/p01/day01.mat", gazes, gazes, fields={
        "data": {"left": {"image": np.stack([mpii_eye()] * 2), "gaze": np.array(["up", "down"])},
                 "right": {"image": np.stack([mpii_eye()] * 2), "gaze": gazes}}})
    with pytest.raises(DataError, match="data.left.gaze is not numbers .* expected \\(N, 3\\) gaze vectors"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_images_of_another_size_are_a_data_error(broken_copy: Path) -> None:
    gazes = np.array([opencv(0, 0)] * 2)
    write_mpiigaze_day(broken_copy / "Data/Normalized/p01/day01.mat", gazes, gazes,
                       images=np.zeros((2, 40, 60), dtype=np.uint8))
    with pytest.raises(DataError, match=r"data.left.image is uint8 \(2, 40, 60\); expected uint8 \(N, 36, 60\)"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_a_zero_gaze_vector_is_a_data_error(broken_copy: Path) -> None:
    gazes = np.array([opencv(0, 0), [0.0, 0.0, 0.0]])
    write_mpiigaze_day(broken_copy / "Data/Normalized/p01/day01.mat", gazes, gazes,
                       images=np.stack([mpii_eye()] * 2))
    with pytest.raises(DataError, match="data.left.gaze row 1 .* expected a gaze direction"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_an_evaluation_list_naming_an_unknown_frame_is_a_data_error(broken_copy: Path) -> None:
    write_evaluation_list(broken_copy, "p00", ["day01/0001.jpg left", "day09/0001.jpg left"])
    with pytest.raises(DataError, match=r"p00.txt:2 names day09/0001.jpg, which no p00/dayNN.mat"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_a_malformed_evaluation_line_is_a_data_error(broken_copy: Path) -> None:
    write_evaluation_list(broken_copy, "p00", ["day01/0001.jpg middle"])
    with pytest.raises(DataError, match="p00.txt:1 is 'day01/0001.jpg middle'; expected"):
        MPIIGaze("mpiigaze", str(broken_copy))


def test_an_edited_day_file_is_indexed_again(broken_copy: Path) -> None:
    assert len(MPIIGaze("mpiigaze", str(broken_copy)).records("train")) == 16
    write_mpiigaze_day(broken_copy / "Data/Normalized/p01/day01.mat", np.array([opencv(0, 0)] * 6),
                       np.array([opencv(0, 0)] * 6), images=np.stack([mpii_eye()] * 6))
    assert len(MPIIGaze("mpiigaze", str(broken_copy)).records("train")) == 20
