"""The refiner interface: what every sim-to-real method implements.

A refiner maps synthetic images to images that should look like the target
domain, keeping their labels true. It is fitted on labeled source images and
*unlabeled* target images: target labels never reach it.

Every image a refiner receives, in ``fit`` and in ``refine``, is already in the
task's *input space* (``Task.to_input_space``: for ``gaze``, histogram-equalized,
as MPIIGaze's crops are), applied once by the pipeline; what ``refine`` returns
is what the task trains on, as is. The task's ``input_space()`` string is part
of every fit's cache key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from sim2real_bench.config import preset
from sim2real_bench.data import Samples
from sim2real_bench.device import Compute
from sim2real_bench.tracking import Tracker


NETWORK_REFINE_BATCH_SIZE = 32
"""The refine batch of the network refiners (SimGAN, CycleGAN, CUT, UNSB, SDEdit).

A network's activations for a batch this small stay in a CPU's caches; at 1,024
images they are hundreds of megabytes, and normalization, padding and copies then
wait on memory. On a 2-core AMD EPYC (fp32) their quick networks refine 1.2-1.7x
faster in batches of 32 than of 1,024 or 256 (results/speed.md), and each refined image
was bit for bit the same there: every one of them treats the images of a batch independently.
"""


@dataclass(frozen=True)
class FitContext:
    """What a refiner's fit may use besides the data."""

    compute: Compute
    tracker: Tracker
    seed: int
    checkpoint_dir: Path
    """A folder private to this fit (same refiner, config, data and seed):
    checkpoints written here let a relaunched run resume."""
    progress: bool = True


class Refiner(ABC):
    """A sim-to-real method: ``fit`` once, then ``refine`` batches of images.

    Subclasses declare ``Config`` (a dataclass) and ``presets`` (one ``Config`` per
    budget). Training-free methods keep the default no-op ``fit``.
    """

    Config: ClassVar[type]
    presets: ClassVar[dict[str, Any]]

    fit_cached: ClassVar[bool] = False
    """True for refiners whose fit is costly (networks): the pipeline caches the
    fitted state and gives the fit a checkpoint folder that survives an
    interrupted run (``FitContext.checkpoint_dir``)."""

    refined_cached: ClassVar[bool] = False
    """True for refiners that are costly to apply (networks, samplers): the
    pipeline caches the refined training set (in float16, and the task trains on
    what the cache holds, so a cached and a fresh run give the same result)."""

    refine_settings: ClassVar[tuple[str, ...]] = ()
    """Config fields that only ``refine`` reads (a sampler's strength and steps): runs that
    differ in them share one fit and its cache entry, and each caches its own refined set."""

    refine_batch_size: ClassVar[int] = 1024
    """Images per :meth:`refine` call when the pipeline refines a whole set (networks:
    :data:`NETWORK_REFINE_BATCH_SIZE`)."""

    per_batch: ClassVar[bool] = False
    """True for methods that act at training time (domain randomization): the pipeline
    then applies ``refine`` with fresh random draws to every batch the task sees,
    instead of refining the source set once."""

    @classmethod
    def preset_for(cls, budget: str, label_kind: str) -> Any:
        """The config a run at ``budget`` on a task of ``label_kind`` starts from (before ``--set``).

        The default ignores the label kind; a method whose paper used other
        networks for another kind of data (SimGAN on depth hands) says so here.
        """
        return preset(cls.presets, budget)

    def __init__(self, config: Any, image_shape: tuple[int, int, int]) -> None:
        self.config = config
        self.image_shape = image_shape
        """``(C, H, W)`` of the images this refiner will see."""

    def fit(self, source: Samples, target: Samples, context: FitContext) -> int:
        """Fit on labeled ``source`` and unlabeled ``target``; return images processed."""
        return 0

    @abstractmethod
    def refine(self, images: Tensor) -> Tensor:
        """Refine a batch of source images.

        Shape: ``(N, C, H, W)`` in, the same out; values in ``[-1, 1]``, in the task's
        input space. The pipeline checks the shape of what comes back.
        """

    def to(self, device: torch.device) -> None:
        """Move whatever ``refine`` computes with onto ``device``."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to refine again without refitting."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
