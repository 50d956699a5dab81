"""Shared fixtures: a fresh plugin registry, a throwaway MLflow store per test, two noise domains for fits."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Fitted refiners and source models go to a throwaway cache, never the user's, removed when the tests end.
TEST_CACHE = tempfile.mkdtemp(prefix="s2r-test-cache-")
os.environ["S2R_BENCH_CACHE"] = TEST_CACHE
atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)

from stores import store_in  # noqa: E402

from sim2real_bench.data import RENDERED, Samples  # noqa: E402
from sim2real_bench.registry import Registry  # noqa: E402


@pytest.fixture(autouse=True)
def no_rendered_splits_from_other_tests() -> None:
    """Every test renders its splits afresh: one that patches a renderer never gets another test's images."""
    RENDERED.clear()


@pytest.fixture
def registry() -> Registry:
    """A registry with the installed entry points loaded, private to the test."""
    return Registry()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """An empty SQLite MLflow store in the test's temporary folder (a copy of one made once per session)."""
    return store_in(tmp_path)


@pytest.fixture(scope="module")
def noise_domains() -> tuple[Samples, Samples]:
    """32 source and 32 unlabeled target images of eye size (1, 35, 55), uniform noise of two different ranges:
    enough for a smoke fit of a translation network to run, resume and be compared."""
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(32, 1, 35, 55, generator=generator) * 1.6 - 0.8
    target = (torch.rand(32, 1, 35, 55, generator=generator) * 2 - 1).clamp(-0.5, 1)
    return Samples(source), Samples(target)
