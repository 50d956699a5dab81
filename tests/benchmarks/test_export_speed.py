"""Export speed: refine a block of gaze samples and write them as PNGs plus labels.csv.

``extra_info["images_per_second"]`` is the figure the export reports as
``throughput/export_img_s``: refining (identity, or SimGAN's quick refiner at
random weights, the same cost as a fitted one) and lossless PNG encoding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim2real_bench.export import write_samples
from sim2real_bench.registry import Registry
from sim2real_bench.plan import RunSpec, resolve

COUNT = 2048


@pytest.mark.parametrize("refiner", ["none", "simgan"])
def test_export_write(benchmark, tmp_path: Path, refiner: str) -> None:
    resolved = resolve(RunSpec(refiner=refiner, task="gaze", budget="quick"), Registry())
    source = resolved.source.load("train", COUNT, 0)
    model = resolved.refiner_class(resolved.refiner_config, resolved.source.image_shape)
    model.to(resolved.compute.device)

    def write() -> None:
        folder = tmp_path / "out"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        write_samples(model, source, resolved, folder, progress=False)

    benchmark.pedantic(write, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_second"] = COUNT / benchmark.stats.stats.mean
