"""Eye geometry shared by both eye domains: what the labels are about.

Both domains draw geometry from this one sampler, so the gap between them is in
image formation only, never in the labels.

Gaze convention (radians): pitch > 0 looks up, yaw > 0 looks toward the image's
right; the unit gaze vector is ``x = cos(p) sin(y)``, ``y = sin(p)``,
``z = cos(p) cos(y)`` with x to the image right, y up and z toward the camera.
The eyeball is projected orthographically (an eye crop spans a few degrees of view).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

PITCH_RANGE = (-0.35, 0.35)
"""Gaze pitch range in radians (about +/-20 degrees), sampled uniformly."""
YAW_RANGE = (-0.5, 0.5)
"""Gaze yaw range in radians (about +/-29 degrees), sampled uniformly."""


@dataclass(frozen=True)
class EyeGeometry:
    """Per-image shape parameters, each a tensor of shape ``(N, 1, 1)`` (pixels, radians)."""

    pitch: Tensor
    yaw: Tensor
    center_x: Tensor
    """Midpoint between the eye corners."""
    center_y: Tensor
    half_width: Tensor
    """Half the width of the eye opening (corner to corner)."""
    eyeball_radius: Tensor
    iris_radius: Tensor
    pupil_radius: Tensor
    upper_lid: Tensor
    """Height of the upper lid's apex above the corner line, at zero pitch."""
    lower_lid: Tensor
    """Depth of the lower lid's lowest point below the corner line, at zero pitch."""
    tilt: Tensor
    """Rotation of the eye corners' axis (head roll)."""

    @property
    def labels(self) -> Tensor:
        """``(N, 2)`` gaze labels: pitch, yaw."""
        return torch.cat([self.pitch, self.yaw], dim=1).flatten(1)

    def __len__(self) -> int:
        return self.pitch.shape[0]

    def __getitem__(self, images: slice) -> EyeGeometry:
        """The geometry of a run of images, as views."""
        return EyeGeometry(**{field.name: getattr(self, field.name)[images] for field in fields(self)})


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.empty(count, 1, 1).uniform_(low, high, generator=generator)


IRIS_RISE = 0.1
"""Height of the eyeball's centre above the line between the eye corners, in eyeball radii.

At primary gaze the corneal reflex lies slightly closer to the upper lid margin
than to the lower one (MRD1 about 4.5 mm, MRD2 about 5.3 mm in adults), with the
canthi at or below it, so the iris sits at or above the corner line. Version 1 put
it 0.1 radii *below*; a regressor trained on that read every real eye at primary
gaze as looking about 10 degrees up (Columbia subjects 1-9, results/calibration.md).
"""
UPPER_LID_FOLLOWS = 0.9
"""Share of the iris's vertical travel that the upper lid margin follows: it rides on the globe."""
LOWER_LID_FOLLOWS = 0.3
"""Share of the iris's vertical travel that the lower lid margin follows: it moves less."""


def sample_geometry(count: int, height: int, width: int, generator: torch.Generator) -> EyeGeometry:
    """Draw ``count`` eyes filling a ``height x width`` crop as normalized real eye crops do.

    Proportions follow adult anatomy and the real MPIIGaze crops of
    ``results/calibration.md``: the eye spans 76-92 % of the crop width, the iris
    diameter exceeds the lid aperture, the upper lid covers the iris's top by up to
    a third of its radius and the lower lid lies about at its bottom. Version 3 draws
    the eye wider by 4 % of the crop and the eyeball's radius at 0.83-1.0 half-widths (version 2:
    0.71-0.83), so the iris comes near the size of real crops' darkest disc; of the
    single changes measured, that one lowered the error on real labeled eyes.
    """
    half_width = _uniform(count, 0.38, 0.46, generator) * width
    eyeball_radius = half_width / _uniform(count, 1.0, 1.2, generator)
    iris_radius = eyeball_radius * _uniform(count, 0.44, 0.52, generator)
    iris_top = iris_radius + IRIS_RISE * eyeball_radius  # above the corner line, at zero pitch
    iris_bottom = iris_radius - IRIS_RISE * eyeball_radius  # below it
    return EyeGeometry(
        pitch=_uniform(count, *PITCH_RANGE, generator),
        yaw=_uniform(count, *YAW_RANGE, generator),
        center_x=width / 2 + _uniform(count, -2.5, 2.5, generator),
        center_y=height / 2 + _uniform(count, -2.0, 2.0, generator),
        half_width=half_width,
        eyeball_radius=eyeball_radius,
        iris_radius=iris_radius,
        pupil_radius=iris_radius * _uniform(count, 0.3, 0.45, generator),
        upper_lid=iris_top - iris_radius * _uniform(count, 0.0, 0.35, generator),
        lower_lid=iris_bottom + iris_radius * _uniform(count, -0.2, 0.15, generator),
        tilt=_uniform(count, -0.12, 0.12, generator),
    )


