"""CycleGAN and CUT: shared networks, losses, pools, schedule and settings.

Resuming, and stopping a diverged or collapsed fit, are checked for every trained
refiner in test_refiner_contract.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sim2real_bench.errors import ConfigError
from sim2real_bench.plugins import cut, cyclegan
from sim2real_bench.plugins.adversarial import ImageHistory
from sim2real_bench.plugins.translation.networks import PatchDiscriminator, ResnetGenerator
from sim2real_bench.plugins.translation.patchnce import patch_nce_loss
from sim2real_bench.plugins.translation.training import linear_decay

from fitting import EYES, context

METHODS = {"cyclegan": (cyclegan.CycleGAN, cyclegan.SMOKE), "cut": (cut.CUT, cut.SMOKE),
           "fastcut": (cut.CUT, replace(cut.SMOKE, variant="fastcut"))}


@pytest.mark.parametrize("shape", [EYES, (1, 64, 64)])
def test_generator_keeps_any_image_shape_and_the_range(shape) -> None:
    generator = ResnetGenerator(channels=1, ngf=8, blocks=2)
    output = generator(torch.rand(2, *shape) * 2 - 1)
    assert output.shape == (2, *shape) and output.abs().max() <= 1


def test_generator_encoder_taps_have_the_declared_widths() -> None:
    generator = ResnetGenerator(channels=1, ngf=8, blocks=2)
    taps = ("input", "down1", "down2", "block2")
    features = generator.encode(torch.zeros(2, *EYES), taps)
    assert [f.shape[1] for f in features] == [generator.tap_channels[t] for t in taps] == [1, 16, 32, 32]
    assert [tuple(f.shape[-2:]) for f in features] == [(36, 56), (18, 28), (9, 14), (9, 14)]


def test_patchgan_depth_sets_the_patch_map() -> None:
    images = torch.zeros(1, *EYES)
    assert PatchDiscriminator(1, 8, n_layers=3)(images).shape[-2:] == (2, 4)  # 70x70 patches: nearly whole images
    assert PatchDiscriminator(1, 8, n_layers=2)(images).shape[-2:] == (6, 11)
    strides = [m.stride[0] for m in PatchDiscriminator(1, 8, n_layers=3).modules() if isinstance(m, nn.Conv2d)]
    assert strides == [2, 2, 2, 1, 1]


def test_patch_nce_prefers_the_patch_at_the_same_place() -> None:
    key = torch.nn.functional.normalize(torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    matching = patch_nce_loss(key.clone(), key, temperature=0.07)
    shuffled = patch_nce_loss(key[:, torch.randperm(16, generator=torch.Generator().manual_seed(1))], key, 0.07)
    assert matching < 0.5 < shuffled


def test_pool_returns_new_images_until_full_then_swaps_in_old_ones() -> None:
    pool = ImageHistory(capacity=4, generator=torch.Generator().manual_seed(0))
    first = torch.full((4, 1, 2, 2), 1.0)
    assert torch.equal(pool.query(first), first)
    returned = pool.query(torch.full((64, 1, 2, 2), 2.0), swap_probability=0.5).flatten(1)[:, 0]
    assert set(returned.tolist()) == {1.0, 2.0}
    assert len(pool) == 4 and 2.0 in set(pool.images.flatten(1)[:, 0].tolist())


def test_a_full_pool_swaps_as_in_order_writes_would_when_slots_repeat() -> None:
    images = torch.arange(68, dtype=torch.float32).view(68, 1, 1, 1).expand(68, 1, 64, 64).contiguous()
    for seed in range(20):
        pool = ImageHistory(capacity=4, generator=torch.Generator().manual_seed(seed))
        pool.query(images[:4])
        returned = pool.query(images[4:], swap_probability=1.0)
        same_draws = torch.Generator().manual_seed(seed)
        torch.rand(64, generator=same_draws)
        slots = torch.randint(4, (64,), generator=same_draws)
        expected = images[:4].clone()
        for slot, image in zip(slots.tolist(), images[4:]):
            expected[slot] = image
        assert torch.equal(returned, images[slots]) and torch.equal(pool.images, expected)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_smoke_fit_refines_to_the_input_shape_and_range(method, noise_domains, tmp_path: Path) -> None:
    refiner_class, config = METHODS[method]
    source, target = noise_domains
    refiner = refiner_class(config, EYES)
    drawn = refiner.fit(source, target, context(tmp_path))
    assert drawn == 2 * config.batch_size * config.total_steps
    with torch.inference_mode():
        refined = refiner.refine(source.images[:5])
    assert refined.shape == (5, *EYES) and refined.min() >= -1 and refined.max() <= 1
    assert refiner_class.fit_cached and refiner_class.refined_cached and set(refiner.state_dict()) == {"generator"}


def test_paper_presets_hold_the_published_settings() -> None:
    for paper in (cyclegan.PAPER, cut.PAPER):
        assert (paper.ngf, paper.ndf, paper.blocks, paper.batch_size) == (64, 64, 6, 1)
        assert (paper.lr, paper.beta1) == (2e-4, 0.5)
    assert (cyclegan.PAPER.cycle_weight, cyclegan.PAPER.identity_weight, cyclegan.PAPER.pool_size) == (10.0, 0.5, 50)
    assert (cyclegan.PAPER.steps_constant, cyclegan.PAPER.steps_decay) == (100_000, 100_000)
    assert (cut.PAPER.patches, cut.PAPER.temperature, cut.PAPER.projection_dim, cut.PAPER.gan_weight) == (256, 0.07, 256, 1.0)
    assert (cut.PAPER.nce_weight, cut.PAPER.nce_identity) == (1.0, True)
    fast = replace(cut.PAPER, variant="fastcut")
    assert (fast.nce_weight, fast.nce_identity) == (10.0, False)


def test_learning_rate_is_constant_then_decays_linearly() -> None:
    factor = linear_decay(replace(cyclegan.SMOKE, steps_constant=10, steps_decay=9))
    assert [factor(step) for step in (0, 9)] == [1.0, 1.0]
    assert [factor(step) for step in (10, 18)] == pytest.approx([0.9, 0.1])  # the authors' last epoch: 1 / (decay + 1)


@pytest.mark.parametrize(("method", "change", "message"), [
    ("cyclegan", {"batch_size": 0}, "batch_size must be at least 1"),
    ("cut", {"batch_size": 0}, "batch_size must be at least 1"),
    ("cyclegan", {"pool_size": 0}, "pool_size must be at least 1"),
    ("cyclegan", {"init": "kaiming"}, "init 'kaiming'"),
    ("cut", {"variant": "fast"}, "variant 'fast' is not one of cut, fastcut"),
    ("cut", {"nce_layers": ("block7",)}, r"nce_layers \('block7',\) must name some of input, down1, down2, block1"),
    ("cut", {"temperature": 0.0}, "temperature must be positive"),
    ("cyclegan", {"lr": float("nan")}, "lr must be positive and finite, got nan"),
    ("cut", {"beta1": 1.0}, r"beta1 must lie in \[0, 1\)"),
    ("cyclegan", {"collapse_patience": 0}, "collapse_patience must be at least 1"),
])
def test_invalid_settings_are_clear_errors_when_the_config_is_made(method, change, message) -> None:
    _, config = METHODS[method]
    with pytest.raises(ConfigError, match=f"^{method}: .*{message}"):
        replace(config, **change)
