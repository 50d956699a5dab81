"""``sdedit``: SDEdit, Guided Image Synthesis and Editing with Stochastic Differential Equations (Meng, He, Song,
Song, Wu, Zhu & Ermon, ICLR 2022, arXiv 2108.01073), with ILVR guidance as an option (Choi, Kim, Jeong, Gwon & Yoon,
ICCV 2021, arXiv 2108.02938).

Fit: a denoising diffusion model (DDPM, Ho et al. 2020: a UNet that predicts the
noise in a noised image, trained with the plain MSE loss at uniformly drawn
timesteps) learns the *unlabeled target training images* alone; source images
and labels never reach it. The UNet is diffusers' ``UNet2DModel`` and the
schedule diffusers' ``DDPMScheduler``, both built in code from this config
(``denoiser.py``, ``sampling.py``): nothing is downloaded. Images are padded
(mirrored) to what the UNet's down-sampling needs, e.g. 35x55 eyes to 36x56 with
3 levels or 40x56 with 4, and cropped back. Refining runs the weight average (EMA).

Refine: noise each synthetic image to t0 (a fraction of the schedule: 0.5 is
step 500 of 1,000), then denoise it with K DDIM steps (``eta`` 0: deterministic;
``eta`` 1 with K = t0 * T: DDPM's ancestral sampler, the discretized reverse SDE
the paper runs). The model has only seen target images, so what it puts back is
target-like detail, while the content that survives the noise (low frequencies:
pupil, lids, hand silhouette) stays the input's. t0 trades realism for
faithfulness (the paper: t0 in [0.3, 0.6]). With ``ilvr_factor`` N > 0, each
step is followed by ILVR's guidance: the sample's band below 1/N of the
resolution is replaced by that of the synthetic input noised to the same level
(``sampling.low_pass``, ``sampling.ilvr_guide``): the refined image's coarse
content is then exactly the input's (up to the final clip to [-1, 1]), to keep what the labels describe in place
at larger t0. Each refined image's noise is seeded by the fit's
seed and the image's content, so it does not depend on its batch.

Choices (config fields): the paper edits with pretrained models (DDPM's LSUN
and CelebA-HQ checkpoints) and trains none, so ``paper`` takes the published
DDPM recipe at the size nearest these crops, its CIFAR-10 model: widths 128,
256, 256, 256, 2 ResNet blocks per level, self-attention at the second level
(CIFAR's 16x16), dropout 0.1, Adam 2e-4 with 5,000 warm-up steps, gradient
clipping at 1, EMA 0.9999, batch 128, 800,000 steps, linear betas 1e-4 to 0.02
over 1,000 steps; t0 0.5, K 500 with eta 1 (every step of the reverse chain from
t0), one repeat, no ILVR. diffusers' attention uses 8-channel heads (DDPM: one
head). The low-pass filter of ILVR is a DCT projection rather than the ILVR
code's bicubic resizer (see ``sampling.low_pass``).

Presets, sized by FLOPs (``torch.utils.flop_counter``; training costs the
forward and backward pass, about 3x the forward):

* ``paper``: 26.5 GFLOP per forward pass of a 40x56 image, 79.4 per training
  image, 8,130 PFLOP for the 800,000 x 128 training images; refining costs
  500 x 26.5 = 13.2 TFLOP per image (a GPU method: that is what the paper's
  sampler costs).
* ``quick``: widths 16, 32, 32 (3 levels, 36x56), 1 ResNet block per level,
  attention only in the middle (9x14), 8 norm groups, no dropout; batch 32,
  600 steps, Adam 1e-3 after 50 warm-up steps, EMA 0.99; t0 0.5 with K = 4
  DDIM steps (eta 0). 0.24 GFLOP per forward pass, 0.72 per training image:
  13.8 TFLOP of fit; refining costs 4 x 0.24 = 0.96 GFLOP per image, 7.7 TFLOP
  for 8,000 images, 19.2 for the 20,000 of a default quick gaze run. A UNet
  this narrow reaches a half to three quarters of the rate of the 64-map convs
  SimGAN's figures come from (measured side by side in one process, fp32, on one
  niced core of a loaded machine: 18 vs 22-32 GFLOP/s), so at the 100-175
  GFLOP/s those convs reach on 2 cores this is about 1.5-4 min of fit and 1-2.5
  min of refining per 8,000 images (2.5-6 for 20,000); bf16 autocast where the
  CPU has it should roughly halve both. Hands (64x64) cost 2x per image. Each
  added DDIM step adds 0.24 GFLOP per image. Timed end to end on a 2-core Intel
  Xeon with AMX, bf16 (2026-12-03): a quick gaze run 354 s (fit 130-141 s, refining
  20,000 images 129 s at 145 img/s), a quick hand run 779 s (fit 228 s, refining 353 s).
* ``smoke``: a 2-level, 8-map UNet for a few steps, for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sim2real_bench.config import BUDGETS, at_least, not_negative, one_of, positive
from sim2real_bench.data import Samples
from sim2real_bench.device import Compute, ImageNoise
from sim2real_bench.images import grid
from sim2real_bench.plugins.adversarial import AdversarialFit, BatchSampler, FitSchedule, Phase, Update
from sim2real_bench.plugins.diffusion.denoiser import Denoiser, WeightAverage, crop, pad, padded_size
from sim2real_bench.plugins.diffusion.sampling import (
    BETA_SCHEDULES, cumulative_alphas, make_schedule, sdedit, start_level)
from sim2real_bench.refiner import NETWORK_REFINE_BATCH_SIZE, FitContext, Refiner

GRID_IMAGES = 8
"""Images per row of the fit's grids."""


