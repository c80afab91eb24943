"""The one camera type and all camera geometry (centres, look-at point, up, orbits).

Every format parser converts to OpenCV world-to-camera poses at load time (x right, y down,
z forward); nothing downstream knows about OpenGL/nerfstudio conventions. The helpers below
take stacks of such poses ([N,4,4] w2c), so any layer can use them without a Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Cameras:
    """A batch of C pinhole cameras sharing one image size.

    Ks: [C, 3, 3] intrinsics in pixels (pixel centres at integer + 0.5).
    viewmats: [C, 4, 4] world-to-camera, OpenCV axes.
    """

    Ks: torch.Tensor
    viewmats: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.Ks.dim() == 2:
            self.Ks = self.Ks[None]
        if self.viewmats.dim() == 2:
            self.viewmats = self.viewmats[None]
        if self.Ks.shape[0] != self.viewmats.shape[0]:
            raise ValueError("Ks and viewmats must hold the same number of cameras")

    @classmethod
    def from_numpy(
        cls, Ks: np.ndarray, viewmats: np.ndarray, width: int, height: int, device: str | torch.device = "cpu"
    ) -> "Cameras":
        return cls(
            torch.as_tensor(np.asarray(Ks), dtype=torch.float32, device=device),
            torch.as_tensor(np.asarray(viewmats), dtype=torch.float32, device=device),
            int(width),
            int(height),
        )

    def __len__(self) -> int:
        return self.Ks.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return Cameras(self.Ks[idx], self.viewmats[idx], self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.Ks.device

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Cameras":
        return Cameras(
            self.Ks.to(device=device, dtype=dtype or self.Ks.dtype),
            self.viewmats.to(device=device, dtype=dtype or self.viewmats.dtype),
            self.width,
            self.height,
        )

    @property
    def camtoworlds(self) -> torch.Tensor:
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> torch.Tensor:
        """Camera centres in world coordinates, [C, 3]."""
        return self.camtoworlds[:, :3, 3]

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras at an image size scaled by `factor` (intrinsics follow)."""
        S = torch.diag(torch.tensor([factor, factor, 1.0], dtype=self.Ks.dtype, device=self.device))
        return Cameras(S @ self.Ks, self.viewmats, round(self.width * factor), round(self.height * factor))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """World-to-camera 4x4 (OpenCV axes) for a camera at `eye` looking at `target`.

    `up` is the world's up direction; image y points down, i.e. against it.
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))  # image right = forward x up
    if np.linalg.norm(x) < 1e-8:  # looking straight along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def intrinsics_from_fov(width: int, height: int, fov_x_rad: float) -> np.ndarray:
    fx = 0.5 * width / np.tan(0.5 * fov_x_rad)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def camera_centers(w2cs: np.ndarray) -> np.ndarray:
    """World positions of cameras given as [N,4,4] world-to-camera matrices, [N,3]."""
    w2cs = np.asarray(w2cs, dtype=np.float64)
    R, t = w2cs[:, :3, :3], w2cs[:, :3, 3]
    return -np.einsum("nji,nj->ni", R, t)


def closest_point_to_axes(centers: np.ndarray, dirs: np.ndarray, pull: float = 1e-6) -> np.ndarray:
    """Least-squares point nearest to every line (centre, direction); a tiny pull toward the
    centres' mean keeps it defined when the lines are parallel."""
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
    A, b = P.sum(0), np.einsum("nij,nj->i", P, centers)
    lam = pull * len(centers)
    return np.linalg.solve(A + lam * np.eye(3), b + lam * centers.mean(axis=0))


def look_at_point(w2cs: np.ndarray) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis."""
    w2cs = np.asarray(w2cs, dtype=np.float64)
    return closest_point_to_axes(camera_centers(w2cs), w2cs[:, 2, :3])


def camera_distances(w2cs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(look-at point, each camera's distance from it)."""
    center = look_at_point(w2cs)
    return center, np.linalg.norm(camera_centers(w2cs) - center, axis=1)


