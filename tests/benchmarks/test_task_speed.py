"""Task training speed: one epoch of each built-in task's ``quick`` regressor, as the runner trains it.

``extra_info`` holds ``images_per_second`` (training images per second of
``Task.fit``) and ``share_of_peak``: the fit's FLOP/s over the measured peak of
the regressor's dominant convolution, forward plus backward, in the precision
the fit runs in (``roofline.py``)::

    pytest tests/benchmarks/test_task_speed.py -m benchmark
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from roofline import dominant_conv, networks_of, record_share

from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.registry import Registry
from sim2real_bench.tracking import Tracker

IMAGES = 2048
SHAPES = {"gaze": (1, 35, 55), "hand": (1, 64, 64)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_task_training(benchmark, name: str) -> None:
    compute = resolve_compute("auto")
    task_class = Registry().get("tasks", name)
    config = dataclasses.replace(task_class.presets["quick"], epochs=1, min_steps=0)  # one epoch, no floor
    task = task_class(config, SHAPES[name])
    generator = torch.Generator().manual_seed(0)
    train = Samples(torch.rand(IMAGES, *SHAPES[name], generator=generator) * 2 - 1,
                    torch.randn(IMAGES, len(task_class.label_names), generator=generator))

    def fit() -> None:
        task.fit(train, compute, Tracker.disabled(), seed=0, progress=False)

    benchmark.pedantic(fit, rounds=3, warmup_rounds=1)
    batch = train.images[: config.batch_size].to(compute.device).contiguous(memory_format=torch.channels_last)
    benchmark.extra_info.update({"precision": compute.precision, "images_per_second": IMAGES / benchmark.stats.stats.mean})
    record_share(benchmark, fit, dominant_conv(networks_of(task), lambda: task.model(batch)), compute, train=True)
