"""SDEdit: the offline UNet, the schedule and DDIM sampler, ILVR's low-pass guidance, refining, and a run end to end.

Resuming, and stopping a diverged or collapsed fit, are checked for every trained
refiner in test_refiner_contract.py.
"""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
import torch
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench.errors import ConfigError
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.plugins.diffusion import sampling
from sim2real_bench.plugins.diffusion.denoiser import crop, pad, padded_size
from sim2real_bench.plugins.diffusion.sdedit import PAPER, QUICK, SMOKE, SDEdit
from sim2real_bench.registry import Registry
from sim2real_bench.runner import run
from sim2real_bench.store import Store

from fitting import EYES, context



@pytest.fixture(scope="module")
def fitted(noise_domains, tmp_path_factory) -> SDEdit:
    torch.manual_seed(0)
    refiner = SDEdit(SMOKE, EYES)
    refiner.fit(*noise_domains, context(tmp_path_factory.mktemp("sdedit")))
    return refiner


def calls_of(refiner: SDEdit) -> tuple[list[int], object]:
    """The diffusers timesteps the refining network is called at, recorded by a hook (remove it after)."""
    calls: list[int] = []
    hook = refiner.average.register_forward_hook(lambda module, inputs, output: calls.append(int(inputs[1][0])))
    return calls, hook


