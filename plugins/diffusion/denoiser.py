"""``sdedit``'s network: a diffusers ``UNet2DModel`` built from its config in code, padding, a weight average."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def padded_size(height: int, width: int, levels: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to what ``levels`` UNet levels halve ``levels - 1`` times without remainder."""
    multiple = 2 ** (levels - 1)
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


def pad(images: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, C, H, W)`` images padded at the bottom and right to ``size`` by mirroring (undone by :func:`crop`)."""
    height, width = images.shape[-2:]
    if (height, width) == size:
        return images
    return F.pad(images, (0, size[1] - width, 0, size[0] - height), mode="reflect")


def crop(images: Tensor, height: int, width: int) -> Tensor:
    """The top-left ``height x width`` of ``(N, C, H', W')`` images: what :func:`pad` added, removed."""
    return images[..., :height, :width]


class Denoiser(nn.Module):
    """A noise-predicting UNet (Ho et al. 2020's epsilon parametrization) from diffusers, built offline.

    Level ``i`` of ``widths`` has ``layers_per_block`` ResNet blocks (one more on the way up, as
    diffusers' UNets do), self-attention where ``i`` is in ``attention_levels``, and halves the
    resolution before the next level. Shapes: ``(N, C, H, W)`` noisy images with ``H, W`` divisible
    by ``2 ** (len(widths) - 1)`` (see :func:`padded_size`) and ``(N,)`` diffusers timesteps in; the
    predicted noise, same shape as the images, out.
    """

    def __init__(self, channels: int, size: tuple[int, int], widths: Sequence[int], layers_per_block: int,
                 attention_levels: Sequence[int], mid_attention: bool, norm_groups: int, dropout: float) -> None:
        from diffusers import UNet2DModel  # seconds to import: loaded when a denoiser is built, not with the plugin

        super().__init__()
        levels = len(widths)
        self.unet = UNet2DModel(
            sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=tuple(widths),
            layers_per_block=layers_per_block,
            down_block_types=tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D"
                                   for i in range(levels)),
            up_block_types=tuple("AttnUpBlock2D" if i in attention_levels else "UpBlock2D"
                                 for i in reversed(range(levels))),
            add_attention=mid_attention, norm_num_groups=norm_groups, dropout=dropout,
        )

    def forward(self, noisy: Tensor, timesteps: Tensor) -> Tensor:
        """The noise in ``noisy`` at ``timesteps``."""
        return self.unet(noisy, timesteps, return_dict=False)[0]


class WeightAverage(nn.Module):
    """An exponential moving average of a network's weights (DDPM's EMA), what refining runs.

    ``decay`` 0 makes it a copy of the latest weights. It never trains, so it stays in eval mode
    (no dropout) even when the fit loop puts every network in training mode.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        super().__init__()
        self.average = copy.deepcopy(network).requires_grad_(False)
        self.decay = decay
        self.train(False)

    def train(self, mode: bool = True) -> WeightAverage:
        return super().train(False)

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the average a step ``1 - decay`` towards ``network``'s current weights."""
        for mine, theirs in zip(self.average.parameters(), network.parameters()):
            mine.lerp_(theirs, 1.0 - self.decay)
        for mine, theirs in zip(self.average.buffers(), network.buffers()):
            mine.copy_(theirs)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.average(*inputs)
