"""Diffusion refiners' speed beside SimGAN's, same run, quick presets on 35x55 eyes.

For each refiner in :data:`CASES`: one fit step (what one step of its fit
draws, the unit of the runner's ``throughput/refiner_fit_img_s``) and refining
256 images (``throughput/refine_img_s``) in the refiner's batch size, channels-last
and bf16 autocast where the hardware has it, as the runner does. ``extra_info`` holds
``images_per_second`` and, for refining, ``network_passes`` (denoiser or
generator passes per refined image: sdedit's K DDIM steps) and
``image_passes_per_second`` (images/s times passes: the speed of one DDIM step),
and for both ``share_of_peak``: FLOP/s over the measured peak of the dominant
convolution (``roofline.py``).
A new refiner joins by adding a :class:`Case`::

    pytest tests/benchmarks/test_diffusion_speed.py -m benchmark --benchmark-json speed.json
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from roofline import dominant_conv, networks_of, record_share

from sim2real_bench.device import Compute, resolve_compute
from sim2real_bench.plugins.adversarial import BatchSampler, ImageHistory
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry
from sim2real_bench.stages import refine_images

SHAPE = (1, 35, 55)
REFINE_IMAGES = 256

Step = Callable[[], object]


def simgan_step(refiner, compute: Compute, source: torch.Tensor, target: torch.Tensor) -> tuple[Step, int]:
    """One adversarial round: K_g refiner steps, K_d discriminator steps."""
    config, generator = refiner.config, torch.Generator().manual_seed(0)
    synthetic = BatchSampler(source, config.batch_size, generator, compute.device)
    real = BatchSampler(target, config.batch_size, generator, compute.device)
    history = ImageHistory(config.history_size, generator)
    opt_r = refiner._optimizer(refiner.refiner.parameters(), config.lr_refiner)
    opt_d = refiner._optimizer(refiner.discriminator.parameters(), config.lr_discriminator)

    def step() -> None:
        for _ in range(config.k_g):
            refiner._refiner_step(synthetic, opt_r, compute, adversarial=True)
        for _ in range(config.k_d):
            refiner._discriminator_step(synthetic, real, history, opt_d, compute)

    return step, (config.k_g + 2 * config.k_d) * config.batch_size


def sdedit_step(refiner, compute: Compute, source: torch.Tensor, target: torch.Tensor) -> tuple[Step, int]:
    """One DDPM step of the denoiser on a target batch."""
    config, generator = refiner.config, torch.Generator().manual_seed(0)
    real = BatchSampler(target, config.batch_size, generator, compute.device)
    optimizer = torch.optim.Adam(refiner.denoiser.parameters(), lr=config.lr)
    return (lambda: refiner._train_step(real, generator, optimizer, compute)), config.batch_size


def unsb_step(refiner, compute: Compute, source: torch.Tensor, target: torch.Tensor) -> tuple[Step, int]:
    """One D, E and G update at a random bridge time (two source batches and a target batch)."""
    config, generator = refiner.config, torch.Generator().manual_seed(0)
    refiner.random.manual_seed(0)
    synthetic = BatchSampler(source, config.batch_size, generator, compute.device)
    real = BatchSampler(target, config.batch_size, generator, compute.device)
    groups = {"generator": [*refiner.generator.parameters(), *refiner.projector.parameters()],
              "discriminator": list(refiner.discriminator.parameters()), "energy": list(refiner.energy.parameters())}
    optimizers = {group: torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2))
                  for group, parameters in groups.items()}
    return (lambda: refiner.train_step(synthetic(), synthetic(), real(), optimizers, compute)), 3 * config.batch_size


@dataclass(frozen=True)
class Case:
    """How to time one refiner: its fit step, and the network passes one refined image costs."""

    fit_step: Callable[[Refiner, Compute, torch.Tensor, torch.Tensor], tuple[Step, int]]
    """Builds one step of the refiner's fit from source and target images; returns it and the images it draws."""
    passes: Callable[[Refiner], int] = lambda refiner: 1


CASES: dict[str, Case] = {
    "simgan": Case(simgan_step),
    "sdedit": Case(sdedit_step, lambda refiner: refiner.config.passes(refiner.config.t0)),
    "unsb": Case(unsb_step, lambda refiner: refiner.config.timesteps),
}


@pytest.fixture(scope="module")
def compute() -> Compute:
    return resolve_compute("auto")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1024, *SHAPE, generator=generator) * 2 - 1,
            torch.rand(1024, *SHAPE, generator=generator) * 2 - 1)


def quick(name: str, compute: Compute) -> Refiner:
    refiner_class = Registry().get("refiners", name)
    torch.manual_seed(0)
    refiner = refiner_class(refiner_class.presets["quick"], SHAPE)
    refiner.to(compute.device)
    return refiner


def describe(benchmark, compute: Compute, images_per_call: int) -> float:
    rate = images_per_call / benchmark.stats.stats.mean
    benchmark.extra_info.update({"images_per_second": rate, "precision": compute.precision,
                                 "device": compute.describe()})
    return rate


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_step(benchmark, name, compute, images) -> None:
    refiner = quick(name, compute)
    step, drawn = CASES[name].fit_step(refiner, compute, *images)
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    describe(benchmark, compute, drawn)
    record_share(benchmark, step, dominant_conv(networks_of(refiner), step), compute, train=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_refine(benchmark, name, compute, images) -> None:
    refiner = quick(name, compute)
    batch = images[0][:REFINE_IMAGES].to(compute.device)

    def refine() -> None:
        refine_images(refiner, batch, compute)  # as the pipeline refines: in the refiner's batch size

    benchmark.pedantic(refine, rounds=3, warmup_rounds=1)
    rate, passes = describe(benchmark, compute, len(batch)), CASES[name].passes(refiner)
    benchmark.extra_info.update({"network_passes": passes, "image_passes_per_second": rate * passes})
    record_share(benchmark, refine, dominant_conv(networks_of(refiner), refine), compute, train=False)
