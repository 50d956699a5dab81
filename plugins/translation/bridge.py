"""What the unpaired neural Schrödinger bridge (``unsb``) adds to the translation networks: time, and the bridge.

UNSB (Kim et al., ICLR 2024) splits [0, 1] into ``steps`` intervals and learns,
at each time ``t_i``, a stochastic generator ``q(x_1 | x_{t_i})`` that predicts the
target-domain image from the current state. Between two times the state moves
along the Brownian bridge from ``x_{t_i}`` to that prediction (:func:`bridge_step`).

Networks, built on CUT's (``networks.py``) so the two methods differ only in what
time and the bridge add:

* :class:`TimeConditionedGenerator`: the ResNet generator whose residual blocks
  are modulated (FiLM: per-channel scale and shift) by an embedding of the time
  index and of a latent ``z`` (the generator's own noise), right after each
  block's first conv and instance norm. The authors' code adds the time
  embedding *before* that instance norm, which would remove a per-channel
  constant anyway, and its loop over the block applies every layer to the
  block's input (issue #29 of cyclomon/UNSB), so its generator ignores time;
  here it does not.
* :class:`TimeConditionedDiscriminator`: the PatchGAN with a time-dependent bias
  after its first conv, the one place of the authors' conditioned PatchGAN where
  no instance norm follows and cancels it. With four input channels it is the
  energy network of the entropy estimate (:func:`entropy_terms`).

Embedding MLPs keep PyTorch's default initialization (so distinct times start
distinct); convs and the layers that feed a condition into them take the
authors' (``init_weights``), which makes every modulation start near identity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sim2real_bench.plugins.translation.networks import PatchDiscriminator, ResnetGenerator, init_weights


def bridge_times(steps: int) -> list[float]:
    """The authors' ``steps + 1`` times ``0 = t_0 < t_1 = 0.5 < ... < t_steps = 1``.

    After ``t_0``, harmonic increments (1, 1/2, 1/3, ...) scaled into [0.5, 1], so
    the steps shorten as the state nears the target domain. One step: ``[0, 1]``.
    """
    if steps == 1:
        return [0.0, 1.0]
    sums = list(itertools.accumulate([0.0] + [1.0 / index for index in range(1, steps)]))
    return [0.0] + [0.5 + 0.5 * value / sums[-1] for value in sums]


def bridge_step(state: Tensor, estimate: Tensor, start: float, end: float, tau: float, noise: Tensor) -> Tensor:
    """Sample ``x_end`` on the Brownian bridge from ``state`` at time ``start`` to ``estimate`` at time 1.

    Mean ``(1 - s) x_start + s x_1`` with ``s = (end - start) / (1 - start)``,
    variance ``tau (end - start) (1 - s)`` per pixel; ``noise`` is standard normal
    of ``state``'s shape.
    """
    share = (end - start) / (1.0 - start)
    variance = tau * (end - start) * (1.0 - share)
    return (1.0 - share) * state + share * estimate.to(state.dtype) + math.sqrt(variance) * noise


def sinusoidal_embedding(time: Tensor, width: int) -> Tensor:
    """``(N,)`` time indices -> ``(N, width)`` sines and cosines of geometrically spaced frequencies (DDPM's)."""
    half = width // 2
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32, device=time.device)
                            * (-math.log(10_000) / max(half - 1, 1)))
    angles = time.float()[:, None] * frequencies[None, :]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(embedding, (0, width % 2))


