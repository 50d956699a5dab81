"""SimGAN speed at batch 64 with the paper-size eye networks (64 maps, 4 blocks).

Measures one full training step (a refiner step plus a discriminator step) and
refining, for s2r-bench's implementation (channels-last, bf16 autocast where the
hardware has it) and for a plain fp32 eager PyTorch implementation of the same
networks written here, in the same run (s2r-bench refines as the pipeline does, in
the refiner's batch size; the plain one in one call). The ratio of the two is the figure to
report; ``extra_info["images_per_second"]`` holds each throughput, and
``share_of_peak`` each one's FLOP/s over the measured peak of its dominant
convolution (``roofline.py``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from roofline import dominant_conv, networks_of, record_share

from sim2real_bench.device import resolve_compute
from sim2real_bench.plugins.adversarial import BatchSampler, ImageHistory
from sim2real_bench.plugins.simgan.refiner import PAPER, SimGAN
from sim2real_bench.stages import refine_images

BATCH = 64
SHAPE = (1, 35, 55)
FP32 = resolve_compute("cpu", "fp32")
"""What the plain implementation runs on; its peak is measured in fp32 too."""


class PlainBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def plain_networks() -> tuple[nn.Module, nn.Module]:
    refiner = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), *[PlainBlock() for _ in range(4)],
                            nn.Conv2d(64, 1, 1), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(1, 96, 3, 2, 1), nn.ReLU(), nn.Conv2d(96, 64, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 1),
        nn.Conv2d(64, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Conv2d(32, 2, 1))
    return refiner, discriminator


def plain_step(refiner, discriminator, opt_r, opt_d, synthetic, real) -> None:
    refined = refiner(synthetic)
    logits = discriminator(refined)
    loss = F.cross_entropy(logits, torch.ones_like(logits[:, 0], dtype=torch.long)) + (refined - synthetic).abs().mean()
    opt_r.zero_grad()
    loss.backward()
    opt_r.step()
    with torch.no_grad():
        fake = refiner(synthetic)
    logits_real, logits_fake = discriminator(real), discriminator(fake)
    loss_d = F.cross_entropy(logits_real, torch.ones_like(logits_real[:, 0], dtype=torch.long)) + \
        F.cross_entropy(logits_fake, torch.zeros_like(logits_fake[:, 0], dtype=torch.long))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(BATCH * 4, *SHAPE, generator=generator) * 2 - 1, torch.rand(BATCH * 4, *SHAPE, generator=generator) * 2 - 1


def record(benchmark, images_per_call: int) -> None:
    benchmark.extra_info["images_per_second"] = images_per_call / benchmark.stats.stats.mean


def test_train_step_plain_fp32(benchmark, images) -> None:
    refiner, discriminator = plain_networks()
    opt_r, opt_d = torch.optim.SGD(refiner.parameters(), 1e-3), torch.optim.SGD(discriminator.parameters(), 1e-3)
    synthetic, real = images[0][:BATCH], images[1][:BATCH]

    def step() -> None:
        plain_step(refiner, discriminator, opt_r, opt_d, synthetic, real)

    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    record(benchmark, BATCH)
    record_share(benchmark, step, dominant_conv([refiner, discriminator], step), FP32, train=True)


def test_train_step_s2r_bench(benchmark, images) -> None:
    compute = resolve_compute("auto")
    simgan = SimGAN(PAPER, SHAPE)
    simgan.to(compute.device)
    generator = torch.Generator().manual_seed(0)
    synthetic = BatchSampler(images[0], BATCH, generator, compute.device)
    real = BatchSampler(images[1], BATCH, generator, compute.device)
    history = ImageHistory(BATCH * 8, generator)
    opt_r = simgan._optimizer(simgan.refiner.parameters(), 1e-3)
    opt_d = simgan._optimizer(simgan.discriminator.parameters(), 1e-3)

    def step() -> None:
        simgan._refiner_step(synthetic, opt_r, compute, adversarial=True)
        simgan._discriminator_step(synthetic, real, history, opt_d, compute)

    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    benchmark.extra_info["precision"] = compute.precision
    record(benchmark, BATCH)
    record_share(benchmark, step, dominant_conv(networks_of(simgan), step), compute, train=True)


def test_refine_plain_fp32(benchmark, images) -> None:
    refiner, _ = plain_networks()
    batch = images[0]

    @torch.no_grad()
    def refine() -> None:
        refiner(batch)

    benchmark.pedantic(refine, rounds=8, warmup_rounds=2)
    record(benchmark, len(batch))
    record_share(benchmark, refine, dominant_conv([refiner], refine), FP32, train=False)


def test_refine_s2r_bench(benchmark, images) -> None:
    compute = resolve_compute("auto")
    simgan = SimGAN(PAPER, SHAPE)
    simgan.to(compute.device)
    batch = images[0].to(compute.device)

    def refine() -> None:
        refine_images(simgan, batch, compute)  # as the pipeline refines: in the refiner's batch size

    benchmark.pedantic(refine, rounds=8, warmup_rounds=2)
    benchmark.extra_info["precision"] = compute.precision
    record(benchmark, len(batch))
    record_share(benchmark, refine, dominant_conv(networks_of(simgan), refine), compute, train=False)
