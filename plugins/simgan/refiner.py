"""``simgan``: Learning from Simulated and Unsupervised Images through Adversarial
Training (Shrivastava et al., CVPR 2017, arXiv 1612.07828).

A refiner R is trained so that a discriminator D cannot tell refined synthetic
images from unlabeled real ones, patch by patch (local adversarial loss), while
a self-regularization term ``lambda * |psi(R(x)) - psi(x)|_1`` keeps each refined
image close to its synthetic input, so its label stays true. D trains on
batches of half real images and half refined ones, of which half come from a
history of earlier refined images. R is first pretrained on self-regularization
alone, then D on its own; then K_g refiner steps alternate with K_d
discriminator steps.

Choices where the paper is silent or sources disagree (all are config fields):

* Losses are means (cross-entropy over every patch and image, L1 over every
  pixel), so ``reg_weight`` is independent of image and map size. The paper
  writes sums; a summed-L1 lambda of L corresponds to ``L * H * W / patches`` here.
* K_g: the text says R is updated "twice" per D update while a later sentence
  sets K_g = 50; public code uses both. The ``paper`` preset takes 2.
* Optimizer: SGD with learning rate 0.001 and batch 512 in the ``paper`` preset
  (as the authors' description is commonly read); Adam in ``quick``/``smoke``,
  which converge in far fewer steps.
* History size: unstated; 50 batches in ``paper``.

Presets: ``paper`` is the published eye setup (64 maps, 4 blocks, batch 512);
``quick`` fits a 2-core CPU in minutes: 32 maps, batch 64, a few hundred
rounds, Adam, and ``input_skip`` (R predicts a correction added to its input,
so it starts as the identity and the long self-regularization pretraining is
unnecessary); ``smoke`` runs in seconds for tests. :data:`PAPER_HANDS` is the
paper's depth setup (7x7 first conv, 10 blocks, the strided ``hands``
discriminator), what ``--budget paper`` gives on the ``hand`` task; the
``quick`` preset keeps the eye networks on hands, which suit 64x64 crops.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from sim2real_bench.config import BUDGETS, at_least, not_negative, one_of, positive
from sim2real_bench.data import Samples
from sim2real_bench.plugins.adversarial import (
    AdversarialFit, BatchSampler, FitSchedule, ImageHistory, Phase, Update, accuracy)
from sim2real_bench.plugins.hands.domain import LABEL_KIND as HAND_POSE
from sim2real_bench.plugins.simgan.networks import DISCRIMINATOR_LAYOUTS, PatchDiscriminator, RefinerNet
from sim2real_bench.refiner import NETWORK_REFINE_BATCH_SIZE, FitContext, Refiner

REFINED, REAL = 0, 1
REG_SPACES = ("pixel", "blur")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class SimGANConfig(FitSchedule):
    """Every setting of SimGAN; presets in :data:`PRESETS`."""

    width: int = 64
    """Feature maps of the refiner."""
    blocks: int = 4
    """ResNet blocks of the refiner (eyes 4, hands 10)."""
    first_kernel: int = 3
    """Kernel of the refiner's first conv (eyes 3, hands 7)."""
    input_skip: bool = False
    """Refiner output = input + correction (starts as identity) instead of tanh of the head."""
    discriminator_widths: tuple[int, ...] = (96, 64, 32, 32)
    discriminator_layout: str = "eyes"
    reg_weight: float = 1.0
    """lambda: weight of the self-regularization L1 (a mean over pixels)."""
    reg_space: str = "pixel"
    """psi: ``pixel`` (identity) or ``blur`` (a Gaussian low-pass: keeps content, frees texture)."""
    optimizer: str = "sgd"
    lr_refiner: float = 1e-3
    lr_discriminator: float = 1e-3
    batch_size: int = 512
    steps: int = 10_000
    """Adversarial rounds after pretraining; each is K_g refiner and K_d discriminator steps."""
    k_g: int = 2
    k_d: int = 1
    pretrain_refiner_steps: int = 1000
    pretrain_discriminator_steps: int = 200
    history_size: int = 25_600
    history_fraction: float = 0.5
    """Share of each discriminator batch of refined images drawn from the history."""

    section: ClassVar[str] = "simgan"

    @property
    def total_steps(self) -> int:
        """Pretraining steps plus adversarial rounds: the step counter's range."""
        return self.pretrain_refiner_steps + self.pretrain_discriminator_steps + self.steps

    def problems(self) -> list[str]:
        """The shared settings' problems and SimGAN's own."""
        problems = [*super().problems(), *one_of(self, "reg_space", REG_SPACES), *one_of(self, "optimizer", OPTIMIZERS),
                    *one_of(self, "discriminator_layout", DISCRIMINATOR_LAYOUTS),
                    *at_least(self, 1, "width", "blocks", "batch_size", "k_g", "k_d", "history_size"),
                    *not_negative(self, "steps", "pretrain_refiner_steps", "pretrain_discriminator_steps",
                                  "reg_weight"),
                    *positive(self, "lr_refiner", "lr_discriminator")]
        if not (self.first_kernel >= 1 and self.first_kernel % 2 == 1):
            problems.append(f"first_kernel must be odd (the refiner keeps the image size), got {self.first_kernel}")
        if len(self.discriminator_widths) != 4 or not all(width >= 1 for width in self.discriminator_widths):
            problems.append(f"discriminator_widths needs 4 widths of at least 1 (one per conv before the logits), "
                            f"got {self.discriminator_widths}")
        if not 0 <= self.history_fraction <= 1:
            problems.append(f"history_fraction must lie in [0, 1], got {self.history_fraction}")
        return problems


