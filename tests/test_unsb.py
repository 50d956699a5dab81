"""UNSB: the time-conditioned generator, the bridge, refining by the stochastic chain, and a run end to end.

Resuming, and stopping a diverged or collapsed fit, are checked for every trained
refiner in test_refiner_contract.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench.errors import ConfigError
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.plugins import unsb
from sim2real_bench.plugins.translation.bridge import TimeConditionedGenerator, bridge_step, bridge_times
from sim2real_bench.registry import Registry
from sim2real_bench.runner import run
from sim2real_bench.store import Store

from fitting import EYES, context



@pytest.fixture(scope="module")
def fitted(noise_domains, tmp_path_factory) -> unsb.UNSB:
    torch.manual_seed(0)
    refiner = unsb.UNSB(unsb.SMOKE, EYES)
    refiner.fit(*noise_domains, context(tmp_path_factory.mktemp("unsb")))
    return refiner


def test_time_conditioning_changes_the_generators_output() -> None:
    torch.manual_seed(0)
    generator = TimeConditionedGenerator(channels=1, ngf=4, blocks=2, init="xavier")
    images = torch.rand(2, *EYES) * 2 - 1
    latent = torch.randn(2, generator.latent_dim)

    def at(index: int) -> torch.Tensor:
        return generator(images, torch.full((2,), index), latent)

    assert torch.equal(at(1), at(1))
    # Batched convs round differently by ~1e-8; a time embedding that instance norm cancelled would stay there.
    assert (at(0) - at(4)).abs().max() > 1e-5


def test_bridge_times_are_the_authors_harmonic_schedule() -> None:
    assert bridge_times(5) == pytest.approx([0.0, 0.5, 0.74, 0.86, 0.94, 1.0])
    assert bridge_times(1) == [0.0, 1.0]


def test_a_bridge_step_has_the_brownian_bridge_mean_and_variance() -> None:
    state, estimate = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    start, end, tau = 0.5, 0.75, 0.04
    share = (end - start) / (1 - start)
    mean = bridge_step(state, estimate, start, end, tau, torch.zeros_like(state))
    shifted = bridge_step(state, estimate, start, end, tau, torch.ones_like(state))
    assert torch.allclose(mean, torch.full_like(state, share))
    assert torch.allclose(shifted - mean, torch.full_like(state, (tau * (end - start) * (1 - share)) ** 0.5))


def test_a_fit_draws_two_source_batches_and_one_target_batch_per_step(noise_domains, tmp_path) -> None:
    config = replace(unsb.SMOKE, steps_constant=1, steps_decay=1)
    assert unsb.UNSB(config, EYES).fit(*noise_domains, context(tmp_path)) == 3 * config.batch_size * config.total_steps


def test_refine_keeps_the_shape_and_the_range(fitted, noise_domains) -> None:
    refined = fitted.refine(noise_domains[0].images[:5])
    assert refined.shape == (5, *EYES) and refined.min() >= -1 and refined.max() <= 1
    assert not refined.requires_grad and torch.is_inference(refined)


def test_refining_evaluates_the_generator_once_per_timestep(fitted, noise_domains) -> None:
    calls = []
    hook = fitted.generator.register_forward_hook(lambda module, inputs, output: calls.append(int(inputs[1][0])))
    try:
        fitted.refine(noise_domains[0].images[:3])
    finally:
        hook.remove()
    assert calls == list(range(unsb.SMOKE.timesteps))


def test_paper_preset_holds_the_authors_defaults() -> None:
    paper = unsb.PAPER
    assert (paper.sb_weight, paper.nce_weight, paper.gan_weight, paper.timesteps, paper.tau) == (1.0, 1.0, 1.0, 5, 0.01)
    assert (paper.nce_identity, paper.patches, paper.temperature, paper.projection_dim) == (True, 256, 0.07, 256)
    assert (paper.ngf, paper.ndf, paper.batch_size, paper.lr, paper.beta1) == (64, 64, 1, 2e-4, 0.5)
    assert paper.init == "xavier"
    assert unsb.UNSB.fit_cached and unsb.UNSB.refined_cached and unsb.UNSB.refine_batch_size < 1024


@pytest.mark.parametrize(("change", "message"), [
    ({"timesteps": 0}, "timesteps must be at least 1"),
    ({"tau": 0.0}, "tau must be positive"),
    ({"sb_weight": -1.0}, "sb_weight must be a finite number >= 0"),
    ({"nce_layers": ("block9",)}, r"nce_layers \('block9',\) must name some of input, down1, down2, block1"),
])
def test_invalid_settings_are_clear_errors_when_the_config_is_made(change, message) -> None:
    with pytest.raises(ConfigError, match=f"^unsb: .*{message}"):
        replace(unsb.SMOKE, **change)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> tuple[str, list]:
    """A smoke gaze run of ``unsb``, then the same run again on the same cache."""
    uri = store_in(tmp_path_factory.mktemp("store"))
    cache = Store(tmp_path_factory.mktemp("cache"))
    spec = RunSpec(refiner="unsb", task="gaze", budget="smoke")
    return uri, [run(resolve(spec, Registry()), uri, progress=False, store=cache) for _ in range(2)]


def test_a_smoke_run_finishes_and_logs_the_fit(smoke_runs) -> None:
    uri, (fresh, _) = smoke_runs
    assert 0 < fresh.metrics["target/angular_error"] < 90 and fresh.metrics["throughput/refine_img_s"] > 0
    client = MlflowClient(uri)
    assert len(client.get_metric_history(fresh.run_id, "unsb/loss_sb")) > 1
    shown = {artifact.path for artifact in client.list_artifacts(fresh.run_id, "unsb")}
    assert "unsb/chain.png" in shown and any(path.startswith("unsb/grid_step") for path in shown)


def test_a_cached_fit_gives_the_same_result_as_the_fresh_one(smoke_runs) -> None:
    uri, (fresh, cached) = smoke_runs
    tags = [MlflowClient(uri).get_run(result.run_id).data.tags["s2r.fit"] for result in (fresh, cached)]
    assert tags == ["fitted", "cached"]
    assert cached.metrics["target/angular_error"] == fresh.metrics["target/angular_error"]
