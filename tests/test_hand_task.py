"""The hand task's metrics on keypoints known by hand, and a smoke run end to end."""

from __future__ import annotations

import pytest
import torch

from sim2real_bench.registry import Registry
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.runner import run
from sim2real_bench.tasks.hand import HandTask, joint_errors


def task() -> HandTask:
    return HandTask(HandTask.presets["smoke"], (1, 64, 64))


def offset_labels(du: float, dv: float, dd: float, count: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(0, 60, (count, 42)).float()
    return target + torch.tensor([du, dv, dd]).repeat(14), target


def test_joint_errors_are_2d_pixels_and_3d_millimetres() -> None:
    prediction, target = offset_labels(3.0, 4.0, 0.1)
    pixels, millimetres = joint_errors(prediction, target, mm_per_pixel=2.0)
    torch.testing.assert_close(pixels, torch.full((4, 14), 5.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(millimetres, torch.full((4, 14), (10.0**2 + 15.0**2) ** 0.5), atol=1e-3, rtol=0)


def test_metrics_on_a_known_offset() -> None:
    metrics = task().metrics(*offset_labels(3.0, 4.0, 0.0))
    assert metrics["joint_error_px"] == pytest.approx(5.0)
    assert metrics["joint_error_mm"] == pytest.approx(5.0 * 300 / 64)
    assert metrics["within_5px"] == pytest.approx(100.0)
    assert metrics["within_4px"] == 0.0
    assert [f"within_{t}px" in metrics for t in range(21)] == [True] * 21


def test_within_5px_counts_keypoints_not_images() -> None:
    prediction, target = offset_labels(0.0, 0.0, 0.0, count=2)
    prediction.view(2, 14, 3)[0, :7, 0] += 6.0  # half the joints of one image are off by 6 px
    assert task().metrics(prediction, target)["within_5px"] == pytest.approx(100 * 21 / 28)


def test_smoke_run_reports_the_hand_metrics(tracking_uri: str) -> None:
    result = run(resolve(RunSpec(refiner="none", task="hand", budget="smoke"), Registry()), tracking_uri, progress=False)
    assert result.config["source"] == "synth-hands" and result.config["target"] == "kinect-hands"
    for name in ("target/joint_error_px", "target/within_5px", "target/joint_error_mm", "mean_label/joint_error_px"):
        assert name in result.metrics
    assert 0 < result.metrics["target/joint_error_px"] < 64
