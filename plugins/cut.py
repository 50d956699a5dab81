"""``cut``: Contrastive Learning for Unpaired Image-to-Image Translation (Park, Efros,
Zhang & Zhu, ECCV 2020, arXiv 2007.15651), with its FastCUT variant.

One ResNet generator G (synthetic -> target, the refiner) and a PatchGAN
discriminator, no inverse generator: content is kept by PatchNCE, which asks
each patch of G(x) to match the patch of x at the same place rather than other
patches of x, in the embedding of G's own encoder (``plugins/translation/patchnce.py``).
Authors' defaults: LSGAN with lambda_GAN 1; 256 patches per layer, temperature
0.07, a 256-wide two-layer MLP head per layer; ``variant="cut"``: lambda_NCE 1
plus the identity term PatchNCE(y, G(y)) on target images, averaged with the
main term; ``variant="fastcut"``: lambda_NCE 10 and no identity term. Adam
2e-4, beta1 0.5, constant then linearly decaying learning rate, Xavier init
(the authors' CUT default). Networks, losses and schedule are shared with
``cyclegan`` (``plugins/translation``), the fit loop with ``cyclegan`` and
``simgan`` (``plugins/adversarial.py``).

Choices (config fields):

* ``nce_layers``: the input, both downsampling convs, the first and a middle
  residual block, as the authors' layers 0, 4, 8, 12, 16 of their 9-block
  generator; with 6 blocks the middle one is ``block3``. On 35x55 eyes the
  deeper layers are 9x14 = 126 positions, so they use all of them (the authors
  take ``min(256, h * w)`` too).
* ``d_layers=2`` and ``blocks=6`` for 35x55 images, as in ``cyclegan``; the
  generator downsamples with strided convs (CycleGAN's), not the anti-aliased
  ones CUT's code defaults to, so the two baselines differ only in their losses.
* Epochs become steps: ``paper`` runs 200,000 + 200,000 steps of batch 1 (the
  authors' 200 + 200 epochs over ~1,000-image sets). The authors shorten
  FastCUT to 150 + 50 epochs and add a flip-equivariance term: set
  ``steps_constant``/``steps_decay`` for the first; the second is left out.

Presets: ``paper`` as above (23.8 GFLOP per step); ``quick`` is sized for a
2-core CPU in a few minutes by FLOPs (``torch.utils.flop_counter``): ``ngf=16``,
3 blocks, ``ndf=32``, 64 patches, batch 16, 400 + 400 steps is 24.7 GFLOP per
step, 19.8 TFLOP in all, 2-3.5 min at the 100-175 GFLOP/s these convs reach in
fp32, about half that with bf16 autocast. ``smoke`` runs a few steps of tiny
networks for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from sim2real_bench.config import BUDGETS, at_least, one_of, positive
from sim2real_bench.device import Compute
from sim2real_bench.plugins.adversarial import Update
from sim2real_bench.plugins.translation.networks import init_weights
from sim2real_bench.plugins.translation.patchnce import PatchProjector, layer_problems, patch_nce_loss
from sim2real_bench.plugins.translation.training import (
    TranslationConfig, TranslationGAN, discriminator_step, frozen, lsgan_loss)

VARIANTS = {"cut": (1.0, True), "fastcut": (10.0, False)}
"""variant -> (lambda_NCE, identity PatchNCE term on target images)."""


@dataclass(frozen=True)
class CUTConfig(TranslationConfig):
    """Every setting of CUT; presets in :data:`PRESETS`."""

    init: str = "xavier"
    steps_constant: int = 200_000
    steps_decay: int = 200_000
    variant: str = "cut"
    """``cut`` (lambda_NCE 1, identity term) or ``fastcut`` (lambda_NCE 10, no identity term)."""
    nce_layers: tuple[str, ...] = ("input", "down1", "down2", "block1", "block3")
    """Generator encoder layers PatchNCE compares: ``input``, ``down1``, ``down2``, ``block1`` ... ``block<blocks>``."""
    patches: int = 256
    """Locations sampled per layer (fewer where a layer has fewer)."""
    temperature: float = 0.07
    projection_dim: int = 256
    """Output width of each MLP head."""
    gan_weight: float = 1.0
    """lambda_GAN."""

    section: ClassVar[str] = "cut"

    @property
    def nce_weight(self) -> float:
        """lambda_NCE of the variant."""
        return VARIANTS[self.variant][0]

    @property
    def nce_identity(self) -> bool:
        """Whether the variant adds PatchNCE(y, G(y)) on target images."""
        return VARIANTS[self.variant][1]

    def problems(self) -> list[str]:
        """The shared settings' problems and CUT's own."""
        problems = [*super().problems(), *one_of(self, "variant", VARIANTS),
                    *at_least(self, 1, "patches", "projection_dim"), *positive(self, "temperature", "gan_weight")]
        return [*problems, *layer_problems(self.nce_layers, self.blocks)]


PAPER = CUTConfig()
QUICK = replace(PAPER, ngf=16, blocks=3, ndf=32, nce_layers=("input", "down1", "down2", "block1", "block2"),
                patches=64, batch_size=16, steps_constant=400, steps_decay=400, log_every=10, grid_every=100,
                checkpoint_every=50)
SMOKE = replace(QUICK, ngf=4, blocks=1, ndf=4, d_layers=1, nce_layers=("input", "down1", "down2", "block1"),
                patches=16, projection_dim=8, batch_size=4, steps_constant=3, steps_decay=3, log_every=2,
                grid_every=4, checkpoint_every=3)
PRESETS = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
assert set(PRESETS) == set(BUDGETS)


class CUT(TranslationGAN):
    """CUT / FastCUT: one generator kept faithful to its input by PatchNCE instead of a cycle."""

    name = "cut"
    Config = CUTConfig
    presets = PRESETS

    def __init__(self, config: CUTConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels = [self.generator.tap_channels[layer] for layer in config.nce_layers]
        self.projector = init_weights(PatchProjector(channels, config.projection_dim), config.init)

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {**super().networks, "projector": self.projector}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        # G and the heads share one Adam: per-parameter, so the same as the authors' two.
        return {"generator": [*self.generator.parameters(), *self.projector.parameters()],
                "discriminator": list(self.discriminator.parameters())}

    def _nce(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        layers = self.config.nce_layers
        keys = self.generator.encode(inputs, layers)
        queries = self.generator.encode(outputs, layers)
        where = PatchProjector.locations(keys, self.config.patches, self.random)
        losses = [patch_nce_loss(q, k, self.config.temperature)
                  for q, k in zip(self.projector(queries, where), self.projector(keys, where))]
        return torch.stack(losses).mean()

    def train_step(self, source: Tensor, target: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   compute: Compute) -> Update:
        config, n = self.config, len(source)
        with compute.autocast():
            translated = self.generator(torch.cat([source, target]) if config.nce_identity else source)
        fake = translated[:n]
        logs = discriminator_step(self.discriminator, target, fake, optimizers["discriminator"], compute)

        with compute.autocast(), frozen(self.discriminator):
            gan = lsgan_loss(self.discriminator(fake), True)
            nce = self._nce(source, fake)
            logs["loss_nce"] = nce.item()
            if config.nce_identity:
                nce_identity = self._nce(target, translated[n:])
                logs["loss_nce_identity"] = nce_identity.item()
                nce = (nce + nce_identity) * 0.5
        loss = config.gan_weight * gan + config.nce_weight * nce
        optimizers["generator"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generator"].step()
        logs.update({"loss_gan": gan.item(), "loss_generator": loss.item()})
        return Update(logs, fake.detach())
