"""Throughput of the baseline refiners on 35x55 eyes, at their ``quick`` presets.

Fit: one training step of ``cyclegan`` and ``cut`` (a generator and a
discriminator update) at the preset's batch; ``extra_info["images_per_second"]``
counts the source and target images a step draws, as the runner's
``throughput/refiner_fit_img_s`` does. Refine: 1024 images through ``cyclegan``'s
and ``cut``'s generators and the training-free ``histmatch`` and ``fda``, as the
runner refines (each refiner's batch size, inference mode, the machine's autocast).
The translators' ``extra_info["share_of_peak"]`` is their FLOP/s over the
measured peak of their dominant convolution (``roofline.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from roofline import dominant_conv, networks_of, record_share

from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.plugins import cut, cyclegan
from sim2real_bench.plugins.fda import FDA
from sim2real_bench.plugins.histmatch import HistMatch
from sim2real_bench.refiner import FitContext, Refiner
from sim2real_bench.stages import refine_images
from sim2real_bench.tracking import Tracker

SHAPE = (1, 35, 55)
REFINE_IMAGES = 1024
TRANSLATORS = {"cyclegan": (cyclegan.CycleGAN, cyclegan.QUICK), "cut": (cut.CUT, cut.QUICK)}
TRAINING_FREE = {"histmatch": HistMatch, "fda": FDA}


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(REFINE_IMAGES, *SHAPE, generator=generator) * 2 - 1,
            torch.rand(REFINE_IMAGES, *SHAPE, generator=generator) * 2 - 1)


def record(benchmark, images_per_call: int, precision: str) -> None:
    benchmark.extra_info["precision"] = precision
    benchmark.extra_info["images_per_second"] = images_per_call / benchmark.stats.stats.mean


@pytest.mark.parametrize("method", sorted(TRANSLATORS))
def test_fit_step(benchmark, method, images) -> None:
    refiner_class, config = TRANSLATORS[method]
    compute = resolve_compute("auto")
    refiner = refiner_class(config, SHAPE)
    refiner.to(compute.device)
    optimizers = {group: torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2))
                  for group, parameters in refiner.parameter_groups().items()}
    batch = config.batch_size
    source = images[0][:batch].to(compute.device).contiguous(memory_format=torch.channels_last)
    target = images[1][:batch].to(compute.device).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        refiner.train_step(source, target, optimizers, compute)

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    record(benchmark, 2 * batch, compute.precision)
    record_share(benchmark, step, dominant_conv(networks_of(refiner), step), compute, train=True)


def ready(name: str, images: tuple[torch.Tensor, torch.Tensor], compute) -> Refiner:
    """A refiner to time: translators untrained (speed does not depend on weights), the others fitted."""
    if name in TRANSLATORS:
        refiner_class, config = TRANSLATORS[name]
        refiner = refiner_class(config, SHAPE)
    else:
        refiner_class = TRAINING_FREE[name]
        refiner = refiner_class(refiner_class.Config(), SHAPE)
        context = FitContext(compute, Tracker.disabled(), 0, Path("."), progress=False)
        refiner.fit(Samples(images[0]), Samples(images[1]), context)
    refiner.to(compute.device)
    return refiner


@pytest.mark.parametrize("name", ["cyclegan", "cut", "histmatch", "fda"])
def test_refine(benchmark, name, images) -> None:
    compute = resolve_compute("auto")
    refiner = ready(name, images, compute)
    batch = images[0].to(compute.device)

    def refine() -> None:
        refine_images(refiner, batch, compute)  # as the pipeline refines: in the refiner's batch size

    benchmark.pedantic(refine, rounds=5, warmup_rounds=1)
    record(benchmark, len(batch), compute.precision)
    if name in TRANSLATORS:
        record_share(benchmark, refine, dominant_conv(networks_of(refiner), refine), compute, train=False)
