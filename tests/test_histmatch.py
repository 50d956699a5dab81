"""The histmatch baseline: histogram specification and Reinhard mean/std matching."""

from pathlib import Path

import pytest
import torch

from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.errors import ConfigError
from sim2real_bench.plugins.histmatch import HistMatch, HistMatchConfig
from sim2real_bench.refiner import FitContext
from sim2real_bench.tracking import Tracker


def fitted(config: HistMatchConfig, target: torch.Tensor) -> HistMatch:
    refiner = HistMatch(config, (1, 8, 8))
    context = FitContext(resolve_compute("cpu"), Tracker.disabled(), 0, Path("."), progress=False)
    refiner.fit(Samples(torch.zeros(1, 1, 8, 8)), Samples(target), context)
    return refiner


def test_histogram_mode_gives_the_target_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(64, 1, 16, 16, generator=generator) * 2 - 1  # uniform on [-1, 1]
    source = (torch.randn(8, 1, 16, 16, generator=generator) * 0.1).clamp(-1, 1)
    refined = fitted(HistMatchConfig(), target).refine(source)
    assert refined.shape == source.shape
    assert refined.min() >= -1 and refined.max() <= 1
    assert refined.mean().item() == pytest.approx(0.0, abs=0.05)
    assert refined.std().item() == pytest.approx(2 / 12**0.5, abs=0.05)


def test_histogram_mode_keeps_the_order_of_intensities() -> None:
    target = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    source = torch.linspace(-0.5, 0.5, 64).view(1, 1, 8, 8)
    refined = fitted(HistMatchConfig(), target).refine(source).flatten()
    assert (refined[1:] >= refined[:-1]).all()


def test_reinhard_mode_matches_mean_and_std() -> None:
    target = torch.randn(32, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.2 + 0.3
    source = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.05 - 0.4
    refined = fitted(HistMatchConfig(mode="reinhard"), target).refine(source)
    for image in refined:
        assert image.mean().item() == pytest.approx(0.3, abs=0.02)
        assert image.std().item() == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize(("change", "message"), [
    ({"mode": "cdf"}, "mode 'cdf' is not one of histogram, reinhard"),
    ({"levels": 1}, "levels must be at least 2"),
])
def test_invalid_settings_are_clear_errors_when_the_config_is_made(change, message) -> None:
    with pytest.raises(ConfigError, match=f"^histmatch: .*{message}"):
        HistMatchConfig(**change)
