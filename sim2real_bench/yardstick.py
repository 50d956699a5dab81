"""``s2r-bench realism``: how far one set of images is from real captures, by measures that neither side trained.

The in-run realism scores (:mod:`sim2real_bench.realism`) judge refined images
inside a run, with the run's own source-trained regressor as KID's feature
extractor. This is the check anyone with real captures can run on any image
set, a domain (``webcam-eyes``), a refiner's export (``folder:refined``) or
other real crops, before or after a run:

* **Both sides are histogram-equalized first** (``kornia.enhance.equalize``, the
  gaze task's input space), so global intensity is not what is compared; what
  is left is structure and texture.
* **Same shape.** Real images of another height and width are resized to the
  candidate's once (``torch.nn.functional.interpolate``, bilinear with
  ``antialias=True``, the filter PIL's bilinear resize applies), said on
  stderr; other channels, or an aspect ratio more than
  :data:`~sim2real_bench.data.ASPECT_TOLERANCE` apart (resizing would squash the eye), are a
  :class:`~sim2real_bench.errors.DataError` saying how to frame the real side
  (``folder:PATH?crop=...&channels=1``).
* **Domain-classifier two-sample test**: the held-out accuracy (%) of
  :func:`~sim2real_bench.realism.classifier_accuracy` (50: indistinguishable),
  mean and standard error over seeds; each seed draws its own images (for
  datasets whose split order depends on the seed), classifier, and halves. The
  candidate side loads with a seed derived from the real side's, so a
  procedural domain against itself is two independent draws (about 50). Images
  on both sides at once (a folder against itself) push the test *below* 50: the
  classifier remembers a training image and misjudges its twin in the other
  side's held-out half; such overlap is counted and said in the notes.
* **KID** (:func:`~sim2real_bench.realism.kernel_inception_distance`) in the
  features of a fixed random CNN (:func:`random_features`): its weights come
  from a constant seed, not from training on either side, so it cannot have
  learned to ignore what gives one side away, it needs no download, and it is
  the same network for every call, so figures compare across commands and
  machines. Random convolutional features are a generic multi-scale
  texture and layout descriptor; a pretrained network would weigh natural-image
  semantics an eye crop does not have.
* **Layout test** (:func:`layout_accuracy`): the same held-out accuracy for a
  logistic regression that sees only each image's :data:`LAYOUT_BLOCKS` block
  means, where the eye is and how bright each part of the crop is. When it is
  as high as the classifier's, the two sides differ in coarse layout, which
  a texture or camera model alone will not fix; the block map of
  :func:`layout_difference` (``layout.png``) says where.
* **Image statistics**, side by side, of the equalized images on a 0..1 scale
  (:func:`image_statistics`): intensity mean, spread and histogram; the slope
  of the radially averaged power spectrum; mean absolute vertical and
  horizontal gradients (lids and creases make real eyes' vertical gradient
  the stronger); and the dark blob, the largest connected region of pixels
  below :data:`DARK_LEVEL` (after equalization about that share of pixels is
  dark, so the blob's size and place, not the dark share, are what differ:
  one iris or scattered speckle); and the darkest disc (:func:`dark_discs`),
  an iris detector's centre and radius with their spreads, where the blob
  would also take in the lashes and lid shadow joined to the iris.

**A real reference** (``--reference``): other real captures (other people, another
session) measured against the same real images the same way, framed to the
candidate's size. The two-sample test tells one person's crops from another's
(two halves of the MPIIGaze crops here, 750 files each, are told apart at 98 %),
so a candidate's figure reads best beside what real captures of other people score.

With an output folder it writes ``realism.json`` (every figure, per seed),
``realism.md``, ``samples.png`` (candidate left, real right),
``statistics.png`` (histograms, spectra, gradients) and ``layout.png``.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import kornia
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from sim2real_bench.data import ASPECT_TOLERANCE, Dataset, aspects_match, framed, stable_seed
from sim2real_bench.device import Compute
from sim2real_bench.errors import ConfigError, DataError
from sim2real_bench.images import grid
from sim2real_bench.realism import (
    MIN_IMAGES,
    classifier_accuracy,
    halves,
    kernel_inception_distance,
)

DEFAULT_COUNT = 2000
"""Images per side at most (the real side's split may hold fewer; both are cut to the smaller)."""
DARK_LEVEL = 0.15
"""Equalized intensity (0..1) below which a pixel is dark: the iris, pupil and lashes of an eye crop."""
HISTOGRAM_BINS = 16
SPECTRUM_BINS = 8
FEATURE_SEED = stable_seed("yardstick", "random-features", 1)
"""The constant the feature network's weights are drawn from; change it and every KID figure changes."""
FEATURE_WIDTHS = (32, 64, 128)
EXAMPLES = 48
"""Images per side kept for the sample grid."""
EQUALIZED = "both sides histogram-equalized (kornia.enhance.equalize) before every measure"


def equalize(images: Tensor) -> Tensor:
    """``(N, C, H, W)`` images in [-1, 1], histogram-equalized per image and channel, back in [-1, 1]."""
    return torch.cat([kornia.enhance.equalize((block.float() + 1) / 2) * 2 - 1 for block in images.split(4096)])


class RandomFeatures(nn.Module):
    """Three 3x3 convolutions (the last two strided) with fixed random weights; see :func:`random_features`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(FEATURE_SEED)
        layers = []
        for index, width in enumerate(FEATURE_WIDTHS):
            conv = nn.Conv2d(channels, width, 3, stride=1 if index == 0 else 2, padding=1)
            with torch.no_grad():
                fan_in = channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
                conv.bias.zero_()
            layers.append(conv)
            channels = width
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, C, H, W)`` in [-1, 1] to ``(N, D)``: per-map mean and std at each scale, the last maps on a 2x3 grid."""
        parts = []
        x = images
        for conv in self.layers:
            x = F.leaky_relu(conv(x), 0.2)
            parts += [x.mean((2, 3)), x.std((2, 3))]
        parts.append(F.adaptive_avg_pool2d(x, (2, 3)).flatten(1))
        return torch.cat(parts, 1)


def random_features(channels: int) -> RandomFeatures:
    """The fixed feature network of KID here, trained on nothing.

    Weights are He-normal draws from :data:`FEATURE_SEED` (the same on every
    machine), biases zero. Features: each map's spatial mean and standard
    deviation after each of the three layers (texture at three scales) and the
    last layer's maps averaged on a 2x3 grid (coarse layout: where the dark iris
    and the bright sclera sit), ``2 * (32 + 64 + 128) + 128 * 6 = 1,216`` values.
    """
    return RandomFeatures(channels).eval()


@torch.inference_mode()
def features_of(images: Tensor, compute: Compute) -> Tensor:
    """:func:`random_features` of ``(N, C, H, W)`` images, ``(N, D)`` on the CPU, fp32."""
    network = random_features(images.shape[1]).to(compute.device)
    return torch.cat([network(batch.to(compute.device)).cpu() for batch in images.split(512)])


LAYOUT_BLOCKS = (5, 8)
"""Rows and columns of the block grid the layout test sees: blocks of about 7x7 pixels of a 35x55 crop."""
LAYOUT_L2 = 1e-3
"""Weight decay of the layout test's logistic regression, on standardized block means."""


def block_means(images: Tensor) -> Tensor:
    """``(N, rows * columns)`` mean intensity of each :data:`LAYOUT_BLOCKS` block, channels averaged."""
    return F.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), LAYOUT_BLOCKS).flatten(1).double()