def world_up(w2cs: np.ndarray) -> np.ndarray:
    """Mean of the cameras' up vectors (image -y axis) in world coordinates."""
    up = -np.asarray(w2cs, dtype=np.float64)[:, 1, :3].mean(0)
    return up / max(np.linalg.norm(up), 1e-12)


def view_directions(w2cs: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Unit directions from `origin` (default: the world origin) to each camera, [N,3]."""
    d = camera_centers(w2cs) - (0.0 if origin is None else np.asarray(origin))
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def orbit_cameras(
    center: np.ndarray, radius: float, up: np.ndarray, n: int, heights: tuple[float, float] = (-0.85, 0.85)
) -> list[np.ndarray]:
    """World-to-camera matrices on a Fibonacci sphere around `center`, in the band of heights
    (sine of the elevation above the plane normal to up) `heights` (default: no view straight along up)."""
    lo, hi = heights
    poses = []
    golden = np.pi * (3 - np.sqrt(5))
    y = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    x = np.cross(y, [0.0, 0.0, 1.0]) if abs(y[2]) < 0.9 else np.cross(y, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    zz = np.cross(x, y)
    for i in range(n):
        z = hi - (hi - lo) * (i + 0.5) / n
        r = np.sqrt(1 - z * z)
        eye = center + radius * (r * np.cos(golden * i) * x + z * y + r * np.sin(golden * i) * zz)
        poses.append(look_at(eye, center, up))
    return poses


# --- the region every camera looks at (captures without masks) ---
COMMON_VIEW_SHARE = 0.9
"""A point belongs to the cameras' common view when it projects inside at least this share of the
images: an orbit capture frames the subject in (nearly) every view, and its background is not."""


def views_containing(points: np.ndarray, w2cs: np.ndarray, Ks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """How many of the cameras (w2c [N,4,4], K [N,3,3], sizes [N,2] as (width, height)) see each
    point [P,3] inside their image, in front of them. Returns int [P]."""
    P = np.asarray(points, dtype=np.float64)
    count = np.zeros(len(P), dtype=np.int32)
    for w2c, K, (w, h) in zip(np.asarray(w2cs), np.asarray(Ks), np.asarray(sizes)):
        cam = P @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * cam[:, 0] / z + K[0, 2]
            v = K[1, 1] * cam[:, 1] / z + K[1, 2]
        count += (z > 1e-9) & (u >= 0) & (u <= w) & (v >= 0) & (v <= h)
    return count


def in_common_view(
    points: np.ndarray, w2cs: np.ndarray, Ks: np.ndarray, sizes: np.ndarray, share: float = COMMON_VIEW_SHARE
) -> np.ndarray:
    """bool [P]: the points at least `share` of the cameras see inside their image."""
    return views_containing(points, w2cs, Ks, sizes) >= max(1, int(np.ceil(share * len(w2cs))))


def common_view_points(
    w2cs: np.ndarray,
    Ks: np.ndarray,
    sizes: np.ndarray,
    n: int,
    rng: np.random.Generator,
    share: float = COMMON_VIEW_SHARE,
) -> np.ndarray:
    """n points uniformly inside the cameras' common view (seen by >= share of them), [n,3].

    Candidates come from the cube around the look-at point that reaches the nearest camera;
    returns fewer points (possibly none) when the common view is empty or tiny."""
    center, dists = camera_distances(w2cs)
    lo, hi = center - dists.min(), center + dists.min()
    out: list[np.ndarray] = []
    got = 0
    for _ in range(20):
        cand = rng.uniform(lo, hi, (max(4 * n, 4096), 3))
        keep = cand[in_common_view(cand, w2cs, Ks, sizes, share)]
        if not out and len(keep) >= 8:
            # the first hits bound the region: sample their (padded) box from now on, and
            # keep only the hits inside it so the density stays uniform
            pad = 0.1 * (keep.max(0) - keep.min(0)) + 1e-9
            lo, hi = keep.min(0) - pad, keep.max(0) + pad
            keep = keep[np.all((keep >= lo) & (keep <= hi), axis=1)]
        out.append(keep)
        got += len(keep)
        if got >= n:
            break
    pts = np.concatenate(out) if out else np.zeros((0, 3))
    return pts[:n]
