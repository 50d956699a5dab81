"""How long the shared regressor trains: ``epochs`` passes over the data, never fewer than ``min_steps`` steps."""

from __future__ import annotations

import math

import pytest
import torch

from sim2real_bench.config import BUDGETS, DATA_PRESETS
from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.errors import ConfigError
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.regression import RegressionConfig
from sim2real_bench.tasks.gaze import GazeTask
from sim2real_bench.tracking import Tracker


class StepRecorder(Tracker):
    """A tracker that keeps the step of every logged training loss."""

    def __init__(self) -> None:
        super().__init__(None, None)
        self.steps: list[int] = []

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.steps.append(step)


def tiny(**changes) -> RegressionConfig:
    """A regressor config for a few eye crops: batch 4, a loss logged every step."""
    return RegressionConfig(**{"model": "s2r_cnn_small", "epochs": 1, "batch_size": 4, "lr": 1e-3, "log_every": 1,
                               **changes})


def test_a_fit_on_a_small_set_takes_min_steps_and_its_schedule_spans_them(monkeypatch) -> None:
    schedules = []

    class Recorded(torch.optim.lr_scheduler.OneCycleLR):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            schedules.append(self)

    monkeypatch.setattr(torch.optim.lr_scheduler, "OneCycleLR", Recorded)
    generator = torch.Generator().manual_seed(0)
    train = Samples(torch.rand(8, 1, 35, 55, generator=generator) * 2 - 1, torch.randn(8, 2, generator=generator))
    tracker = StepRecorder()
    task = GazeTask(tiny(min_steps=10), (1, 35, 55))  # one epoch of 8 images at batch 4 is 2 steps
    seen = task.fit(train, resolve_compute("cpu", "fp32"), tracker, seed=0, progress=False)
    assert tracker.steps == list(range(1, 11))
    assert seen == 10 * 4
    (schedule,) = schedules
    assert schedule.total_steps == schedule.last_epoch == 10


@pytest.mark.parametrize(("images", "min_steps", "steps"), [
    (8, 0, 2),  # no floor: one pass
    (8, 2, 2),  # a floor the epochs reach changes nothing
    (8, 5, 5),  # two whole passes and one batch of a third
    (9, 0, 3),  # the last batch of a pass may be partial
])
def test_steps_are_the_epochs_passes_or_the_floor_whichever_is_more(images: int, min_steps: int, steps: int) -> None:
    assert tiny(min_steps=min_steps).steps(images) == steps


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("task", ["gaze", "hand"])
def test_presets_floor_no_run_on_their_budgets_default_training_sets(registry, task: str, budget: str) -> None:
    config = registry.get("tasks", task).presets[budget]
    data = DATA_PRESETS[budget]
    by_epochs = {size: config.epochs * math.ceil(size / config.batch_size)
                 for size in (data.source_train, data.target_train)}
    assert {size: config.steps(size) for size in by_epochs} == by_epochs
    assert config.min_steps == min(by_epochs.values())


def test_min_steps_is_set_from_the_command_line(registry) -> None:
    plan = resolve(RunSpec(refiner="oracle", task="gaze", budget="quick", overrides=("task.min_steps=2000",)), registry)
    assert plan.task_config.min_steps == 2000 and plan.task_config.epochs == 4


def test_a_negative_floor_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_steps must be at least 0"):
        tiny(min_steps=-1)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("name", ["s2r_cnn_small", "s2r_cnn_base"])
def test_pooling_before_relu_gives_the_plain_orders_outputs_and_gradients_bit_for_bit(name: str, autocast: bool) -> None:
    import timm
    from torch import nn

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, in_chans=1, num_classes=2, input_size=(36, 52)).train()
    images = torch.randn(8, 1, 36, 52).contiguous(memory_format=torch.channels_last)

    def outputs_and_gradients(features: nn.Module) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            output = model.forward_head(features(images))
        output.float().square().sum().backward()
        return [output, *(parameter.grad for parameter in model.parameters())]

    plain = outputs_and_gradients(lambda batch: nn.Sequential.forward(model.features, batch))
    reordered = outputs_and_gradients(model.features)
    assert any(isinstance(layer, nn.MaxPool2d) for layer in model.features)
    assert all(torch.equal(a, b) for a, b in zip(plain, reordered, strict=True))
