"""The contract of every refiner whose fit is cached (``fit_cached``): its fit resumes, and it fails loudly.

A fit interrupted after a checkpoint and relaunched ends exactly where a
straight fit ends; its state refines the same in a fresh refiner, whatever the
batches (and a stochastic refiner's noise follows its fit's seed); a damaged checkpoint, or one whose contents do not fit the
networks, restarts the fit with a warning; weights that turn NaN stop the fit
as diverged, outputs that turn flat stop it as collapsed, both with
:class:`FitFailure`. Parametrized over the registry, so a new trained refiner
is held to it by registering it. Smoke presets, 64 random gaze-sized images.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from sim2real_bench import store
from sim2real_bench.data import Samples
from sim2real_bench.errors import FitFailure
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry
from sim2real_bench.store import CacheEntryWarning

from fitting import EYES, context

TRAINED = sorted(name for name, entry in Registry().entries("refiners").items() if entry.factory.fit_cached)


def test_the_contract_covers_every_built_in_trained_refiner() -> None:
    assert {"simgan", "cyclegan", "cut", "sdedit", "unsb"} <= set(TRAINED)


def test_every_refiners_refine_settings_are_fields_of_its_config() -> None:
    """The fit's cache key leaves them out by name: a name that is no field would fail every run of the refiner."""
    for name, entry in Registry().entries("refiners").items():
        fields = {field.name for field in dataclasses.fields(entry.factory.Config)}
        assert set(entry.factory.refine_settings) <= fields, name
    assert "t0" in Registry().get("refiners", "sdedit").refine_settings


def build(name: str, init_seed: int = 0, **changes: Any) -> Refiner:
    """The refiner's smoke preset with ``changes`` (those its config has), weights drawn from ``init_seed``."""
    refiner_class = Registry().get("refiners", name)
    config = refiner_class.presets["smoke"]
    known = {field.name for field in dataclasses.fields(config)}
    torch.manual_seed(init_seed)  # as the runner seeds before building a refiner
    return refiner_class(dataclasses.replace(config, **{k: v for k, v in changes.items() if k in known}), EYES)


def networks(refiner: Refiner) -> list[nn.Module]:
    return [value for value in vars(refiner).values() if isinstance(value, nn.Module)]


@pytest.fixture(scope="module")
def domains() -> tuple[Samples, Samples, Tensor]:
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(64, *EYES, generator=generator) * 1.6 - 0.8
    target = (torch.rand(64, *EYES, generator=generator) * 2 - 1).clamp(-0.5, 1)
    probe = torch.rand(8, *EYES, generator=generator) * 2 - 1
    return Samples(source), Samples(target), probe


def refined(refiner: Refiner, images: Tensor) -> Tensor:
    with torch.no_grad():
        return refiner.refine(images)


@pytest.fixture(scope="module")
def fitted(domains, tmp_path_factory) -> dict[str, Refiner]:
    """Per refiner, a straight fit."""
    source, target, _ = domains
    refiners = {}
    for name in TRAINED:
        refiners[name] = build(name)
        refiners[name].fit(source, target, context(tmp_path_factory.mktemp(name)))
    return refiners


@pytest.fixture(scope="module")
def straight(domains, fitted) -> dict[str, Tensor]:
    """Per refiner, what a straight fit refines the probe images to."""
    return {name: refined(refiner, domains[2]) for name, refiner in fitted.items()}


@pytest.mark.parametrize("name", TRAINED)
def test_the_fitted_state_refines_the_same_in_a_fresh_refiner(name, domains, fitted, straight) -> None:
    restored = build(name, init_seed=1)
    restored.load_state_dict(fitted[name].state_dict())
    restored.to(torch.device("cpu"))  # as the pipeline does (channels-last weights where the refiner keeps them)
    assert torch.equal(refined(restored, domains[2]), straight[name])


@pytest.mark.parametrize("name", TRAINED)
def test_a_refined_image_does_not_depend_on_its_batch(name, domains, fitted, straight) -> None:
    """The refined-set cache and the export refine in batches of their own size: the split must not matter
    (stochastic refiners draw each image's noise from its content, ``device.ImageNoise``)."""
    probe = domains[2]
    split = torch.cat([refined(fitted[name], probe[:3]), refined(fitted[name], probe[3:])])
    assert torch.allclose(split, straight[name], atol=1e-5)


def test_a_stochastic_refiners_noise_follows_its_fit_seed(domains, fitted, straight) -> None:
    stochastic = {name: refiner for name, refiner in fitted.items() if hasattr(refiner, "noise_seed")}
    assert {"sdedit", "unsb"} <= set(stochastic)
    for name, refiner in stochastic.items():
        seed = refiner.noise_seed
        try:
            refiner.noise_seed = seed + 1
            assert (refined(refiner, domains[2]) - straight[name]).abs().max() > 1e-6, name
        finally:
            refiner.noise_seed = seed