@dataclass(frozen=True)
class EyeLayers:
    """Per-pixel fields of a traced eye, each ``(N, H, W)``; masks are antialiased in [0, 1]."""

    aperture: Tensor
    """Inside the eye opening (between the lids and the corners)."""
    iris: Tensor
    pupil: Tensor
    iris_radius: Tensor
    """Elliptical radius in the iris's own frame: 0 at its centre, 1 at the limbus."""
    iris_angle: Tensor
    """Angle around the iris centre, in its own frame."""
    above_upper_lid: Tensor
    """Signed distance above the upper lid margin (pixels, > 0 on the skin above it)."""
    below_lower_lid: Tensor
    """Signed distance below the lower lid margin (pixels, > 0 on the skin below it)."""
    along_eye: Tensor
    """Position between the corners: -1 at one corner, +1 at the other."""
    eyeball_normal_z: Tensor
    """Eyeball surface normal toward the camera (1 facing it, 0 at the silhouette)."""
    iris_center_x: Tensor
    iris_center_y: Tensor


def _soft(distance: Tensor) -> Tensor:
    """Antialiased step: about one pixel wide."""
    return torch.sigmoid(distance * 2.5)


def trace(geometry: EyeGeometry, height: int, width: int) -> EyeLayers:
    """Lay the eye out on the pixel grid: masks, distances and surface coordinates."""
    g = geometry
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1) + 0.5
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width) + 0.5

    # Eye-opening frame, rotated by the tilt.
    cos_t, sin_t = torch.cos(g.tilt), torch.sin(g.tilt)
    dx, dy = xs - g.center_x, ys - g.center_y
    u = cos_t * dx + sin_t * dy
    v = -sin_t * dx + cos_t * dy
    along = u / g.half_width
    shape = (1 - along.square()).clamp_min(0) ** 0.8
    sin_pitch = torch.sin(g.pitch)
    plane = torch.sqrt(g.eyeball_radius.square() - g.iris_radius.square())
    rise = plane * sin_pitch  # how far the iris moves up with pitch
    upper_margin = -(g.upper_lid + UPPER_LID_FOLLOWS * rise) * shape
    lower_margin = (g.lower_lid - LOWER_LID_FOLLOWS * rise) * shape
    above_upper = upper_margin - v
    below_lower = v - lower_margin
    inside_corners = (1 - along.abs()) * g.half_width
    aperture = _soft(-above_upper) * _soft(-below_lower) * _soft(inside_corners)

    # Eyeball and iris, projected orthographically; image y points down.
    cos_p = torch.cos(g.pitch)
    gaze_x = cos_p * torch.sin(g.yaw)
    gaze_y = -sin_pitch
    gaze_z = cos_p * torch.cos(g.yaw)
    ball_x, ball_y = g.center_x, g.center_y - IRIS_RISE * g.eyeball_radius
    iris_x, iris_y = ball_x + plane * gaze_x, ball_y + plane * gaze_y
    # The iris ellipse's short axis points along the gaze's tilt; looking straight
    # at the camera it is a circle and any axis will do (the image's x).
    tilt_norm = torch.sqrt(gaze_x.square() + gaze_y.square())
    facing = tilt_norm < 1e-6
    axis_x = torch.where(facing, 1.0, gaze_x / tilt_norm.clamp_min(1e-6))
    axis_y = torch.where(facing, 0.0, gaze_y / tilt_norm.clamp_min(1e-6))
    ix, iy = xs - iris_x, ys - iris_y
    radial = (ix * axis_x + iy * axis_y) / gaze_z
    across = -ix * axis_y + iy * axis_x
    iris_radius = torch.sqrt(radial.square() + across.square()) / g.iris_radius
    iris_angle = torch.atan2(across, radial)
    ball_r2 = ((xs - ball_x).square() + (ys - ball_y).square()) / g.eyeball_radius.square()
    return EyeLayers(
        aperture=aperture,
        iris=_soft((1 - iris_radius) * g.iris_radius),
        pupil=_soft((g.pupil_radius / g.iris_radius - iris_radius) * g.iris_radius),
        iris_radius=iris_radius,
        iris_angle=iris_angle,
        above_upper_lid=above_upper,
        below_lower_lid=below_lower,
        along_eye=along,
        eyeball_normal_z=torch.sqrt((1 - ball_r2).clamp_min(0)),
        iris_center_x=iris_x,
        iris_center_y=iris_y,
    )
