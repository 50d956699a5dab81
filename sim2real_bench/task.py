"""The downstream task interface: what refined images are *for*.

A task is trained on (refined) source images with source labels and evaluated on
labeled target images. It declares its label kind and columns, its metrics (the
primary one with its direction), its default source and target domains and its
*input space*: the normalization every image goes through once, before any
refiner sees it (``gaze``: histogram equalization, as MPIIGaze's crops are). The
timm regressor that the built-in tasks share is one implementation
(:class:`~sim2real_bench.regression.RegressionTask`); a task with another kind of
model implements this interface in one file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor

from sim2real_bench.data import Samples
from sim2real_bench.device import Compute
from sim2real_bench.tracking import Tracker

BatchTransform = Callable[[Tensor], Tensor]


class Task(ABC):
    """A downstream task on images of one label kind."""

    Config: ClassVar[type]
    presets: ClassVar[dict[str, Any]]
    """One ``Config`` per budget."""
    label_kind: ClassVar[str]
    """What the labels mean; the task accepts datasets of this kind only."""
    label_names: ClassVar[tuple[str, ...]]
    """The label columns, in order: how ``labels.csv`` files of this kind name them."""
    default_source: ClassVar[str]
    default_target: ClassVar[str]
    primary_metric: ClassVar[str]
    """The metric the benchmark ranks by, as named in :meth:`metrics`."""
    lower_is_better: ClassVar[bool] = True
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics of :meth:`metrics` that leaderboards show besides the primary one."""

    def __init__(self, config: Any, image_shape: tuple[int, int, int]) -> None:
        self.config = config
        self.image_shape = image_shape
        """``(C, H, W)`` of every image the task sees."""

    def to_input_space(self, images: Tensor) -> Tensor:
        """Bring raw ``(N, C, H, W)`` images in ``[-1, 1]`` into the task's input space (same shape and range).

        The pipeline applies it exactly once to every split, before any refiner
        sees the images; nothing downstream (refiner, training, prediction)
        applies it again. The default is the identity.
        """
        return images

    def input_space(self) -> str:
        """What :meth:`to_input_space` does, for the cache keys of anything fitted on its images."""
        return "identity"

    @abstractmethod
    def fit(self, train: Samples, compute: Compute, tracker: Tracker, seed: int,
            transform: BatchTransform | None = None, progress: bool = True) -> int:
        """Train a fresh model on labeled ``train`` images (input space); return the number of images seen.

        ``transform``, when given, is applied to every training batch first
        (refiners that act at training time). Randomness beyond ``seed`` comes
        from torch's global generator, which the pipeline seeds per stage.
        """

    @abstractmethod
    def predict(self, images: Tensor, compute: Compute) -> Tensor:
        """``(N, L)`` predictions in label units for ``(N, C, H, W)`` images in the input space."""

    @abstractmethod
    def features(self, images: Tensor, compute: Compute) -> Tensor:
        """``(N, D)`` embeddings of images: the space KID compares domains in (no downloaded network)."""

    @abstractmethod
    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        """Named scores of ``(N, L)`` predictions against ``(N, L)`` labels."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The fitted model, for the cache (tensors, numbers, strings and containers only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], compute: Compute) -> None:
        """Restore what :meth:`state_dict` returned onto ``compute``; raise if it does not fit this task."""

    def evaluate(self, samples: Samples, compute: Compute) -> dict[str, float]:
        """Metrics of the fitted model on a labeled split."""
        assert samples.labels is not None, "evaluation needs labels"
        return self.metrics(self.predict(samples.images, compute), samples.labels)
