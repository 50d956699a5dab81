"""The networks CycleGAN and CUT share: a ResNet generator and a PatchGAN discriminator.

Generator (Johnson et al. 2016, as in CycleGAN's code): a 7x7 conv to ``ngf``
maps, two stride-2 convs (``2 ngf``, ``4 ngf``), ``blocks`` residual blocks,
two stride-2 transposed convs back, a 7x7 conv to the image's channels, tanh.
Reflection padding, instance norm without affine parameters, biases on (the
authors' ``norm="instance"`` setting). The two downsamplings need H and W to be
multiples of 4: other sizes (35x55 eyes) are reflection-padded at the bottom
and right and cropped back, so the output has the input's shape.

Discriminator: the PatchGAN of pix2pix/CycleGAN: 4x4 convs, ``n_layers``
stride-2 ones doubling the width up to ``8 ndf``, one stride-1 one, a 1-map
stride-1 output; instance norm on all but the first, LeakyReLU 0.2. Its output
is a map of per-patch scores whose receptive field is 70 px for ``n_layers=3``,
34 px for 2 and 16 px for 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

INITS = ("normal", "xavier")


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 conv + instance-norm layers, added to the input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3), nn.InstanceNorm2d(width),
        )

    def forward(self, features: Tensor) -> Tensor:
        """Residual update (no activation after the sum, as in CycleGAN)."""
        return features + self.body(features)


class ResnetGenerator(nn.Module):
    """Image -> translated image of the same shape; its encoder also feeds PatchNCE."""

    def __init__(self, channels: int = 1, ngf: int = 64, blocks: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), nn.InstanceNorm2d(ngf),
                                  nn.ReLU(inplace=True))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * m * 2),
                          nn.ReLU(inplace=True))
            for m in (1, 2))
        self.blocks = nn.ModuleList(ResnetBlock(ngf * 4) for _ in range(blocks))
        self.up = nn.Sequential(*(
            layer for m in (4, 2) for layer in (
                nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(ngf * m // 2), nn.ReLU(inplace=True))))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh())
        self.tap_channels = {"input": channels, "down1": ngf * 2, "down2": ngf * 4,
                             **{f"block{k}": ngf * 4 for k in range(1, blocks + 1)}}
        """Encoder layers :meth:`encode` can return, with their widths."""

    @staticmethod
    def _pad(images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        return F.pad(images, (0, -width % 4, 0, -height % 4), mode="reflect")

    def forward(self, images: Tensor) -> Tensor:
        """Translate ``(N, C, H, W)`` images in [-1, 1]; any H, W (padded and cropped back)."""
        height, width = images.shape[-2:]
        features = self.stem(self._pad(images))
        for layer in (*self.down, *self.blocks):
            features = layer(features)
        return self.head(self.up(features))[..., :height, :width]

    def encode(self, images: Tensor, taps: Sequence[str]) -> list[Tensor]:
        """Encoder features at ``taps`` (names of :attr:`tap_channels`), in that order.

        ``down1``/``down2`` are the strided convs' outputs before their norm, as the
        layers CUT's code samples (its layer ids 4 and 8); ``input`` is the padded image.
        """
        found: dict[str, Tensor] = {"input": self._pad(images)}
        features = self.stem(found["input"])
        for index, down in enumerate(self.down, start=1):
            found[f"down{index}"] = down[0](features)
            features = down[2](down[1](found[f"down{index}"]))
        deepest = max((int(tap[5:]) for tap in taps if tap.startswith("block")), default=0)
        for index, block in enumerate(self.blocks[:deepest], start=1):
            features = found[f"block{index}"] = block(features)
        return [found[tap] for tap in taps]


class PatchDiscriminator(nn.Module):
    """Image -> ``(N, 1, h, w)`` real-vs-translated scores, one per receptive-field patch."""

    def __init__(self, channels: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for index in range(1, n_layers + 1):
            previous, width = width, ndf * min(2**index, 8)
            stride = 2 if index < n_layers else 1
            layers += [nn.Conv2d(previous, width, 4, stride=stride, padding=1), nn.InstanceNorm2d(width),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))  # scores: LSGAN regresses them to 0 / 1
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """Per-patch scores (high: looks like a real target image)."""
        return self.layers(images)


def init_weights(network: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialize conv and linear weights as the authors' ``init_net`` does (biases 0)."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            else:
                nn.init.xavier_normal_(module.weight, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return network