def test_the_unet_is_built_in_code_without_the_network(monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("building the denoiser tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    refiner = SDEdit(QUICK, EYES)
    assert refiner.denoiser.unet.config.block_out_channels == (16, 32, 32)
    noisy = torch.randn(2, 1, *refiner.size)
    assert refiner.denoiser(noisy, torch.tensor([0, 999])).shape == noisy.shape


def test_images_are_padded_to_what_the_unet_halves_and_cropped_back() -> None:
    assert padded_size(35, 55, levels=3) == (36, 56)
    assert padded_size(35, 55, levels=4) == (40, 56)
    assert padded_size(64, 64, levels=4) == (64, 64)
    images = torch.rand(2, 1, 35, 55)
    padded = pad(images, (36, 56))
    assert padded.shape == (2, 1, 36, 56) and torch.equal(crop(padded, 35, 55), images)


def test_noising_to_t0_zero_returns_the_input_without_calling_the_model(fitted, noise_domains) -> None:
    images = noise_domains[0].images[:4]
    calls, hook = calls_of(fitted)
    try:
        assert torch.equal(fitted.edit(images, 0.0), images)
    finally:
        hook.remove()
    assert calls == []
    assert torch.equal(sampling.noise_to(images, torch.randn_like(images), abar=1.0), images)


def test_the_schedule_is_ddpms_linear_betas_with_level_zero_clean() -> None:
    schedule = sampling.make_schedule(1000, 1e-4, 0.02, "linear")
    assert schedule.betas[0].item() == pytest.approx(1e-4) and schedule.betas[-1].item() == pytest.approx(0.02)
    abar = sampling.cumulative_alphas(schedule)
    assert len(abar) == 1001 and abar[0] == 1.0 and abar[1] == pytest.approx(1 - 1e-4)
    assert sampling.start_level(0.5, 1000) == 500


def test_the_ddim_sampler_with_k_steps_calls_the_model_k_times_at_falling_levels(fitted, noise_domains) -> None:
    refiner = SDEdit(replace(SMOKE, t0=0.5, denoise_steps=3), EYES)
    refiner.load_state_dict(fitted.state_dict())
    calls, hook = calls_of(refiner)
    try:
        refiner.refine(noise_domains[0].images[:3])
    finally:
        hook.remove()
    assert calls == [499, 332, 166]  # levels 500, 333, 167 (then 0), as diffusers timesteps (level - 1)
    assert sampling.denoising_levels(500, 3) == [500, 333, 167, 0]


def test_k_is_capped_at_the_levels_a_small_t0_noises_through(fitted, noise_domains) -> None:
    calls, hook = calls_of(fitted)
    try:
        fitted.edit(noise_domains[0].images[:2], t0=0.001)  # level 1: one step is all there is
    finally:
        hook.remove()
    assert calls == [0] and SMOKE.passes(0.001) == 1 and SMOKE.passes(0.5) == SMOKE.denoise_steps


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_a_ddim_step_is_diffusers_ddim_step(eta) -> None:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    scheduler.set_timesteps(50)  # stride 20: timestep 499 -> 479, i.e. level 500 -> 480
    abar = sampling.cumulative_alphas(sampling.make_schedule(1000, 1e-4, 0.02, "linear"))
    generator = torch.Generator().manual_seed(0)
    sample, predicted, noise = (torch.randn(2, 1, 8, 8, generator=generator) for _ in range(3))
    theirs = scheduler.step(predicted, 499, sample, eta=eta, variance_noise=noise).prev_sample
    mine, _ = sampling.ddim_step(sample, predicted, abar[500], abar[480], eta, noise)
    assert torch.allclose(mine, theirs, atol=1e-5)


def test_the_low_pass_filter_is_a_projection_that_removes_fine_detail() -> None:
    images = torch.randn(3, 1, 36, 56, generator=torch.Generator().manual_seed(0))
    low = sampling.low_pass(images, 4)
    assert torch.allclose(sampling.low_pass(low, 4), low, atol=1e-5)
    assert torch.allclose(sampling.low_pass(images, 1), images, atol=1e-5)
    rows, columns = torch.meshgrid(torch.arange(36.0), torch.arange(56.0), indexing="ij")

    def wave(vertical: int, horizontal: int) -> torch.Tensor:  # a DCT basis image: frequencies in half-cycles
        return (torch.cos(torch.pi * (rows + 0.5) * vertical / 36) * torch.cos(torch.pi * (columns + 0.5) *
                                                                                horizontal / 56))[None, None]

    for kept in (wave(1, 0), wave(8, 13)):  # under 36 / 4 = 9 and 56 / 4 = 14 half-cycles: kept
        assert torch.allclose(sampling.low_pass(kept, 4), kept, atol=1e-5)
    for removed in (wave(9, 0), wave(0, 14), wave(35, 55)):
        assert sampling.low_pass(removed, 4).abs().max() < 1e-5


def test_ilvr_guidance_keeps_the_references_low_band_and_the_samples_detail() -> None:
    generator = torch.Generator().manual_seed(0)
    sample, reference = torch.randn(2, 1, 36, 56, generator=generator), torch.randn(2, 1, 36, 56, generator=generator)
    guided = sampling.ilvr_guide(sample, reference, factor=4)
    assert torch.allclose(sampling.low_pass(guided, 4), sampling.low_pass(reference, 4), atol=1e-5)
    assert torch.allclose(guided - sampling.low_pass(guided, 4), sample - sampling.low_pass(sample, 4), atol=1e-5)


def test_a_guided_sampler_ends_with_exactly_the_inputs_low_band() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 36, 56, generator=generator) - 0.5
    abar = sampling.cumulative_alphas(sampling.make_schedule(1000, 1e-4, 0.02, "linear"))

    def predict(samples: torch.Tensor, timestep: int) -> torch.Tensor:  # any denoiser, however bad
        return torch.randn(samples.shape, generator=generator)

    def draw() -> torch.Tensor:
        return torch.randn(images.shape, generator=generator)

    edited = sampling.sdedit(predict, images, images, abar, 500, 5, 0.0, 4, draw)
    assert torch.allclose(sampling.low_pass(edited, 4), sampling.low_pass(images, 4), atol=1e-5)
    unguided = sampling.sdedit(predict, images, images, abar, 500, 5, 0.0, 0, draw)
    assert (sampling.low_pass(unguided, 4) - sampling.low_pass(images, 4)).abs().max() > 0.05


def test_ilvr_keeps_refined_images_nearer_the_inputs_coarse_content(fitted, noise_domains) -> None:
    images = noise_domains[0].images[:4] * 0.5
    guided = SDEdit(replace(SMOKE, ilvr_factor=4), EYES)
    guided.load_state_dict(fitted.state_dict())

    def coarse_error(refined: torch.Tensor) -> float:
        return (sampling.low_pass(refined, 4) - sampling.low_pass(images, 4)).abs().mean().item()

    assert coarse_error(guided.refine(images)) < coarse_error(fitted.refine(images)) / 3


def test_refine_keeps_the_shape_and_the_range(fitted, noise_domains) -> None:
    refined = fitted.refine(noise_domains[0].images[:5])
    assert refined.shape == (5, *EYES) and refined.dtype == torch.float32
    assert refined.min() >= -1 and refined.max() <= 1
    assert not refined.requires_grad and torch.is_inference(refined)


def test_hand_sized_images_need_no_padding_and_keep_their_shape() -> None:
    refiner = SDEdit(SMOKE, (1, 64, 64))
    images = torch.rand(3, 1, 64, 64) * 2 - 1
    assert refiner.size == (64, 64) and refiner.refine(images).shape == images.shape


def test_a_fit_draws_one_target_batch_per_step(noise_domains, tmp_path) -> None:
    config = replace(SMOKE, steps=2)
    assert SDEdit(config, EYES).fit(*noise_domains, context(tmp_path)) == 2 * config.batch_size


def test_paper_preset_holds_the_papers_schedule_and_ddpms_training() -> None:
    assert (PAPER.timesteps, PAPER.beta_start, PAPER.beta_end, PAPER.beta_schedule) == (1000, 1e-4, 0.02, "linear")
    assert 0.3 <= PAPER.t0 <= 0.6 and PAPER.start == 500 and (PAPER.denoise_steps, PAPER.eta) == (500, 1.0)
    assert (PAPER.widths, PAPER.layers_per_block, PAPER.attention_levels) == ((128, 256, 256, 256), 2, (1,))
    assert (PAPER.steps, PAPER.batch_size, PAPER.lr, PAPER.ema_decay, PAPER.dropout) == (800_000, 128, 2e-4, 0.9999,
                                                                                         0.1)
    assert PAPER.ilvr_factor == 0 and QUICK.ilvr_factor == 0
    assert SDEdit.fit_cached and SDEdit.refined_cached and SDEdit.refine_batch_size < 1024


@pytest.mark.parametrize(("change", "message"), [
    ({"t0": 1.5}, r"t0 must lie in \[0, 1\]"),
    ({"widths": (16, 30)}, r"widths \(16, 30\) must be one or more multiples of norm_groups \(8\)"),
    ({"attention_levels": (3,)}, "attention_levels .* must name levels 0 to 2"),
    ({"beta_schedule": "sigmoid"}, "beta_schedule 'sigmoid' is not one of linear, squaredcos_cap_v2"),
    ({"ilvr_factor": -1}, "ilvr_factor must be a finite number >= 0"),
])
def test_invalid_settings_are_clear_errors_when_the_config_is_made(change, message) -> None:
    with pytest.raises(ConfigError, match=f"^sdedit: .*{message}"):
        replace(QUICK, **change)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> tuple[str, list, Store]:
    """A smoke gaze run of ``sdedit``, the same run again, and one at another t0 with ILVR, on one cache."""
    uri = store_in(tmp_path_factory.mktemp("store"))
    cache = Store(tmp_path_factory.mktemp("cache"))
    spec = RunSpec(refiner="sdedit", task="gaze", budget="smoke")
    other = replace(spec, overrides=("refiner.t0=0.3", "refiner.ilvr_factor=2"))
    return uri, [run(resolve(run_spec, Registry()), uri, progress=False, store=cache)
                 for run_spec in (spec, spec, other)], cache


def test_a_smoke_run_finishes_and_logs_the_fit(smoke_runs) -> None:
    uri, (fresh, *_), _ = smoke_runs
    assert 0 < fresh.metrics["target/angular_error"] < 90 and fresh.metrics["throughput/refine_img_s"] > 0
    client = MlflowClient(uri)
    assert len(client.get_metric_history(fresh.run_id, "sdedit/loss")) > 1
    assert client.get_metric_history(fresh.run_id, "sdedit/noise_prediction_std")
    shown = {artifact.path for artifact in client.list_artifacts(fresh.run_id, "sdedit")}
    assert {"sdedit/t0_grid.png", "sdedit/t0_grid.json"} <= shown
    assert any(path.startswith("sdedit/grid_step") for path in shown)


def test_a_cached_fit_gives_the_same_result_as_the_fresh_one(smoke_runs) -> None:
    uri, (fresh, cached, _), _ = smoke_runs
    tags = [MlflowClient(uri).get_run(result.run_id).data.tags["s2r.fit"] for result in (fresh, cached)]
    assert tags == ["fitted", "cached"]
    assert cached.metrics["target/angular_error"] == fresh.metrics["target/angular_error"]


def test_another_t0_and_ilvr_refine_the_same_fit_into_a_set_of_their_own(smoke_runs) -> None:
    uri, (fresh, _, other), cache = smoke_runs
    assert MlflowClient(uri).get_run(other.run_id).data.tags["s2r.fit"] == "cached"
    (fit,) = (cache.root / "fits").iterdir()
    assert len(list(fit.glob("refined-train-*.pt"))) == 2
    assert other.metrics["label_shift/angular_error"] != fresh.metrics["label_shift/angular_error"]
