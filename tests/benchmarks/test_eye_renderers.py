"""Images/s of the two eye renderers: data must never be the bottleneck.

The batch is the chunk size that ``ProceduralDataset.load`` renders at, and a
larger one for comparison (memory traffic grows faster than the work).
"""

import pytest
import torch

from sim2real_bench.plugins.eyes.synthetic import SynthEyes
from sim2real_bench.plugins.eyes.webcam import WebcamEyes

DOMAINS = [SynthEyes("synth-eyes"), WebcamEyes("webcam-eyes")]


@pytest.mark.parametrize("batch", [SynthEyes.chunk_size, 4096])
@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_render_throughput(benchmark, domain, batch: int) -> None:
    generator = torch.Generator().manual_seed(0)
    samples = benchmark(domain.generate, batch, generator)
    assert samples.images.shape == (batch, 1, 35, 55)
    benchmark.extra_info["batch"] = batch
    benchmark.extra_info["images_per_second"] = batch / benchmark.stats.stats.mean
