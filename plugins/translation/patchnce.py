"""PatchNCE (Park et al., ECCV 2020, Sec. 3.1): contrastive patch correspondence for CUT.

A patch of the translated image should be closer, in a learned embedding, to
the patch at the same place of its input than to the other sampled patches of
that input. Features come from several encoder layers of the generator; at
each layer the same random locations are sampled in both images, projected by
a two-layer MLP (ReLU between) and L2-normalized; the loss is the cross-entropy
of picking the positive among the negatives at temperature ``tau``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def layer_problems(nce_layers: Sequence[str], blocks: int) -> list[str]:
    """What is wrong with a config's ``nce_layers`` for a generator of ``blocks`` residual blocks (its taps:
    ``input``, ``down1``, ``down2``, ``block1`` ... ``block<blocks>``); empty when nothing is."""
    layers = ("input", "down1", "down2", *(f"block{k}" for k in range(1, blocks + 1)))
    if not nce_layers or any(layer not in layers for layer in nce_layers):
        return [f"nce_layers {tuple(nce_layers)!r} must name some of {', '.join(layers)}"]
    return []


class PatchProjector(nn.Module):
    """The MLP heads ``H_l`` (one per encoder layer) and the patch sampling that feeds them."""

    def __init__(self, channels: Sequence[int], width: int = 256) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, width), nn.ReLU(inplace=True), nn.Linear(width, width)) for c in channels)

    @staticmethod
    def locations(features: Sequence[Tensor], patches: int, generator: torch.Generator) -> list[Tensor]:
        """Per layer, ``min(patches, h * w)`` distinct flat positions, the same for every image of the batch."""
        return [torch.randperm(f.shape[-2] * f.shape[-1], generator=generator)[:patches].to(f.device)
                for f in features]

    def forward(self, features: Sequence[Tensor], locations: Sequence[Tensor]) -> list[Tensor]:
        """Per layer ``(N, P, width)`` L2-normalized embeddings of the patches at ``locations``."""
        embedded = []
        for head, feature, where in zip(self.heads, features, locations):
            sampled = feature.flatten(2)[:, :, where].transpose(1, 2)  # (N, P, C)
            embedded.append(F.normalize(head(sampled).float(), dim=-1, eps=1e-7))
        return embedded


def patch_nce_loss(query: Tensor, key: Tensor, temperature: float = 0.07) -> Tensor:
    """Mean PatchNCE loss of ``(N, P, D)`` query and key embeddings; negatives from the same image.

    Keys are detached, as in the authors' code: only the translated image's
    patches (and, through them, the generator and heads) receive gradients.
    """
    key = key.detach()
    positive = (query * key).sum(-1, keepdim=True)  # (N, P, 1)
    negative = query @ key.transpose(1, 2)  # (N, P, P): every other patch of the same image
    eye = torch.eye(query.shape[1], dtype=torch.bool, device=query.device)
    negative = negative.masked_fill(eye, -10.0)  # the positive itself is not a negative
    logits = torch.cat([positive, negative], dim=-1).flatten(0, 1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=query.device))
