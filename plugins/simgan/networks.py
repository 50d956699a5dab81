"""SimGAN's networks (Shrivastava et al., CVPR 2017, Sec. 4 and appendix).

Refiner: fully convolutional, no striding or pooling, so every output pixel
sits where its input pixel was: a first conv to ``width`` maps, ResNet blocks of
two convs each, a 1x1 conv back to the image's channels, tanh into [-1, 1].
Eyes: 3x3 first conv, 4 blocks, 64 maps. Hands: 7x7 first conv, 10 blocks.

Discriminator: a small conv net whose output is a map of per-patch logits over
two classes (refined = 0, real = 1); each output location judges only its
receptive field, which is the paper's *local adversarial loss*.
"""

from __future__ import annotations

from torch import Tensor, nn

DISCRIMINATOR_LAYOUTS: dict[str, tuple[tuple[str, int, int], ...]] = {
    # (kind, kernel, stride) per layer; widths come from the config.
    "eyes": (("conv", 3, 2), ("conv", 3, 2), ("pool", 3, 1), ("conv", 3, 1), ("conv", 1, 1)),
    "hands": (("conv", 7, 4), ("conv", 5, 2), ("pool", 3, 2), ("conv", 3, 2), ("conv", 1, 1)),
}


class ResidualBlock(nn.Module):
    """Two same-size convs with a ReLU between, added to the input (He et al. 2016)."""

    def __init__(self, width: int, kernel: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, kernel, padding=kernel // 2),
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, features: Tensor) -> Tensor:
        """Residual update of ``features``."""
        return self.activation(features + self.body(features))


class RefinerNet(nn.Module):
    """SimGAN's refiner R: synthetic image -> refined image of the same shape."""

    def __init__(self, channels: int = 1, width: int = 64, blocks: int = 4, first_kernel: int = 3,
                 input_skip: bool = False) -> None:
        super().__init__()
        self.input_skip = input_skip
        self.stem = nn.Sequential(nn.Conv2d(channels, width, first_kernel, padding=first_kernel // 2), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.head = nn.Conv2d(width, channels, 1)

    def forward(self, images: Tensor) -> Tensor:
        """Refine ``(N, C, H, W)`` images in [-1, 1].

        With ``input_skip`` the net predicts a correction added to its input
        (identity at initialization), so it needs no self-regularization
        pretraining to start from the synthetic image: the quick preset's shortcut.
        """
        correction = self.head(self.blocks(self.stem(images)))
        if self.input_skip:
            return (images + correction).clamp(-1, 1)
        return correction.tanh()


class PatchDiscriminator(nn.Module):
    """SimGAN's discriminator D: image -> ``(N, 2, h, w)`` per-patch logits."""

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (96, 64, 32, 32), layout: str = "eyes") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        convs = iter(widths)
        previous = channels
        for kind, kernel, stride in DISCRIMINATOR_LAYOUTS[layout]:
            if kind == "pool":
                layers.append(nn.MaxPool2d(kernel, stride))
                continue
            width = next(convs)
            layers += [nn.Conv2d(previous, width, kernel, stride, padding=kernel // 2), nn.ReLU(inplace=True)]
            previous = width
        layers.append(nn.Conv2d(previous, 2, 1))  # logits: no activation after the last layer
        self.layers = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        """Per-patch logits for (refined, real)."""
        return self.layers(images)
