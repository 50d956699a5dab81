"""Angular error and the gaze task's metrics on angles known by hand."""

import math

import pytest
import torch

from sim2real_bench.tasks.gaze import GazeTask, angular_error, gaze_vector


def degrees(*pairs):
    return torch.tensor([[math.radians(p), math.radians(y)] for p, y in pairs])


def test_gaze_vector_is_unit_and_follows_the_convention() -> None:
    vectors = gaze_vector(degrees((0, 0), (90, 0), (0, 90)))
    torch.testing.assert_close(vectors, torch.tensor([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ((0, 0), (0, 0), 0.0),
        ((0, 10), (0, 0), 10.0),
        ((-7, 0), (0, 0), 7.0),
        ((0, 30), (0, -30), 60.0),
        ((90, 0), (0, 0), 90.0),
    ],
)
def test_angular_error_on_known_angles(prediction, target, expected) -> None:
    error = angular_error(degrees(prediction), degrees(target))
    assert error.item() == pytest.approx(expected, abs=1e-3)


def test_yaw_matters_less_when_looking_up() -> None:
    # At pitch 60 degrees a 20-degree yaw difference is a smaller angle: cos(60) shrinks it.
    error = angular_error(degrees((60, 10)), degrees((60, -10))).item()
    assert error == pytest.approx(math.degrees(2 * math.asin(math.cos(math.radians(60)) * math.sin(math.radians(10)))), abs=1e-3)


def test_metrics_report_share_within_seven_degrees() -> None:
    task = GazeTask(GazeTask.presets["smoke"], (1, 35, 55))
    metrics = task.metrics(degrees((0, 0), (0, 6.9), (0, 7.1), (0, 20)), degrees((0, 0), (0, 0), (0, 0), (0, 0)))
    assert metrics["within_7deg"] == pytest.approx(50.0)
    assert metrics["angular_error"] == pytest.approx((0 + 6.9 + 7.1 + 20) / 4, abs=1e-3)