@dataclass(frozen=True)
class SDEditConfig(FitSchedule):
    """Every setting of SDEdit and its denoiser; presets in :data:`PRESETS`."""

    widths: tuple[int, ...] = (128, 256, 256, 256)
    """Feature maps of each UNet level, full resolution first (diffusers' ``block_out_channels``). Images are
    padded to a multiple of ``2 ** (levels - 1)``."""
    layers_per_block: int = 2
    """ResNet blocks per level on the way down (one more on the way up)."""
    attention_levels: tuple[int, ...] = (1,)
    """Levels (0 = full resolution) whose blocks add self-attention."""
    mid_attention: bool = True
    """Self-attention in the middle block, at the coarsest resolution."""
    norm_groups: int = 32
    """GroupNorm groups; every width must be a multiple of it."""
    dropout: float = 0.1
    timesteps: int = 1000
    """T: steps of the forward (noising) process."""
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    """``linear`` (DDPM: beta_start to beta_end) or ``squaredcos_cap_v2`` (cosine; ignores both)."""
    batch_size: int = 128
    steps: int = 800_000
    """Training steps of the denoiser."""
    lr: float = 2e-4
    """Adam's learning rate, after a linear warm-up."""
    warmup_steps: int = 5000
    grad_clip: float = 1.0
    """Largest gradient norm (0: no clipping)."""
    ema_decay: float = 0.9999
    """Decay of the weight average that refines (0: the last weights)."""
    t0: float = 0.5
    """SDEdit's strength: the noise level the synthetic image is taken to, as a fraction of the schedule
    (0.5 = step 500 of 1,000; 0 returns the input). The paper: 0.3 to 0.6."""
    denoise_steps: int = 500
    """K: DDIM steps from t0 back to the clean image, the denoiser's passes per refined image (per repeat);
    capped at the ``round(t0 * timesteps)`` levels t0 noises through (so a lower ``--set refiner.t0`` needs no
    change of K)."""
    eta: float = 1.0
    """DDIM's stochasticity: 0 deterministic, 1 DDPM's ancestral sampling (the reverse SDE)."""
    repeats: int = 1
    """Noise-and-denoise rounds per image (the paper's repeated SDEdit), each from the last round's output."""
    ilvr_factor: int = 0
    """N of ILVR's low-pass filter (down/up-sampling by N): after every step the sample's band below 1/N of
    the resolution is the synthetic input's. 0: off (plain SDEdit); 1 would return the input."""
    clip_denoised: bool = True
    """Clip each step's prediction of the clean image to [-1, 1] (diffusers' ``clip_sample``)."""
    t0_grid: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6)
    """Strengths of the rows of the ``sdedit/t0_grid.png`` artifact: the same synthetic images refined at each."""

    section: ClassVar[str] = "sdedit"

    @property
    def start(self) -> int:
        """The level t0 noises to: ``round(t0 * timesteps)``."""
        return start_level(self.t0, self.timesteps)

    def steps_at(self, t0: float) -> int:
        """DDIM steps of one repeat at strength ``t0``: K, capped at the levels t0 noises through."""
        return min(self.denoise_steps, start_level(t0, self.timesteps))

    def passes(self, t0: float) -> int:
        """Denoiser passes per image refined at strength ``t0``: :meth:`steps_at` per repeat."""
        return self.repeats * self.steps_at(t0)

    def problems(self) -> list[str]:
        """The shared settings' problems and SDEdit's own."""
        problems = [*super().problems(), *one_of(self, "beta_schedule", BETA_SCHEDULES),
                    *at_least(self, 1, "layers_per_block", "norm_groups", "timesteps", "batch_size",
                              "denoise_steps", "repeats"),
                    *not_negative(self, "steps", "warmup_steps", "grad_clip", "ilvr_factor"),
                    *positive(self, "lr")]
        groups = max(self.norm_groups, 1)
        if not self.widths or any(width < 1 or width % groups for width in self.widths):
            problems.append(f"widths {self.widths} must be one or more multiples of norm_groups ({self.norm_groups})")
        if any(level not in range(len(self.widths)) for level in self.attention_levels):
            problems.append(f"attention_levels {self.attention_levels} must name levels 0 to {len(self.widths) - 1}")
        if not 0 < self.beta_start < self.beta_end < 1:
            problems.append(f"betas must satisfy 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        for name, closed in (("t0", True), ("eta", True), ("ema_decay", False), ("dropout", False)):
            value = getattr(self, name)
            if not (0 <= value <= 1 if closed else 0 <= value < 1):
                problems.append(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value}")
        if not all(0 <= t0 <= 1 for t0 in self.t0_grid):
            problems.append(f"t0_grid values must lie in [0, 1], got {self.t0_grid}")
        return problems


PAPER = SDEditConfig(log_every=100, grid_every=10_000, checkpoint_every=5_000)
QUICK = replace(
    PAPER, widths=(16, 32, 32), layers_per_block=1, attention_levels=(), norm_groups=8, dropout=0.0, batch_size=32,
    steps=600, lr=1e-3, warmup_steps=50, ema_decay=0.99, denoise_steps=4, eta=0.0, log_every=10, grid_every=100,
    checkpoint_every=50,
)
SMOKE = replace(
    QUICK, widths=(8, 8), norm_groups=4, mid_attention=False, batch_size=8, steps=6, warmup_steps=2, ema_decay=0.5,
    denoise_steps=2, t0_grid=(0.3, 0.6), log_every=2, grid_every=4, checkpoint_every=3,
)
PRESETS = {"smoke": SMOKE, "quick": QUICK, "paper": PAPER}
assert set(PRESETS) == set(BUDGETS)


def warmup(steps: int):
    """The learning-rate factor of a linear warm-up over ``steps`` (then 1), for ``LambdaLR``."""
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / steps) if steps else 1.0
    return factor


