"""What both embedded hand domains share: the crop size, the geometry draw, the
label kind and the depth normalization. A domain's :meth:`HandDomain.capture`
is its image formation: clean capsule renders or a depth sensor's readings."""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.data import ProceduralDataset, Samples
from sim2real_bench.plugins.hands.geometry import LABEL_NAMES, HandGeometry, normalize_depth, sample_geometry

LABEL_KIND = "hand-pose"
"""14 NYU joints as (u, v, d): u, v in crop pixels, d normalized depth (see :mod:`.geometry`)."""


class HandDomain(ProceduralDataset):
    """A procedural hand domain: square depth crops labeled with 14 joints' (u, v, d).

    The crop size is the class attribute ``size`` (64; the paper used 224: subclass
    and set it, labels are in pixels of whatever size is set).
    """

    label_kind: ClassVar[str] = LABEL_KIND
    label_names: ClassVar[tuple[str, ...]] = LABEL_NAMES
    size: ClassVar[int] = 64
    chunk_size: ClassVar[int] = 256
    """Smaller chunks than the default: a few hundred hands render in well under a second."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.size, self.size)

    def generate(self, count: int, generator: torch.Generator) -> Samples:
        geometry = sample_geometry(count, self.size, self.size, generator)
        depth, geometry = self.capture(geometry, generator)
        return Samples(normalize_depth(depth), geometry.labels)

    @abstractmethod
    def capture(self, geometry: HandGeometry, generator: torch.Generator) -> tuple[Tensor, HandGeometry]:
        """Depth ``(N, 1, H, W)`` in mm relative to the crop centre (inf: no reading), and the
        geometry as the crop finally frames it (a capture may re-centre the crop)."""
