"""Machinery shared by the trained refiners (SimGAN, CycleGAN, CUT, UNSB, SDEdit), and their one fit loop.

One copy of the parts public reimplementations most often got wrong: an image
history that really stores and really returns old images, random batches drawn
from a seeded generator whose state is checkpointed, resumable checkpoints, and
a monitor that stops a diverged or collapsed fit instead of reporting it.

:class:`AdversarialFit` is the loop that runs them: a method describes its fit
as data (its networks, optimizers, schedules, pools, seeded generator, and
:class:`Phase` s of steps, each a callable doing one update) and the loop does
the rest the same way for every method: resume, divergence and collapse checks,
logs, image grids, checkpoints. A fit with no discriminator (``sdedit``'s
denoiser) runs unjudged phases and names what the collapse check watches.
Settings that every such fit shares (:class:`FitSchedule`) validate themselves
when a config is made, so a bad ``--set refiner.FIELD=VALUE`` fails before any work.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sim2real_bench import store
from sim2real_bench.config import Checked, at_least, not_negative
from sim2real_bench.errors import FitFailure
from sim2real_bench.images import grid
from sim2real_bench.refiner import FitContext
from sim2real_bench.store import CacheEntryWarning


@dataclass(frozen=True)
class FitSchedule(Checked):
    """Settings every adversarial fit shares: how often it logs, shows a grid and
    checkpoints, and when its output counts as collapsed.

    It validates itself as every config does (:class:`~sim2real_bench.config.Checked`).
    """

    section: ClassVar[str] = "adversarial fit"

    log_every: int = 10
    grid_every: int = 500
    checkpoint_every: int = 100
    """Steps between checkpoints (0: only the final one)."""
    min_std: float = 0.02
    """Collapse: generated batches flatter than this (in [-1, 1] units) ..."""
    collapse_patience: int = 50
    """... or a discriminator right on every patch of both classes, for this many logged checks in a row."""

    def problems(self) -> list[str]:
        return [*at_least(self, 1, "log_every", "grid_every", "collapse_patience"),
                *not_negative(self, "checkpoint_every", "min_std")]


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
            self._store(slots, rest)

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
            self._store(slots, rest[swap])
        return returned

    def _store(self, slots: Tensor, images: Tensor) -> None:
        """Write ``images[i]`` to ``slots[i]``, the last of them winning where a slot repeats.

        A plain ``self.images[slots] = images`` is not reproducible when ``slots``
        repeats: on a CPU, threads split the write and race on the shared slot, so
        it may end up holding either image, or parts of both. That made two runs
        of one SimGAN fit differ. Dropping all but the last write to each slot
        gives what a write in order gives, every time.
        """
        later_duplicate = (slots[:, None] == slots[None, :]).triu(diagonal=1).any(dim=1)
        last = ~later_duplicate
        self.images[slots[last]] = images[last]

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
        self.size, self.images = int(state["size"]), None
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
    watched: str = "refined images"
    """What :meth:`check_outputs` is handed, as its collapse message names it."""
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
                f"fit collapsed at step {step}: {self.watched} have had a standard deviation of {spread:.4f} "
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
    """Periodic, atomic training checkpoints in a fit's private folder, through the cache store."""

    def __init__(self, folder: Path, every: int) -> None:
        self.path = folder / "checkpoint.pt"
        self.every = every

    def due(self, step: int) -> bool:
        """True when ``step`` should be saved."""
        return self.every > 0 and step % self.every == 0

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (tensors, numbers, dicts and lists only)."""
        store.save(state, self.path)

    def load(self) -> dict[str, Any] | None:
        """The last saved state; ``None`` when there is none or it is damaged (then with a warning)."""
        return store.read(self.path, "fit checkpoint")


def accuracy(logits: Tensor, label: int) -> float:
    """Share of patches of ``(N, 2, h, w)`` logits classified as ``label``."""
    return (logits.argmax(1) == label).float().mean().item()


@dataclass(frozen=True)
class Update:
    """What one step of a fit hands back to the loop."""

    logs: dict[str, float]
    """Scalars to log; those named ``loss*`` are checked for divergence after every step."""
    refined: Tensor
    """``(N, C, H, W)``: refiner outputs of this step in [-1, 1], watched for collapse; a fit that watches
    something else names it in :attr:`AdversarialFit.watched` (``sdedit``: its denoiser's noise predictions)."""


@dataclass(frozen=True)
class Phase:
    """A run of ``steps`` fit steps that all do the same update (SimGAN: pretrain R, pretrain D, alternate)."""

    steps: int
    update: Callable[[], Update]
    """One step: draws its batches, updates networks, returns its logs and refined batch."""
    images: int
    """Images one step draws (source and target together), summed into what the fit returns."""
    judged: bool = True
    """Whether the discriminator is watched for winning outright (not while it pretrains on a fixed refiner)."""


@dataclass
class AdversarialFit:
    """The fit loop of every adversarial refiner: resume, step, check, log, show, checkpoint.

    Everything a step changes is named here (networks, optimizers, learning-rate
    schedules, image pools, and ``random``, the one generator behind every random
    draw), so a checkpoint holds all of it and a resumed fit repeats a straight
    one bit for bit. A checkpoint that is damaged, or whose contents do not fit
    these networks, restarts the fit with a :class:`CacheEntryWarning`.
    """

    method: str
    """The refiner's name: prefix of the fit's metrics and image grids."""
    settings: FitSchedule
    phases: Sequence[Phase]
    networks: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    random: torch.Generator
    synthetic: BatchSampler
    """Source batches; with ``real`` and ``refine``, they make the image grids (source, refined, target)."""
    real: BatchSampler
    refine: Callable[[Tensor], Tensor]
    schedules: dict[str, torch.optim.lr_scheduler.LRScheduler] = field(default_factory=dict)
    pools: dict[str, ImageHistory] = field(default_factory=dict)
    judge: tuple[str, str] = ("d_accuracy_real", "d_accuracy_refined")
    """Logs of the discriminator that judges the refiner's output: its accuracy on real, on refined images."""
    shown: tuple[str, ...] = ()
    """Logs shown on the progress bar."""
    pinned_advice: str = FitMonitor.pinned_advice
    watched: tuple[str, str] = ("refined", "refined images")
    """What :attr:`Update.refined` holds: the prefix of its logged ``_std`` and ``_mean``, and its name in the
    collapse message."""

    @property
    def total_steps(self) -> int:
        """Steps of all phases together."""
        return sum(phase.steps for phase in self.phases)

    def run(self, context: FitContext) -> int:
        """Fit from the last checkpoint in ``context.checkpoint_dir`` (if any) to the end; return images drawn."""
        settings, total = self.settings, self.total_steps
        ends = list(itertools.accumulate(phase.steps for phase in self.phases))
        checkpoints = Checkpointer(context.checkpoint_dir, settings.checkpoint_every)
        monitor = FitMonitor(settings.min_std, patience=settings.collapse_patience, pinned_advice=self.pinned_advice,
                             watched=self.watched[1])
        start = self._resume(checkpoints, context.compute.device)
        if start:
            monitor.checkpoint_hint = f"; the last good checkpoint (step {start}) is kept at {checkpoints.path}"
            context.tracker.set_tags({"s2r.resumed_from_step": str(start)})
        for network in self.networks.values():
            network.train()
        images = 0
        bar = tqdm(total=total, initial=start, desc=f"{self.method}: fit", unit="step", disable=not context.progress,
                   leave=False)
        for step in range(start, total):
            phase = self.phases[bisect.bisect_right(ends, step)]
            update = phase.update()
            for schedule in self.schedules.values():
                schedule.step()
            images += phase.images
            done = step + 1  # steps are counted from 1 in logs, grids, checkpoints and errors
            monitor.check_losses(done, {k: v for k, v in update.logs.items() if k.startswith("loss")})
            if done % settings.log_every == 0 or done == total:
                bar.set_postfix(self._log(done, update, phase.judged, monitor, context))
            if done % settings.grid_every == 0 or done == total:
                self._log_grid(done, context)
            if checkpoints.due(done) or done == total:
                checkpoints.save(self._state(done))
                monitor.checkpoint_hint = f"; the last good checkpoint (step {done}) is kept at {checkpoints.path}"
            bar.update()
        bar.close()
        for network in self.networks.values():
            network.eval()
        return images

    def _log(self, done: int, update: Update, judged: bool, monitor: FitMonitor, context: FitContext) -> dict[str, str]:
        """Log the step's scalars and check the refined batch (and the judge); return the progress-bar postfix."""
        refined = update.refined.float()
        prefix = self.watched[0]
        logs = {**update.logs, f"{prefix}_std": refined.flatten(1).std(1).mean().item(),
                f"{prefix}_mean": refined.mean().item()}
        if self.schedules:
            logs["lr"] = next(iter(self.schedules.values())).get_last_lr()[0]
        context.tracker.log_metrics({f"{self.method}/{k}": v for k, v in logs.items()}, step=done)
        monitor.check_outputs(done, update.refined)
        if judged:
            monitor.check_discriminator(done, logs[self.judge[0]], logs[self.judge[1]])
        return {k: f"{v:.3f}" for k, v in logs.items() if k in self.shown}

    @torch.no_grad()
    def _log_grid(self, done: int, context: FitContext) -> None:
        """Log rows of source images, their refined versions and target images."""
        shown, real = self.synthetic()[:8], self.real()
        with context.compute.autocast():
            refined = self.refine(shown).float()
        context.tracker.log_image(grid([shown, refined, real[: len(shown)]]), f"{self.method}/grid_step{done:06d}.png")

    def _parts(self) -> dict[str, dict[str, Any]]:
        """What a checkpoint restores with ``load_state_dict(state)`` (pools also need the device)."""
        return {"networks": self.networks, "optimizers": self.optimizers, "schedules": self.schedules}

    def _state(self, step: int) -> dict[str, Any]:
        """Everything the fit has changed by ``step``, as a checkpoint."""
        state: dict[str, Any] = {"step": step, "random": self.random.get_state()}
        for part, things in {**self._parts(), "pools": self.pools}.items():
            state[part] = {key: thing.state_dict() for key, thing in things.items()}
        return state

    def _restore(self, saved: dict[str, Any], device: torch.device) -> int:
        """Load a checkpoint of :meth:`_state`; return its step."""
        for part, things in self._parts().items():
            for key, thing in things.items():
                thing.load_state_dict(saved[part][key])
        for key, pool in self.pools.items():
            pool.load_state_dict(saved["pools"][key], device)
        self.random.set_state(saved["random"])
        return int(saved["step"])

    def _resume(self, checkpoints: Checkpointer, device: torch.device) -> int:
        """Restore the last checkpoint and return its step; 0 (a fresh start) when none is usable."""
        saved = checkpoints.load()
        if saved is None:
            return 0
        fresh = copy.deepcopy(self._state(0))  # loading fails part-way through: undo what it changed
        try:
            return self._restore(saved, device)
        except Exception as error:  # missing entries, other widths: whatever load_state_dict raises
            self._restore(fresh, device)
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            warnings.warn(f"fit checkpoint {checkpoints.path} does not match this fit's networks ({reason}); "
                          "starting the fit afresh", CacheEntryWarning, stacklevel=3)
            return 0
