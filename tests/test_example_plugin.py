"""The example plugin package, installed for real with pip, seen and run by the ``s2r-bench`` console script.

pip installs it into a private folder on ``PYTHONPATH`` (offline: no build
isolation, no dependencies), so the shared environment never changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLE = REPOSITORY / "examples" / "s2r-bench-example-plugin"
DOCS = REPOSITORY / "docs" / "writing-a-plugin.md"
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("s2r-bench"))


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose Python finds the example plugin, installed by pip from a copy of its folder."""
    root = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, root / "source")  # building leaves files behind: not in the repository
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True, timeout=300)
    return {**os.environ, "PYTHONPATH": str(site), "S2R_BENCH_CACHE": str(root / "cache")}


def s2r_bench(env: dict[str, str], *args: str) -> str:
    finished = subprocess.run([CONSOLE_SCRIPT, *args], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def test_plugins_lists_it_with_its_distribution(plugin_env) -> None:
    assert "example          s2r-bench-example-plugin 0.1.0" in s2r_bench(plugin_env, "plugins").splitlines()


def test_list_shows_its_refiner_and_dataset(plugin_env) -> None:
    listing = s2r_bench(plugin_env, "list")
    assert "example-blur" in listing and "example-dots" in listing


def test_its_refiner_runs_on_its_dataset(plugin_env, tmp_path: Path) -> None:
    out = s2r_bench(plugin_env, "run", "--refiner", "example-blur", "--task", "gaze", "--budget", "smoke",
                    "--source", "example-dots", "--target", "example-dots", "--no-progress",
                    "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert out.startswith("example-blur on gaze, seed 0, budget smoke: run ")
    assert "target/angular_error" in out


@pytest.mark.parametrize("path", [Path("pyproject.toml"), *sorted(Path("s2r_bench_example").glob("*.py"))])
def test_the_docs_show_the_example_as_it_is(path: Path) -> None:
    assert (EXAMPLE / path).read_text() in DOCS.read_text(), f"docs/writing-a-plugin.md is out of date for {path}"
