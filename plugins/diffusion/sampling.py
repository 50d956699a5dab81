"""The diffusion arithmetic of ``sdedit``: noise schedule, SDEdit's noising, DDIM steps, ILVR guidance.

Notation. A *level* ``tau`` in ``0 .. T`` counts the forward-process steps applied
to an image: level 0 is the clean image, level ``T`` (almost) pure noise, and
``abar[tau]`` is the product of ``1 - beta_i`` over the first ``tau`` steps (1 at
level 0). diffusers indexes the same schedule by *timestep* ``t = tau - 1``
(``DDPMScheduler.alphas_cumprod[t]``), and so does the UNet's time embedding,
which is why a denoiser is called with ``tau - 1``. With levels, "noise to
t0 = 500 of 1,000" is level 500, and strength 0 is the input itself.

All arithmetic here runs in float32 whatever autocast is active around it (only
the denoiser's forward pass is autocast), so the schedule's small differences
near level 0 survive.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor


if TYPE_CHECKING:  # diffusers takes seconds to import: only a refiner that is built loads it
    from diffusers import DDPMScheduler

BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
"""DDPM's linear betas (Ho et al. 2020) and the cosine schedule (Nichol & Dhariwal 2021), by diffusers' names."""

Predict = Callable[[Tensor, int], Tensor]
"""``predict(samples, timestep)``: the denoiser's noise prediction for ``(N, C, H, W)`` samples at one diffusers
timestep (a level minus 1), as float32 of the samples' shape."""


def make_schedule(timesteps: int, beta_start: float, beta_end: float, beta_schedule: str) -> DDPMScheduler:
    """The training noise schedule, built in code (nothing is downloaded): ``timesteps`` betas of ``beta_schedule``."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=timesteps, beta_start=beta_start, beta_end=beta_end,
                         beta_schedule=beta_schedule, clip_sample=False)


def cumulative_alphas(scheduler: DDPMScheduler) -> list[float]:
    """``abar`` by level: ``T + 1`` values, 1 at level 0 then diffusers' ``alphas_cumprod``."""
    return [1.0, *scheduler.alphas_cumprod.double().tolist()]


def start_level(t0: float, timesteps: int) -> int:
    """SDEdit's t0 (a fraction of the schedule) as a level: ``round(t0 * T)``."""
    return round(t0 * timesteps)


def denoising_levels(start: int, steps: int) -> list[int]:
    """The ``steps + 1`` levels a K-step sampler visits, evenly spaced from ``start`` down to 0 (``[0]`` at 0).

    Strictly decreasing when ``steps <= start``, which the config checks.
    """
    if start == 0:
        return [0]
    return [round(start * (steps - k) / steps) for k in range(steps + 1)]


def noise_to(images: Tensor, noise: Tensor, abar: float) -> Tensor:
    """The forward process in one jump: ``sqrt(abar) x + sqrt(1 - abar) eps``; ``images`` itself at ``abar = 1``."""
    if abar == 1.0:
        return images
    return math.sqrt(abar) * images + math.sqrt(1.0 - abar) * noise


def ddim_step(sample: Tensor, predicted_noise: Tensor, abar_now: float, abar_next: float, eta: float = 0.0,
              noise: Tensor | None = None, clip: bool = True) -> tuple[Tensor, Tensor]:
    """One DDIM update (Song et al. 2021, eq. 12) from the level of ``abar_now`` to that of ``abar_next``.

    ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)`` (clipped to [-1, 1] when ``clip``), then
    ``x' = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a')``: eta 0 is deterministic DDIM, eta 1 with
    unit strides DDPM's ancestral sampler. The same as diffusers' ``DDIMScheduler.step`` (epsilon
    prediction), which fixes its stride at ``T // num_inference_steps`` from the top of the schedule
    where SDEdit starts at t0.

    Args:
        sample: ``(N, C, H, W)`` samples at the current level.
        predicted_noise: the denoiser's noise prediction for them, same shape.
        noise: ``z``, standard normal of the same shape; needed when ``eta > 0``.

    Returns:
        The samples at the next level, and the predicted clean images ``x0``.
    """
    predicted_noise = predicted_noise.float()
    clean = (sample - math.sqrt(1.0 - abar_now) * predicted_noise) / math.sqrt(abar_now)
    if clip:
        clean = clean.clamp(-1.0, 1.0)
    variance = (1.0 - abar_next) / (1.0 - abar_now) * (1.0 - abar_now / abar_next) if eta > 0 else 0.0
    sigma = eta * math.sqrt(max(variance, 0.0))
    following = math.sqrt(abar_next) * clean + math.sqrt(max(1.0 - abar_next - sigma**2, 0.0)) * predicted_noise
    if sigma > 0:
        assert noise is not None, "eta > 0 needs noise"
        following = following + sigma * noise
    return following, clean


