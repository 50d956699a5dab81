"""Realism scores: the two-sample classifier and KID on known inputs, and end to end on the stand-in."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from sim2real_bench.device import Compute
from sim2real_bench.realism import classifier_accuracy, kernel_inception_distance, realism
from sim2real_bench.registry import Registry
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.runner import run

CPU = Compute(torch.device("cpu"), None)


def test_kid_is_zero_in_expectation_for_one_distribution_and_grows_with_a_shift() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 16, generator=generator), torch.randn(600, 16, generator=generator)
    same = kernel_inception_distance(a, b, seed=0, subset_size=300)
    shifted = kernel_inception_distance(a, b + 0.5, seed=0, subset_size=300)
    assert abs(same) < 0.01
    assert shifted > 10 * max(abs(same), 1e-3)


def test_kid_of_a_set_with_itself_is_unbiased_not_zero() -> None:
    # The unbiased estimator leaves out the diagonal, so KID(x, x) is slightly negative, not exactly 0.
    features = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    assert kernel_inception_distance(features, features, seed=0, subsets=1) < 0


def test_classifier_tells_apart_what_differs_and_not_what_does_not() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(400, 1, 16, 16, generator=generator) * 2 - 1
    other_noise = torch.rand(400, 1, 16, 16, generator=generator) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(torch.rand(400, 1, 16, 16, generator=generator) * 2 - 1, 3, 1, 1)
    assert classifier_accuracy(smooth, noise, CPU, seed=0) > 90
    assert 35 < classifier_accuracy(other_noise, noise, CPU, seed=0) < 65


def test_too_few_images_give_no_scores_rather_than_noise() -> None:
    images = torch.zeros(3, 1, 8, 8)
    assert realism(images, images, lambda x: x.flatten(1), CPU, seed=0) == {}


@pytest.mark.parametrize("task", ["gaze", "hand"])
def test_raw_synthetic_images_are_less_realistic_than_the_oracles_target_images(tracking_uri: str, task: str) -> None:
    registry = Registry()
    more_test_images = ("data.test=1024",)  # smoke's 256 are too few for a classifier to learn the difference
    none = run(resolve(RunSpec(refiner="none", task=task, budget="smoke", overrides=more_test_images), registry),
               tracking_uri, progress=False)
    oracle = run(resolve(RunSpec(refiner="oracle", task=task, budget="smoke", overrides=more_test_images), registry),
                 tracking_uri, progress=False)
    synthetic, target = none.metrics, oracle.metrics
    assert synthetic["realism/classifier_accuracy"] > 80
    assert target["realism/classifier_accuracy"] < 65
    assert synthetic["realism/kid"] > 5 * max(target["realism/kid"], 1e-6)
    logged = MlflowClient(tracking_uri).get_run(none.run_id).data.metrics
    assert logged["realism/kid"] == pytest.approx(synthetic["realism/kid"])
