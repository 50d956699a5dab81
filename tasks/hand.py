"""``hand``: hand pose from depth crops, the paper's second experiment (NYU hands).

A small CNN regresses the 14 NYU joints' (u, v, d) directly: 42 numbers, u, v in
crop pixels and d in normalized depth (the crop convention of
``sim2real_bench.plugins.hands.geometry``). Direct regression is what the shared
regressor of :class:`~sim2real_bench.regression.RegressionTask` supports (one vector per
image, smooth L1 on standardized labels); heatmap heads would need their own
loop and decoding, and the benchmark compares refiners, not pose heads. Inputs
are not equalized: depth values are metric, unlike a webcam's intensities.

Metrics, on keypoints in crop pixels: the mean 2D joint error, the share of
keypoints within 5 px (the paper's headline), an error curve ``within_{t}px``
for t = 0..20, and the mean 3D joint error in mm under the crop's
weak-perspective scale (``CUBE_MM / W`` mm per pixel, ``CUBE_MM / 2`` mm per
unit of d).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sim2real_bench.plugins.hands.domain import LABEL_KIND
from sim2real_bench.plugins.hands.geometry import CUBE_MM, DEPTH_HALF_RANGE_MM, LABEL_NAMES
from sim2real_bench.regression import RegressionConfig, RegressionTask
from sim2real_bench.tasks import models  # noqa: F401  (registers the timm models)

WITHIN_PIXELS = 5
CURVE_PIXELS = range(21)


def joint_errors(prediction: Tensor, target: Tensor, mm_per_pixel: float) -> tuple[Tensor, Tensor]:
    """Per-keypoint 2D errors in pixels and 3D errors in mm, each ``(N, 14)``, from ``(N, 42)`` labels."""
    difference = (prediction.double() - target.double()).view(len(target), -1, 3)
    pixels = difference[..., :2].norm(dim=-1)
    scale = torch.tensor([mm_per_pixel, mm_per_pixel, DEPTH_HALF_RANGE_MM], dtype=torch.float64)
    return pixels.float(), (difference * scale).norm(dim=-1).float()


class HandTask(RegressionTask):
    """Regress 14 joints' (u, v, d) from 64x64 depth crops of a hand."""

    label_kind: ClassVar[str] = LABEL_KIND
    label_names: ClassVar[tuple[str, ...]] = LABEL_NAMES
    default_source: ClassVar[str] = "synth-hands"
    default_target: ClassVar[str] = "kinect-hands"
    primary_metric: ClassVar[str] = "joint_error_px"
    headline_metrics: ClassVar[tuple[str, ...]] = ("within_5px", "joint_error_mm")
    # min_steps: the steps the epochs give on the budget's smaller default training set (paper: 200,000 target
    # images), so default-size runs train as without a floor (tests/test_regression.py checks it).
    presets: ClassVar[dict[str, RegressionConfig]] = {
        "smoke": RegressionConfig(model="s2r_cnn_small", epochs=1, batch_size=64, lr=2e-3, log_every=2, min_steps=8),
        "quick": RegressionConfig(model="s2r_cnn_small", epochs=3, batch_size=128, lr=2e-3, min_steps=471),
        "paper": RegressionConfig(model="s2r_cnn_base", epochs=30, batch_size=512, lr=1e-3, min_steps=11_730),
    }

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        pixels, millimetres = joint_errors(prediction, target, CUBE_MM / self.image_shape[2])
        scores = {
            "joint_error_px": pixels.mean().item(),
            "median_joint_error_px": pixels.median().item(),
            "joint_error_mm": millimetres.mean().item(),
        }
        scores.update({f"within_{t}px": (pixels <= t).float().mean().item() * 100 for t in CURVE_PIXELS})
        return scores
