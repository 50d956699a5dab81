"""Every baseline refiner runs end to end on the smoke budget and is logged to MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from stores import store_in

from sim2real_bench.registry import Registry
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.runner import run

SMALL = ("data.source_train=128", "data.target_train=128", "data.test=64")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module: creating one costs seconds of migrations."""
    return store_in(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("refiner", ["fda", "randomize", "cyclegan", "cut"])
def test_smoke_run_finishes_and_is_logged(refiner: str, store: str) -> None:
    tracking_uri = store
    result = run(resolve(RunSpec(refiner=refiner, task="gaze", budget="smoke", overrides=SMALL), Registry()), tracking_uri,
                 progress=False)
    assert 0 < result.metrics["target/angular_error"] < 90
    logged = MlflowClient(tracking_uri).get_run(result.run_id)
    assert logged.info.status == "FINISHED" and logged.data.params["refiner"] == refiner
