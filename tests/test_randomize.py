"""The randomize baseline: photometric domain randomization, fresh draws per batch."""

import pytest
import torch

from sim2real_bench.errors import ConfigError
from sim2real_bench.plugins.randomize import AUGMENTATIONS, Randomize, RandomizeConfig

EYES = (1, 35, 55)


def images(count: int, shape: tuple[int, int, int]) -> torch.Tensor:
    return torch.rand(count, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("shape", [EYES, (1, 64, 64)])
def test_output_keeps_shape_and_range(shape) -> None:
    batch = images(8, shape)
    refined = Randomize(RandomizeConfig(), shape).refine(batch)
    assert refined.shape == batch.shape and refined.dtype == batch.dtype
    assert refined.min() >= -1 and refined.max() <= 1


def test_two_calls_draw_differently() -> None:
    randomize, batch = Randomize(RandomizeConfig(), EYES), images(8, EYES)
    assert not torch.equal(randomize.refine(batch), randomize.refine(batch))


def test_it_acts_per_training_batch_without_gradients() -> None:
    batch = images(4, EYES).requires_grad_()
    assert Randomize.per_batch and not Randomize.fit_cached and not Randomize.refined_cached
    assert not Randomize(RandomizeConfig(), EYES).refine(batch).requires_grad


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_registered_augmentation_works_on_grayscale_eyes(name) -> None:
    batch = images(4, EYES)
    refined = Randomize(RandomizeConfig(pipeline=(name,)), EYES).refine(batch)
    assert refined.shape == batch.shape and refined.min() >= -1 and refined.max() <= 1


def test_an_unknown_augmentation_is_a_clear_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown augmentation\(s\) 'fog'; known: linear_illumination, .*jpeg"):
        RandomizeConfig(pipeline=("gamma", "fog"))


def test_an_empty_pipeline_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="pipeline is empty"):
        RandomizeConfig(pipeline=())
