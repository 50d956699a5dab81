"""What every embedded procedural domain promises: determinism per seed, disjoint
splits, and a first ``n`` samples that never depend on how many were asked for."""

from __future__ import annotations

import pytest
import torch

from sim2real_bench.data import RENDERED, RenderedSplits, Samples
from sim2real_bench.plan import RunSpec, resolve
from sim2real_bench.plugins.eyes.synthetic import SynthEyes
from sim2real_bench.plugins.eyes.webcam import WebcamEyes
from sim2real_bench.plugins.hands.kinect import KinectHands
from sim2real_bench.plugins.hands.synthetic import SynthHands
from sim2real_bench.registry import Registry

DOMAINS = [SynthEyes("synth-eyes"), WebcamEyes("webcam-eyes"), SynthHands("synth-hands"), KinectHands("kinect-hands")]
ids = [d.name for d in DOMAINS]


@pytest.mark.parametrize("domain", DOMAINS, ids=ids)
def test_same_seed_gives_same_samples(domain) -> None:
    first = domain.load("train", 100, seed=3)
    RENDERED.clear()  # render it again, not a kept copy
    second = domain.load("train", 100, seed=3)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("domain", DOMAINS, ids=ids)
def test_other_seed_or_split_gives_other_samples(domain) -> None:
    base = domain.load("train", 50, seed=0)
    assert not torch.equal(base.labels, domain.load("train", 50, seed=1).labels)
    assert not torch.equal(base.labels, domain.load("test", 50, seed=0).labels)


@pytest.mark.parametrize("domain", DOMAINS, ids=ids)
def test_first_samples_do_not_depend_on_the_size_asked(domain) -> None:
    # Past one chunk, so the second chunk's draw is exercised too.
    small, large = domain.load("train", 10, seed=0), domain.load("train", domain.chunk_size + 10, seed=0)
    assert torch.equal(small.images, large.images[:10])
    assert torch.equal(small.labels, large.labels[:10])


def test_a_recalibrated_domain_is_a_new_cache_identity_and_its_version_is_in_the_run_config() -> None:
    # Old runs stay interpretable and no cached split of the old renderer is taken for the new one.
    class Recalibrated(SynthEyes):
        version = SynthEyes.version + 1

    assert Recalibrated("synth-eyes").identity("train", 10, 0) != SynthEyes("synth-eyes").identity("train", 10, 0)
    config = resolve(RunSpec(refiner="none", task="gaze", budget="smoke"), Registry()).config()
    assert config["data_versions"] == {"source": SynthEyes.version, "target": WebcamEyes.version,
                                       "target_test": WebcamEyes.version}


def test_a_split_rendered_once_is_copied_not_rendered_again(monkeypatch) -> None:
    domain = SynthEyes("synth-eyes")
    first = domain.load("train", 64, seed=5)
    monkeypatch.setattr(SynthEyes, "generate", lambda *args: pytest.fail("rendered a kept split again"))
    again = domain.load("train", 64, seed=5)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)


def test_a_kept_split_is_not_changed_by_what_a_caller_does_to_its_copy() -> None:
    domain = SynthHands("synth-hands")
    first = domain.load("test", 32, seed=0)
    untouched = first.images.clone()
    first.images.zero_()
    first.labels.zero_()
    assert torch.equal(domain.load("test", 32, seed=0).images, untouched)


def test_kept_splits_stay_within_the_budget_oldest_out_first() -> None:
    splits = RenderedSplits(budget_bytes=3 * 400)  # three blocks of 100 float32 images
    block = Samples(torch.zeros(100, 1, 1, 1))
    for name in "abcd":
        splits.keep((Samples, name), block)
    assert splits.get((Samples, "a")) is None
    assert all(splits.get((Samples, name)) is not None for name in "bcd")
    splits.keep((Samples, "too large"), Samples(torch.zeros(1000, 1, 1, 1)))
    assert splits.get((Samples, "too large")) is None and splits.get((Samples, "b")) is not None
