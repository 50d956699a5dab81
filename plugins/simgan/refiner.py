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
from typing import Any, ClassVar

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from sim2real_bench.config import BUDGETS
from sim2real_bench.data import Samples
from sim2real_bench.errors import ConfigError
from sim2real_bench.images import grid
from sim2real_bench.plugins.adversarial import (
    BatchSampler, Checkpointer, FitMonitor, FitSchedule, ImageHistory, accuracy)
from sim2real_bench.plugins.hands.domain import LABEL_KIND as HAND_POSE
from sim2real_bench.plugins.simgan.networks import DISCRIMINATOR_LAYOUTS, PatchDiscriminator, RefinerNet
from sim2real_bench.refiner import FitContext, Refiner

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

    @property
    def total_steps(self) -> int:
        """Pretraining steps plus adversarial rounds: the step counter's range."""
        return self.pretrain_refiner_steps + self.pretrain_discriminator_steps + self.steps


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


def _check(config: SimGANConfig) -> None:
    problems = []
    if config.reg_space not in REG_SPACES:
        problems.append(f"reg_space {config.reg_space!r} is not one of {', '.join(REG_SPACES)}")
    if config.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer {config.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if config.discriminator_layout not in DISCRIMINATOR_LAYOUTS:
        problems.append(f"discriminator_layout {config.discriminator_layout!r} is not one of "
                        f"{', '.join(DISCRIMINATOR_LAYOUTS)}")
    if len(config.discriminator_widths) != 4:
        problems.append("discriminator_widths needs 4 widths (one per conv before the logits)")
    for name in ("width", "blocks", "batch_size", "k_g", "k_d", "history_size"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("steps", "pretrain_refiner_steps", "pretrain_discriminator_steps", "reg_weight"):
        if getattr(config, name) < 0:
            problems.append(f"{name} must not be negative, got {getattr(config, name)}")
    if not 0 <= config.history_fraction <= 1:
        problems.append(f"history_fraction must lie in [0, 1], got {config.history_fraction}")
    if problems:
        raise ConfigError("simgan: " + "; ".join(problems))


class SimGAN(Refiner):
    """SimGAN refiner: adversarial training with self-regularization and an image history."""

    Config: ClassVar[type] = SimGANConfig
    presets: ClassVar[dict[str, SimGANConfig]] = PRESETS
    trains: ClassVar[bool] = True

    @classmethod
    def preset_for(cls, budget: str, label_kind: str) -> SimGANConfig:
        """The paper's hand networks for ``paper`` on hand pose; the budget's preset otherwise."""
        if budget == "paper" and label_kind == HAND_POSE:
            return PAPER_HANDS
        return super().preset_for(budget, label_kind)

    def __init__(self, config: SimGANConfig, image_shape: tuple[int, int, int]) -> None:
        _check(config)
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
        """Pretrain R, pretrain D, then alternate; resumable from the fit's checkpoint."""
        config, compute = self.config, context.compute
        self.to(compute.device)
        generator = torch.Generator().manual_seed(context.seed)
        synthetic = BatchSampler(source.images, config.batch_size, generator, compute.device)
        real = BatchSampler(target.images, config.batch_size, generator, compute.device)
        history = ImageHistory(config.history_size, generator)
        optimizer_r = self._optimizer(self.refiner.parameters(), config.lr_refiner)
        optimizer_d = self._optimizer(self.discriminator.parameters(), config.lr_discriminator)
        monitor = FitMonitor(config.min_std, patience=config.collapse_patience)
        checkpoints = Checkpointer(context.checkpoint_dir, config.checkpoint_every)

        start = 0
        saved = checkpoints.load()
        if saved is not None:
            self.refiner.load_state_dict(saved["refiner"])
            self.discriminator.load_state_dict(saved["discriminator"])
            optimizer_r.load_state_dict(saved["optimizer_refiner"])
            optimizer_d.load_state_dict(saved["optimizer_discriminator"])
            history.load_state_dict(saved["history"], compute.device)
            generator.set_state(saved["generator"])
            start = int(saved["step"])
            monitor.checkpoint_hint = f"; the last good checkpoint (step {start}) is kept at {checkpoints.path}"
            context.tracker.set_tags({"s2r.resumed_from_step": str(start)})

        pretrain_r = config.pretrain_refiner_steps
        pretrain_d = pretrain_r + config.pretrain_discriminator_steps
        images_seen = 0
        bar = tqdm(total=config.total_steps, initial=start, desc="simgan: fit", unit="step",
                   disable=not context.progress, leave=False)
        for step in range(start, config.total_steps):
            logs: dict[str, float] = {}
            if step < pretrain_r:
                logs.update(self._refiner_step(synthetic, optimizer_r, compute, adversarial=False))
                images_seen += config.batch_size
            elif step < pretrain_d:
                logs.update(self._discriminator_step(synthetic, real, history, optimizer_d, compute))
                images_seen += 2 * config.batch_size
            else:
                for _ in range(config.k_g):
                    logs.update(self._refiner_step(synthetic, optimizer_r, compute, adversarial=True))
                for _ in range(config.k_d):
                    logs.update(self._discriminator_step(synthetic, real, history, optimizer_d, compute))
                images_seen += (config.k_g + 2 * config.k_d) * config.batch_size
            refined = logs.pop("_refined")
            monitor.check_losses(step, {k: v for k, v in logs.items() if k.startswith("loss")})
            done = step + 1
            if done % config.log_every == 0 or done == config.total_steps:
                logs["refined_std"] = refined.float().flatten(1).std(1).mean().item()
                logs["refined_mean"] = refined.float().mean().item()
                context.tracker.log_metrics({f"simgan/{k}": v for k, v in logs.items()}, step=done)
                monitor.check_outputs(done, refined)
                if "d_accuracy_real" in logs and step >= pretrain_d:
                    monitor.check_discriminator(done, logs["d_accuracy_real"], logs["d_accuracy_refined"])
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss_adversarial", "d_accuracy_refined")})
            if done % config.grid_every == 0 or done == config.total_steps:
                self._log_grid(synthetic, real, compute, context, done)
            if checkpoints.due(done) or done == config.total_steps:
                checkpoints.save({
                    "step": done, "refiner": self.refiner.state_dict(), "discriminator": self.discriminator.state_dict(),
                    "optimizer_refiner": optimizer_r.state_dict(), "optimizer_discriminator": optimizer_d.state_dict(),
                    "history": history.state_dict(), "generator": generator.get_state(),
                })
                monitor.checkpoint_hint = f"; the last good checkpoint (step {done}) is kept at {checkpoints.path}"
            bar.update()
        bar.close()
        self.refiner.eval()
        return images_seen

    def _refiner_step(self, synthetic: BatchSampler, optimizer: torch.optim.Optimizer, compute: Any,
                      adversarial: bool) -> dict[str, Any]:
        images = synthetic()
        with compute.autocast():
            refined = self.refiner(images)
            regularization = (self._psi(refined.float()) - self._psi(images)).abs().mean()
            loss = self.config.reg_weight * regularization
            logs: dict[str, Any] = {"loss_regularization": regularization.item()}
            if adversarial:
                logits = self.discriminator(refined).float()
                fooled = F.cross_entropy(logits, torch.full_like(logits[:, 0], REAL, dtype=torch.long))
                loss = loss + fooled
                logs["loss_adversarial"] = fooled.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        logs["loss_refiner"] = loss.item()
        logs["_refined"] = refined.detach()
        return logs

    def _discriminator_step(self, synthetic: BatchSampler, real: BatchSampler, history: ImageHistory,
                            optimizer: torch.optim.Optimizer, compute: Any) -> dict[str, Any]:
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
        return {
            "loss_discriminator": loss.item(),
            "d_accuracy_real": accuracy(logits_real, REAL),
            "d_accuracy_refined": accuracy(logits_fake, REFINED),
            "_refined": refined,
        }

    @torch.no_grad()
    def _log_grid(self, synthetic: BatchSampler, real: BatchSampler, compute: Any, context: FitContext, step: int) -> None:
        shown = synthetic()[:8]
        with compute.autocast():
            refined = self.refiner(shown).float()
        rows = [shown, refined, real()[:8]]
        context.tracker.log_image(grid(rows), f"simgan/grid_step{step:06d}.png")
