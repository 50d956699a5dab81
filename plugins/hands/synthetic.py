"""``synth-hands``: clean synthetic depth renders of an articulated hand (the role of
the NYU synthetic renders in the paper)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim2real_bench.plugins.hands.domain import HandDomain
from sim2real_bench.plugins.hands.geometry import HandGeometry
from sim2real_bench.plugins.hands.render import render_capsules


class SynthHands(HandDomain):
    """Clean 64x64 depth crops of a capsule hand, labeled with 14 joints' (u, v, d).

    Exact z-buffered depth of the hand alone: no forearm, no background, no sensor.
    Labels follow the crop convention of :mod:`sim2real_bench.plugins.hands.geometry`.
    """

    def capture(self, geometry: HandGeometry, generator: torch.Generator) -> tuple[Tensor, HandGeometry]:
        depth = render_capsules(geometry.bones, geometry.radii, self.size, self.size, geometry.mm_per_pixel)
        return depth, geometry