class SDEdit(Refiner):
    """SDEdit over a DDPM trained on unlabeled target images: noise to t0, K DDIM steps back; ILVR optional."""

    name: ClassVar[str] = "sdedit"
    Config: ClassVar[type] = SDEditConfig
    presets: ClassVar[dict[str, SDEditConfig]] = PRESETS
    fit_cached: ClassVar[bool] = True
    refined_cached: ClassVar[bool] = True
    refine_settings: ClassVar[tuple[str, ...]] = ("t0", "denoise_steps", "eta", "repeats", "ilvr_factor",
                                                   "clip_denoised")
    """The sampler's settings: a t0 or ILVR sweep refines one trained denoiser in each of its ways."""
    refine_batch_size: ClassVar[int] = NETWORK_REFINE_BATCH_SIZE

    def __init__(self, config: SDEditConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        self.size = padded_size(height, width, len(config.widths))
        """``(H, W)`` the denoiser works at: the images padded for its down-sampling."""
        self.denoiser = Denoiser(channels, self.size, config.widths, config.layers_per_block,
                                 config.attention_levels, config.mid_attention, config.norm_groups, config.dropout)
        self.average = WeightAverage(self.denoiser, config.ema_decay)
        """The weight average of the denoiser: what refines."""
        self.schedule = make_schedule(config.timesteps, config.beta_start, config.beta_end, config.beta_schedule)
        self.abar = cumulative_alphas(self.schedule)
        self.noise_seed = 0
        """Seed of refining's noise: the fit's seed, kept with the fitted state."""

    @property
    def networks(self) -> dict[str, nn.Module]:
        """The trained denoiser and its average: moved, checkpointed and restored together."""
        return {"denoiser": self.denoiser, "average": self.average}

    def to(self, device: torch.device) -> None:
        for network in self.networks.values():
            network.to(device, memory_format=torch.channels_last)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict(), "noise_seed": self.noise_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
        self.noise_seed = int(state["noise_seed"])

    def _predict(self, samples: Tensor, timestep: int) -> Tensor:
        """The averaged denoiser's noise prediction at one diffusers timestep, float32."""
        timesteps = torch.full((len(samples),), timestep, dtype=torch.long, device=samples.device)
        return self.average(samples.contiguous(memory_format=torch.channels_last), timesteps).float()

    def edit(self, images: Tensor, t0: float) -> Tensor:
        """SDEdit at strength ``t0`` (ILVR and the rest as configured): ``(N, C, H, W)`` in [-1, 1] in, the same out.

        ``min(K, t0 * T)`` denoiser passes per repeat; deterministic per image for a given fit and seed.
        """
        config = self.config
        with torch.inference_mode():
            start = start_level(t0, config.timesteps)
            if start == 0:
                return images
            height, width = images.shape[-2:]
            noise = ImageNoise(images, self.noise_seed, "sdedit-refine", (images.shape[1], *self.size))
            reference = pad(images.float(), self.size)
            current = reference
            for _ in range(config.repeats):
                current = sdedit(self._predict, current, reference, self.abar, start, config.steps_at(t0),
                                 config.eta, config.ilvr_factor, noise, config.clip_denoised)
            return crop(current, height, width).clamp(-1.0, 1.0)

    def refine(self, images: Tensor) -> Tensor:
        """SDEdit at the configured t0: ``(N, C, H, W)`` in [-1, 1] in, the same out."""
        return self.edit(images, self.config.t0)

    def _train_step(self, real: BatchSampler, random: torch.Generator, optimizer: torch.optim.Optimizer,
                    compute: Compute) -> Update:
        """One DDPM step on a target batch: noise it at random timesteps, regress the noise (MSE)."""
        clean = pad(real(), self.size)
        noise = torch.randn(clean.shape, generator=random).to(clean.device)
        timesteps = torch.randint(self.config.timesteps, (len(clean),), generator=random).to(clean.device)
        noisy = self.schedule.add_noise(clean, noise, timesteps).contiguous(memory_format=torch.channels_last)
        with compute.autocast():
            predicted = self.denoiser(noisy, timesteps)
        loss = F.mse_loss(predicted.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.denoiser.parameters(), self.config.grad_clip or math.inf)
        optimizer.step()
        self.average.update(self.denoiser)
        return Update({"loss": loss.item(), "grad_norm": norm.item()}, predicted.detach())

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Train the denoiser on target images, resuming from the fit's checkpoint; return target images drawn.

        Source images serve only the grids (synthetic, refined, target rows over training, and
        ``sdedit/t0_grid.png`` at the end).
        """
        config, compute = self.config, context.compute
        self.to(compute.device)
        self.noise_seed = context.seed
        random = torch.Generator().manual_seed(context.seed)
        real = BatchSampler(target.images, config.batch_size, random, compute.device)
        synthetic = BatchSampler(source.images, GRID_IMAGES, random, compute.device)
        optimizer = torch.optim.Adam(self.denoiser.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup(config.warmup_steps))
        steps = Phase(config.steps, partial(self._train_step, real, random, optimizer, compute), config.batch_size,
                      judged=False)
        drawn = AdversarialFit(
            self.name, config, [steps], self.networks, {"denoiser": optimizer}, random, synthetic, real, self.refine,
            schedules={"denoiser": schedule}, shown=("loss",), watched=("noise_prediction", "noise predictions"),
        ).run(context)
        self._log_t0_grid(source.images[:GRID_IMAGES].to(compute.device), context)
        return drawn

    def _log_t0_grid(self, shown: Tensor, context: FitContext) -> None:
        """Log the same synthetic images refined at each strength of ``t0_grid``, one row each."""
        with context.compute.autocast():
            rows = [shown, *(self.edit(shown, t0) for t0 in self.config.t0_grid)]
        context.tracker.log_image(grid(rows), f"{self.name}/t0_grid.png")
        context.tracker.log_dict({"rows": ["synthetic", *(f"t0={t0}" for t0 in self.config.t0_grid)],
                                  "denoise_steps": self.config.denoise_steps, "eta": self.config.eta,
                                  "ilvr_factor": self.config.ilvr_factor}, f"{self.name}/t0_grid.json")
