"""``gaze``: gaze estimation from eye crops, the paper's first experiment.

A small CNN regresses (pitch, yaw) in radians. The task's input space is
histogram equalization (``RegressionConfig.equalize``), applied once to every
image before refiners see it, as gaze pipelines on MPIIGaze's equalized crops
do: the regressor is blind to global intensity, so what a refiner must fix is
structure and texture (``results/calibration.md`` measures what happens without it). The paper's headline metrics are
the mean angular error in degrees between 3D gaze vectors and the share of
images within 7 degrees; ``within_{t}deg`` for t = 0..20 is the error curve.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.regression import RegressionConfig, RegressionTask
from sim2real_bench.tasks import models  # noqa: F401  (registers the timm models)

CURVE_DEGREES = range(21)
"""Thresholds of the error curve ``within_{t}deg``; ``within_7deg`` is the paper's headline share."""


def gaze_vector(angles: Tensor) -> Tensor:
    """Unit 3D gaze vectors from ``(N, 2)`` (pitch, yaw) in radians."""
    pitch, yaw = angles[:, 0], angles[:, 1]
    return torch.stack([torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch), torch.cos(pitch) * torch.cos(yaw)], 1)


def angular_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Per-image angle in degrees between predicted and true gaze."""
    cosine = (gaze_vector(prediction.double()) * gaze_vector(target.double())).sum(1)
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0))).float()


class GazeTask(RegressionTask):
    """Regress gaze (pitch, yaw) from 35x55 grayscale eye crops."""

    label_kind: ClassVar[str] = "gaze"
    label_names: ClassVar[tuple[str, ...]] = ("pitch", "yaw")
    default_source: ClassVar[str] = "synth-eyes"
    default_target: ClassVar[str] = "webcam-eyes"
    primary_metric: ClassVar[str] = "angular_error"
    headline_metrics: ClassVar[tuple[str, ...]] = ("within_7deg",)
    # min_steps: the steps the epochs give on the budget's smaller default training set (paper: 200,000 target
    # images), so default-size runs train as without a floor (tests/test_regression.py checks it).
    presets: ClassVar[dict[str, RegressionConfig]] = {
        "smoke": RegressionConfig(model="s2r_cnn_small", epochs=1, batch_size=64, lr=2e-3, equalize=True, log_every=2,
                                  min_steps=8),
        "quick": RegressionConfig(model="s2r_cnn_small", epochs=4, batch_size=128, lr=2e-3, equalize=True,
                                  min_steps=628),
        "paper": RegressionConfig(model="s2r_cnn_small", epochs=30, batch_size=512, lr=1e-3, equalize=True,
                                  min_steps=11_730),
    }

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        errors = angular_error(prediction, target)
        scores = {"angular_error": errors.mean().item(), "median_angular_error": errors.median().item()}
        scores.update({f"within_{t}deg": (errors <= t).float().mean().item() * 100 for t in CURVE_DEGREES})
        return scores
