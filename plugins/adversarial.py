"""Machinery shared by the adversarial refiners (SimGAN, CycleGAN, CUT).

One copy of the parts public reimplementations most often got wrong: an image
history that really stores and really returns old images, random batches drawn
from a seeded generator whose state is checkpointed, resumable checkpoints, and
a monitor that stops a diverged or collapsed fit instead of reporting it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sim2real_bench import cache
from sim2real_bench.errors import FitFailure


@dataclass(frozen=True)
class FitSchedule:
    """Settings every adversarial fit shares: how often it logs, shows a grid and
    checkpoints, and when its output counts as collapsed."""

    log_every: int = 10
    grid_every: int = 500
    checkpoint_every: int = 100
    min_std: float = 0.02
    """Collapse: generated batches flatter than this (in [-1, 1] units) ..."""
    collapse_patience: int = 50
    """... or a discriminator right on every patch of both classes, for this many logged checks in a row."""


class ImageHistory:
    """A pool of earlier generator outputs (Shrivastava et al. 2017, Sec. 2.3).

    Until full, every pushed image is stored; afterwards each pushed image
    replaces a random stored one. ``sample`` returns stored images uniformly at
    random, so the discriminator keeps seeing what the generator used to make.
    """

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        self.capacity = capacity
        self.generator = generator
        self.images: Tensor | None = None
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def push(self, images: Tensor) -> None:
        """Store a batch (detached)."""
        images = images.detach()
        if self.images is None:
            self.images = torch.empty((self.capacity, *images.shape[1:]), dtype=images.dtype, device=images.device)
        free = min(self.capacity - self.size, len(images))
        self.images[self.size : self.size + free] = images[:free]
        self.size += free
        rest = images[free:]
        if len(rest):
            slots = torch.randint(self.capacity, (len(rest),), generator=self.generator).to(images.device)
            self.images[slots] = rest

    def query(self, images: Tensor, swap_probability: float = 0.5) -> Tensor:
        """CycleGAN's image pool (Zhu et al. 2017, Sec. 4): what the discriminator sees instead of ``images``.

        Until full, each image is stored and returned as is; afterwards each is, with
        ``swap_probability``, returned as a random stored image that it replaces.
        """
        images = images.detach()
        returned = images.clone()
        free = min(self.capacity - self.size, len(images))
        self.push(images[:free])
        rest = images[free:]
        if len(rest):
            swap = (torch.rand(len(rest), generator=self.generator) < swap_probability).nonzero().flatten()
            slots = torch.randint(self.size, (len(swap),), generator=self.generator).to(images.device)
            swap = swap.to(images.device)
            returned[free + swap] = self.images[slots]
            self.images[slots] = rest[swap]
        return returned

    def sample(self, count: int) -> Tensor:
        """``count`` stored images drawn uniformly (with replacement)."""
        assert self.images is not None and self.size > 0, "the history is empty"
        index = torch.randint(self.size, (count,), generator=self.generator).to(self.images.device)
        return self.images[index]

    def state_dict(self) -> dict[str, Any]:
        """Stored images, for checkpoints."""
        stored = self.images[: self.size].cpu() if self.images is not None else torch.empty(0)
        return {"images": stored, "size": self.size}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        """Restore :meth:`state_dict`."""
        self.size = int(state["size"])
        if self.size:
            stored = state["images"].to(device)
            self.images = torch.empty((self.capacity, *stored.shape[1:]), dtype=stored.dtype, device=device)
            self.images[: self.size] = stored


class BatchSampler:
    """Random batches from a block of images, reproducible from a checkpointed generator."""

    def __init__(self, images: Tensor, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        self.images = images
        self.batch_size = batch_size
        self.generator = generator
        self.device = device

    def __call__(self) -> Tensor:
        """The next batch, on the device, in channels-last layout."""
        index = torch.randint(len(self.images), (self.batch_size,), generator=self.generator)
        return self.images[index].to(self.device).contiguous(memory_format=torch.channels_last)


@dataclass
class FitMonitor:
    """Stops a fit that diverged (a non-finite loss) or collapsed.

    Collapse is either refined images losing their structure (per-batch standard
    deviation under ``min_std`` for ``patience`` checks in a row) or a
    discriminator pinned at perfect accuracy on both real and refined images for
    ``patience`` checks in a row (the generator no longer learns anything).
    """

    min_std: float = 0.02
    pinned_accuracy: float = 0.995
    patience: int = 50
    flat_streak: int = 0
    pinned_streak: int = 0
    checkpoint_hint: str = field(default="")
    pinned_advice: str = "try a larger refiner learning rate or a smaller self-regularization weight"
    """What the user can change when the discriminator wins outright (method-specific)."""

    def check_losses(self, step: int, losses: dict[str, float]) -> None:
        """Raise :class:`FitFailure` when any loss is NaN or infinite."""
        for name, value in losses.items():
            if not math.isfinite(value):
                raise FitFailure(f"fit diverged at step {step}: {name} is {value}{self.checkpoint_hint}")

    def check_outputs(self, step: int, refined: Tensor) -> None:
        """Raise when refined images have been flat for too long."""
        spread = refined.detach().float().flatten(1).std(1).mean().item()
        self.flat_streak = self.flat_streak + 1 if spread < self.min_std else 0
        if self.flat_streak >= self.patience:
            raise FitFailure(
                f"fit collapsed at step {step}: refined images have had a standard deviation of {spread:.4f} "
                f"(under {self.min_std}) for {self.patience} checks{self.checkpoint_hint}"
            )

    def check_discriminator(self, step: int, accuracy_real: float, accuracy_refined: float) -> None:
        """Raise when the discriminator has been perfect on both classes for too long."""
        pinned = min(accuracy_real, accuracy_refined) >= self.pinned_accuracy
        self.pinned_streak = self.pinned_streak + 1 if pinned else 0
        if self.pinned_streak >= self.patience:
            raise FitFailure(
                f"fit collapsed at step {step}: the discriminator has told real from refined images with "
                f"{min(accuracy_real, accuracy_refined):.1%} accuracy for {self.patience} checks; "
                f"the refiner no longer learns ({self.pinned_advice}){self.checkpoint_hint}"
            )


class Checkpointer:
    """Periodic, atomic training checkpoints in a fit's private folder."""

    def __init__(self, folder: Path, every: int) -> None:
        self.path = folder / "checkpoint.pt"
        self.every = every

    def due(self, step: int) -> bool:
        """True when ``step`` should be saved."""
        return self.every > 0 and step % self.every == 0

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (tensors, numbers, dicts and lists only)."""
        cache.save(state, self.path)

    def load(self) -> dict[str, Any] | None:
        """The last saved state, or ``None`` when there is none."""
        return cache.load(self.path) if self.path.exists() else None


def accuracy(logits: Tensor, label: int) -> float:
    """Share of patches of ``(N, 2, h, w)`` logits classified as ``label``."""
    return (logits.argmax(1) == label).float().mean().item()
