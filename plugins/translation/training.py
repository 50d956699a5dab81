"""What CycleGAN and CUT train the same way: settings, LSGAN loss, schedule, the fit.

A fit (:meth:`TranslationGAN.fit`) is one phase of steps, each drawing a source
and a target batch and letting the method do one generator and one
discriminator update (:meth:`TranslationGAN.train_step`); the loop around it is
SimGAN's too (:class:`~sim2real_bench.plugins.adversarial.AdversarialFit`):
seeded batch sampling, atomic checkpoints every ``checkpoint_every`` steps that
a relaunched fit resumes from (networks, optimizers, schedules, image pools,
random state), the divergence and collapse monitor (it watches the
discriminator that judges the refiner's output), loss curves and image grids in
MLflow.

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

from sim2real_bench.config import at_least, not_negative, one_of, positive
from sim2real_bench.data import Samples
from sim2real_bench.device import Compute
from sim2real_bench.plugins.adversarial import AdversarialFit, BatchSampler, FitSchedule, ImageHistory, Phase, Update
from sim2real_bench.plugins.translation.networks import INITS, PatchDiscriminator, ResnetGenerator, init_weights
from sim2real_bench.refiner import NETWORK_REFINE_BATCH_SIZE, FitContext, Refiner


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

    section: ClassVar[str] = "translation"

    @property
    def total_steps(self) -> int:
        """Length of the fit in steps (one generator and one discriminator update each)."""
        return self.steps_constant + self.steps_decay

    def problems(self) -> list[str]:
        """The shared settings' problems and those of both translation GANs."""
        problems = [*super().problems(), *at_least(self, 1, "ngf", "blocks", "ndf", "d_layers", "batch_size"),
                    *not_negative(self, "steps_constant", "steps_decay"), *positive(self, "lr"),
                    *one_of(self, "init", INITS)]
        problems += [f"{name} must lie in [0, 1), got {getattr(self, name)}"
                     for name in ("beta1", "beta2") if not 0 <= getattr(self, name) < 1]
        return problems


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
    fit_cached: ClassVar[bool] = True
    refined_cached: ClassVar[bool] = True
    refine_batch_size: ClassVar[int] = NETWORK_REFINE_BATCH_SIZE

    def __init__(self, config: TranslationConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.generator = init_weights(ResnetGenerator(image_shape[0], config.ngf, config.blocks), config.init)
        self.discriminator = init_weights(PatchDiscriminator(image_shape[0], config.ndf, config.d_layers), config.init)
        self.random = torch.Generator()
        """Every random draw of a fit (batches, pools, patch locations): seeded, checkpointed, so a resume repeats them."""

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Every trained network by name: moved, checkpointed and restored together."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    @abstractmethod
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimizer (one Adam each, the authors' settings)."""

    @abstractmethod
    def train_step(self, source: Tensor, target: Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   compute: Compute) -> Update:
        """One generator and one discriminator update on ``(N, C, H, W)`` batches; logs and the translated source."""

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
        config, compute = self.config, context.compute
        self.to(compute.device)
        self.random.manual_seed(context.seed)
        synthetic = BatchSampler(source.images, config.batch_size, self.random, compute.device)
        real = BatchSampler(target.images, config.batch_size, self.random, compute.device)
        optimizers = {group: torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2))
                      for group, parameters in self.parameter_groups().items()}
        schedules = {group: torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(config))
                     for group, optimizer in optimizers.items()}
        steps = Phase(config.total_steps, lambda: self.train_step(synthetic(), real(), optimizers, compute),
                      2 * config.batch_size)
        return AdversarialFit(
            self.name, config, [steps], self.networks, optimizers, self.random, synthetic, real, self.refine,
            schedules=schedules, pools=self.pools(), judge=("d_accuracy_real", "d_accuracy_fake"),
            shown=("loss_gan", "loss_discriminator"),
            pinned_advice="try a smaller discriminator (ndf, d_layers) or a smaller lr",
        ).run(context)
