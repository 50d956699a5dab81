"""The runner end to end on the smoke budget, into a temporary MLflow store."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench import hookimpl
from sim2real_bench.config import BUDGETS
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.refiner import Refiner
from sim2real_bench.registry import Registry
from sim2real_bench.store import Store
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.runner import run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple:
    uri = store_in(tmp_path_factory.mktemp("store"))
    result = run(resolve(RunSpec(refiner="none", task="gaze", budget="smoke"), Registry()), uri, progress=False)
    return uri, result


def test_run_finishes_with_target_and_source_metrics(smoke_run) -> None:
    _, result = smoke_run
    for name in ("target/angular_error", "target/within_7deg", "source/angular_error", "mean_label/angular_error"):
        assert name in result.metrics
    assert 0 < result.metrics["target/angular_error"] < 90
    assert result.metrics["throughput/task_train_img_s"] > 0


def test_run_is_logged_to_mlflow(smoke_run) -> None:
    uri, result = smoke_run
    client = MlflowClient(uri)
    logged = client.get_run(result.run_id)
    assert logged.info.status == "FINISHED"
    assert client.get_experiment(logged.info.experiment_id).name == "gaze"
    assert logged.data.params["refiner"] == "none"
    assert logged.data.params["task_config.model"] == "s2r_cnn_small"
    assert "version.torch" in logged.data.params
    assert logged.data.metrics["target/angular_error"] == pytest.approx(result.metrics["target/angular_error"])
    assert len(client.get_metric_history(result.run_id, "task/train_loss")) > 1
    artifacts = {a.path for a in client.list_artifacts(result.run_id)} | {
        a.path for a in client.list_artifacts(result.run_id, "samples")}
    assert {"config.json", "samples/synthetic_refined_target.png"} <= artifacts
    store_folder = Path(uri.removeprefix("sqlite:///")).parent
    assert (store_folder / "mlruns" / "gaze" / result.run_id / "artifacts" / "config.json").is_file()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the resident high-water mark is reset through Linux's /proc")
def test_a_runs_peak_memory_is_its_own_not_the_process_so_far(tracking_uri: str) -> None:
    earlier = torch.ones(2**28)  # 1 GiB, as an earlier run of a sweep might have held; freed back to the system
    earlier.add_(1)
    del earlier
    peak_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = run(resolve(RunSpec(refiner="oracle", task="gaze", budget="smoke"), Registry()), tracking_uri, progress=False)
    assert 0 < result.metrics["memory/peak_mb"] < peak_before_mb - 512


def test_oracle_is_tagged_as_a_reference(tracking_uri: str) -> None:
    result = run(resolve(RunSpec(refiner="oracle", task="gaze", budget="smoke"), Registry()), tracking_uri, progress=False)
    tags = MlflowClient(tracking_uri).get_run(result.run_id).data.tags
    assert tags["s2r.role"] == "reference"
    assert result.config["role"] == "reference"


@dataclass(frozen=True)
class SpyConfig:
    pass


class SpyRefiner(Refiner):
    """Records what fit receives."""

    Config = SpyConfig
    presets = {budget: SpyConfig() for budget in BUDGETS}
    seen: list = []

    def fit(self, source, target, context) -> int:
        SpyRefiner.seen.append((source.labels is not None, target.labels))
        return len(source)

    def refine(self, images):
        return images


class SpyPlugin:
    @hookimpl
    def register_refiners(self, register):
        register("spy", SpyRefiner)


def test_refiner_never_sees_target_labels(registry: Registry, tracking_uri: str) -> None:
    registry.add_plugin(SpyPlugin(), name="spy-plugin")
    run(resolve(RunSpec(refiner="spy", task="gaze", budget="smoke"), registry), tracking_uri, progress=False)
    assert SpyRefiner.seen == [(True, None)]


def test_wrong_label_kind_is_refused(registry: Registry) -> None:
    class Other(type(registry.get("datasets", "synth-eyes")("synth-eyes"))):
        label_kind = "hand"

    class OtherPlugin:
        @hookimpl
        def register_datasets(self, register):
            register("hand-like", Other)

    registry.add_plugin(OtherPlugin(), name="other")
    with pytest.raises(ConfigError, match="has label kind 'hand' but task 'gaze' needs 'gaze'"):
        resolve(RunSpec(refiner="none", task="gaze", source="hand-like"), registry)


def test_mismatched_image_shapes_are_refused(registry: Registry) -> None:
    class Wide(type(registry.get("datasets", "synth-eyes")("synth-eyes"))):
        width = 60

    class WidePlugin:
        @hookimpl
        def register_datasets(self, register):
            register("wide-eyes", Wide)

    registry.add_plugin(WidePlugin(), name="wide")
    with pytest.raises(DataError, match=r"\(1, 35, 60\).*\(1, 35, 55\)"):
        resolve(RunSpec(refiner="none", task="gaze", source="wide-eyes"), registry)


def test_a_cached_fit_gives_the_same_result_as_the_fresh_one(registry: Registry, tracking_uri: str) -> None:
    # Regression: the fresh path trained on float32 refined images while the cache held fp16 ones.
    spec = RunSpec(refiner="simgan", task="gaze", budget="smoke", overrides=("refiner.reg_weight=0.123",))  # not cached
    fresh = run(resolve(spec, registry), tracking_uri, progress=False)
    cached = run(resolve(spec, registry), tracking_uri, progress=False)
    tags = [MlflowClient(tracking_uri).get_run(result.run_id).data.tags["s2r.fit"] for result in (fresh, cached)]
    assert tags == ["fitted", "cached"]
    assert cached.metrics["target/angular_error"] == fresh.metrics["target/angular_error"]


def _figures(metrics: dict[str, float]) -> dict[str, float]:
    """Every metric that is not a timing, a throughput or a memory reading."""
    return {name: value for name, value in metrics.items() if not name.startswith(("time/", "throughput/", "memory/"))}


def test_no_figure_depends_on_the_cache_or_on_run_order(registry: Registry, tracking_uri: str, tmp_path) -> None:
    specs = [RunSpec(refiner=name, task="gaze", budget="smoke") for name in ("none", "simgan")]

    def figures(order: list[RunSpec], cache: Store) -> dict[str, dict[str, float]]:
        return {spec.refiner: _figures(run(resolve(spec, registry), tracking_uri, progress=False, store=cache).metrics)
                for spec in order}

    forward = figures(specs, Store(tmp_path / "one"))
    backward = figures(specs[::-1], Store(tmp_path / "two"))
    warm = figures(specs, Store(tmp_path / "two"))
    assert forward == backward == warm
    assert forward["simgan"]["label_shift/angular_error"] > 0 and "realism/kid" in forward["simgan"]


def test_a_refiner_that_changes_the_shape_is_a_clear_error(registry: Registry, tracking_uri: str) -> None:
    class Cropping(SpyRefiner):
        def refine(self, images):
            return images[..., 1:, :]

    class CroppingPlugin:
        @hookimpl
        def register_refiners(self, register):
            register("cropping", Cropping)

    registry.add_plugin(CroppingPlugin(), name="cropping-plugin")
    with pytest.raises(DataError, match=r"returned images of shape .*34, 55.*refine must keep the shape"):
        run(resolve(RunSpec(refiner="cropping", task="gaze", budget="smoke"), registry), tracking_uri, progress=False)
