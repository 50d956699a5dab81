"""The fda baseline: low-frequency amplitude swap, phase kept (Yang & Soatto 2020)."""

from pathlib import Path

import pytest
import torch

from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.errors import ConfigError
from sim2real_bench.plugins.fda import FDA, FDAConfig
from sim2real_bench.refiner import FitContext
from sim2real_bench.tracking import Tracker

EYES = (1, 35, 55)


def fitted(target: torch.Tensor, shape: tuple[int, int, int] = EYES, config: FDAConfig = FDAConfig()) -> FDA:
    refiner = FDA(config, shape)
    context = FitContext(resolve_compute("cpu", "fp32"), Tracker.disabled(), 0, Path("."), progress=False)
    refiner.fit(Samples(torch.zeros(1, *shape)), Samples(target), context)
    return refiner


def images(count: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("shape", [EYES, (1, 64, 64)])
def test_refined_images_keep_shape_and_range(shape) -> None:
    source = images(6, shape, 0)
    refined = fitted(images(10, shape, 1), shape).refine(source)
    assert refined.shape == source.shape and refined.dtype == source.dtype
    assert refined.min() >= -1 and refined.max() <= 1
    assert not torch.allclose(refined, source)


def test_a_target_identical_to_the_source_changes_nothing() -> None:
    image = images(1, EYES, 2)
    torch.testing.assert_close(fitted(image).refine(image.repeat(3, 1, 1, 1)), image.repeat(3, 1, 1, 1), atol=1e-5, rtol=0)


def test_the_mean_intensity_comes_from_the_target() -> None:
    source = images(4, EYES, 3) * 0.3 - 0.2
    target = images(1, EYES, 4) * 0.3 + 0.4
    refined = fitted(target).refine(source)
    assert refined.mean((1, 2, 3)).tolist() == pytest.approx([target.mean().item()] * 4, abs=1e-4)


def test_high_frequencies_come_from_the_source() -> None:
    source, target = images(2, EYES, 5) * 0.5, images(8, EYES, 6) * 0.5  # no clamping
    refined = fitted(target).refine(source)
    assert refined.abs().max() < 1
    detail = torch.fft.fft2(refined)[..., 10:25, 10:45].abs()  # far from the swapped window around 0
    torch.testing.assert_close(detail, torch.fft.fft2(source)[..., 10:25, 10:45].abs(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize(("window", "message"), [
    (0.01, r"b = floor\(35 \* L\) = 0 .* changes nothing; use L >= 0.029"),
    (0.0, "changes nothing"),
    (-0.1, "changes nothing"),
    (float("nan"), "changes nothing"),
    (0.6, "wider than 35x55 images"),
])
def test_a_window_that_swaps_nothing_or_too_much_is_a_clear_error(window, message) -> None:
    with pytest.raises(ConfigError, match=message):
        FDA(FDAConfig(window=window), EYES)


@pytest.mark.parametrize(("change", "message"), [
    ({"window": 0.0}, r"window L=0.0 changes nothing; use a positive L"),
    ({"targets": 0}, "targets must be at least 1, got 0"),
])
def test_settings_wrong_for_any_image_are_clear_errors_when_the_config_is_made(change, message) -> None:
    with pytest.raises(ConfigError, match=f"^fda: {message}"):
        FDAConfig(**change)