class PixelNorm(nn.Module):
    """Scale each latent vector to unit root-mean-square (StyleGAN's mapping input)."""

    def forward(self, latent: Tensor) -> Tensor:
        return latent * torch.rsqrt(latent.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def _mlp(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class TimeConditionedGenerator(nn.Module):
    """``(image x_t, time index, latent z)`` -> estimate of ``x_1``, same shape; its encoder also feeds PatchNCE.

    The backbone is CUT's :class:`ResnetGenerator`; each residual block's first
    conv output, after its instance norm, is scaled by ``1 + gamma`` and shifted
    by ``beta``, both linear in ``[time embedding, mapped z]``.
    """

    def __init__(self, channels: int = 1, ngf: int = 64, blocks: int = 6, init: str = "normal") -> None:
        super().__init__()
        self.backbone = init_weights(ResnetGenerator(channels, ngf, blocks), init)
        width = 4 * ngf
        self.time_width = ngf
        self.latent_dim = width
        """Width of ``z`` (the authors' ``4 ngf``)."""
        self.time_embedding = _mlp([ngf, width, width])
        self.latent_mapping = nn.Sequential(PixelNorm(), _mlp([width] * 5))  # the authors' n_mlp 3, plus one
        self.modulations = init_weights(nn.ModuleList(nn.Linear(2 * width, 2 * width) for _ in range(blocks)), init)
        self.tap_channels = self.backbone.tap_channels

    def condition(self, time: Tensor, latent: Tensor) -> Tensor:
        """``(N, 2 * latent_dim)``: the embedded time index beside the mapped latent."""
        return torch.cat([self.time_embedding(sinusoidal_embedding(time, self.time_width)),
                          self.latent_mapping(latent)], dim=1)

    @staticmethod
    def _block(block: nn.Module, modulation: nn.Linear, features: Tensor, condition: Tensor) -> Tensor:
        body = block.body  # pad, conv, norm | relu, pad, conv, norm
        hidden = body[2](body[1](body[0](features)))
        scale, shift = modulation(condition).chunk(2, dim=1)
        hidden = hidden * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        for layer in body[3:]:
            hidden = layer(hidden)
        return features + hidden

    def _features(self, images: Tensor, time: Tensor, latent: Tensor, taps: Sequence[str] | None) -> tuple:
        backbone = self.backbone
        found: dict[str, Tensor] = {"input": backbone._pad(images)}  # the backbone's own padding: taps line up
        features = backbone.stem(found["input"])
        for index, down in enumerate(backbone.down, start=1):
            found[f"down{index}"] = down[0](features)
            features = down[2](down[1](found[f"down{index}"]))
        deepest = len(backbone.blocks) if taps is None else max(
            (int(tap[5:]) for tap in taps if tap.startswith("block")), default=0)
        condition = self.condition(time, latent) if deepest else None
        for index, (block, modulation) in enumerate(zip(backbone.blocks[:deepest], self.modulations), start=1):
            features = found[f"block{index}"] = self._block(block, modulation, features, condition)
        return features, found

    def forward(self, images: Tensor, time: Tensor, latent: Tensor) -> Tensor:
        """Estimate ``x_1`` from ``(N, C, H, W)`` states in [-1, 1], ``(N,)`` time indices, ``(N, latent_dim)`` z."""
        height, width = images.shape[-2:]
        features, _ = self._features(images, time, latent, None)
        return self.backbone.head(self.backbone.up(features))[..., :height, :width]

    def encode(self, images: Tensor, taps: Sequence[str], time: Tensor, latent: Tensor) -> list[Tensor]:
        """Encoder features at ``taps`` (names of :attr:`tap_channels`), as ``ResnetGenerator.encode``."""
        _, found = self._features(images, time, latent, taps)
        return [found[tap] for tap in taps]


class TimeConditionedDiscriminator(nn.Module):
    """``(image, time index)`` -> ``(N, 1, h, w)`` patch scores: CUT's PatchGAN, a time bias after its first conv."""

    def __init__(self, channels: int = 1, ndf: int = 64, n_layers: int = 3, init: str = "normal") -> None:
        super().__init__()
        self.backbone = init_weights(PatchDiscriminator(channels, ndf, n_layers), init)
        self.time_width = 4 * ndf
        self.time_embedding = _mlp([4 * ndf, 4 * ndf, 4 * ndf])
        self.time_bias = init_weights(nn.Linear(4 * ndf, ndf), init)

    def forward(self, images: Tensor, time: Tensor) -> Tensor:
        """Per-patch scores of ``(N, C, H, W)`` images at ``(N,)`` time indices (high: real)."""
        layers = self.backbone.layers
        bias = self.time_bias(self.time_embedding(sinusoidal_embedding(time, self.time_width)))
        return layers[1:](layers[0](images) + bias[:, :, None, None])


def entropy_terms(energy: nn.Module, time: Tensor, pair: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
    """The two halves of the authors' estimate of the entropy of ``(x_t, x_1)`` pairs.

    ``pair`` and ``other`` are ``(N, 2C, H, W)`` batches of ``[x_t, x_1]`` drawn
    independently. The energy network scores a pair beside itself and beside an
    independent pair; ``mean(E(p, p)) - logsumexp(E(p, p'))`` (over every patch
    of the batch) is a Donsker-Varadhan bound on KL(diagonal || product), which
    for a discrete distribution is exactly its entropy. Returns
    ``(mean(E(p, p)), logsumexp(E(p, p')))`` in float32.
    """
    n = len(pair)
    scores = energy(torch.cat([torch.cat([pair, pair], 1), torch.cat([pair, other], 1)]), time.repeat(2)).float()
    return scores[:n].mean(), torch.logsumexp(scores[n:].flatten(), dim=0)
