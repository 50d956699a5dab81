"""Shared fixtures: a fresh plugin registry and a throwaway MLflow store per test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Fitted refiners and source models go to a throwaway cache, never the user's.
os.environ["S2R_BENCH_CACHE"] = tempfile.mkdtemp(prefix="s2r-test-cache-")

from sim2real_bench.registry import Registry  # noqa: E402


@pytest.fixture
def registry() -> Registry:
    """A registry with the installed entry points loaded, private to the test."""
    return Registry()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """An SQLite MLflow store in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
