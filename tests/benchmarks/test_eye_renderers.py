"""Images/s of the two eye renderers at a realistic batch: data must never be the bottleneck."""

import pytest
import torch

from sim2real_bench.plugins.eyes import SynthEyes, WebcamEyes

BATCH = 4096


@pytest.mark.parametrize("domain", [SynthEyes("synth-eyes"), WebcamEyes("webcam-eyes")], ids=lambda d: d.name)
def test_render_throughput(benchmark, domain) -> None:
    generator = torch.Generator().manual_seed(0)
    samples = benchmark(domain.generate, BATCH, generator)
    assert samples.images.shape == (BATCH, 1, 35, 55)
    benchmark.extra_info["batch"] = BATCH
    benchmark.extra_info["images_per_second"] = BATCH / benchmark.stats.stats.mean
