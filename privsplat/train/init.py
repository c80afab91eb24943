"""Where the surfels start: the masks' visual hull, a sphere, or the ICT neutral head template."""

from __future__ import annotations

import logging

import numpy as np

from ..assets import neutral_template
from ..cameras import camera_centers, camera_distances, common_view_points, in_common_view, world_up
from ..data.dataset import Dataset
from .model import mean_spacing

log = logging.getLogger(__name__)


def visual_hull(
    dataset: Dataset, masks: dict[str, np.ndarray], grid: int = 96, radius: float | None = None
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Carve a voxel grid with the masks. Returns (surface points, outward normals, voxel size)
    or None when the hull is empty (masks inconsistent with the cameras)."""
    from scipy import ndimage

    center, dists = camera_distances(dataset.w2cs())
    if radius is None:
        radius = 0.6 * np.median(dists)
    axis = np.linspace(-radius, radius, grid)
    X = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3) + center
    inside = np.ones(len(X), dtype=bool)
    seen = np.zeros(len(X), dtype=np.int32)
    Xh = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    for f in dataset.frames:
        m = masks.get(f.name)
        if m is None:
            continue
        cam = (Xh @ f.w2c.T)[:, :3]
        z = cam[:, 2]
        uv = cam @ f.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            u = uv[:, 0] / z
            v = uv[:, 1] / z
        h, w = m.shape
        valid = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        ui = np.clip(u, 0, w - 1).astype(int)
        vi = np.clip(v, 0, h - 1).astype(int)
        fg = m[vi, ui] > 0.5
        inside &= ~valid | fg
        seen += valid
    inside &= seen >= max(1, len(masks) // 2)
    occ = inside.reshape(grid, grid, grid)
    if occ.sum() < 10:
        return None
    occ = ndimage.binary_opening(occ, iterations=1) if occ.sum() > 1000 else occ
    surface = occ & ~ndimage.binary_erosion(occ)
    smooth = ndimage.gaussian_filter(occ.astype(np.float32), 1.5)
    grad = np.stack(np.gradient(smooth), -1)
    idx = np.argwhere(surface)
    pts = center + np.stack([axis[idx[:, 0]], axis[idx[:, 1]], axis[idx[:, 2]]], 1)
    normals = -grad[idx[:, 0], idx[:, 1], idx[:, 2]]
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    keep = norm[:, 0] > 1e-8
    normals = normals[keep] / norm[keep]
    # The centres of the outermost inside voxels lie half a voxel inside the carved boundary
    # (about a pixel at 64 px, measured on a sphere): move them out onto it.
    voxel = axis[1] - axis[0]
    return pts[keep] + 0.5 * voxel * normals, normals, voxel


def sample_hull(
    points: np.ndarray, normals: np.ndarray, voxel: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.choice(len(points), size=n, replace=len(points) < n)
    # jitter within the voxel's tangent plane so duplicates do not coincide
    jitter = rng.uniform(-0.5, 0.5, (n, 3)) * voxel
    nrm = normals[idx]
    jitter -= (jitter * nrm).sum(1, keepdims=True) * nrm
    return points[idx] + jitter, nrm


BACKGROUND_SHELL = 2.0
"""Radius of the background shell in units of the farthest camera's distance from the look-at point."""


def common_view_init(dataset: Dataset, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n surfels uniformly inside the cameras' common view (where a capture without masks keeps
    its subject), with random orientations; falls back to a sphere when that region is empty."""
    pts = common_view_points(*dataset.camera_arrays(), n, rng)
    if len(pts) < n // 4:
        center, dists = camera_distances(dataset.w2cs())
        log.warning("the cameras share no common view; starting from a sphere around their look-at point")
        return sphere_points(center, 0.3 * float(np.median(dists)), n, rng)
    d = rng.normal(size=(len(pts), 3))
    return pts, d / np.linalg.norm(d, axis=1, keepdims=True)


def split_points(dataset: Dataset, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject, background): SfM points inside the cameras' common view, and the others."""
    inside = in_common_view(points, *dataset.camera_arrays())
    return points[inside], points[~inside]


def point_normals(points: np.ndarray, toward: np.ndarray, k: int = 10) -> np.ndarray:
    """Unit normals of a point cloud from its k nearest neighbours (smallest principal axis),
    turned to face `toward` [3] or, with toward [P,3], each point's own target."""
    from scipy.spatial import cKDTree

    k = min(k, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(1, keepdims=True)
    _, _, vt = np.linalg.svd(nb, full_matrices=False)
    n = vt[:, -1, :]
    flip = ((np.broadcast_to(toward, points.shape) - points) * n).sum(1) < 0
    n[flip] *= -1
    return n


def sample_points(points: np.ndarray, normals: np.ndarray, n: int, rng: np.random.Generator):
    """n surfels on a point cloud: every point once (then repeats), jittered in its tangent plane
    by up to half the local spacing so repeats do not coincide."""
    idx = np.concatenate([rng.permutation(len(points)), rng.integers(0, len(points), max(0, n - len(points)))])[:n]
    spacing = mean_spacing(points)[idx] if len(points) > 3 else np.full(n, 1e-2)
    jitter = rng.uniform(-0.5, 0.5, (n, 3)) * spacing[:, None]
    nrm = normals[idx]
    jitter -= (jitter * nrm).sum(1, keepdims=True) * nrm
    return points[idx] + jitter, nrm


def background_shell(dataset: Dataset, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background surfels for captures without masks: (points, inward normals) on a sphere around
    the look-at point beyond every camera (BACKGROUND_SHELL x the farthest distance), placed where
    rays through random pixels of the views meet it, so only directions some view sees get surfels.
    They start grey: colours taken from the pixels would paint the subject onto the shell."""
    center, dists = camera_distances(dataset.w2cs())
    radius = BACKGROUND_SHELL * float(dists.max())
    frame_of = rng.integers(0, len(dataset.frames), n)
    pts = np.zeros((n, 3))
    for i, f in enumerate(dataset.frames):
        sel = np.nonzero(frame_of == i)[0]
        if len(sel) == 0:
            continue
        u, v = rng.uniform(0, f.width, len(sel)), rng.uniform(0, f.height, len(sel))
        d_cam = np.stack([(u - f.K[0, 2]) / f.K[0, 0], (v - f.K[1, 2]) / f.K[1, 1], np.ones(len(sel))], 1)
        R, t = f.w2c[:3, :3], f.w2c[:3, 3]
        o = -R.T @ t - center
        d = d_cam @ R
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        b = d @ o
        s = -b + np.sqrt(np.maximum(b**2 - (o @ o - radius**2), 0.0))  # exit from inside the sphere
        pts[sel] = center + o + s[:, None] * d
    normals = center - pts
    return pts, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def sphere_points(center: np.ndarray, radius: float, n: int, rng: np.random.Generator):
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return center + radius * d, d


def template_points(
    dataset: Dataset, n: int, rng: np.random.Generator, hull: tuple[np.ndarray, np.ndarray, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the ICT neutral head, placed from the cameras: centred on their look-at point,
    up along the cameras' mean up, face toward the protected (sensitive) views, and sized to the
    visual hull when masks exist, else to ~70% of the median camera's field of view."""
    V, Fc = neutral_template()
    V = np.asarray(V, dtype=np.float64)
    Fc = np.asarray(Fc, dtype=np.int64)
    tri = V[Fc]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    face_idx = rng.choice(len(Fc), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = (tri[face_idx] * bary[:, :, None]).sum(1)
    nrm = np.cross(tri[face_idx, 1] - tri[face_idx, 0], tri[face_idx, 2] - tri[face_idx, 0])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)

    center, dists = camera_distances(dataset.w2cs())
    up = world_up(dataset.w2cs())
    sensitive = [f for f in dataset.frames if f.kind == "protected"] or dataset.frames
    face_dir = np.mean(camera_centers(np.stack([f.w2c for f in sensitive])) - center, axis=0)
    face_dir -= (face_dir @ up) * up
    if np.linalg.norm(face_dir) < 1e-8:
        face_dir = np.cross(up, [1.0, 0.0, 0.0])
    face_dir /= np.linalg.norm(face_dir)
    # template frame: +y up, +z face; rotate into (up, face_dir)
    R = np.stack([np.cross(up, face_dir), up, face_dir], axis=1)
    tmpl_center = 0.5 * (V.min(0) + V.max(0))
    tmpl_height = V[:, 1].max() - V[:, 1].min()
    if hull is not None:
        hp = hull[0]
        height = (hp @ up).max() - (hp @ up).min()
        center = hp.mean(0)
    else:
        f0 = dataset.frames[0]
        height = 0.7 * np.median(dists) * f0.height / f0.K[1, 1]
    scale = height / tmpl_height
    log.info("template prior: ICT neutral head, scale %.4g, centre %s", scale, np.round(center, 3))
    pts = (pts - tmpl_center) * scale @ R.T + center
    return pts, nrm @ R.T
