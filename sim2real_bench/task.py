"""The downstream task interface and its shared regressor training loop.

A task is what refined images are *for*: a regressor trained on (refined) source
images with source labels, evaluated on labeled target images. Tasks differ in
their label geometry, model and metrics; the training loop is the same, so it
lives here once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import kornia
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from sim2real_bench.data import Samples
from sim2real_bench.device import Compute
from sim2real_bench.tracking import Tracker

BatchTransform = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class TaskConfig:
    """How the task's regressor is built and trained."""

    model: str
    """A timm model name, built with ``pretrained=False``."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    eval_batch_size: int = 1024
    log_every: int = 10
    """Steps between logged training losses."""
    equalize: bool = False
    """Histogram-equalize every input image (training and evaluation), as gaze
    pipelines on MPIIGaze do; it makes the regressor blind to global intensity."""


class Task(ABC):
    """A downstream regression task on images of one label kind."""

    Config: ClassVar[type] = TaskConfig
    presets: ClassVar[dict[str, TaskConfig]]
    label_kind: ClassVar[str]
    default_source: ClassVar[str]
    default_target: ClassVar[str]
    primary_metric: ClassVar[str]
    """The metric the benchmark ranks by, as named in :meth:`metrics`."""
    lower_is_better: ClassVar[bool] = True
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    """Metrics of :meth:`metrics` that leaderboards show besides the primary one."""

    def __init__(self, config: TaskConfig, image_shape: tuple[int, int, int], label_dim: int) -> None:
        self.config = config
        self.image_shape = image_shape
        self.label_dim = label_dim
        self.model: nn.Module | None = None
        self.label_mean = torch.zeros(label_dim)
        self.label_std = torch.ones(label_dim)

    @abstractmethod
    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        """Named scores of ``prediction`` against ``target`` (both in label units)."""

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Training loss on standardized labels (smooth L1, robust to label outliers)."""
        return F.smooth_l1_loss(prediction, target, beta=0.5)

    def preprocess(self, images: Tensor) -> Tensor:
        """The task's input normalization, applied to every batch it trains or predicts on."""
        if self.config.equalize:
            images = kornia.enhance.equalize((images.float() + 1) / 2) * 2 - 1
        return images.contiguous(memory_format=torch.channels_last)

    def input_space(self) -> str:
        """What :meth:`preprocess` does, for cache keys of anything fitted on preprocessed images."""
        return f"equalize={self.config.equalize}"

    def build_model(self) -> nn.Module:
        """The regressor, from timm's registry, never with downloaded weights."""
        channels, height, width = self.image_shape
        return timm.create_model(
            self.config.model, pretrained=False, in_chans=channels, num_classes=self.label_dim,
            input_size=(height, width),
        )

    def fit(
        self,
        train: Samples,
        compute: Compute,
        tracker: Tracker,
        seed: int,
        transform: BatchTransform | None = None,
        progress: bool = True,
    ) -> int:
        """Train a fresh regressor on ``train``; return the number of images seen.

        ``transform``, when given, is applied to every batch before the forward
        pass (refiners that act at training time).
        """
        assert train.labels is not None, "task training needs labels"
        config = self.config
        self.label_mean = train.labels.mean(0)
        self.label_std = train.labels.std(0).clamp_min(1e-6)
        targets = (train.labels - self.label_mean) / self.label_std
        model = self.build_model().to(compute.device, memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train) / config.batch_size)
        total = steps_per_epoch * config.epochs
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, pct_start=0.15)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        seen, running = 0, 0.0
        bar = tqdm(total=total, desc="task: train", unit="step", disable=not progress, leave=False)
        for step in range(total):
            if step % steps_per_epoch == 0:
                order = torch.randperm(len(train), generator=generator)
            index = order[(step % steps_per_epoch) * config.batch_size :][: config.batch_size]
            images = train.images[index].to(compute.device, non_blocking=True)
            if transform is not None:
                images = transform(images)
            images = self.preprocess(images)
            with compute.autocast():
                prediction = model(images)
            loss = self.loss(prediction.float(), targets[index].to(compute.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(index)
            running += loss.item()
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                count = (step % config.log_every) + 1
                tracker.log_metrics({"task/train_loss": running / count}, step=step + 1)
                bar.set_postfix(loss=f"{running / count:.4f}")
                running = 0.0
            bar.update()
        bar.close()
        self.model = model.eval()
        return seen

    @torch.inference_mode()
    def predict(self, images: Tensor, compute: Compute) -> Tensor:
        """Predictions in label units for a block of images, computed in batches."""
        assert self.model is not None, "fit the task before predicting"
        outputs = []
        for start in range(0, len(images), self.config.eval_batch_size):
            batch = self.preprocess(images[start : start + self.config.eval_batch_size].to(compute.device))
            with compute.autocast():
                output = self.model(batch)
            outputs.append(output.float().cpu())
        return torch.cat(outputs) * self.label_std + self.label_mean

    @torch.inference_mode()
    def features(self, images: Tensor, compute: Compute) -> Tensor:
        """The regressor's last hidden layer for a block of images (timm's ``pre_logits``), computed in batches.

        A source-trained regressor's features are the embedding the realism
        metrics (KID) compare domains in: no network is downloaded for them.
        """
        assert self.model is not None, "fit the task before asking for features"
        outputs = []
        for start in range(0, len(images), self.config.eval_batch_size):
            batch = self.preprocess(images[start : start + self.config.eval_batch_size].to(compute.device))
            with compute.autocast():
                output = self.model.forward_head(self.model.forward_features(batch), pre_logits=True)
            outputs.append(output.float().flatten(1).cpu())
        return torch.cat(outputs)

    def evaluate(self, samples: Samples, compute: Compute) -> dict[str, float]:
        """Metrics of the fitted regressor on a labeled split."""
        assert samples.labels is not None, "evaluation needs labels"
        return self.metrics(self.predict(samples.images, compute), samples.labels)

    def state_dict(self) -> dict[str, Tensor | dict[str, Tensor]]:
        """The fitted regressor and its label standardization, for the cache."""
        assert self.model is not None, "fit the task before saving it"
        return {"model": self.model.state_dict(), "label_mean": self.label_mean, "label_std": self.label_std}

    def load_state_dict(self, state: dict, compute: Compute) -> None:
        """Restore a regressor saved with :meth:`state_dict` onto ``compute``."""
        model = self.build_model()
        model.load_state_dict(state["model"])
        self.model = model.to(compute.device, memory_format=torch.channels_last).eval()
        self.label_mean, self.label_std = state["label_mean"], state["label_std"]

    def mean_label_metrics(self, samples: Samples) -> dict[str, float]:
        """Metrics of always predicting the mean training label: the floor of learning nothing."""
        assert samples.labels is not None, "evaluation needs labels"
        return self.metrics(self.label_mean.expand_as(samples.labels), samples.labels)
