"""What CycleGAN and CUT train the same way: settings, LSGAN loss, schedule, the fit loop.

The loop (:meth:`TranslationGAN.fit`) draws a source and a target batch per
step, lets the method do one generator and one discriminator update, and does
the rest once for both methods with the machinery SimGAN uses
(``plugins/adversarial.py``): seeded batch sampling, atomic checkpoints every
``checkpoint_every`` steps that a relaunched fit resumes from (networks,
optimizers, schedules, image pools, random state), the divergence and collapse
monitor (it watches the discriminator that judges the refiner's output), loss
curves and image grids in MLflow.

Learning rate, as the authors' ``linear`` policy: constant for
``steps_constant`` steps, then linearly down towards zero over ``steps_decay``
(their epochs, counted here in steps; the last step runs at
``1 / (steps_decay + 1)`` of the initial rate, as their last epoch does).
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from sim2real_bench.data import Samples
from sim2real_bench.device import Compute
from sim2real_bench.errors import ConfigError
from sim2real_bench.images import grid
from sim2real_bench.plugins.adversarial import BatchSampler, Checkpointer, FitMonitor, FitSchedule, ImageHistory
from sim2real_bench.plugins.translation.networks import INITS, PatchDiscriminator, ResnetGenerator, init_weights
from sim2real_bench.refiner import FitContext, Refiner


@dataclass(frozen=True)
class TranslationConfig(FitSchedule):
    """Settings both unpaired translation GANs have (defaults: the authors')."""

    ngf: int = 64
    """Generator width (first layer; 4x in the residual blocks)."""
    blocks: int = 6
    """Residual blocks of the generator (authors: 6 for 128 px images, 9 for 256 px)."""
    ndf: int = 64
    """Discriminator width (first layer)."""
    d_layers: int = 2
    """PatchGAN depth: 3 is the 70x70 PatchGAN, 2 a 34x34 one (the default for 35x55 images)."""
    init: str = "normal"
    """Weight initialization: ``normal`` (std 0.02) or ``xavier`` (gain 0.02)."""
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    steps_constant: int = 100_000
    """Steps at the initial learning rate (the authors' ``n_epochs``, in steps)."""
    steps_decay: int = 100_000
    """Steps of linear decay to zero afterwards (``n_epochs_decay``, in steps)."""
    log_every: int = 50
    grid_every: int = 5000
    checkpoint_every: int = 1000

    @property
    def total_steps(self) -> int:
        """Length of the fit in steps (one generator and one discriminator update each)."""
        return self.steps_constant + self.steps_decay


def check_config(name: str, config: TranslationConfig, problems: list[str]) -> None:
    """Raise one :class:`ConfigError` listing ``problems`` and those of the shared settings."""
    for field in ("ngf", "blocks", "ndf", "d_layers", "batch_size", "log_every", "grid_every", "collapse_patience"):
        if getattr(config, field) < 1:
            problems.append(f"{field} must be at least 1, got {getattr(config, field)}")
    for field in ("steps_constant", "steps_decay", "checkpoint_every"):
        if getattr(config, field) < 0:
            problems.append(f"{field} must not be negative, got {getattr(config, field)}")
    if config.lr <= 0:
        problems.append(f"lr must be positive, got {config.lr}")
    if config.init not in INITS:
        problems.append(f"init {config.init!r} is not one of {', '.join(INITS)}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))


def lsgan_loss(scores: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss (Mao et al. 2017): mean squared distance of the scores to 1 (real) or 0."""
    scores = scores.float()
    return F.mse_loss(scores, torch.full_like(scores, float(real)))


def lsgan_accuracy(scores: Tensor, real: bool) -> float:
    """Share of patches on the right side of 0.5, for the collapse monitor."""
    return ((scores.float() > 0.5) == real).float().mean().item()


@contextlib.contextmanager
def frozen(*networks: nn.Module) -> Iterator[None]:
    """Keep ``networks``' parameters out of the graph (the generator step needs no D gradients)."""
    for network in networks:
        network.requires_grad_(False)
    try:
        yield
    finally:
        for network in networks:
            network.requires_grad_(True)


def discriminator_step(discriminator: nn.Module, real: Tensor, fake: Tensor, optimizer: torch.optim.Optimizer,
                       compute: Compute) -> dict[str, float]:
    """One LSGAN discriminator update, (real + fake) / 2 as the authors halve it; returns its logs."""
    with compute.autocast():
        scores_real = discriminator(real)
        scores_fake = discriminator(fake.detach().contiguous(memory_format=torch.channels_last))
    loss = (lsgan_loss(scores_real, True) + lsgan_loss(scores_fake, False)) * 0.5
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss_discriminator": loss.item(), "d_accuracy_real": lsgan_accuracy(scores_real, True),
            "d_accuracy_fake": lsgan_accuracy(scores_fake, False)}


def linear_decay(config: TranslationConfig) -> Callable[[int], float]:
    """The learning-rate factor at a (0-based) step: 1, then linearly towards 0 (the authors' ``linear`` policy)."""
    return lambda step: 1.0 - max(0, step + 1 - config.steps_constant) / float(config.steps_decay + 1)


class TranslationGAN(Refiner):
    """An unpaired image-translation GAN whose source->target generator is the refiner."""

    name: ClassVar[str]
    """The method's registered name: the prefix of its logged metrics and artifacts."""
    trains: ClassVar[bool] = True

    def __init__(self, config: TranslationConfig, image_shape: tuple[int, int, int]) -> None:
        check_config(self.name, config, self._problems(config))
        super().__init__(config, image_shape)
        self.generator = init_weights(ResnetGenerator(image_shape[0], config.ngf, config.blocks), config.init)
        self.discriminator = init_weights(PatchDiscriminator(image_shape[0], config.ndf, config.d_layers), config.init)
        self.random = torch.Generator()
        """Every random draw of a fit (batches, pools, patch locations): seeded, checkpointed, so a resume repeats them."""

    def _problems(self, config: Any) -> list[str]:
        """Mistakes in the method's own settings (shared ones are checked for it)."""
        return []

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Every trained network by name: moved, checkpointed and restored together."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer (one Adam each, the authors' settings)."""

    @abstractmethod
    def train_step(self, source: Tensor, target: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   compute: Compute) -> dict[str, Any]:
        """One generator and one discriminator update; logs, ``"_refined"`` the translated source batch."""

    def pools(self) -> dict[str, ImageHistory]:
        """The method's image pools, checkpointed with the networks."""
        return {}

    def refine(self, images: Tensor) -> Tensor:
        return self.generator(images.contiguous(memory_format=torch.channels_last))

    def to(self, device: torch.device) -> None:
        for network in self.networks.values():
            network.to(device, memory_format=torch.channels_last)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Train for ``total_steps``, resuming from the fit's checkpoint; return images drawn (source + target)."""
        config, compute, name = self.config, context.compute, self.name
        self.to(compute.device)
        self.random.manual_seed(context.seed)
        synthetic = BatchSampler(source.images, config.batch_size, self.random, compute.device)
        real = BatchSampler(target.images, config.batch_size, self.random, compute.device)
        optimizers = {group: torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2))
                      for group, parameters in self.parameter_groups().items()}
        schedules = {group: torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(config))
                     for group, optimizer in optimizers.items()}
        monitor = FitMonitor(config.min_std, patience=config.collapse_patience,
                             pinned_advice="try a smaller discriminator (ndf, d_layers) or a smaller lr")
        checkpoints = Checkpointer(context.checkpoint_dir, config.checkpoint_every)
        parts = {"networks": self.networks, "optimizers": optimizers, "schedules": schedules}

        start = 0
        saved = checkpoints.load()
        if saved is not None:
            for part, objects in parts.items():
                for key, thing in objects.items():
                    thing.load_state_dict(saved[part][key])
            for key, pool in self.pools().items():
                pool.load_state_dict(saved["pools"][key], compute.device)
            self.random.set_state(saved["random"])
            start = int(saved["step"])
            monitor.checkpoint_hint = f"; the last good checkpoint (step {start}) is kept at {checkpoints.path}"
            context.tracker.set_tags({"s2r.resumed_from_step": str(start)})

        for network in self.networks.values():
            network.train()
        bar = tqdm(total=config.total_steps, initial=start, desc=f"{name}: fit", unit="step",
                   disable=not context.progress, leave=False)
        for step in range(start, config.total_steps):
            logs = self.train_step(synthetic(), real(), optimizers, compute)
            for schedule in schedules.values():
                schedule.step()
            refined = logs.pop("_refined")
            monitor.check_losses(step, {k: v for k, v in logs.items() if k.startswith("loss")})
            done = step + 1
            if done % config.log_every == 0 or done == config.total_steps:
                logs["refined_std"] = refined.float().flatten(1).std(1).mean().item()
                logs["lr"] = schedules[next(iter(schedules))].get_last_lr()[0]
                context.tracker.log_metrics({f"{name}/{k}": v for k, v in logs.items()}, step=done)
                monitor.check_outputs(done, refined)
                monitor.check_discriminator(done, logs["d_accuracy_real"], logs["d_accuracy_fake"])
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss_gan", "loss_discriminator")})
            if done % config.grid_every == 0 or done == config.total_steps:
                self._log_grid(synthetic(), real(), compute, context, done)
            if checkpoints.due(done) or done == config.total_steps:
                checkpoints.save({
                    "step": done, "random": self.random.get_state(),
                    **{part: {key: thing.state_dict() for key, thing in objects.items()} for part, objects in parts.items()},
                    "pools": {key: pool.state_dict() for key, pool in self.pools().items()},
                })
                monitor.checkpoint_hint = f"; the last good checkpoint (step {done}) is kept at {checkpoints.path}"
            bar.update()
        bar.close()
        for network in self.networks.values():
            network.eval()
        return 2 * config.batch_size * (config.total_steps - start)

    @torch.no_grad()
    def _log_grid(self, synthetic: Tensor, real: Tensor, compute: Compute, context: FitContext, step: int) -> None:
        shown = synthetic[:8]
        with compute.autocast():
            refined = self.generator(shown).float()
        rows = [shown, refined, real[: len(shown)]]
        context.tracker.log_image(grid(rows), f"{self.name}/grid_step{step:06d}.png")
