"""The cache store: damaged or wrong entries are rebuilt with a warning naming them, never trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.registry import Registry
from sim2real_bench.runner import run
from sim2real_bench.store import CacheEntryWarning, Entry, InvalidEntry, Store


def three(state: object) -> torch.Tensor:
    if not isinstance(state, torch.Tensor) or state.shape != (3,):
        raise InvalidEntry(f"holds {getattr(state, 'shape', state)!r}, expected 3 numbers")
    return state


def test_a_missing_entry_is_created_once_and_then_read(tmp_path: Path) -> None:
    entry = Entry(tmp_path / "thing.pt", "thing")
    assert entry.get_or_create(lambda: torch.ones(3), three) == (pytest.approx(torch.ones(3)), False)
    value, cached = entry.get_or_create(lambda: pytest.fail("created twice"), three)
    assert cached and torch.equal(value, torch.ones(3))


def test_a_truncated_entry_is_rebuilt_with_a_warning_naming_it(tmp_path: Path) -> None:
    entry = Entry(tmp_path / "thing.pt", "thing")
    entry.get_or_create(lambda: torch.ones(3), three)
    entry.path.write_bytes(entry.path.read_bytes()[:40])
    with pytest.warns(CacheEntryWarning, match=r"thing\.pt \(thing\) is unreadable.*rebuilding it"):
        value, cached = entry.get_or_create(lambda: torch.full((3,), 2.0), three)
    assert not cached and torch.equal(value, torch.full((3,), 2.0))


def test_an_entry_that_is_not_what_its_key_promises_is_rebuilt(tmp_path: Path) -> None:
    entry = Entry(tmp_path / "thing.pt", "thing")
    entry.get_or_create(lambda: torch.ones(5), lambda state: state)
    with pytest.warns(CacheEntryWarning, match=r"not usable \(holds .*expected 3 numbers\)"):
        value, cached = entry.get_or_create(lambda: torch.ones(3), three)
    assert not cached and value.shape == (3,)


def test_a_cached_refined_set_of_the_wrong_size_is_rebuilt_and_changes_no_figure(tracking_uri: str,
                                                                                  tmp_path: Path) -> None:
    registry, store = Registry(), Store(tmp_path / "cache")
    plan = resolve(RunSpec(refiner="simgan", task="gaze", budget="smoke"), registry)
    first = run(plan, tracking_uri, progress=False, store=store)
    [refined] = (tmp_path / "cache").glob("fits/*/refined-train-*.pt")
    torch.save(torch.zeros(10, 1, 35, 55, dtype=torch.float16), refined)
    with pytest.warns(CacheEntryWarning, match="refined training set.*holds"):
        second = run(plan, tracking_uri, progress=False, store=store)
    figures = [{k: v for k, v in result.metrics.items() if not k.startswith(("time/", "throughput/", "memory/"))}
               for result in (first, second)]
    assert figures[0] == figures[1]
