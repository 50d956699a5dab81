"""``s2r-bench realism``: a candidate image set against real captures, by measures neither side trained."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from realdata import REAL_EYES, shared_path, write_folder

from sim2real_bench import realism, yardstick
from sim2real_bench.cli import main
from sim2real_bench.data import Dataset, Samples
from sim2real_bench.device import Compute
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.plan import build_dataset
from sim2real_bench.plugins.folder import Folder
from sim2real_bench.registry import Registry

CPU = Compute(torch.device("cpu"))
COUNT = 64


class Tensors(Dataset):
    """Fixed images as a dataset: the same block for every split and seed (labels are never asked for)."""

    label_kind = "unlabeled"
    label_names = ()

    def __init__(self, name: str, images: torch.Tensor) -> None:
        super().__init__(name)
        self.images = images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def load(self, split: str, size: int, seed: int, progress=None) -> Samples:
        return Samples(self.images[:size])


def noise(count: int = 32, shape: tuple[int, int, int] = (1, 35, 55), seed: int = 0) -> torch.Tensor:
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def quick_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """A two-sample classifier of a few steps, for tests of everything but its accuracy (it is most of the time)."""
    monkeypatch.setattr(realism, "CLASSIFIER_STEPS", 5)


@pytest.fixture(scope="module")
def synthetic_against_stand_in() -> yardstick.Comparison:
    registry = Registry()
    return yardstick.measure(build_dataset("synth-eyes", registry), build_dataset("webcam-eyes", registry), [0], CPU,
                             count=COUNT, echo=lambda line: None)


def test_clean_renders_are_told_from_the_stand_in_well_above_chance(
        synthetic_against_stand_in: yardstick.Comparison) -> None:
    assert synthetic_against_stand_in.count == COUNT
    assert synthetic_against_stand_in.accuracy[0] > 70
    assert synthetic_against_stand_in.kid[0] > 0.005


def test_a_domain_against_an_independent_draw_of_itself_is_near_chance(
        synthetic_against_stand_in: yardstick.Comparison) -> None:
    registry = Registry()
    same = yardstick.measure(build_dataset("synth-eyes", registry), build_dataset("synth-eyes", registry), [0], CPU,
                             count=COUNT, echo=lambda line: None)
    assert 30 < same.accuracy[0] < 70
    assert abs(same.kid[0]) < synthetic_against_stand_in.kid[0] / 5
    assert not any("on both sides" in note for note in same.notes)


def test_a_reference_is_judged_against_the_same_real_images_and_printed_beside_the_candidate(
        synthetic_against_stand_in: yardstick.Comparison) -> None:
    registry = Registry()
    with_reference = yardstick.measure(build_dataset("synth-eyes", registry), build_dataset("webcam-eyes", registry),
                                       [0], CPU, count=COUNT, echo=lambda line: None,
                                       reference=build_dataset("webcam-eyes", registry))
    reference = with_reference.reference
    assert reference is not None and reference.candidate == "webcam-eyes" and reference.real == "webcam-eyes"
    # The candidate's own figures are the ones measured without a reference; the reference is an independent
    # draw of the real side, so its two-sample test sits near chance where the clean renders' is far above it.
    assert with_reference.accuracy == synthetic_against_stand_in.accuracy
    assert 30 < reference.accuracy[0] < 70 < with_reference.accuracy[0]
    assert with_reference.columns() == ["candidate", "reference", "real"]
    rows = with_reference.rows()
    assert all(len(row) == 4 for row in rows) and rows[0][1:] == (f"{with_reference.accuracy[0]:.1f}",
                                                                  f"{reference.accuracy[0]:.1f}", "")
    assert "reference: real webcam-eyes" in with_reference.header()
    assert with_reference.to_json()["reference"]["classifier_accuracy"]["per_seed"] == reference.accuracy
    markdown = with_reference.markdown()
    assert "| measure | candidate | reference | real |" in markdown
    assert r"| mean \|d/dy\| / \|d/dx\| |" in markdown  # a bar inside a cell would split the table's row
    assert all(line.count("|") - line.count(r"\|") == 5 for line in markdown.splitlines() if line.startswith("|"))


def test_a_reference_is_framed_to_the_candidates_size_or_refused_with_the_fix(tmp_path: Path) -> None:
    other_size = write_folder(tmp_path / "other", np.zeros((20, 36, 60), dtype=np.uint8))
    framed = yardstick.framed_like(build_dataset("synth-eyes", Registry()), Folder("folder", str(other_size)))
    assert framed.image_shape == (1, 35, 55) and framed.spec.endswith("?size=55x35")
    with pytest.raises(DataError, match="give it that size"):
        yardstick.framed_like(build_dataset("synth-eyes", Registry()), Tensors("fixed", noise(shape=(1, 36, 60))))


def test_images_on_both_sides_are_counted_in_the_notes(quick_classifier: None) -> None:
    images = noise()
    comparison = yardstick.measure(Tensors("a", images), Tensors("b", images), [0], CPU, echo=lambda line: None)
    assert any(note.startswith("seed 0: 32 of 32 images are on both sides") for note in comparison.notes)


def test_real_images_of_another_size_are_resized_to_the_candidates_with_a_note(quick_classifier: None) -> None:
    lines: list[str] = []
    comparison = yardstick.measure(Tensors("candidate", noise()), Tensors("real", noise(shape=(1, 36, 60), seed=1)),
                                   [0], CPU, echo=lines.append)
    assert comparison.image_shape == (1, 35, 55)
    assert lines == ["s2r-bench: real: real images resized from 60x36 to the candidate's 55x35 (bilinear, antialiased)"]
    assert comparison.notes[0] == lines[0].removeprefix("s2r-bench: real: ")


def test_resizing_is_antialiased_bilinear_and_keeps_the_range() -> None:
    stripes = torch.tensor([-1.0, 1.0]).repeat(30).view(1, 1, 1, 60).expand(1, 1, 36, 60)
    resized = yardstick.resize(stripes, 35, 55)
    assert resized.shape == (1, 1, 35, 55) and resized.abs().max() <= 1
    assert resized.std() < 0.5 * stripes.std()  # one-pixel stripes are above the new Nyquist limit: averaged away


def test_other_channels_are_a_data_error_with_the_fix() -> None:
    with pytest.raises(DataError, match=r"have 3; convert the real side, e.g. folder:PATH\?channels=1"):
        yardstick.measure(Tensors("candidate", noise()), Tensors("real", noise(shape=(3, 35, 55))), [0], CPU)


def test_another_aspect_ratio_is_a_data_error_not_a_squashed_image() -> None:
    with pytest.raises(DataError, match=r"64x64 \(W x H\): aspect ratios 1.57 and 1.00 differ .*\?crop="):
        yardstick.measure(Tensors("candidate", noise()), Tensors("real", noise(shape=(1, 64, 64))), [0], CPU)


def test_too_few_images_or_no_seeds_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16"):
        yardstick.measure(Tensors("a", noise()), Tensors("b", noise()), [0], CPU, count=8)
    with pytest.raises(DataError, match="only 10 images to compare"):
        yardstick.measure(Tensors("a", noise(10)), Tensors("b", noise()), [0], CPU)
    with pytest.raises(ConfigError, match="no seeds"):
        yardstick.measure(Tensors("a", noise()), Tensors("b", noise()), [], CPU)


def test_both_sides_are_equalized_before_the_statistics(quick_classifier: None) -> None:
    dim = noise() * 0.1 - 0.5  # a narrow, dark histogram: equalized, it spreads over the whole range
    comparison = yardstick.measure(Tensors("dim", dim), Tensors("full", noise(seed=1)), [0], CPU,
                                   echo=lambda line: None)
    assert comparison.candidate_stats.std == pytest.approx(comparison.real_stats.std, abs=0.02)
    assert "histogram-equalized" in comparison.header()


def test_the_feature_network_is_fixed_and_the_same_on_every_call() -> None:
    first, second = yardstick.random_features(1), yardstick.random_features(1)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b) and not a.requires_grad
    features = yardstick.features_of(noise(4), CPU)
    assert features.shape == (4, 2 * (32 + 64 + 128) + 128 * 6)
    assert torch.equal(features, yardstick.features_of(noise(4), CPU))


def test_gradient_energy_tells_vertical_from_horizontal_structure() -> None:
    rows = torch.linspace(-1, 1, 35).view(1, 1, 35, 1).expand(8, 1, 35, 55)  # intensity changes from top to bottom
    stats = yardstick.image_statistics(rows)
    assert stats.gradient_y > 0 and stats.gradient_x == 0


def test_the_dark_blob_is_the_largest_dark_region_and_where_it_sits() -> None:
    image = torch.ones(1, 1, 36, 60)
    image[..., 10:20, 40:50] = -1  # one 10x10 iris right of centre
    image[..., 0, 0] = -1  # a speck
    stats = yardstick.image_statistics(image)
    assert stats.dark_blob_area == pytest.approx(100 * 100 / (36 * 60))
    assert stats.dark_blob_share == pytest.approx(100 * 100 / 101)
    assert (stats.dark_blob_x, stats.dark_blob_y) == (pytest.approx(45 / 60), pytest.approx(15 / 36))


def _iris(height: int, width: int, centre: tuple[float, float], radius: float) -> torch.Tensor:
    """A gray ``(1, H, W)`` crop in [0, 1]: a dark disc with a glint under a dark lid band, on bright skin."""
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, -1) + 0.5
    image = torch.full((height, width), 0.8)
    image[(xs - centre[0]).square() + (ys - centre[1]).square() <= radius**2] = 0.1
    image[round(centre[1] - radius) - 2 : round(centre[1] - radius) + 2, 5:-5] = 0.05  # the lid, joined to the iris
    image[round(centre[1]) - 2, round(centre[0]) + 2] = 1.0  # a glint
    return image.unsqueeze(0)


def test_the_darkest_disc_finds_an_iris_under_a_lid_and_past_a_glint() -> None:
    gray = torch.cat([_iris(35, 55, (30.5, 19.5), 9.0), _iris(35, 55, (22.5, 17.5), 6.0)])
    x, y, radius = yardstick.dark_discs(gray)
    torch.testing.assert_close(x, torch.tensor([30.5, 22.5]), atol=1.0, rtol=0)
    torch.testing.assert_close(y, torch.tensor([19.5, 17.5]), atol=1.0, rtol=0)
    torch.testing.assert_close(radius, torch.tensor([9.0, 6.0]), atol=1.0, rtol=0)


def test_the_darkest_disc_of_a_tall_image_is_found_at_its_own_scale() -> None:
    # Searched at DISC_HEIGHT rows (the cost stays bounded), reported in the input's pixels.
    x, y, radius = yardstick.dark_discs(_iris(140, 220, (122.0, 78.0), 36.0))
    assert (float(x), float(y), float(radius)) == (pytest.approx(122, abs=4), pytest.approx(78, abs=4),
                                                   pytest.approx(36, abs=4))


def test_the_power_spectrum_of_smooth_images_falls_faster_than_that_of_noise() -> None:
    white = noise(64)
    smooth = torch.nn.functional.avg_pool2d(white, 5, 1, 2)
    white_slope = yardstick.image_statistics(white).spectrum_slope
    assert abs(white_slope) < 0.5
    assert yardstick.image_statistics(smooth).spectrum_slope < white_slope - 2


def test_mean_and_standard_error_over_seeds() -> None:
    assert yardstick.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1 / math.sqrt(3)))
    assert math.isnan(yardstick.mean_se([4.0])[1])


def test_the_report_is_written_as_json_markdown_and_pictures(synthetic_against_stand_in: yardstick.Comparison,
                                                             tmp_path: Path) -> None:
    written = yardstick.write(synthetic_against_stand_in, tmp_path / "out")
    assert sorted(path.name for path in written) == ["layout.png", "realism.json", "realism.md", "samples.png",
                                                     "statistics.png"]
    figures = json.loads((tmp_path / "out" / "realism.json").read_text())
    assert figures["classifier_accuracy"]["per_seed"] == synthetic_against_stand_in.accuracy
    assert figures["classifier_accuracy"]["se"] is None and figures["equalized"] is True
    assert set(figures["statistics"]["real"]) >= {"spectrum_slope", "gradient_y", "gradient_x", "dark_blob_area"}
    assert "![samples.png](samples.png)" in (tmp_path / "out" / "realism.md").read_text()
    assert figures["layout_accuracy"]["per_seed"] == synthetic_against_stand_in.layout
    assert np.asarray(figures["layout_difference"]).shape == yardstick.LAYOUT_BLOCKS


def test_the_layout_test_tells_where_things_are_and_is_at_chance_for_one_distribution() -> None:
    generator = torch.Generator().manual_seed(0)

    def dark_left(count: int) -> torch.Tensor:
        images = torch.rand(count, 1, 35, 55, generator=generator) * 2 - 1
        images[..., :27] -= torch.rand(count, 1, 1, 1, generator=generator)  # a darker left half, by a varying amount
        return images

    left, right = dark_left(200), dark_left(200).flip(-1)
    assert yardstick.layout_accuracy(left, right, seed=0) > 95
    difference = np.asarray(yardstick.layout_difference(left, right))
    assert (difference[:, 0] < -1).all() and (difference[:, -1] > 1).all()
    assert 35 < yardstick.layout_accuracy(left, dark_left(200), seed=0) < 65


def fails_cleanly(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("s2r-bench: error:") and message in err, err


def test_the_command_prints_the_table_and_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                            quick_classifier: None) -> None:
    rng = np.random.default_rng(0)
    candidate = write_folder(tmp_path / "candidate", (rng.random((20, 35, 55)) * 255).astype(np.uint8))
    real = write_folder(tmp_path / "real", (rng.random((20, 36, 60)) * 255).astype(np.uint8))
    assert main(["realism", f"folder:{candidate}", "--real", f"folder:{real}", "--seeds", "0,1", "--count", "16",
                 "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert "two-sample test accuracy" in captured.out and " ± " in captured.out
    assert "real images resized from 60x36 to the candidate's 55x35" in captured.err
    assert (tmp_path / "report" / "realism.json").exists()
    assert "reference" not in captured.out


def test_the_command_prints_a_reference_column(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               quick_classifier: None) -> None:
    rng = np.random.default_rng(1)
    real = write_folder(tmp_path / "real", (rng.random((20, 35, 55)) * 255).astype(np.uint8))
    other = write_folder(tmp_path / "other", (rng.random((20, 36, 60)) * 255).astype(np.uint8))
    assert main(["realism", "synth-eyes", "--real", f"folder:{real}", "--reference", f"folder:{other}",
                 "--seeds", "0", "--count", "16", "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split() == ["measure", "candidate", "reference", "real"]
    assert "reference" in json.loads((tmp_path / "report" / "realism.json").read_text())


def test_the_command_refuses_mismatched_channels_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    colour = write_folder(tmp_path / "colour", np.zeros((20, 35, 55, 3), dtype=np.uint8))
    fails_cleanly(capsys, ["realism", "synth-eyes", "--real", f"folder:{colour}"], "convert the real side")


def test_the_command_refuses_bad_counts_and_seeds_in_one_line(capsys: pytest.CaptureFixture) -> None:
    fails_cleanly(capsys, ["realism", "synth-eyes", "--real", "webcam-eyes", "--count", "4"], "at least 16")
    fails_cleanly(capsys, ["realism", "synth-eyes", "--real", "webcam-eyes", "--seeds", "a"], "--seeds")


def test_the_real_mpiigaze_crops_are_resized_to_the_gaze_shape(quick_classifier: None) -> None:
    real = Folder("folder", str(shared_path(*REAL_EYES)))
    assert real.image_shape == (1, 36, 60)
    lines: list[str] = []
    comparison = yardstick.measure(build_dataset("synth-eyes", Registry()), real, [0], CPU, count=32,
                                   echo=lines.append)
    assert comparison.count == 32 and comparison.image_shape == (1, 35, 55)
    assert "resized from 60x36 to the candidate's 55x35" in lines[0]
    # The real crops are equalized already: vertical gradients stronger than horizontal ones (lids, creases).
    assert comparison.real_stats.gradient_y > 1.3 * comparison.real_stats.gradient_x
