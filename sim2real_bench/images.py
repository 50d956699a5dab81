"""Image grids for previews and MLflow artifacts."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid


def to_uint8(images: Tensor) -> Tensor:
    """``[-1, 1]`` floats to ``[0, 255]`` uint8, same shape."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid(rows: list[Tensor], scale: int = 3) -> np.ndarray:
    """Stack equal-length image batches as rows of one ``(H, W)`` or ``(H, W, 3)`` uint8 array."""
    columns = rows[0].shape[0]
    tiles = make_grid(torch.cat([to_uint8(row) for row in rows]), nrow=columns, padding=1, pad_value=0)
    array = tiles.repeat_interleave(scale, 1).repeat_interleave(scale, 2).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 or (array[..., 0] == array[..., 1]).all() else array
