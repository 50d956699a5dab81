"""``unsb``: Unpaired Image-to-Image Translation via Neural Schrödinger Bridge (Kim, Kwon, Kim & Ye,
ICLR 2024, arXiv 2305.15086; the authors' code, cyclomon/UNSB, is built on CUT's).

The Schrödinger bridge from synthetic to target images is learned as a chain
of ``timesteps`` adversarial problems at times ``0 = t_0 < 0.5 = t_1 < ... < 1``
(harmonic spacing, the authors'). One time-conditioned generator
``G(x_t, t, z)`` predicts the target image ``x_1`` from the state ``x_t`` (``z``: its
own latent noise); the next state is drawn on the Brownian bridge between
``x_t`` and that prediction, ``x_{t'} = (1 - s) x_t + s G(x_t) + sqrt(tau (t' - t)(1 - s)) eps``
with ``s = (t' - t) / (1 - t)`` (``plugins/translation/bridge.py``).

One fit step (the authors' ``optimize_parameters``): draw a time index ``i``
uniformly; walk two source batches ``x_0, x_0'`` (and a target batch, for the
identity term) down the chain to ``t_i`` with the current generator, without
gradients; estimate ``x_1 = G(x_{t_i}, i, z)`` for all of them; then update, in
order,

* the discriminator ``D(., i)`` (LSGAN, time-conditioned) on target images vs ``x_1``;
* the energy network ``E(., i)`` on pairs ``p = [x_{t_i}, x_1]``, ``p'`` from the second
  batch: ``-mean E(p, p) + L + L^2`` with ``L = logsumexp E(p, p')``;
* the generator and PatchNCE heads: ``lambda_GAN GAN + lambda_SB L_SB + lambda_NCE NCE``.
  ``L_SB = tau (mean |x_{t_i} - x_1|^2 - (T - i) / T * H)``, ``H = mean E(p, p) - L``
  the entropy estimate of ``(x_{t_i}, x_1)`` (a Donsker-Varadhan bound, maximized by
  E and, through ``-H``, by G). The paper writes ``E|x_t - x_1|^2 - 2 tau (1 - t_i) H``;
  its code, followed here, scales the transport term by tau too, and uses
  ``(T - i) / T`` and no factor 2 for the entropy weight. NCE is CUT's PatchNCE
  between ``x_0`` and ``x_1`` in G's encoder at time index 0 (keys from ``x_0``), plus
  the identity term on target images, averaged (the authors' ``mode sb``).

Refining runs the whole chain from the synthetic image: ``timesteps`` generator
evaluations, the last estimate being the refined image. Its noise (bridge steps
and latents) is drawn per image from a generator seeded by the fit's seed and
the image's bytes, so a refined image depends on nothing but the image, the fit
and the seed: its noise does not change with the batch it came in, the batch
size or the device.

Authors' defaults (``paper``): lambda_SB 1, lambda_NCE 1, lambda_GAN 1 (their
``run_train.sh``), 5 timesteps, tau 0.01, identity NCE on, PatchNCE as CUT's
(256 patches, temperature 0.07, 256-wide heads), Xavier init (gain 0.02), Adam
2e-4 with beta1 0.5, batch 1, CUT's 200 + 200 epochs with linear decay (as
steps: their ``train_options.py``, inherited from CUT, was not seen). Departures,
as in ``cut`` for 35x55 images: 6 residual blocks, not their 9 (256 px images);
a 2-layer (34 px) PatchGAN, not 3, for D and E; strided convs, not
anti-aliased ones. The time conditioning of G is a FiLM modulation that
survives instance norm, where the authors' has no effect (see ``bridge.py``).

Presets, sized by FLOPs (``torch.utils.flop_counter``, forward and backward of
one fit step at the mean walk length of ``(T - 1) / 2`` steps):

* ``paper``: as above; 44.0 GFLOP per step (batch 1; 31.4 at time index 0 to 56.7 at
  index 4), 17,600 TFLOP in all; refining costs 10.6 GFLOP per image (5 x 2.11).
* ``quick``: ``ngf=16``, 3 blocks, ``ndf=32``, 64 patches, 64-wide heads, batch 8,
  400 + 400 steps, 5 timesteps: 17.5 GFLOP per step (13.6 to 21.4), 14.0 TFLOP in
  all, the same 800 generator updates as ``cut``'s quick preset on as many source
  images (two batches of 8 a step); refining costs 0.40 GFLOP per image (5 x 0.081),
  3.2 TFLOP for 8,000 images, 8.1 for the 20,000 of a default quick gaze run. At
  the 100-175 GFLOP/s these convs reach in fp32 on 2 cores that is 1.3-2.3 min of
  fit and 18-32 s of refining per 8,000 images (46-81 s for 20,000), about half
  with bf16 autocast.
* ``smoke``: a few steps of tiny networks, 3 timesteps, for tests.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sim2real_bench.config import BUDGETS, at_least, not_negative, positive
from sim2real_bench.data import Samples
from sim2real_bench.device import Compute, ImageNoise
from sim2real_bench.images import grid
from sim2real_bench.plugins.adversarial import AdversarialFit, BatchSampler, Phase, Update
from sim2real_bench.plugins.translation.bridge import (
    TimeConditionedDiscriminator, TimeConditionedGenerator, bridge_step, bridge_times, entropy_terms)
from sim2real_bench.plugins.translation.networks import init_weights
from sim2real_bench.plugins.translation.patchnce import PatchProjector, layer_problems, patch_nce_loss
from sim2real_bench.plugins.translation.training import (
    TranslationConfig, discriminator_step, frozen, linear_decay, lsgan_loss)
from sim2real_bench.refiner import NETWORK_REFINE_BATCH_SIZE, FitContext, Refiner


@dataclass(frozen=True)
class UNSBConfig(TranslationConfig):
    """Every setting of UNSB; presets in :data:`PRESETS`."""

    init: str = "xavier"
    steps_constant: int = 200_000
    steps_decay: int = 200_000
    timesteps: int = 5
    """T: bridge steps, and generator evaluations per refined image (the authors' ``num_timesteps``)."""
    tau: float = 0.01
    """Entropy regularization of the bridge: its noise variance and the weight of L_SB's terms."""
    sb_weight: float = 1.0
    """lambda_SB."""
    nce_weight: float = 1.0
    """lambda_NCE."""
    gan_weight: float = 1.0
    """lambda_GAN."""
    nce_identity: bool = True
    """Add PatchNCE(y, G(y_t)) on target images walked down the same chain, averaged with the main term."""
    nce_layers: tuple[str, ...] = ("input", "down1", "down2", "block1", "block3")
    """Generator encoder layers PatchNCE compares: ``input``, ``down1``, ``down2``, ``block1`` ... ``block<blocks>``."""
    patches: int = 256
    """Locations sampled per layer (fewer where a layer has fewer)."""
    temperature: float = 0.07
    projection_dim: int = 256
    """Output width of each PatchNCE MLP head."""

    section: ClassVar[str] = "unsb"

    def problems(self) -> list[str]:
        """The shared settings' problems and UNSB's own."""
        problems = [*super().problems(), *at_least(self, 1, "timesteps", "patches", "projection_dim"),
                    *positive(self, "tau", "temperature"), *not_negative(self, "sb_weight", "nce_weight", "gan_weight")]
        return [*problems, *layer_problems(self.nce_layers, self.blocks)]


PAPER = UNSBConfig()
QUICK = replace(PAPER, ngf=16, blocks=3, ndf=32, nce_layers=("input", "down1", "down2", "block1", "block2"),
                patches=64, projection_dim=64, batch_size=8, steps_constant=400, steps_decay=400, log_every=10,
                grid_every=100, checkpoint_every=50)
SMOKE = replace(QUICK, ngf=4, blocks=1, ndf=4, d_layers=1, nce_layers=("input", "down1", "down2", "block1"),
                patches=16, projection_dim=8, batch_size=4, timesteps=3, steps_constant=3, steps_decay=3, log_every=2,
                grid_every=4, checkpoint_every=3)
PRESETS = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
assert set(PRESETS) == set(BUDGETS)


class UNSB(Refiner):
    """Unpaired neural Schrödinger bridge: a time-conditioned generator walked over a few stochastic steps."""

    name: ClassVar[str] = "unsb"
    Config = UNSBConfig
    presets = PRESETS
    fit_cached: ClassVar[bool] = True
    refined_cached: ClassVar[bool] = True
    refine_batch_size: ClassVar[int] = NETWORK_REFINE_BATCH_SIZE

    def __init__(self, config: UNSBConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels = image_shape[0]
        self.generator = TimeConditionedGenerator(channels, config.ngf, config.blocks, config.init)
        self.discriminator = TimeConditionedDiscriminator(channels, config.ndf, config.d_layers, config.init)
        self.energy = TimeConditionedDiscriminator(4 * channels, config.ndf, config.d_layers, config.init)
        """Scores ``[x_t, x_1]`` pairs placed beside themselves or beside an independent pair."""
        taps = [self.generator.tap_channels[layer] for layer in config.nce_layers]
        self.projector = init_weights(PatchProjector(taps, config.projection_dim), config.init)
        self.times = bridge_times(config.timesteps)
        self.random = torch.Generator()
        """Every random draw of a fit (batches, time indices, bridge noise, latents, patch locations): checkpointed."""
        self.noise_seed = 0
        """Seed of refining's noise: the fit's seed, kept with the fitted state."""

    @property
    def networks(self) -> dict[str, nn.Module]:
        """Every trained network by name: moved, checkpointed and restored together."""
        return {"generator": self.generator, "discriminator": self.discriminator, "energy": self.energy,
                "projector": self.projector}

    def to(self, device: torch.device) -> None:
        for network in self.networks.values():
            network.to(device, memory_format=torch.channels_last)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "noise_seed": self.noise_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.noise_seed = int(state["noise_seed"])

    @staticmethod
    def _time(states: Tensor, index: int) -> Tensor:
        return torch.full((len(states),), index, dtype=torch.long, device=states.device)

    def _walk(self, states: Tensor, steps: int, latent: Callable[[int], Tensor],
              noise: Callable[[int], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``states`` at ``t_0`` walked to ``t_steps``; also the estimates of ``x_1`` made on the way.

        ``latent(i)`` and ``noise(i)`` give the draws of step ``i`` (``(N, latent_dim)``, ``states``' shape).
        """
        estimates = []
        for step in range(steps):
            estimate = self.generator(states, self._time(states, step), latent(step))
            states = bridge_step(states, estimate, self.times[step], self.times[step + 1], self.config.tau, noise(step))
            estimates.append(estimate)
        return states, estimates

    def chain(self, images: Tensor) -> list[Tensor]:
        """The estimates of the target image after each of the ``timesteps`` steps from ``images``; the last is refined.

        Shape: ``(N, C, H, W)`` in [-1, 1] in, a list of ``timesteps`` such batches out.
        """
        with torch.inference_mode():
            last = self.config.timesteps - 1
            noise = ImageNoise(images, self.noise_seed, "unsb-refine-noise", tuple(images.shape[1:]))
            latents = ImageNoise(images, self.noise_seed, "unsb-refine-latent", (self.generator.latent_dim,))
            states = images.contiguous(memory_format=torch.channels_last)
            states, estimates = self._walk(states, last, lambda _: latents(), lambda _: noise())
            estimates.append(self.generator(states, self._time(states, last), latents()))
            return estimates

    def refine(self, images: Tensor) -> Tensor:
        """Run the chain from ``images``: ``(N, C, H, W)`` in [-1, 1] in, the same out, deterministic per seed."""
        return self.chain(images)[-1]

    def _draw(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """Standard normal draws from the fit's generator (on the CPU, so every device draws the same)."""
        return torch.randn(shape, generator=self.random).to(device)

    def _nce(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        """PatchNCE between ``inputs`` and ``outputs`` in G's encoder at time index 0, one latent shared by both."""
        layers, time = self.config.nce_layers, self._time(inputs, 0)
        latent = self._draw((len(inputs), self.generator.latent_dim), inputs.device)
        keys = self.generator.encode(inputs, layers, time, latent)
        queries = self.generator.encode(outputs, layers, time, latent)
        where = PatchProjector.locations(keys, self.config.patches, self.random)
        losses = [patch_nce_loss(q, k, self.config.temperature)
                  for q, k in zip(self.projector(queries, where), self.projector(keys, where))]
        return torch.stack(losses).mean()

    def train_step(self, source: Tensor, source2: Tensor, target: Tensor,
                   optimizers: dict[str, torch.optim.Optimizer], compute: Compute) -> Update:
        """One D, one E and one G update at a random time index; logs and the estimates of ``x_1`` for ``source``."""
        config, n, device = self.config, len(source), source.device
        index = int(torch.randint(config.timesteps, (1,), generator=self.random))
        starts = torch.cat([source, source2, target] if config.nce_identity else [source, source2])
        with torch.no_grad(), compute.autocast():
            latent_shape, noise_shape = (len(starts), self.generator.latent_dim), tuple(starts.shape)
            states, _ = self._walk(starts, index, lambda _: self._draw(latent_shape, device),
                                   lambda _: self._draw(noise_shape, device))
        time = self._time(states, index)
        latent = self._draw((len(states), self.generator.latent_dim), device)
        with compute.autocast():
            estimates = self.generator(states, time, latent)
        state, state2, fake, fake2, at = states[:n], states[n : 2 * n], estimates[:n], estimates[n : 2 * n], time[:n]

        logs = discriminator_step(functools.partial(self.discriminator, time=at), target, fake,
                                  optimizers["discriminator"], compute)

        with compute.autocast():
            joint, marginal = entropy_terms(self.energy, at, torch.cat([state, fake.detach()], 1),
                                            torch.cat([state2, fake2.detach()], 1))
        loss_energy = -joint + marginal + marginal**2
        optimizers["energy"].zero_grad(set_to_none=True)
        loss_energy.backward()
        optimizers["energy"].step()

        with compute.autocast(), frozen(self.discriminator, self.energy):
            gan = lsgan_loss(self.discriminator(fake, at), True)
            joint, marginal = entropy_terms(self.energy, at, torch.cat([state, fake], 1), torch.cat([state2, fake2], 1))
            entropy = joint - marginal
            sb = config.tau * (F.mse_loss(fake.float(), state.float())
                               - (config.timesteps - index) / config.timesteps * entropy)
            nce = self._nce(source, fake)
            logs["loss_nce"] = nce.item()
            if config.nce_identity:
                nce_identity = self._nce(target, estimates[2 * n :])
                logs["loss_nce_identity"] = nce_identity.item()
                nce = (nce + nce_identity) * 0.5
        loss = config.gan_weight * gan + config.sb_weight * sb + config.nce_weight * nce
        optimizers["generator"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["generator"].step()
        logs.update({"loss_energy": loss_energy.item(), "loss_gan": gan.item(), "loss_sb": sb.item(),
                     "entropy_estimate": entropy.item(), "time_index": float(index), "loss_generator": loss.item()})
        return Update(logs, fake.detach())

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Train for ``total_steps``, resuming from the fit's checkpoint; return images drawn (3 batches a step)."""
        config, compute = self.config, context.compute
        self.to(compute.device)
        self.noise_seed = context.seed
        self.random.manual_seed(context.seed)
        synthetic = BatchSampler(source.images, config.batch_size, self.random, compute.device)
        real = BatchSampler(target.images, config.batch_size, self.random, compute.device)
        groups = {"generator": [*self.generator.parameters(), *self.projector.parameters()],
                  "discriminator": list(self.discriminator.parameters()), "energy": list(self.energy.parameters())}
        optimizers = {group: torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2))
                      for group, parameters in groups.items()}
        schedules = {group: torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(config))
                     for group, optimizer in optimizers.items()}
        steps = Phase(config.total_steps,  # two source batches (x_0, x_0') and a target batch a step
                      lambda: self.train_step(synthetic(), synthetic(), real(), optimizers, compute),
                      3 * config.batch_size)
        drawn = AdversarialFit(
            self.name, config, [steps], self.networks, optimizers, self.random, synthetic, real, self.refine,
            schedules=schedules, judge=("d_accuracy_real", "d_accuracy_fake"),
            shown=("loss_gan", "loss_sb", "loss_discriminator"),
            pinned_advice="try a smaller discriminator (ndf, d_layers) or a smaller lr",
        ).run(context)
        self._log_chain(source.images[:8].to(compute.device), context)
        return drawn

    def _log_chain(self, shown: Tensor, context: FitContext) -> None:
        """Log the source images and the estimate after each bridge step, one row each (the authors' ``fake_<NFE>``)."""
        with context.compute.autocast():
            estimates = self.chain(shown)
        context.tracker.log_image(grid([shown, *estimates]), f"{self.name}/chain.png")
