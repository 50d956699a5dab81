"""SimGAN: the paper's networks, its history buffer, resumable and monitored training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sim2real_bench.data import Samples
from sim2real_bench.device import resolve_compute
from sim2real_bench.errors import ConfigError, FitFailure
from sim2real_bench.plugins.adversarial import ImageHistory
from sim2real_bench.plugins.eyes import SynthEyes, WebcamEyes
from sim2real_bench.plugins.simgan.networks import PatchDiscriminator, RefinerNet
from sim2real_bench.plugins.simgan.refiner import PAPER, PAPER_HANDS, SMOKE, SimGAN
from sim2real_bench.refiner import FitContext
from sim2real_bench.tracking import Tracker

EYES = (1, 35, 55)


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


def context(folder: Path) -> FitContext:
    return FitContext(resolve_compute("cpu", "fp32"), Tracker.disabled(), 0, folder, progress=False)


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


def test_resume_continues_at_the_saved_step_with_the_same_state(domains, tmp_path: Path, monkeypatch) -> None:
    source, target = domains
    config = replace(SMOKE, checkpoint_every=3, steps=6)
    torch.manual_seed(0)
    straight = SimGAN(config, EYES)
    straight.fit(source, target, context(tmp_path / "straight"))

    torch.manual_seed(0)
    interrupted = SimGAN(config, EYES)
    calls = {"count": 0}
    step = SimGAN._refiner_step

    def crash_at_step_six(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 6:  # pretraining 2 refiner steps, 2 D steps, then rounds of 1 R step
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SimGAN, "_refiner_step", crash_at_step_six)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(source, target, context(tmp_path / "resumed"))
    monkeypatch.setattr(SimGAN, "_refiner_step", step)
    saved = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 6

    resumed = SimGAN(config, EYES)  # fresh weights: everything must come from the checkpoint
    resumed.fit(source, target, context(tmp_path / "resumed"))
    final = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert final["step"] == SMOKE.pretrain_refiner_steps + SMOKE.pretrain_discriminator_steps + 6
    for name, tensor in straight.refiner.state_dict().items():
        torch.testing.assert_close(resumed.refiner.state_dict()[name], tensor, msg=name)


def test_planted_nan_is_caught_as_divergence(domains, tmp_path: Path, monkeypatch) -> None:
    source, target = domains
    refiner = SimGAN(replace(SMOKE, checkpoint_every=2), EYES)
    original = RefinerNet.forward
    calls = {"count": 0}

    def nan_after_a_while(self, images):
        calls["count"] += 1
        output = original(self, images)
        return output * float("nan") if calls["count"] > 8 else output

    monkeypatch.setattr(RefinerNet, "forward", nan_after_a_while)
    with pytest.raises(FitFailure, match=r"fit diverged at step \d+: loss_\w+ is nan; the last good checkpoint"):
        refiner.fit(source, target, context(tmp_path))
    assert (tmp_path / "checkpoint.pt").exists()


def test_planted_collapse_is_caught(domains, tmp_path: Path, monkeypatch) -> None:
    source, target = domains
    refiner = SimGAN(replace(SMOKE, steps=20, collapse_patience=3, log_every=1), EYES)
    monkeypatch.setattr(RefinerNet, "forward", lambda self, images: self.head(self.stem(images)).mean() * 0 - 1 + 0 * images)
    with pytest.raises(FitFailure, match=r"fit collapsed at step \d+: refined images have had a standard deviation"):
        refiner.fit(source, target, context(tmp_path))


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
])
def test_invalid_settings_are_clear_errors(change, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SimGAN(replace(SMOKE, **change), EYES)


def test_the_paper_budget_on_hands_gets_the_papers_hand_networks(registry) -> None:
    from sim2real_bench.runner import RunSpec, plan

    hands = plan(RunSpec(refiner="simgan", task="hand", budget="paper"), registry)
    eyes = plan(RunSpec(refiner="simgan", task="gaze", budget="paper"), registry)
    assert hands.refiner_config == PAPER_HANDS
    assert eyes.refiner_config == PAPER
    quick = plan(RunSpec(refiner="simgan", task="hand", budget="quick", overrides=("refiner.blocks=2",)), registry)
    assert quick.refiner_config.blocks == 2 and quick.refiner_config.first_kernel == 3