PAPER = SimGANConfig()
QUICK = replace(
    PAPER, width=32, input_skip=True, reg_weight=5.0, optimizer="adam", lr_refiner=2e-4, lr_discriminator=2e-4,
    batch_size=64, steps=400, pretrain_refiner_steps=0, pretrain_discriminator_steps=50, history_size=6400,
    grid_every=100, checkpoint_every=50,
)
SMOKE = replace(
    QUICK, width=8, blocks=1, discriminator_widths=(16, 16, 8, 8), batch_size=16, steps=6, k_g=1,
    pretrain_refiner_steps=2, pretrain_discriminator_steps=2, history_size=64, log_every=2, grid_every=4,
    checkpoint_every=3,
)
PAPER_HANDS = replace(PAPER, first_kernel=7, blocks=10, discriminator_layout="hands")
"""The paper's hand-pose (NYU depth) networks; training settings as for the eyes."""
PRESETS = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
assert set(PRESETS) == set(BUDGETS)


class SimGAN(Refiner):
    """SimGAN refiner: adversarial training with self-regularization and an image history."""

    Config: ClassVar[type] = SimGANConfig
    presets: ClassVar[dict[str, SimGANConfig]] = PRESETS
    fit_cached: ClassVar[bool] = True
    refined_cached: ClassVar[bool] = True
    refine_batch_size: ClassVar[int] = NETWORK_REFINE_BATCH_SIZE

    @classmethod
    def preset_for(cls, budget: str, label_kind: str) -> SimGANConfig:
        """The paper's hand networks for ``paper`` on hand pose; the budget's preset otherwise."""
        if budget == "paper" and label_kind == HAND_POSE:
            return PAPER_HANDS
        return super().preset_for(budget, label_kind)

    def __init__(self, config: SimGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels = image_shape[0]
        self.refiner = RefinerNet(channels, config.width, config.blocks, config.first_kernel, config.input_skip)
        self.discriminator = PatchDiscriminator(channels, config.discriminator_widths, config.discriminator_layout)

    def refine(self, images: Tensor) -> Tensor:
        return self.refiner(images.contiguous(memory_format=torch.channels_last))

    def to(self, device: torch.device) -> None:
        self.refiner.to(device, memory_format=torch.channels_last)
        self.discriminator.to(device, memory_format=torch.channels_last)

    def state_dict(self) -> dict[str, Any]:
        return {"refiner": self.refiner.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.refiner.load_state_dict(state["refiner"])

    def _psi(self, images: Tensor) -> Tensor:
        if self.config.reg_space == "blur":
            return kornia.filters.gaussian_blur2d(images, (5, 5), (1.5, 1.5))
        return images

    def _optimizer(self, parameters: Any, lr: float) -> torch.optim.Optimizer:
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=lr)
        return torch.optim.Adam(parameters, lr=lr, betas=(0.5, 0.999))

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Pretrain R, pretrain D, then alternate K_g R and K_d D steps; resumable from the fit's checkpoint."""
        config, compute = self.config, context.compute
        self.to(compute.device)
        random = torch.Generator().manual_seed(context.seed)
        synthetic = BatchSampler(source.images, config.batch_size, random, compute.device)
        real = BatchSampler(target.images, config.batch_size, random, compute.device)
        history = ImageHistory(config.history_size, random)
        optimizers = {"refiner": self._optimizer(self.refiner.parameters(), config.lr_refiner),
                      "discriminator": self._optimizer(self.discriminator.parameters(), config.lr_discriminator)}
        refiner_step = partial(self._refiner_step, synthetic, optimizers["refiner"], compute)
        discriminator_step = partial(self._discriminator_step, synthetic, real, history, optimizers["discriminator"],
                                     compute)

        def alternate() -> Update:
            updates = [refiner_step(adversarial=True) for _ in range(config.k_g)]
            updates += [discriminator_step() for _ in range(config.k_d)]
            return Update({k: v for update in updates for k, v in update.logs.items()}, updates[-1].refined)

        batch = config.batch_size
        phases = [
            Phase(config.pretrain_refiner_steps, partial(refiner_step, adversarial=False), batch, judged=False),
            Phase(config.pretrain_discriminator_steps, discriminator_step, 2 * batch, judged=False),
            Phase(config.steps, alternate, (config.k_g + 2 * config.k_d) * batch),
        ]
        return AdversarialFit(
            "simgan", config, phases, {"refiner": self.refiner, "discriminator": self.discriminator}, optimizers,
            random, synthetic, real, self.refine, pools={"history": history},
            shown=("loss_adversarial", "d_accuracy_refined"),
        ).run(context)

    def _refiner_step(self, synthetic: BatchSampler, optimizer: torch.optim.Optimizer, compute: Any,
                      adversarial: bool) -> Update:
        images = synthetic()
        with compute.autocast():
            refined = self.refiner(images)
            regularization = (self._psi(refined.float()) - self._psi(images)).abs().mean()
            loss = self.config.reg_weight * regularization
            logs = {"loss_regularization": regularization.item()}
            if adversarial:
                logits = self.discriminator(refined).float()
                fooled = F.cross_entropy(logits, torch.full_like(logits[:, 0], REAL, dtype=torch.long))
                loss = loss + fooled
                logs["loss_adversarial"] = fooled.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        logs["loss_refiner"] = loss.item()
        return Update(logs, refined.detach())

    def _discriminator_step(self, synthetic: BatchSampler, real: BatchSampler, history: ImageHistory,
                            optimizer: torch.optim.Optimizer, compute: Any) -> Update:
        real_images, batch = real(), self.config.batch_size
        with torch.no_grad(), compute.autocast():
            refined = self.refiner(synthetic()).float()
        from_history = int(batch * self.config.history_fraction) if len(history) else 0
        fakes = torch.cat([refined[: batch - from_history], history.sample(from_history)]) if from_history else refined
        history.push(refined[: max(from_history, batch // 2)])
        with compute.autocast():
            logits_real = self.discriminator(real_images).float()
            logits_fake = self.discriminator(fakes.contiguous(memory_format=torch.channels_last)).float()
        loss_real = F.cross_entropy(logits_real, torch.full_like(logits_real[:, 0], REAL, dtype=torch.long))
        loss_fake = F.cross_entropy(logits_fake, torch.full_like(logits_fake[:, 0], REFINED, dtype=torch.long))
        loss = loss_real + loss_fake
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return Update({"loss_discriminator": loss.item(), "d_accuracy_real": accuracy(logits_real, REAL),
                       "d_accuracy_refined": accuracy(logits_fake, REFINED)}, refined)