def dct_projection(size: int, keep: int, device: torch.device | None = None) -> Tensor:
    """The ``(size, size)`` matrix that keeps the lowest ``keep`` coefficients of the orthonormal DCT-II of a signal.

    ``B^T B`` for the first ``keep`` rows ``B`` of the DCT basis: symmetric and idempotent.
    """
    n = torch.arange(size, dtype=torch.float64)
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * (n + 0.5) * k / size) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return (basis.T @ basis).float().to(device)


def low_pass(images: Tensor, factor: int) -> Tensor:
    """ILVR's ``phi_N``: the band of ``images`` that down-sampling by ``factor`` and up-sampling back keeps.

    Keeps the lowest ``ceil(H / N) x ceil(W / N)`` DCT coefficients, i.e. what an ideal resampler to an
    ``H / N x W / N`` grid keeps. The ILVR code resizes with a bicubic kernel instead; this filter is a
    projection (``phi(phi(x)) = phi(x)``), so a guided sample's low band equals the reference's exactly,
    and a DCT treats the borders as mirrors, so nothing wraps around. ``factor`` 1 keeps everything.

    Shape: ``(..., H, W)`` in, the same out, float32.
    """
    height, width = images.shape[-2:]
    rows = dct_projection(height, math.ceil(height / factor), images.device)
    columns = dct_projection(width, math.ceil(width / factor), images.device)
    with torch.autocast(images.device.type, enabled=False):
        return rows @ images.float() @ columns


def ilvr_guide(sample: Tensor, reference: Tensor, factor: int) -> Tensor:
    """ILVR (Choi et al. 2021, Alg. 1): ``sample``'s low band (:func:`low_pass`) replaced by ``reference``'s.

    ``x - phi_N(x) + phi_N(y)``: ``sample``'s detail above the band, ``reference``'s content below it.
    ``reference`` is the guiding image noised to the same level as ``sample``. Shape: ``(N, C, H, W)``, both.
    """
    return sample + low_pass(reference - sample, factor)


def sdedit(predict: Predict, images: Tensor, reference: Tensor, abar: list[float], start: int, steps: int,
           eta: float, ilvr_factor: int, draw: Callable[[], Tensor], clip: bool = True) -> Tensor:
    """SDEdit (Meng et al. 2022): noise ``images`` to level ``start``, then ``steps`` DDIM steps back to level 0.

    With ``ilvr_factor`` N > 0, each step is followed by ILVR guidance towards ``reference`` noised to the
    step's new level (fresh noise each step, as in ILVR; the last step's reference is ``reference``
    itself, so the result's low band is exactly ``reference``'s). The denoiser runs ``steps`` times.

    Args:
        predict: the denoiser (see :data:`Predict`).
        images: ``(N, C, H, W)`` in [-1, 1], the images to edit.
        reference: the guiding images for ILVR, same shape (usually ``images``).
        abar: :func:`cumulative_alphas`.
        draw: fresh standard normal noise of the images' shape per call (:class:`~sim2real_bench.device.ImageNoise`).

    Returns:
        ``(N, C, H, W)`` float32, the edited images (not clipped after guidance).
    """
    if start == 0:
        return images
    levels = denoising_levels(start, steps)
    sample = noise_to(images.float(), draw(), abar[start])
    for now, following in itertools.pairwise(levels):
        predicted = predict(sample, now - 1)
        sample, _ = ddim_step(sample, predicted, abar[now], abar[following], eta, draw() if eta > 0 else None, clip)
        if ilvr_factor:
            guide = noise_to(reference.float(), draw(), abar[following]) if following else reference.float()
            sample = ilvr_guide(sample, guide, ilvr_factor)
    return sample
