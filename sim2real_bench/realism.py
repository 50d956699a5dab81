"""How real do refined images look? Two measures that need no downloaded network.

- **Domain-classifier two-sample test** (Lopez-Paz & Oquab, 2017): a small CNN
  is trained to tell candidate images (refined synthetic ones) from target
  images; its accuracy on held-out images of both is the score. 50 % means the
  two sets cannot be told apart; 100 % means every image gives itself away.
- **KID** (Binkowski et al., 2018): the unbiased squared MMD with the cubic
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` between feature vectors of
  the two sets, averaged over random subsets. The features are the last hidden
  layer of the source-trained task regressor (the model ``none`` trains), so
  they are computed inside the harness and are the same for every refiner of a
  (task, seed): the usual Inception features would need a download, and would
  weigh differences the task never looks at.

Both compare refined *source test* images against *target test* images; the
``oracle`` reference scores target *training* images, the ceiling of realism.
Neither looks at a label.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sim2real_bench.device import Compute

CLASSIFIER_STEPS = 200
CLASSIFIER_BATCH = 128
CLASSIFIER_EPOCHS = 8
"""In a run, the classifier sees each of its training images about this many times, and takes at most
:data:`CLASSIFIER_STEPS` steps: ``quick`` and ``paper`` test sets reach the cap, a ``smoke`` run's 256
images need 16 steps instead of 200 passes over the same few images."""
KID_SUBSETS = 20
KID_SUBSET_SIZE = 1000
MIN_IMAGES = 16


def domain_classifier(channels: int) -> nn.Module:
    """Three strided convolutions, global max pooling and a linear logit: trains in seconds per run.

    Max pooling asks "does this image show a tell-tale patch anywhere?": sensor
    artifacts on a hand cover a small part of a depth crop, and averaging them
    with the background left the test at chance on some seeds. Group norm keeps
    a batch's class mix out of the features.
    """
    layers: list[nn.Module] = []
    for width in (16, 32, 64):
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.GroupNorm(4, width), nn.LeakyReLU(0.2)]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(channels, 1))


def halves(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random split of ``range(count)`` into two halves: what a two-sample test trains on and scores on."""
    order = torch.randperm(count, generator=generator)
    return order[: count // 2], order[count // 2 :]


def classifier_accuracy(candidate: Tensor, target: Tensor, compute: Compute, seed: int,
                        steps: int | None = None) -> float:
    """Held-out accuracy (%) of a classifier trained to tell ``candidate`` from ``target`` images.

    Both sets are cut to the same size and split in halves: the classifier
    trains on one half of each and is scored on the other, so chance is 50 %.
    It takes ``steps`` Adam steps of :data:`CLASSIFIER_BATCH` images
    (default :data:`CLASSIFIER_STEPS`).
    """
    count = min(len(candidate), len(target))
    if count < 4:
        raise ValueError(f"the two-sample test needs at least 4 images per set, got {count}")
    generator = torch.Generator().manual_seed(seed)
    candidate_train, candidate_test = halves(count, generator)
    target_train, target_test = halves(count, generator)
    images = torch.cat([candidate[candidate_train], target[target_train]])
    labels = torch.cat([torch.zeros(len(candidate_train)), torch.ones(len(target_train))])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = domain_classifier(candidate.shape[1]).to(compute.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    batches: list[Tensor] = []
    for _ in range(CLASSIFIER_STEPS if steps is None else steps):
        if not batches:
            batches = list(torch.randperm(len(images), generator=generator).split(CLASSIFIER_BATCH))
        index = batches.pop()
        with compute.autocast():
            logits = model(images[index].to(compute.device)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels[index].to(compute.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.inference_mode():
        for images_, label in ((candidate[candidate_test], 0), (target[target_test], 1)):
            for batch in images_.split(1024):
                with compute.autocast():
                    logits = model(batch.to(compute.device)).squeeze(1).float()
                correct += int(((logits > 0).long() == label).sum())
    return 100.0 * correct / (len(candidate_test) + len(target_test))


def _polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def kernel_inception_distance(candidate: Tensor, target: Tensor, seed: int, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE) -> float:
    """KID between two ``(N, D)`` feature sets: the unbiased MMD^2, averaged over random subsets."""
    size = min(subset_size, len(candidate), len(target))
    if size < 2:
        raise ValueError(f"KID needs at least 2 feature vectors per set, got {size}")
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = candidate.double(), target.double()
    estimates = []
    for _ in range(subsets):
        x = x_all[torch.randperm(len(x_all), generator=generator)[:size]]
        y = y_all[torch.randperm(len(y_all), generator=generator)[:size]]
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        off_diagonal = size * (size - 1)
        estimates.append(
            (k_xx.sum() - k_xx.diagonal().sum()) / off_diagonal
            + (k_yy.sum() - k_yy.diagonal().sum()) / off_diagonal
            - 2 * k_xy.mean()
        )
    return float(torch.stack(estimates).mean())


def realism(candidate: Tensor, target: Tensor, features: Callable[[Tensor], Tensor], compute: Compute, seed: int) -> dict[str, float]:
    """Both realism scores of ``candidate`` images against ``target`` images.

    ``features`` maps a block of images to ``(N, D)`` feature vectors (the
    source-trained regressor's :meth:`~sim2real_bench.task.Task.features`).
    Below :data:`MIN_IMAGES` images per set neither score means anything, and
    none is returned (tiny fixtures of real datasets). The classifier trains for
    :data:`CLASSIFIER_EPOCHS` passes over its half of the images, at most
    :data:`CLASSIFIER_STEPS` steps.
    """
    count = min(len(candidate), len(target))
    if count < MIN_IMAGES:
        return {}
    steps = min(CLASSIFIER_STEPS, math.ceil(CLASSIFIER_EPOCHS * 2 * (count // 2) / CLASSIFIER_BATCH))
    return {
        "realism/classifier_accuracy": classifier_accuracy(candidate, target, compute, seed, steps),
        "realism/kid": kernel_inception_distance(features(candidate), features(target), seed),
    }
