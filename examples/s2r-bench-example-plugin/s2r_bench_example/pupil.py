"""``example-pupil``: find the pupil centre in a 35x55 eye crop; a new task of its own label kind, in one file.

Everything a new image task needs is here, and no s2r-bench module changes:
the label kind ``pupil-centre`` (columns ``pupil_x``, ``pupil_y``: the centre in
pixels from the crop's top-left corner, x to the right, y down), two domains of
it and the task, registered by this module's own hooks (an entry point of its
own in ``pyproject.toml``). ``s2r-bench refine`` exports it and ``folder:``
reads the export back as ``pupil-centre``, because the task declares the columns.

* ``example-eyes``: a clean render, a dark pupil in a grey iris on a bright
  eye opening; the task's default source.
* ``example-webcam``: the same eyes as a webcam sees them, out of focus
  (a Gaussian blur of sigma 1.5 px over the noisy render); the default target.
  Sharpness is the whole domain gap, and it is what ``example-blur`` fits.

The task is the shared timm regressor (``RegressionTask``) with pixel metrics:
the mean distance between predicted and true centres (primary) and the share of
crops within 2 px.
"""

from __future__ import annotations

from typing import ClassVar

import kornia
import torch
from torch import Tensor

from sim2real_bench import hookimpl
from sim2real_bench.data import ProceduralDataset, Samples
from sim2real_bench.hookspecs import Register
from sim2real_bench.regression import RegressionConfig, RegressionTask
from sim2real_bench.tasks import models  # noqa: F401  (registers s2r_cnn_small with timm)

HEIGHT, WIDTH = 35, 55
LABEL_KIND = "pupil-centre"
LABEL_NAMES = ("pupil_x", "pupil_y")
PUPIL, IRIS = 3.5, 8.0
"""Radii in pixels."""
WITHIN_PIXELS = 2


def disc(xs: Tensor, ys: Tensor, x: Tensor, y: Tensor, radius: float) -> Tensor:
    """A disc of ``radius`` pixels at ``(x, y)`` with an anti-aliased edge: 1 inside, 0 outside."""
    return torch.sigmoid((radius - torch.hypot(xs - x, ys - y)) * 3)


class Eyes(ProceduralDataset):
    """Eye crops with a pupil at a random centre (pupil_x, pupil_y in pixels): 35x55 grayscale, in focus."""

    label_kind: ClassVar[str] = LABEL_KIND
    label_names: ClassVar[tuple[str, ...]] = LABEL_NAMES
    blur: ClassVar[float] = 0.0
    """Gaussian blur of the whole crop, in pixels (0: none)."""
    noise: ClassVar[float] = 0.02
    """Standard deviation of the added pixel noise, on [-1, 1] images."""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, HEIGHT, WIDTH)

    def generate(self, count: int, generator: torch.Generator) -> Samples:
        x = torch.empty(count, 1, 1).uniform_(17.0, WIDTH - 17.0, generator=generator)
        y = torch.empty(count, 1, 1).uniform_(12.0, HEIGHT - 12.0, generator=generator)
        ys = torch.arange(HEIGHT, dtype=torch.float32).view(1, -1, 1) + 0.5
        xs = torch.arange(WIDTH, dtype=torch.float32).view(1, 1, -1) + 0.5
        opening = torch.sigmoid((1 - ((xs - WIDTH / 2) / 25) ** 2 - ((ys - HEIGHT / 2) / 15) ** 2) * 12)
        iris = disc(xs, ys, x, y, IRIS) * opening
        images = -0.2 + 0.9 * opening - 0.9 * iris - 0.6 * disc(xs, ys, x, y, PUPIL)
        images = images.unsqueeze(1) + self.noise * torch.randn(count, 1, HEIGHT, WIDTH, generator=generator)
        if self.blur > 0:
            size, sigma = 2 * round(3 * self.blur) + 1, self.blur
            images = kornia.filters.gaussian_blur2d(images, (size, size), (sigma, sigma), border_type="replicate")
        return Samples(images.clamp(-1, 1), torch.cat([x, y], 1).flatten(1))


class WebcamEyes(Eyes):
    """The same eye crops out of focus, as a webcam sees them (the target domain)."""

    blur: ClassVar[float] = 1.5


class PupilTask(RegressionTask):
    """Regress the pupil centre (x, y in pixels) from 35x55 grayscale eye crops."""

    label_kind: ClassVar[str] = LABEL_KIND
    label_names: ClassVar[tuple[str, ...]] = LABEL_NAMES
    default_source: ClassVar[str] = "example-eyes"
    default_target: ClassVar[str] = "example-webcam"
    primary_metric: ClassVar[str] = "pixel_error"
    headline_metrics: ClassVar[tuple[str, ...]] = (f"within_{WITHIN_PIXELS}px",)
    presets: ClassVar[dict[str, RegressionConfig]] = {
        "smoke": RegressionConfig(model="s2r_cnn_small", epochs=1, batch_size=64, lr=2e-3, log_every=2),
        "quick": RegressionConfig(model="s2r_cnn_small", epochs=4, batch_size=128, lr=2e-3),
        "paper": RegressionConfig(model="s2r_cnn_small", epochs=30, batch_size=512, lr=1e-3),
    }

    def metrics(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        """Distances in pixels between ``(N, 2)`` predicted and true centres: mean, median, share within 2 px (%)."""
        errors = (prediction.double() - target.double()).norm(dim=1)
        return {
            "pixel_error": errors.mean().item(),
            "median_pixel_error": errors.median().item(),
            f"within_{WITHIN_PIXELS}px": (errors <= WITHIN_PIXELS).double().mean().item() * 100,
        }


@hookimpl
def register_datasets(register: Register) -> None:
    """Add ``example-eyes`` and ``example-webcam``."""
    register("example-eyes", Eyes)
    register("example-webcam", WebcamEyes)


@hookimpl
def register_tasks(register: Register) -> None:
    """Add ``example-pupil``."""
    register("example-pupil", PupilTask)