def layout_accuracy(candidate: Tensor, target: Tensor, seed: int) -> float:
    """Held-out accuracy (%) of a logistic regression telling ``candidate`` from ``target`` by block means alone.

    Halves as in :func:`~sim2real_bench.realism.classifier_accuracy`; the
    regression is fitted to convergence (L-BFGS), so the figure depends on the
    images and the seed's halves only. A linear model of coarse intensities is a
    weak judge: whatever it tells apart, a calibration must fix before texture matters.
    """
    count = min(len(candidate), len(target))
    generator = torch.Generator().manual_seed(seed)
    candidate_train, candidate_test = halves(count, generator)
    target_train, target_test = halves(count, generator)
    sides = block_means(candidate[:count]), block_means(target[:count])
    train = torch.cat([sides[0][candidate_train], sides[1][target_train]])
    test = torch.cat([sides[0][candidate_test], sides[1][target_test]])
    labels = torch.cat([torch.zeros(len(candidate_train)), torch.ones(len(target_train))]).double()
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    weights = torch.zeros(train.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimizer.zero_grad()
        value = F.binary_cross_entropy_with_logits(train @ weights[1:] + weights[0], labels) \
            + LAYOUT_L2 * weights[1:].square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():
        predicted = (test @ weights[1:] + weights[0]) > 0
    truth = torch.cat([torch.zeros(len(candidate_test)), torch.ones(len(target_test))]).bool()
    return 100.0 * float((predicted == truth).double().mean())


def layout_difference(candidate: Tensor, target: Tensor) -> list[list[float]]:
    """Per block, ``candidate``'s mean intensity minus ``target``'s in pooled standard deviations (rows of blocks)."""
    a, b = block_means(candidate), block_means(target)
    pooled = ((a.var(0) + b.var(0)) / 2).sqrt().clamp_min(1e-6)
    difference = ((a.mean(0) - b.mean(0)) / pooled).view(LAYOUT_BLOCKS)
    return [[round(float(value), 3) for value in row] for row in difference]


@dataclass(frozen=True)
class ImageStats:
    """Statistics of equalized images on a 0..1 scale (grayscale: the channel mean)."""

    mean: float
    std: float
    histogram: list[float]
    """Share of pixels (%) in each of :data:`HISTOGRAM_BINS` equal bins of 0..1."""
    spectrum_slope: float
    """Slope of log power against log frequency of the radially averaged power spectrum, from 2 cycles per crop
    to 0.5 cycles per pixel, of mean-free images under a Hann window (natural images: about -2). The window keeps
    the jump between opposite edges out of the spectrum; without it real MPIIGaze crops measure about -3.4
    (``shared/facts.md``: -3.3), with it -4.0 at their 60x36, and -4.5 once resized to 55x35 (the antialiasing
    filter removes the finest detail): compare slopes of images at their own size, or both resized."""
    spectrum: list[float]
    """log10 of the mean radial power in each frequency bin."""
    frequencies: list[float]
    """Centre of each bin, in cycles per pixel."""
    gradient_y: float
    """Mean |d/dy| between vertical neighbours."""
    gradient_x: float
    """Mean |d/dx| between horizontal neighbours."""
    dark_blob_area: float
    """Mean area (% of the image) of the largest 8-connected region below :data:`DARK_LEVEL`."""
    dark_blob_share: float
    """Mean share (%) of the dark pixels that lie in that largest region (100: one blob, low: speckle)."""
    dark_blob_x: float
    """Mean centre of the largest dark region, as a fraction of the width (0 left, 1 right)."""
    dark_blob_y: float
    """Mean centre of the largest dark region, as a fraction of the height (0 top, 1 bottom)."""
    disc_x: float
    """Mean centre x (pixels from the left edge) of :func:`dark_discs`' disc: the iris of an eye crop."""
    disc_y: float
    """Mean centre y (pixels from the top edge) of that disc."""
    disc_radius: float
    """Mean radius (pixels) of that disc."""
    disc_x_std: float
    disc_y_std: float
    disc_radius_std: float


def _spectrum(gray: Tensor) -> tuple[list[float], list[float], float]:
    """Radially averaged power of mean-free, Hann-windowed images; bin centres; the fitted log-log slope."""
    _, height, width = gray.shape
    window = torch.outer(torch.hann_window(height, periodic=False, dtype=torch.float64),
                         torch.hann_window(width, periodic=False, dtype=torch.float64))
    centred = (gray.double() - gray.double().mean((1, 2), keepdim=True)) * window
    power = torch.fft.fft2(centred).abs().square().mean(0)
    fy = torch.fft.fftfreq(height, dtype=torch.float64).abs().view(-1, 1)
    fx = torch.fft.fftfreq(width, dtype=torch.float64).abs().view(1, -1)
    radius = (fy.square() + fx.square()).sqrt()
    lowest = 2.0 / min(height, width)  # below two cycles per crop the window dominates
    edges = torch.logspace(math.log10(lowest), math.log10(0.5), SPECTRUM_BINS + 1, dtype=torch.float64)
    centres, levels = [], []
    for low, high in itertools.pairwise(edges):
        inside = (radius >= low) & (radius < high)
        if inside.any():
            centres.append(float((low * high).sqrt()))
            levels.append(float(power[inside].mean().log10()))
    slope = float(np.polyfit(np.log10(centres), levels, 1)[0]) if len(centres) > 1 else math.nan
    return levels, centres, slope


def _dark_blobs(gray: np.ndarray) -> tuple[float, float, float, float]:
    """Mean area %, share of dark pixels %, centre x and y of each image's largest dark region."""
    areas, shares, xs, ys = [], [], [], []
    structure = np.ones((3, 3), dtype=bool)
    height, width = gray.shape[1:]
    for image in gray:
        dark = image < DARK_LEVEL
        labels, count = scipy.ndimage.label(dark, structure)
        if count == 0:
            areas.append(0.0)
            shares.append(0.0)
            continue
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(sizes.argmax()) + 1
        rows, columns = np.nonzero(labels == largest)
        areas.append(100.0 * sizes.max() / dark.size)
        shares.append(100.0 * sizes.max() / dark.sum())
        xs.append((columns.mean() + 0.5) / width)
        ys.append((rows.mean() + 0.5) / height)
    centre = (float(np.mean(xs)), float(np.mean(ys))) if xs else (math.nan, math.nan)
    return float(np.mean(areas)), float(np.mean(shares)), *centre


DISC_RADII = (0.14, 0.38)
"""Radii :func:`dark_discs` tries, as fractions of the image height (5-13 pixels of a 35-row eye crop)."""
DISC_HEIGHT = 35
"""Rows :func:`dark_discs` searches at: taller images are resized to it first, which bounds its cost."""


def _disc_and_ring(radius: float) -> tuple[Tensor, Tensor]:
    """Mean filters of a disc and of the ring 1.15-1.6 radii around it, less the ring's top (the lid's side)."""
    reach = int(1.6 * radius + 2)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    dy, dx = offsets.view(-1, 1), offsets.view(1, -1)
    distance = (dx.square() + dy.square()).sqrt()
    disc = (distance <= radius).float()
    ring = ((distance > 1.15 * radius) & (distance <= 1.6 * radius) & (dy >= -0.3 * radius)).float()
    return disc / disc.sum(), ring / ring.sum()


def dark_discs(gray: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image of ``(N, H, W)`` gray images in [0, 1], the disc darkest against the ring below and beside it.

    An iris detector by matched filters: for each radius of :data:`DISC_RADII`, the
    ring's mean less the disc's, at every centre at least 0.23 of the height and
    0.15 of the width from the edges; the best centre and radius win. A 3x3 grey
    opening first removes glints. The top of the ring is left out because the
    upper lid and lashes join the iris there in real crops; so where a lid covers
    the iris's top, the centre found lies a little below the true one, alike on
    both sides of a comparison. Returns centre x, centre y and radius in the input's
    pixels, ``(N,)`` each.
    """
    scale = min(1.0, DISC_HEIGHT / gray.shape[1])
    if scale < 1:
        gray = F.interpolate(gray.unsqueeze(1), scale_factor=scale, mode="area").squeeze(1)
    count, height, width = gray.shape
    opened = F.max_pool2d(-F.max_pool2d(-gray.unsqueeze(1), 3, 1, 1), 3, 1, 1)  # erode, then dilate
    allowed = torch.full((height, width), -math.inf)
    allowed[round(0.23 * height) : round(0.8 * height), round(0.15 * width) : round(0.85 * width)] = 0
    best = torch.full((count,), -math.inf)
    x, y, radius = torch.zeros(count), torch.zeros(count), torch.zeros(count)
    low, high = (max(1.5, round(2 * fraction * height) / 2) for fraction in DISC_RADII)
    for trial in torch.arange(low, high + 0.25, 0.5).tolist():
        disc, ring = _disc_and_ring(trial)
        reach = disc.shape[-1] // 2
        padded = F.pad(opened, (reach,) * 4, mode="replicate")
        contrast = F.conv2d(padded, (ring - disc)[None, None])[:, 0] + allowed
        score, where = contrast.flatten(1).max(1)
        better = score > best
        best = torch.where(better, score, best)
        x = torch.where(better, (where % width).float() + 0.5, x)
        y = torch.where(better, torch.div(where, width, rounding_mode="floor").float() + 0.5, y)
        radius = torch.where(better, torch.tensor(trial), radius)
    return x / scale, y / scale, radius / scale


def image_statistics(images: Tensor) -> ImageStats:
    """:class:`ImageStats` of ``(N, C, H, W)`` images in [-1, 1] (already equalized, as :func:`measure` passes them)."""
    gray = ((images.float().mean(1) + 1) / 2).clamp(0, 1)
    histogram = torch.histc(gray, HISTOGRAM_BINS, 0, 1) / gray.numel() * 100
    spectrum, frequencies, slope = _spectrum(gray)
    area, share, blob_x, blob_y = _dark_blobs(gray.numpy())
    disc_x, disc_y, disc_radius = dark_discs(gray)
    return ImageStats(
        mean=float(gray.mean()), std=float(gray.std()), histogram=[round(float(h), 3) for h in histogram],
        spectrum_slope=slope, spectrum=spectrum, frequencies=frequencies,
        gradient_y=float((gray[:, 1:] - gray[:, :-1]).abs().mean()),
        gradient_x=float((gray[:, :, 1:] - gray[:, :, :-1]).abs().mean()),
        dark_blob_area=area, dark_blob_share=share, dark_blob_x=blob_x, dark_blob_y=blob_y,
        disc_x=float(disc_x.mean()), disc_y=float(disc_y.mean()), disc_radius=float(disc_radius.mean()),
        disc_x_std=float(disc_x.std(correction=0)), disc_y_std=float(disc_y.std(correction=0)),
        disc_radius_std=float(disc_radius.std(correction=0)),
    )


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``nan`` for a single value)."""
    array = np.asarray(values, dtype=float)
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), se


def _cell(values: Sequence[float], decimals: int) -> str:
    mean, se = mean_se(values)
    return f"{mean:.{decimals}f}" + ("" if math.isnan(se) else f" ± {se:.{decimals}f}")


def _disc_centre(stats: ImageStats) -> str:
    return f"{stats.disc_x:.1f} ({stats.disc_x_std:.1f}) / {stats.disc_y:.1f} ({stats.disc_y_std:.1f})"


def _nan_free(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Comparison:
    """What ``s2r-bench realism`` measured: one candidate image set against real captures."""

    candidate: str
    real: str
    split: str
    count: int
    """Images per side, after cutting both to the smaller."""
    image_shape: tuple[int, int, int]
    seeds: list[int]
    accuracy: list[float]
    """Two-sample test held-out accuracy (%) per seed."""
    kid: list[float]
    """KID in :func:`random_features` per seed."""
    layout: list[float]
    """Layout test held-out accuracy (%) per seed."""
    layout_difference: list[list[float]]
    """:func:`layout_difference` of the first seed's images."""
    candidate_stats: ImageStats
    real_stats: ImageStats
    """Statistics of the first seed's images of each side."""
    notes: list[str]
    examples: tuple[Tensor, Tensor] = field(repr=False, compare=False, default=(torch.empty(0), torch.empty(0)))
    """The first equalized images of each side, for the sample grid."""
    reference: Comparison | None = None
    """Other real captures against the same real images, measured the same way: what real data scores."""

    def columns(self) -> list[str]:
        """The tables' column heads after ``measure``."""
        return ["candidate", *(["reference"] if self.reference is not None else []), "real"]

    def rows(self) -> list[tuple[str, ...]]:
        """``(measure, candidate, [reference,] real)`` rows of the printed and markdown tables.

        The first three measures score a pair, so they sit in the judged side's column.
        """
        judged = [self] if self.reference is None else [self, self.reference]
        pair = [[*cells, ""] for cells in zip(*(_pair_cells(side) for side in judged))]
        stats = zip(*(_statistics_cells(side.candidate_stats) for side in judged), _statistics_cells(self.real_stats))
        return [(name, *cells) for name, cells in zip(PAIR_MEASURES + STATISTICS_MEASURES, [*pair, *stats])]

    def header(self) -> str:
        """One line: what was compared with what, on how many images."""
        channels, height, width = self.image_shape
        line = (f"{self.candidate} against real {self.real}: {self.split} split, {self.count} images per side of "
                f"{width}x{height}x{channels}, seeds {','.join(map(str, self.seeds))}; {EQUALIZED}")
        if self.reference is not None:
            line += f"; reference: real {self.reference.candidate}, {self.reference.count} images per side"
        return line

    def all_notes(self) -> list[str]:
        """The notes, then the reference's that say something new, marked as such."""
        reference_notes = self.reference.notes if self.reference is not None else []
        return [*self.notes, *(f"reference: {note}" for note in reference_notes if note not in self.notes)]

    def table(self) -> str:
        """The printed report."""
        rows = [("measure", *self.columns()), *self.rows()]
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines = [self.header(), *self.all_notes()]
        lines += [("  " + "  ".join(text.ljust(widths[column]) for column, text in enumerate(row))).rstrip()
                  for row in rows]
        return "\n".join(lines)

    def markdown(self, pictures: Sequence[str] = ()) -> str:
        """The report as markdown, with links to ``pictures`` written beside it."""
        lines = [f"# Realism of `{self.candidate}` against `{self.real}`", "", self.header() + ".", ""]
        lines += [f"- {note}" for note in self.all_notes()]
        heads = ["measure", *self.columns()]
        lines += ["", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows()]
        lines += ["", *(f"{side}: per seed {_per_seed(comparison)}." for side, comparison in
                        zip(self.columns(), [self, self.reference]) if comparison is not None), ""]
        lines += [f"![{name}]({name})" for name in pictures]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        """Every figure, JSON-serializable."""
        accuracy, accuracy_se = mean_se(self.accuracy)
        kid, kid_se = mean_se(self.kid)
        layout, layout_se = mean_se(self.layout)
        return {
            "candidate": self.candidate, "real": self.real, "split": self.split, "count": self.count,
            "image_shape": list(self.image_shape), "seeds": self.seeds, "equalized": True,
            "classifier_accuracy": {"mean": accuracy, "se": _nan_free(accuracy_se), "per_seed": self.accuracy},
            "kid": {"mean": kid, "se": _nan_free(kid_se), "per_seed": self.kid,
                    "features": f"random CNN {FEATURE_WIDTHS}, seed {FEATURE_SEED}"},
            "layout_accuracy": {"mean": layout, "se": _nan_free(layout_se), "per_seed": self.layout,
                                "blocks": list(LAYOUT_BLOCKS)},
            "layout_difference": self.layout_difference,
            "statistics": {"candidate": asdict(self.candidate_stats), "real": asdict(self.real_stats)},
            "notes": self.notes,
            **({"reference": self.reference.to_json()} if self.reference is not None else {}),
        }


PAIR_MEASURES = (
    "two-sample test accuracy, % (50: indistinguishable)",
    "KID, random-CNN features (0: same distribution)",
    f"layout test accuracy, % ({LAYOUT_BLOCKS[0]}x{LAYOUT_BLOCKS[1]} block means, linear)",
)
STATISTICS_MEASURES = (
    "intensity mean / std",
    "power-spectrum slope (log-log)",
    "mean |d/dy| / |d/dx|",
    "gradient ratio dy/dx",
    f"dark blob (< {DARK_LEVEL}) area, % of image",
    "dark pixels in that blob, %",
    "dark blob centre x / y (fraction)",
    "darkest disc (iris) centre x / y, px (std)",
    "darkest disc radius, px (std)",
)


def _pair_cells(comparison: Comparison) -> list[str]:
    """The cells of :data:`PAIR_MEASURES`: mean ± s.e. over seeds."""
    return [_cell(comparison.accuracy, 1), _cell(comparison.kid, 4), _cell(comparison.layout, 1)]


def _statistics_cells(stats: ImageStats) -> list[str]:
    """The cells of :data:`STATISTICS_MEASURES` for one side's images."""
    return [
        f"{stats.mean:.3f} / {stats.std:.3f}",
        f"{stats.spectrum_slope:.2f}",
        f"{stats.gradient_y:.4f} / {stats.gradient_x:.4f}",
        f"{stats.gradient_y / stats.gradient_x:.2f}",
        f"{stats.dark_blob_area:.1f}",
        f"{stats.dark_blob_share:.1f}",
        f"{stats.dark_blob_x:.2f} / {stats.dark_blob_y:.2f}",
        _disc_centre(stats),
        f"{stats.disc_radius:.1f} ({stats.disc_radius_std:.1f})",
    ]


def _per_seed(comparison: Comparison) -> str:
    return (f"accuracy {', '.join(f'{v:.1f}' for v in comparison.accuracy)}; "
            f"KID {', '.join(f'{v:.4f}' for v in comparison.kid)}; "
            f"layout test {', '.join(f'{v:.1f}' for v in comparison.layout)}")


def _matched(candidate: Dataset, real: Dataset) -> tuple[int, int] | None:
    """The ``(H, W)`` to resize real images to, ``None`` when they already match; mismatches a resize cannot fix raise."""
    (c_channels, c_height, c_width), (r_channels, r_height, r_width) = candidate.image_shape, real.image_shape
    if c_channels != r_channels:
        fix = "?channels=1" if c_channels == 1 else f"?channels={c_channels}"
        raise DataError(f"{candidate.spec} images have {c_channels} channel(s) but real {real.spec} images have "
                        f"{r_channels}; convert the real side, e.g. folder:PATH{fix}")
    if (c_height, c_width) == (r_height, r_width):
        return None
    aspect, real_aspect = c_width / c_height, r_width / r_height
    if not aspects_match(candidate.image_shape, real.image_shape):
        raise DataError(f"{candidate.spec} images are {c_width}x{c_height} but real {real.spec} images are "
                        f"{r_width}x{r_height} (W x H): aspect ratios {aspect:.2f} and {real_aspect:.2f} differ by "
                        f"more than {ASPECT_TOLERANCE:.0%}, so resizing would distort them; frame the real side "
                        f"first, e.g. folder:PATH?crop=LEFT,TOP,RIGHT,BOTTOM&size={c_width}x{c_height}")
    return c_height, c_width


def resize(images: Tensor, height: int, width: int) -> Tensor:
    """``(N, C, H, W)`` images resized to ``height x width``: bilinear, antialiased (PIL's filter), clamped to [-1, 1]."""
    return F.interpolate(images.float(), size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True).clamp(-1, 1)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def framed_like(candidate: Dataset, reference: Dataset) -> Dataset:
    """``reference`` at ``candidate``'s image size, so both are judged against the real side at one scale."""
    _matched(candidate, reference)  # other channels or another aspect ratio: refused with the framing to use
    resized = framed(reference, candidate.image_shape)
    if resized.image_shape != candidate.image_shape:
        (_, height, width), (_, wanted_height, wanted_width) = reference.image_shape, candidate.image_shape
        target = f"{wanted_width}x{wanted_height}"
        raise DataError(f"reference {reference.spec} images are {width}x{height} and cannot be resized to the "
                        f"candidate's {target}; give it that size, e.g. folder:PATH?size={target}")
    return resized


def measure(candidate: Dataset, real: Dataset, seeds: Sequence[int], compute: Compute, count: int = DEFAULT_COUNT,
            split: str = "train", echo: Callable[[str], None] = _stderr,
            reference: Dataset | None = None) -> Comparison:
    """Compare ``candidate`` images with ``real`` captures: two-sample test and KID per seed, image statistics.

    Args:
        candidate: the image set judged (a domain, an export, other real crops).
        real: the real captures (an unlabeled ``folder:`` does).
        seeds: one two-sample test and KID estimate per seed; each seed loads its own draw of both sides.
        compute: where the classifier and the feature network run (the CLI asks for fp32, so figures do not
            depend on a CPU's bf16 support).
        count: images per side at most; both sides are cut to the smaller.
        split: which split of both datasets to load.
        echo: where notes (a resize) go as they happen.
        reference: other real captures, judged against the same ``real`` images by the same measures (framed to
            the candidate's size by :func:`framed_like`), so the candidate's figures read beside real data's.

    Returns:
        A :class:`Comparison`; labels are never loaded into it.
    """
    if count < MIN_IMAGES:
        raise ConfigError(f"--count {count} is too few for a two-sample test; use at least {MIN_IMAGES}")
    if not seeds:
        raise ConfigError("no seeds given; pass e.g. --seeds 0,1,2")
    size = _matched(candidate, real)
    notes = []
    if size is not None:
        _, height, width = real.image_shape
        notes.append(f"real images resized from {width}x{height} to the candidate's {size[1]}x{size[0]} "
                     "(bilinear, antialiased)")
        echo(f"s2r-bench: {real.spec}: {notes[-1]}")
    accuracy, kid, layout = [], [], []
    difference: list[list[float]] = []
    stats: tuple[ImageStats, ImageStats] | None = None
    examples = (torch.empty(0), torch.empty(0))
    used = 0
    for seed in seeds:
        real_images = real.load(split, count, seed).images
        if size is not None:
            real_images = resize(real_images, *size)
        candidate_images = candidate.load(split, len(real_images), stable_seed("yardstick-candidate", seed)).images
        used = min(len(real_images), len(candidate_images))
        if used < MIN_IMAGES:
            raise DataError(f"only {used} images to compare ({candidate.spec}: {len(candidate_images)}, {real.spec}: "
                            f"{len(real_images)} in the {split} split); the test needs at least {MIN_IMAGES} per side")
        sides = equalize(candidate_images[:used]), equalize(real_images[:used])
        shared = _shared_images(*sides)
        if shared and not any("on both sides" in note for note in notes):
            notes.append(f"seed {seed}: {shared} of {used} images are on both sides, which pushes the two-sample "
                         "test below 50; compare disjoint sets (another split, or another part of the folder)")
            echo(f"s2r-bench: {notes[-1]}")
        accuracy.append(classifier_accuracy(*sides, compute, seed))
        kid.append(kernel_inception_distance(features_of(sides[0], compute), features_of(sides[1], compute), seed))
        layout.append(layout_accuracy(*sides, seed))
        if stats is None:
            stats = image_statistics(sides[0]), image_statistics(sides[1])
            difference = layout_difference(*sides)
            examples = sides[0][:EXAMPLES].clone(), sides[1][:EXAMPLES].clone()
    assert stats is not None
    judged_reference = None if reference is None else measure(framed_like(candidate, reference), real, seeds, compute,
                                                               count, split, echo)
    return Comparison(candidate.spec, real.spec, split, used, tuple(candidate.image_shape), list(seeds), accuracy,
                      kid, layout, difference, stats[0], stats[1], notes, examples, judged_reference)


def _shared_images(candidate: Tensor, real: Tensor) -> int:
    """How many ``candidate`` images also appear, bit for bit, among the ``real`` ones."""
    real_keys = {image.numpy().tobytes() for image in real}
    return sum(image.numpy().tobytes() in real_keys for image in candidate)


def _sample_grid(comparison: Comparison, path: Path, columns: int = 6) -> None:
    """Candidate images left, real images right, a white gap between."""
    halves = []
    for images in comparison.examples:
        shown = images[: len(images) // columns * columns] if len(images) >= columns else images
        per_row = min(columns, len(shown))
        halves.append(grid([shown[start : start + per_row] for start in range(0, len(shown), per_row)], scale=2))
    height = max(half.shape[0] for half in halves)
    padded = [np.pad(half, [(0, height - half.shape[0])] + [(0, 0)] * (half.ndim - 1)) for half in halves]
    gap = np.full((height, 12, *padded[0].shape[2:]), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([padded[0], gap, padded[1]], 1)).save(path, optimize=True)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported when a figure is drawn (the CLI starts without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _statistics_figure(comparison: Comparison, path: Path) -> None:
    plt = _pyplot()
    sides = (("candidate", comparison.candidate_stats), ("real", comparison.real_stats))
    figure, (histogram, spectrum, gradients) = plt.subplots(1, 3, figsize=(12, 3.4))
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    for name, stats in sides:
        histogram.stairs(stats.histogram, edges, label=name)
        spectrum.plot(stats.frequencies, stats.spectrum, marker="o", label=f"{name} (slope {stats.spectrum_slope:.2f})")
    histogram.set(title="intensity after equalization", xlabel="intensity", ylabel="% of pixels")
    spectrum.set(title="radial power spectrum", xlabel="cycles / pixel", ylabel="log10 power", xscale="log")
    positions = np.arange(2)
    for offset, (name, stats) in zip((-0.2, 0.2), sides):
        gradients.bar(positions + offset, [stats.gradient_y, stats.gradient_x], 0.4, label=name)
    gradients.set(title="mean gradient", xticks=positions, xticklabels=["|d/dy|", "|d/dx|"])
    for axes in (histogram, spectrum, gradients):
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _layout_figure(comparison: Comparison, path: Path) -> None:
    plt = _pyplot()
    difference = np.asarray(comparison.layout_difference)
    limit = max(1.0, float(np.abs(difference).max()))
    figure, axes = plt.subplots(figsize=(5.5, 3.2))
    shown = axes.imshow(difference, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (row, column), value in np.ndenumerate(difference):
        axes.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=7)
    axes.set(title="block mean, candidate - real (pooled std)", xticks=[], yticks=[])
    figure.colorbar(shown, ax=axes, shrink=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write(comparison: Comparison, out: Path) -> list[Path]:
    """Write ``realism.json``, ``realism.md`` and the pictures (samples, statistics, layout) into ``out``; the paths."""
    out.mkdir(exist_ok=True)
    pictures = out / "samples.png", out / "statistics.png", out / "layout.png"
    _sample_grid(comparison, pictures[0])
    _statistics_figure(comparison, pictures[1])
    _layout_figure(comparison, pictures[2])
    report, figures = out / "realism.md", out / "realism.json"
    report.write_text(comparison.markdown([picture.name for picture in pictures]))
    figures.write_text(json.dumps(comparison.to_json(), indent=1) + "\n")
    return [figures, report, *pictures]
