"""A textured room with a textured box in it, ray-cast in numpy: test data for `prepare`.

privsplat.data.synth renders heads on black, which structure from motion cannot register
(no features off the head). Here every ray hits texture: the box at the centre (the
"object", half-size 0.8) and the inside of a room (half-size 4) behind it, with a lens
(SourceCamera, e.g. distortion) if asked. Shading differs per face so edges are visible.
"""

from __future__ import annotations

import numpy as np

from ..cameras import look_at
from .dataset import SourceCamera
from .undistort import undistort_points

ROOM, BOX = 4.0, 0.8
TILE = 512  # texture atlas: 4x3 tiles of TILE px, one per face (6 room + 6 box)


def room_texture(seed: int = 0) -> np.ndarray:
    """uint8 [3*TILE, 4*TILE, 3]: random coloured discs and bars at many scales (SIFT-friendly)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = rng.integers(60, 200, (3 * TILE, 4 * TILE, 3)).astype(np.uint8)
    tex = cv2.GaussianBlur(tex, (0, 0), 3)
    for _ in range(6000):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, (4 * TILE, 3 * TILE)))
        r = int(rng.integers(3, 40))
        if rng.random() < 0.5:
            cv2.circle(tex, (x, y), r, c, -1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(tex, (x, y), (x + r, y + int(rng.integers(2, 30))), c, -1, lineType=cv2.LINE_AA)
    return tex


def orbit(n: int, radius: float = 2.5, elevation_deg: float = 12.0, seed: int = 0) -> list[np.ndarray]:
    """w2c (OpenCV) of n cameras on a full circle around the box, elevation waving ±, looking at it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = 2 * np.pi * i / n
        e = np.deg2rad(elevation_deg * np.sin(2 * a))
        eye = radius * np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
        out.append(look_at(eye, rng.normal(0, 0.05, 3)))
    return out


def _box_hit(o: np.ndarray, d: np.ndarray, h: float, inside: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distance along rays d from o to an axis-aligned box [-h, h]^3 (entry from outside, exit from inside)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - o) / d
        t2 = (h - o) / d
    tmin, tmax = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
    if inside:
        return tmax, np.ones(len(d), bool)
    return tmin, (tmax >= tmin) & (tmin > 0)


def _sample(tex: np.ndarray, p: np.ndarray, h: float, face_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Atlas coordinates of points p on the faces of the box [-h, h]^3, and each point's face index."""
    axis = np.abs(p).argmax(axis=1)
    side = (p[np.arange(len(p)), axis] > 0).astype(int)
    face = 2 * axis + side
    others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = (np.take_along_axis(p, others, axis=1) / h + 1) / 2  # [0, 1]^2 on the face
    tile = face + face_offset
    x = (tile % 4 + np.clip(uv[:, 0], 0, 1)) * TILE - 0.5
    y = (tile // 4 + np.clip(uv[:, 1], 0, 1)) * TILE - 0.5
    return np.stack([x, y], axis=1), face


SHADE = np.array([1.0, 0.8, 0.9, 0.7, 0.95, 0.75])


def render_room(
    K: np.ndarray,
    w2c: np.ndarray,
    width: int,
    height: int,
    texture: np.ndarray,
    lens: SourceCamera | None = None,
    with_box: bool = True,
) -> np.ndarray:
    """uint8 [H, W, 3] view of the room (pixel centres at +0.5); `lens` adds its distortion;
    with_box=False leaves the room empty (synth puts a head there instead)."""
    import cv2

    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u.ravel(), v.ravel()], axis=1)
    if lens is not None:
        xy = undistort_points(lens, pix)
    else:
        xy = (pix - K[:2, 2]) / K[[0, 1], [0, 1]]
    R, t = w2c[:3, :3], w2c[:3, 3]
    o = -R.T @ t
    d = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ R  # world directions (R^T x)
    t_room, _ = _box_hit(o[None], d, ROOM, inside=True)
    t_box, hit_box = _box_hit(o[None], d, BOX, inside=False)
    if not with_box:
        hit_box = np.zeros_like(hit_box)
    t_hit = np.where(hit_box, t_box, t_room)
    p = o[None] + t_hit[:, None] * d
    uv_room, f_room = _sample(texture, p, ROOM, 0)
    uv_box, f_box = _sample(texture, p, BOX, 6)
    uv = np.where(hit_box[:, None], uv_box, uv_room).astype(np.float32)
    face = np.where(hit_box, f_box, f_room)
    img = cv2.remap(
        texture,
        uv[:, 0].reshape(height, width),
        uv[:, 1].reshape(height, width),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    shade = SHADE[face].reshape(height, width, 1) * np.where(hit_box, 1.0, 0.85).reshape(height, width, 1)
    return np.clip(img * shade, 0, 255).astype(np.uint8)


def camera_centers(w2c: np.ndarray) -> np.ndarray:
    return -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])


def pose_errors(gt: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotation errors in degrees, centre errors in gt units) of w2c poses [N,4,4] after the
    similarity that best maps gt camera centres onto est's (Umeyama): SfM fixes no scale or frame."""
    cg, ce = camera_centers(gt), camera_centers(est)
    X, Y = cg - cg.mean(0), ce - ce.mean(0)
    U, S, Vt = np.linalg.svd(Y.T @ X / len(X))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (X**2).sum(1).mean()
    t = ce.mean(0) - s * R @ cg.mean(0)
    centre_err = np.linalg.norm((ce - t) @ R / s - cg, axis=1)
    # in the aligned world est's rotation is R_est R; it should equal R_gt
    cos = (np.einsum("nij,nij->n", gt[:, :3, :3], est[:, :3, :3] @ R) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1))), centre_err