def interrupt_at_the_second_checkpoint(name: str, domains, folder: Path, monkeypatch) -> None:
    """Fit until just before the second checkpoint is written: the work since the first one is lost."""
    source, target, _ = domains
    save, saves = store.save, []

    def save_once(state: Any, path: Path) -> None:
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt
        save(state, path)

    monkeypatch.setattr(store, "save", save_once)
    with pytest.raises(KeyboardInterrupt):
        build(name).fit(source, target, context(folder))
    monkeypatch.setattr(store, "save", save)


@pytest.mark.parametrize("name", TRAINED)
def test_a_resumed_fit_ends_exactly_where_a_straight_fit_ends(name, domains, straight, tmp_path, monkeypatch) -> None:
    source, target, probe = domains
    interrupt_at_the_second_checkpoint(name, domains, tmp_path, monkeypatch)
    resumed = build(name, init_seed=1)  # other initial weights: all state must come from the checkpoint
    resumed.fit(source, target, context(tmp_path))
    assert torch.equal(refined(resumed, probe), straight[name])


def truncate(state_path: Path) -> None:
    state_path.write_bytes(state_path.read_bytes()[: state_path.stat().st_size // 2])


def drop_an_entry_of_every_network(state: Any) -> Any:
    if isinstance(state, dict) and state and all(isinstance(value, Tensor) for value in state.values()):
        return dict(list(state.items())[1:])
    if isinstance(state, dict):
        return {key: drop_an_entry_of_every_network(value) for key, value in state.items()}
    return state


def widen_every_tensor(state: Any) -> Any:
    if isinstance(state, Tensor):
        return torch.cat([state, state]) if state.dim() else state
    if isinstance(state, dict):
        return {key: widen_every_tensor(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(widen_every_tensor(value) for value in state)
    return state


def rewrite(change):
    def apply(state_path: Path) -> None:
        torch.save(change(torch.load(state_path, weights_only=True)), state_path)
    return apply


DAMAGES = {  # how a checkpoint is damaged -> what the warning says
    "truncated": (truncate, r"fit checkpoint\) is unreadable"),
    "missing an entry": (rewrite(drop_an_entry_of_every_network), "fit checkpoint .* does not match"),
    "of other widths": (rewrite(widen_every_tensor), "fit checkpoint .* does not match"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("name", TRAINED)
def test_a_checkpoint_that_cannot_be_used_restarts_the_fit_with_a_warning(name, damage, domains, straight, tmp_path,
                                                                         monkeypatch) -> None:
    source, target, probe = domains
    interrupt_at_the_second_checkpoint(name, domains, tmp_path, monkeypatch)
    left = [path for path in tmp_path.iterdir() if path.is_file()]
    assert left, "the interrupted fit left no checkpoint"
    spoil, warning = DAMAGES[damage]
    for path in left:
        spoil(path)
    restarted = build(name)
    with pytest.warns(CacheEntryWarning, match=warning):
        restarted.fit(source, target, context(tmp_path))
    assert torch.equal(refined(restarted, probe), straight[name])


@pytest.mark.parametrize("name", TRAINED)
def test_weights_that_turn_nan_stop_the_fit_as_diverged(name, domains, tmp_path, monkeypatch) -> None:
    source, target, _ = domains
    refiner = build(name)
    save = store.save

    def save_then_poison(state: Any, path: Path) -> None:
        save(state, path)
        with torch.no_grad():
            for network in networks(refiner):
                for parameter in network.parameters():
                    parameter.fill_(float("nan"))

    monkeypatch.setattr(store, "save", save_then_poison)
    with pytest.raises(FitFailure, match=r"fit diverged at step \d+: \w+ is nan; the last good checkpoint"):
        refiner.fit(source, target, context(tmp_path))


@pytest.mark.parametrize("name", TRAINED)
def test_outputs_that_turn_flat_stop_the_fit_as_collapsed(name, domains, tmp_path) -> None:
    source, target, _ = domains
    refiner = build(name, collapse_patience=2, log_every=1)

    def flatten_images(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> Tensor | None:
        images_in_images_out = isinstance(output, Tensor) and output.shape == getattr(inputs[0], "shape", None)
        return output * 0 - 1 if images_in_images_out else None  # generators, not discriminators or heads

    for network in networks(refiner):
        network.register_forward_hook(flatten_images)
    # What goes flat is what the fit watches: refined images, or sdedit's noise predictions.
    with pytest.raises(FitFailure, match=r"fit collapsed at step \d+: (refined images|noise predictions) have had a "
                                         r"standard deviation"):
        refiner.fit(source, target, context(tmp_path))
