"""``cyclegan``: Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks (Zhu, Park, Isola & Efros, ICCV 2017, arXiv 1703.10593).

Two ResNet generators, G: synthetic -> target (the refiner) and F: target ->
synthetic, each with a PatchGAN discriminator on its output domain. Losses, as
the authors' code: LSGAN for both directions, cycle consistency
``|F(G(x)) - x|_1 + |G(F(y)) - y|_1`` with weight 10, identity
``|G(y) - y|_1 + |F(x) - x|_1`` with weight 0.5 of the cycle weight, and each
discriminator trained on an image pool of its 50 last fakes (half the time an
old fake replaces the new one). Adam 2e-4, beta1 0.5; the learning rate stays
constant, then decays linearly to 0. Networks, losses and schedule are shared
with ``cut`` (``plugins/translation``), the fit loop with ``cut`` and ``simgan``
(``plugins/adversarial.py``).

Choices where the paper's setting does not carry over to 35x55 images (config fields):

* ``d_layers=2``: a 34x34 PatchGAN, not the 70x70 one (3 layers), whose
  receptive field is larger than an eye image: its 2x4 score map would judge
  whole images. 34 px is about the share of a 35x55 eye that 70 px is of the
  authors' 128 px images, and leaves a 6x11 score map per image.
* ``blocks=6``: the authors use 6 residual blocks for 128x128 images and 9 for
  256x256; our images are smaller than either.
* Epochs become steps: ``paper`` runs 100,000 + 100,000 steps of batch 1, the
  updates of the authors' 100 + 100 epochs over ~1,000-image training sets
  (horse2zebra: 1,067 and 1,334 images).
* Per step, the generators run on concatenated batches (F on target and
  source, G on source, target and F(target)): the same losses as six separate
  passes, since instance norm treats every image alone.

Presets: ``paper`` as above (39.8 GFLOP per step); ``quick`` is sized for a
2-core CPU in a few minutes by FLOPs (``torch.utils.flop_counter``): ``ngf=16``,
3 blocks, ``ndf=32``, batch 16, 400 + 400 steps is 30.7 GFLOP per step, 24.5
TFLOP in all, 2.5-4 min at the 100-175 GFLOP/s these convs reach in fp32 (one
thread ran them at 80% of its sgemm rate), about half that with bf16 autocast;
refining costs 0.08 GFLOP per image. ``smoke`` runs a few steps of tiny
networks for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sim2real_bench.config import BUDGETS, at_least, not_negative
from sim2real_bench.device import Compute
from sim2real_bench.plugins.adversarial import ImageHistory, Update
from sim2real_bench.plugins.translation.networks import PatchDiscriminator, ResnetGenerator, init_weights
from sim2real_bench.plugins.translation.training import (
    TranslationConfig, TranslationGAN, discriminator_step, frozen, lsgan_loss)


@dataclass(frozen=True)
class CycleGANConfig(TranslationConfig):
    """Every setting of CycleGAN; presets in :data:`PRESETS`."""

    cycle_weight: float = 10.0
    """lambda_A = lambda_B: weight of each cycle-consistency L1."""
    identity_weight: float = 0.5
    """lambda_identity, as a share of the cycle weight (0 switches the identity loss off)."""
    pool_size: int = 50
    """Translated images each discriminator's pool holds."""

    section: ClassVar[str] = "cyclegan"

    def problems(self) -> list[str]:
        """The shared settings' problems and CycleGAN's own."""
        return [*super().problems(), *not_negative(self, "cycle_weight", "identity_weight"),
                *at_least(self, 1, "pool_size")]


PAPER = CycleGANConfig()
QUICK = replace(PAPER, ngf=16, blocks=3, ndf=32, batch_size=16, steps_constant=400, steps_decay=400, log_every=10,
                grid_every=100, checkpoint_every=50)
SMOKE = replace(QUICK, ngf=4, blocks=1, ndf=4, d_layers=1, batch_size=4, steps_constant=3, steps_decay=3,
                log_every=2, grid_every=4, checkpoint_every=3, pool_size=6)
PRESETS = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
assert set(PRESETS) == set(BUDGETS)


class CycleGAN(TranslationGAN):
    """CycleGAN: G (synthetic -> target) is the refiner; F, the cycle and two discriminators train it."""

    name = "cyclegan"
    Config = CycleGANConfig
    presets = PRESETS

    def __init__(self, config: CycleGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels = image_shape[0]
        self.inverse = init_weights(ResnetGenerator(channels, config.ngf, config.blocks), config.init)
        self.discriminator_source = init_weights(PatchDiscriminator(channels, config.ndf, config.d_layers), config.init)
        self.pool_target = ImageHistory(config.pool_size, self.random)
        self.pool_source = ImageHistory(config.pool_size, self.random)

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {**super().networks, "inverse": self.inverse, "discriminator_source": self.discriminator_source}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"generators": [*self.generator.parameters(), *self.inverse.parameters()],
                "discriminator": list(self.discriminator.parameters()),
                "discriminator_source": list(self.discriminator_source.parameters())}

    def pools(self) -> dict[str, ImageHistory]:
        return {"target": self.pool_target, "source": self.pool_source}

    def train_step(self, source: Tensor, target: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   compute: Compute) -> Update:
        config, n = self.config, len(source)
        identity = config.identity_weight > 0
        with compute.autocast(), frozen(self.discriminator, self.discriminator_source):
            from_inverse = self.inverse(torch.cat([target, source]) if identity else target)
            fake_source = from_inverse[:n]
            from_generator = self.generator(torch.cat([source, fake_source, *([target] if identity else [])]))
            fake_target, recovered_target = from_generator[:n], from_generator[n : 2 * n]
            recovered_source = self.inverse(fake_target)
            gan = lsgan_loss(self.discriminator(fake_target), True)
            gan_source = lsgan_loss(self.discriminator_source(fake_source), True)
        cycle = F.l1_loss(recovered_source.float(), source) + F.l1_loss(recovered_target.float(), target)
        loss = gan + gan_source + config.cycle_weight * cycle
        logs = {"loss_gan": gan.item(), "loss_gan_source": gan_source.item(), "loss_cycle": cycle.item()}
        if identity:
            same = F.l1_loss(from_generator[2 * n :].float(), target) + F.l1_loss(from_inverse[n:].float(), source)
            loss = loss + config.cycle_weight * config.identity_weight * same
            logs["loss_identity"] = same.item()
        optimizers["generators"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generators"].step()
        logs["loss_generators"] = loss.item()

        logs.update(discriminator_step(self.discriminator, target, self.pool_target.query(fake_target),
                                       optimizers["discriminator"], compute))
        for key, value in discriminator_step(self.discriminator_source, source, self.pool_source.query(fake_source),
                                             optimizers["discriminator_source"], compute).items():
            logs[f"{key}_source"] = value
        return Update(logs, fake_target.detach())
