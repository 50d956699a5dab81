"""Images/s of the two hand renderers at a realistic batch: data must never be the bottleneck."""

import pytest
import torch

from sim2real_bench.plugins.hands.kinect import KinectHands
from sim2real_bench.plugins.hands.synthetic import SynthHands

BATCH = 1024


@pytest.mark.parametrize("domain", [SynthHands("synth-hands"), KinectHands("kinect-hands")], ids=lambda d: d.name)
def test_render_throughput(benchmark, domain) -> None:
    generator = torch.Generator().manual_seed(0)
    samples = benchmark(domain.generate, BATCH, generator)
    assert samples.images.shape == (BATCH, 1, 64, 64)
    benchmark.extra_info["batch"] = BATCH
    benchmark.extra_info["images_per_second"] = BATCH / benchmark.stats.stats.mean
