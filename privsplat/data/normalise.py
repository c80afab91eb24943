"""Where the normalised world is: center and scale chosen from the cameras (and masks).

world_normalised = (world_input - center) * scale.

- center: the point closest (least squares) to all optical axes — what an object-centred
  capture looks at. A tiny pull toward the camera centroid keeps it defined when the axes
  are nearly parallel (forward-facing captures).
- scale, rule "masks" (every frame has a mask): the object's bounding sphere gets radius
  ~1. Per frame, the mask's widest angle from the ray through `center` gives the radius
  of the sphere around `center` that the silhouette subtends, d·sin(angle); the median
  over frames is used (robust to one bad mask).
- scale, rule "points" (no masks, but structure-from-motion points): the points that nearly every
  camera sees (the subject; cameras.in_common_view) get a bounding sphere of radius ~1 around
  `center` (their 98th-percentile distance), as the masks rule gives it: the fit's defaults are
  tuned at that scale.
- scale, rule "cameras" (otherwise): the cameras sit at median distance 3 from `center`.
"""

from __future__ import annotations

import numpy as np

from ..cameras import closest_point_to_axes, in_common_view
from ..errors import PrivsplatError
from .dataset import Frame

CAMERA_RADIUS = 3.0
MIN_SUBJECT_POINTS = 50


def silhouette_radius(frame: Frame, mask: np.ndarray, center: np.ndarray) -> float | None:
    """Radius of the sphere around `center` (input units) that the mask's silhouette subtends."""
    stride = max(1, int(np.ceil(max(mask.shape) / 256)))
    m = mask[::stride, ::stride] > 0.5
    if not m.any():
        return None
    v, u = np.nonzero(m)
    pix = np.stack([(u + 0.5) * stride, (v + 0.5) * stride, np.ones_like(u, dtype=np.float64)], axis=1)
    rays = pix @ np.linalg.inv(frame.K).T
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    w2c = frame.extra["w2c_input"]
    pc = w2c[:3, :3] @ center + w2c[:3, 3]
    dist = np.linalg.norm(pc)
    if pc[2] <= 0 or dist <= 0:
        return None
    cosang = np.clip(rays @ (pc / dist), -1.0, 1.0)
    return float(dist * np.sin(min(np.arccos(cosang.min()), np.pi / 2)))


def subject_radius(frames: list[Frame], points: np.ndarray, center: np.ndarray) -> float | None:
    """98th-percentile distance from `center` of the points (input units) in the cameras' common view."""
    w2cs = np.stack([f.extra["w2c_input"] for f in frames])
    sizes = np.array([(f.width, f.height) for f in frames])
    subject = points[in_common_view(points, w2cs, np.stack([f.K for f in frames]), sizes)]
    if len(subject) < MIN_SUBJECT_POINTS:
        return None
    return float(np.percentile(np.linalg.norm(subject - center, axis=1), 98))


def scene_normalisation(
    frames: list[Frame], masks: list[np.ndarray | None], points: np.ndarray | None = None
) -> tuple[np.ndarray, float, str]:
    w2cs = np.stack([f.extra["w2c_input"] for f in frames])
    R, t = w2cs[:, :3, :3], w2cs[:, :3, 3]
    centers = -np.einsum("nji,nj->ni", R, t)
    axes = R[:, 2, :]  # camera +z in world
    center = closest_point_to_axes(centers, axes) if len(frames) > 1 else centers[0] + axes[0]
    dists = np.linalg.norm(centers - center, axis=1)
    spread = float(np.linalg.norm(centers - centers.mean(0), axis=1).max()) if len(frames) > 1 else 1.0
    extent = max(float(np.abs(centers).max()), float(np.median(dists)), 1e-300)
    # Cameras closer together than a millionth of the scene's extent carry no parallax: the look-at
    # point and scale computed from them are noise (seen: a scale of 2e9).
    if not np.all(np.isfinite(center)) or np.median(dists) <= 1e-12 or spread < 1e-6 * extent:
        raise PrivsplatError(
            "cannot place the scene: the cameras coincide (their positions differ by less "
            "than a millionth of the scene's size); check the camera poses"
        )
    if masks and all(m is not None for m in masks):
        radii = [r for f, m in zip(frames, masks) if (r := silhouette_radius(f, m, center)) is not None]
        if radii and np.median(radii) > 1e-12:
            return center, float(1.0 / np.median(radii)), "masks"
    if points is not None and len(points) and len(frames) > 1:
        r = subject_radius(frames, np.asarray(points, dtype=np.float64), center)
        if r is not None and r > 1e-12:
            return center, 1.0 / r, "points"
    return center, float(CAMERA_RADIUS / np.median(dists)), "cameras"


def normalise_w2c(w2c: np.ndarray, center: np.ndarray, scale: float) -> np.ndarray:
    """w2c for world_normalised = (world_input - center) * scale (camera units scale too)."""
    out = np.array(w2c, dtype=np.float64)
    R = out[:3, :3]
    out[:3, 3] = scale * (out[:3, 3] + R @ center)
    return out
