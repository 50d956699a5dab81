"""SimGAN: the paper's networks, its history buffer, its phases and its settings.

Resuming, and stopping a diverged or collapsed fit, are checked for every trained
refiner in test_refiner_contract.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sim2real_bench.data import Samples
from sim2real_bench.errors import ConfigError
from sim2real_bench.plugins.adversarial import ImageHistory
from sim2real_bench.plugins.eyes.synthetic import SynthEyes
from sim2real_bench.plugins.eyes.webcam import WebcamEyes
from sim2real_bench.plugins.simgan.networks import PatchDiscriminator, RefinerNet
from sim2real_bench.plugins.simgan.refiner import PAPER, PAPER_HANDS, SMOKE, SimGAN

from fitting import EYES, context



def conv_layers(module: nn.Module) -> list[tuple[int, int, int, int]]:
    return [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in module.modules()
            if isinstance(m, nn.Conv2d)]


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_refiner_network_matches_the_paper() -> None:
    net = RefinerNet(channels=1, width=64, blocks=4, first_kernel=3)
    assert conv_layers(net) == [(1, 64, 3, 1)] + [(64, 64, 3, 1)] * 8 + [(64, 1, 1, 1)]
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())
    assert parameters(net) == (9 * 64 + 64) + 8 * (9 * 64 * 64 + 64) + (64 + 1)
    output = net(torch.zeros(2, *EYES))
    assert output.shape == (2, *EYES) and output.abs().max() <= 1


def test_discriminator_matches_the_paper() -> None:
    net = PatchDiscriminator(channels=1, widths=(96, 64, 32, 32), layout="eyes")
    assert conv_layers(net) == [(1, 96, 3, 2), (96, 64, 3, 2), (64, 32, 3, 1), (32, 32, 1, 1), (32, 2, 1, 1)]
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 1)]
    assert parameters(net) == (9 * 96 + 96) + (9 * 96 * 64 + 64) + (9 * 64 * 32 + 32) + (32 * 32 + 32) + (32 * 2 + 2)
    assert net(torch.zeros(2, *EYES)).shape == (2, 2, 7, 12)  # a map of per-patch logits
    assert not isinstance(net.layers[-1], nn.ReLU)  # logits are not rectified


def test_hand_preset_builds_the_deeper_networks() -> None:
    simgan = SimGAN(PAPER_HANDS, (1, 64, 64))
    assert len(simgan.refiner.blocks) == 10 and simgan.refiner.stem[0].kernel_size == (7, 7)
    assert simgan.discriminator(torch.zeros(1, 1, 64, 64)).shape[1] == 2


def test_hand_layouts_follow_the_paper() -> None:
    net = PatchDiscriminator(channels=1, widths=(96, 64, 32, 32), layout="hands")
    assert [layer[2:] for layer in conv_layers(net)] == [(7, 4), (5, 2), (3, 2), (1, 1), (1, 1)]
    refiner = RefinerNet(channels=1, width=64, blocks=10, first_kernel=7)
    assert conv_layers(refiner)[0] == (1, 64, 7, 1) and len(conv_layers(refiner)) == 1 + 20 + 1


def test_history_stores_images_and_returns_old_ones() -> None:
    history = ImageHistory(capacity=8, generator=torch.Generator().manual_seed(0))
    history.push(torch.full((4, 1, 2, 2), 1.0))
    history.push(torch.full((4, 1, 2, 2), 2.0))
    assert len(history) == 8
    drawn = history.sample(200).flatten(1)[:, 0]
    assert set(drawn.tolist()) == {1.0, 2.0}
    history.push(torch.full((4, 1, 2, 2), 3.0))  # replaces random old entries once full
    stored = set(history.images.flatten(1)[:, 0].tolist())
    assert 3.0 in stored and (1.0 in stored or 2.0 in stored)
    assert len(history) == 8


def test_a_full_history_stores_as_a_write_in_order_would_when_slots_repeat() -> None:
    """Four slots and 64 large images repeat slots in every push; a threaded write once raced on them."""
    images = torch.arange(64, dtype=torch.float32).view(64, 1, 1, 1).expand(64, 1, 64, 64).contiguous()
    for seed in range(20):
        history = ImageHistory(capacity=4, generator=torch.Generator().manual_seed(seed))
        history.push(images[:4])
        history.push(images[4:])
        slots = torch.randint(4, (60,), generator=torch.Generator().manual_seed(seed))
        expected = images[:4].clone()
        for slot, image in zip(slots.tolist(), images[4:]):
            expected[slot] = image
        assert torch.equal(history.images, expected)


@pytest.fixture(scope="module")
def domains() -> tuple[Samples, Samples]:
    return SynthEyes("synth-eyes").load("train", 64, 0), WebcamEyes("webcam-eyes").load("train", 64, 0).without_labels()


def test_self_regularization_alone_leaves_images_nearly_unchanged(domains, tmp_path: Path) -> None:
    source, target = domains
    config = replace(SMOKE, input_skip=False, width=16, blocks=1, pretrain_refiner_steps=150,
                     pretrain_discriminator_steps=0, steps=0, lr_refiner=3e-3, checkpoint_every=0)
    refiner = SimGAN(config, EYES)
    refiner.fit(source, target, context(tmp_path))
    with torch.no_grad():
        change = (refiner.refine(source.images) - source.images).abs().mean().item()
    assert change < 0.05


def test_a_fit_runs_its_phases_in_order_and_counts_their_images(domains, tmp_path: Path, monkeypatch) -> None:
    source, target = domains
    calls = []
    refiner_step, discriminator_step = SimGAN._refiner_step, SimGAN._discriminator_step

    def logged_refiner_step(self, *args, adversarial):
        calls.append("R" if adversarial else "r")
        return refiner_step(self, *args, adversarial=adversarial)

    def logged_discriminator_step(self, *args):
        calls.append("D")
        return discriminator_step(self, *args)

    monkeypatch.setattr(SimGAN, "_refiner_step", logged_refiner_step)
    monkeypatch.setattr(SimGAN, "_discriminator_step", logged_discriminator_step)
    config = replace(SMOKE, pretrain_refiner_steps=2, pretrain_discriminator_steps=1, steps=2, k_g=2, k_d=1)
    images = SimGAN(config, EYES).fit(source, target, context(tmp_path))
    assert "".join(calls) == "rr" + "D" + "RRD" * 2  # pretrain R, pretrain D, then K_g R steps per K_d D steps
    assert images == config.batch_size * (2 + 2 * 1 + (2 + 2 * 1) * 2)  # a D step draws a real and a refined batch


def test_paper_preset_holds_the_published_settings() -> None:
    assert (PAPER.width, PAPER.blocks, PAPER.first_kernel) == (64, 4, 3)
    assert PAPER.discriminator_widths == (96, 64, 32, 32)
    assert (PAPER.batch_size, PAPER.lr_refiner, PAPER.optimizer) == (512, 1e-3, "sgd")
    assert (PAPER.pretrain_refiner_steps, PAPER.pretrain_discriminator_steps) == (1000, 200)
    assert (PAPER.k_d, PAPER.history_fraction) == (1, 0.5)


@pytest.mark.parametrize(("change", "message"), [
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"reg_space": "vgg"}, "reg_space 'vgg'"),
    ({"history_fraction": 1.5}, "history_fraction must lie in"),
    ({"optimizer": "lbfgs"}, "optimizer 'lbfgs'"),
    ({"lr_refiner": float("nan")}, "lr_refiner must be positive and finite, got nan"),
    ({"first_kernel": 4}, "first_kernel must be odd"),
    ({"grid_every": 0}, "grid_every must be at least 1"),
])
def test_invalid_settings_are_clear_errors_when_the_config_is_made(change, message) -> None:
    with pytest.raises(ConfigError, match=f"^simgan: .*{message}"):
        replace(SMOKE, **change)


def test_every_problem_of_a_config_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as raised:
        replace(SMOKE, batch_size=0, optimizer="lbfgs")
    assert "batch_size must be at least 1" in str(raised.value) and "optimizer 'lbfgs'" in str(raised.value)


def test_a_bad_override_fails_when_the_run_is_planned(registry) -> None:
    from sim2real_bench.plan import RunSpec, resolve

    with pytest.raises(ConfigError, match="lr_refiner must be positive"):
        resolve(RunSpec(refiner="simgan", task="gaze", budget="smoke", overrides=("refiner.lr_refiner=nan",)), registry)


def test_the_paper_budget_on_hands_gets_the_papers_hand_networks(registry) -> None:
    from sim2real_bench.plan import RunSpec, resolve

    small = ("data.source_train=64", "data.target_train=64", "data.test=64")  # the paper's data need not fit here
    hands = resolve(RunSpec(refiner="simgan", task="hand", budget="paper", overrides=small), registry)
    eyes = resolve(RunSpec(refiner="simgan", task="gaze", budget="paper", overrides=small), registry)
    assert hands.refiner_config == PAPER_HANDS
    assert eyes.refiner_config == PAPER
    quick = resolve(RunSpec(refiner="simgan", task="hand", budget="quick", overrides=("refiner.blocks=2",)), registry)
    assert quick.refiner_config.blocks == 2 and quick.refiner_config.first_kernel == 3
