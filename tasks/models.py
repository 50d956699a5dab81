"""Small regressors for low-resolution inputs, registered in timm's model registry.

timm's stock models downsample 32x before their head, which leaves nothing of a
35x55 eye crop; these keep the spatial map and flatten it, because where the iris
sits *is* the gaze signal. Build them with ``timm.create_model(name, pretrained=False)``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import register_model
from torch import Tensor, nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PoolBeforeReLU(nn.Sequential):
    """Conv stages (conv, BN, ReLU) and max-pools in order, except that a max-pool after a stage runs before its ReLU.

    Max-pooling and ReLU commute (both are monotone), so this gives the plain
    order's outputs and gradients bit for bit, while the ReLU and its backward
    touch a quarter of the pixels: about a tenth of a training step at 64x64 on
    a CPU, where those element-wise passes cost more than the convolutions.
    The modules, and so the parameter names, are those of the plain order.
    """

    def forward(self, images: Tensor) -> Tensor:
        layers, features, index = list(self), images, 0
        while index < len(layers):
            stage = layers[index]
            if index + 1 < len(layers) and isinstance(layers[index + 1], nn.MaxPool2d):
                convolution, norm, relu = stage
                features = relu(layers[index + 1](norm(convolution(features))))
                index += 2
            else:
                features = stage(features)
                index += 1
        return features


class ConvRegressor(nn.Module):
    """VGG-style stages (conv-BN-ReLU, then 2x2 max-pool after all but the first)
    and an MLP head on the flattened feature map."""

    def __init__(
        self,
        in_chans: int = 1,
        num_classes: int = 2,
        widths: tuple[int, ...] = (16, 32, 64, 64),
        hidden: int = 128,
        input_size: tuple[int, int] = (35, 55),
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for index, width in enumerate(widths):
            layers.append(_conv_bn_relu(channels, width))
            if index > 0:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = PoolBeforeReLU(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_chans, *input_size)).numel()
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden, num_classes),
        )

    def forward_features(self, images: Tensor) -> Tensor:
        """The convolutional feature map (timm's name for this stage)."""
        return self.features(images)

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """Labels from a feature map, or with ``pre_logits`` the hidden layer before them (as in timm)."""
        return self.head[:-1](features) if pre_logits else self.head(features)

    def forward(self, images: Tensor) -> Tensor:
        """Regress labels from ``(N, C, H, W)`` images."""
        return self.forward_head(self.forward_features(images))


def _build(pretrained: bool, **kwargs: Any) -> ConvRegressor:
    if pretrained:
        raise ValueError("s2r-bench regressors have no pretrained weights; use pretrained=False")
    for timm_only in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_only, None)
    return ConvRegressor(**kwargs)


@register_model
def s2r_cnn_small(pretrained: bool = False, **kwargs: Any) -> ConvRegressor:
    """Four conv stages (16-32-64-64 maps), ~0.05 GFLOP at 35x55: the gaze regressor."""
    return _build(pretrained, **{"widths": (16, 32, 64, 64), "hidden": 128, **kwargs})


@register_model
def s2r_cnn_base(pretrained: bool = False, **kwargs: Any) -> ConvRegressor:
    """Five conv stages (32-64-96-128-128 maps) for larger crops such as 64x64 depth."""
    return _build(pretrained, **{"widths": (32, 64, 96, 128, 128), "hidden": 256, **kwargs})
