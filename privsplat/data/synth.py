"""`privsplat synth`: a small multi-view head dataset rendered on the CPU.

Ray casting (open3d RaycastingScene) of a head mesh with one of two appearances: "textured", a
procedural albedo (skin-like base with smooth 3D noise and stripes, so rear views carry texture
too; for the ICT head also darker brows, lips and irises so the face looks like one to a
detector), or "plaster", a near-uniform light stone colour like a plaster bust, so shading is the
only signal. One Lambertian light fixed in the world plus ambient, 3x3 supersampling. Output: 8-bit PNG
images and masks, nerfstudio transforms.json, gt_mesh.ply (same frame and units as the
cameras), gt_face_mask.npy (per vertex), synth.json (settings and each view's angle to
the face direction, so a demo can pick rear views).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..assets import asset_path, load_ict
from ..errors import PrivsplatError

FACE_DIRECTION = np.array([0.0, 0.0, 1.0])  # every shipped mesh faces +z, up +y
LIGHT_DIRECTION = np.array([0.4, 0.8, 0.45]) / np.linalg.norm([0.4, 0.8, 0.45])
AMBIENT = 0.35
RING_ELEVATIONS_DEG = (-15.0, 10.0, 35.0)
SKIN = np.array([0.80, 0.60, 0.50])
PLASTER = np.array([0.86, 0.83, 0.77])
APPEARANCES = ("textured", "plaster")
SUPERSAMPLE = 3


def parse_expression(items: Sequence[str], names: Sequence[str]) -> np.ndarray:
    weights = np.zeros(len(names), dtype=np.float32)
    for item in items:
        name, _, w = str(item).partition(":")
        if name not in names:
            raise PrivsplatError(f"unknown expression {name!r}; valid names: {', '.join(names)}")
        try:
            weights[list(names).index(name)] = float(w) if w else 1.0
        except ValueError:
            raise PrivsplatError(f"expression weight in {item!r} is not a number (use name:0.5)") from None
    return weights


def head_mesh(
    mesh: str = "ict", identity_seed: int = 0, expression: Sequence[str] = (), identity_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(vertices [V,3], faces [F,3], face_mask [V] bool, feature albedo [V,3], units).

    ICT identity weights are N(0, I) from identity_seed times identity_scale (3.0: a ±3σ head)."""
    if not (isinstance(identity_scale, (int, float)) and math.isfinite(identity_scale)):
        raise PrivsplatError(f"--identity-scale must be a finite number, got {identity_scale!r}")
    if mesh == "ict":
        d = load_ict()
        V = d["vertices"].astype(np.float64)
        if identity_seed:
            w = np.random.default_rng(identity_seed).standard_normal(d["identity_modes"].shape[0])
            w = w * identity_scale
            V = V + np.einsum("k,kvc->vc", w, d["identity_modes"].astype(np.float64))
        e = parse_expression(expression, [str(n) for n in d["expression_names"]])
        V = V + np.einsum("k,kvc->vc", e.astype(np.float64), d["expression_modes"].astype(np.float64))
        return V, d["faces"].astype(np.int64), d["region"] <= 1, _ict_features(V, d), "cm"
    if expression:
        raise PrivsplatError("--expression applies only to --mesh ict")
    if identity_scale != 1.0:
        raise PrivsplatError("--identity-scale applies only to --mesh ict")
    if mesh == "nefertiti":
        with np.load(asset_path("nefertiti_small.npz")) as d:
            V, F, units = d["vertices"].astype(np.float64), d["faces"].astype(np.int64), str(d["units"])
    else:
        V, F = _read_mesh(Path(mesh))
        units = "input"
    return V, F, _frontal_sphere(V), np.ones((len(V), 3)), units


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    if not path.is_file():
        raise PrivsplatError(f"--mesh {path}: not 'ict', 'nefertiti' or an existing mesh file (.ply/.obj)")
    m = o3d.io.read_triangle_mesh(str(path))
    V, F = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.triangles, dtype=np.int64)
    if len(V) == 0 or len(F) == 0 or not np.all(np.isfinite(V)):
        raise PrivsplatError(f"--mesh {path}: no triangles could be read (or non-finite vertices)")
    return V, F


def _frontal_sphere(V: np.ndarray) -> np.ndarray:
    """Face region for meshes without labels: a sphere around the most frontal (+z) point."""
    radius = 0.35 * np.linalg.norm(V.max(0) - V.min(0)) / 2
    front = V[np.argmax(V[:, 2])]
    return np.linalg.norm(V - front, axis=1) < radius


def _distance_to_polyline(P: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("psc,sc->ps", P[:, None] - a[None], ab) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(P[:, None] - closest, axis=2).min(axis=1)


def _ict_features(V: np.ndarray, d: dict[str, np.ndarray]) -> np.ndarray:
    """Per-vertex albedo multipliers: dark brows and irises, red lips (from the 68 landmarks, cm)."""
    lm = V[d["landmarks68"]]
    mult = np.ones((len(V), 3))
    skin = d["region"] <= 2
    for brow in (lm[17:22], lm[22:27]):
        mult[skin & (_distance_to_polyline(V, brow) < 0.45)] = (0.25, 0.18, 0.15)
    lips = np.concatenate([lm[48:60], lm[48:49]])
    mult[skin & (_distance_to_polyline(V, lips) < 0.35)] = (0.75, 0.35, 0.35)
    eyes = d["region"] == 3
    mult[eyes] = (1.15, 1.15, 1.15)
    for idx in (range(36, 42), range(42, 48)):  # iris: the front of each eyeball
        c = lm[list(idx)].mean(axis=0)
        mult[eyes & (np.linalg.norm(V[:, :2] - c[:2], axis=1) < 0.55)] = (0.15, 0.12, 0.10)
    return mult


def procedural_albedo(points: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Skin-like base × smooth 3D noise and stripes (same on face and back). points [N,3] → [N,3]."""
    q = (points - center) / radius
    rng = np.random.default_rng(1234)  # texture is fixed; identity seeds change only shape
    noise = np.zeros(len(q))
    for freq in (2.0, 4.0, 8.0):
        for _ in range(3):
            k = rng.standard_normal(3)
            k *= freq / np.linalg.norm(k)
            noise += np.sin(q @ k + rng.uniform(0, 2 * np.pi)) / freq
    stripes = 0.5 + 0.5 * np.sin(9.0 * (q @ np.array([0.3, 0.9, 0.3])) + 2.0 * noise)
    shade = 0.7 + 0.2 * noise + 0.25 * stripes
    tint = np.stack([np.ones_like(noise), 1.0 - 0.08 * stripes, 1.0 - 0.12 * stripes], axis=1)
    return np.clip(SKIN[None] * shade[:, None] * tint, 0.0, 1.0)


def plaster_albedo(points: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """A light stone colour with a very faint (±2%) variation over the whole head. points [N,3] → [N,3]."""
    q = (points - center) / radius
    rng = np.random.default_rng(4321)
    noise = sum(np.sin(q @ rng.standard_normal(3) + rng.uniform(0, 2 * np.pi)) for _ in range(3)) / 3
    return np.clip(PLASTER[None] * (1.0 + 0.02 * noise)[:, None], 0.0, 1.0)


def ring_cameras(views: int, center: np.ndarray, distance: float) -> list[tuple[float, float, np.ndarray]]:
    """(azimuth°, elevation°, eye) on three elevation rings; azimuth 0 = in front of the face."""
    out = []
    for ring, el in enumerate(RING_ELEVATIONS_DEG):
        n = views // 3 + (ring < views % 3)
        for j in range(n):
            az = (360.0 * j / n + ring * 360.0 / (3 * max(n, 1))) % 360.0
            a, e = math.radians(az), math.radians(el)
            eye = center + distance * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])
            out.append((az, el, eye))
    return out


def _vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    vn = np.zeros_like(V)
    for k in range(3):
        np.add.at(vn, F[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def render_view(
    scene, V, F, vnormals, features, K, w2c, width, height, center, radius, lens=None, appearance="textured"
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb float [H,W,3] premultiplied by coverage, coverage float [H,W]) with SUPERSAMPLE² rays
    per pixel; `lens` (a SourceCamera) casts them through its distortion instead of the pinhole K.
    appearance "plaster" ignores `features` (no brows, lips or irises)."""
    import open3d as o3d

    s = SUPERSAMPLE
    H, W = height * s, width * s
    u, v = np.meshgrid((np.arange(W) + 0.5) / s, (np.arange(H) + 0.5) / s)
    if lens is not None:
        from .undistort import undistort_points

        xy = undistort_points(lens, np.stack([u.ravel(), v.ravel()], axis=1))
        dirs_cam = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
    else:
        pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
        dirs_cam = pix @ np.linalg.inv(K).T
    R, t = w2c[:3, :3], w2c[:3, 3]
    dirs = dirs_cam @ R  # R^T d for each row
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    eye = -R.T @ t
    rays = np.concatenate([np.broadcast_to(eye, dirs.shape), dirs], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t_hit = hit["t_hit"].numpy()
    ok = np.isfinite(t_hit)
    prim = hit["primitive_ids"].numpy()[ok].astype(np.int64)
    uv = hit["primitive_uvs"].numpy()[ok]
    bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
    tri = F[prim]
    n = np.einsum("nk,nkc->nc", bary, vnormals[tri])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    n = np.where((np.sum(n * dirs[ok], axis=1) > 0)[:, None], -n, n)  # face the camera
    p = eye + dirs[ok] * t_hit[ok][:, None]
    if appearance == "plaster":
        albedo = plaster_albedo(p, center, radius)
    else:
        albedo = procedural_albedo(p, center, radius) * np.einsum("nk,nkc->nc", bary, features[tri])
    light = AMBIENT + (1.0 - AMBIENT) * np.clip(n @ LIGHT_DIRECTION, 0.0, None)
    rgb = np.zeros((H * W, 3))
    rgb[ok] = np.clip(albedo * light[:, None], 0.0, 1.0)
    rgb = rgb.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    cover = ok.astype(np.float64).reshape(height, s, width, s).mean(axis=(1, 3))
    return rgb, cover


def _surface_points(scene, K, w2c, lens, rgb, center, room_scale, n, rng) -> tuple[np.ndarray, np.ndarray]:
    """n points where rays through random pixels meet the head or (room_scale: the room frame's scale,
    or None) the room's walls, moved by ~0.3 px of noise, with the rendered colour of their pixel (uint8)."""
    import open3d as o3d

    h, w = rgb.shape[:2]
    u, v = rng.uniform(0, w, n), rng.uniform(0, h, n)
    if lens is not None:
        from .undistort import undistort_points

        xy = undistort_points(lens, np.stack([u, v], 1))
    else:
        xy = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]], 1)
    d = np.concatenate([xy, np.ones((n, 1))], 1) @ w2c[:3, :3]  # world directions (R^T x)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    eye = -w2c[:3, :3].T @ w2c[:3, 3]
    rays = np.concatenate([np.broadcast_to(eye, d.shape), d], 1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    hit = np.isfinite(t)
    if room_scale is not None:
        from . import synth_room

        t_room, _ = synth_room._box_hit(((eye - center) * room_scale)[None], d, synth_room.ROOM, inside=True)
        t = np.where(hit, t, t_room / room_scale)
        hit = np.isfinite(t)
    p = eye + t[:, None] * d
    p += rng.normal(size=p.shape) * (0.3 * t / K[0, 0])[:, None]
    col = rgb[np.clip(v.astype(int), 0, h - 1), np.clip(u.astype(int), 0, w - 1)]
    return p[hit], np.round(np.clip(col[hit], 0, 1) * 255).astype(np.uint8)


def synthesize(
    mesh: str = "ict",
    out: str | Path = "synth",
    views: int = 36,
    resolution: int = 64,
    identity_seed: int = 0,
    expression: Sequence[str] = (),
    fov_deg: float = 30.0,
    fill: float = 0.8,
    overwrite: bool = False,
    background: str = "black",
    distortion: tuple[float, float] = (0.0, 0.0),
    masks: bool = True,
    points: int = 0,
    appearance: str = "textured",
    identity_scale: float = 1.0,
) -> Path:
    """Render the dataset described in the module docstring into `out`; return `out`.

    The problems of a real capture, on request: background "room" puts the head inside a textured
    room (walls about twice the camera distance away, privsplat.data.synth_room), `distortion`
    (k1, k2) renders through an OPENCV lens (written as camera_model OPENCV, so loaders must
    undistort), masks=False writes no masks, and points > 0 writes that many surface points with
    their pixel colours as sparse_pc.ply (what structure from motion gives a real capture: points on
    whatever the views see, head and room, with ~0.3 px of noise). appearance "plaster" paints the
    head a near-uniform stone colour; identity_scale multiplies the ICT identity weights."""
    import open3d as o3d

    from .. import io as pio
    from ..cameras import intrinsics_from_fov, look_at
    from .dataset import Frame
    from .formats import frame_to_nerfstudio
    from .images import write_png

    if not isinstance(views, int) or views < 1:
        raise PrivsplatError(f"--views must be a positive integer, got {views!r}")
    if not isinstance(resolution, int) or not 8 <= resolution <= 2048:
        raise PrivsplatError(f"--resolution must be an integer in 8..2048, got {resolution!r}")
    if not 1.0 <= fov_deg <= 120.0:
        raise PrivsplatError(f"--fov-deg must be in 1..120 degrees, got {fov_deg!r}")
    if background not in ("black", "room"):
        raise PrivsplatError(f"--background must be 'black' or 'room', got {background!r}")
    if appearance not in APPEARANCES:
        raise PrivsplatError(f"--appearance must be 'textured' or 'plaster', got {appearance!r}")
    k1, k2 = (float(c) for c in distortion)
    if not (abs(k1) <= 0.5 and abs(k2) <= 0.5):
        raise PrivsplatError(f"--k1/--k2 must lie in [-0.5, 0.5], got {k1}, {k2}")
    V, F, face_mask, features, units = head_mesh(mesh, identity_seed, expression, identity_scale)
    center = 0.5 * (V.min(0) + V.max(0))
    radius = float(np.linalg.norm(V - center, axis=1).max())
    distance = radius / math.sin(fill * math.radians(fov_deg) / 2)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(V.astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))
    vnormals = _vertex_normals(V, F)
    K = intrinsics_from_fov(resolution, resolution, math.radians(fov_deg))
    lens = None
    if k1 or k2:
        from .dataset import SourceCamera

        lens = SourceCamera("OPENCV", K, (k1, k2, 0.0, 0.0), resolution, resolution)
    room_texture = None
    if background == "room":
        from . import synth_room

        room_texture = synth_room.room_texture(identity_seed)
        # room frame: the head's centre at the origin, the cameras 2 room units away, walls at 4
        room_scale = synth_room.ROOM / (2.0 * distance)
    out = Path(out)
    with pio.atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        if masks:
            (tmp / "masks").mkdir()
        entries, records = [], []
        cloud: list[tuple[np.ndarray, np.ndarray]] = []
        prng = np.random.default_rng(identity_seed + 1)
        for i, (az, el, eye) in enumerate(ring_cameras(views, center, distance)):
            w2c = look_at(eye, center)
            rgb, cover = render_view(
                scene, V, F, vnormals, features, K, w2c, resolution, resolution, center, radius, lens, appearance
            )
            if room_texture is not None:
                # the same camera in the room frame (a similarity: the image is unchanged by scale)
                w2c_room = np.eye(4)
                w2c_room[:3, :3] = w2c[:3, :3]
                w2c_room[:3, 3] = (w2c[:3, :3] @ center + w2c[:3, 3]) * room_scale
                room = synth_room.render_room(
                    K, w2c_room, resolution, resolution, room_texture, lens, with_box=False
                ).astype(np.float64)
                rgb = rgb + (1.0 - cover[..., None]) * room / 255.0
            if points > 0:
                walls = room_scale if room_texture is not None else None
                cloud.append(_surface_points(scene, K, w2c, lens, rgb, center, walls, -(-points // views), prng))
            name = f"frame_{i:03d}"
            img_path = tmp / "images" / f"{name}.png"
            write_png(img_path, np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8))
            mask_path = None
            if masks:
                mask_path = tmp / "masks" / f"{name}.png"
                write_png(mask_path, np.round(cover * 255).astype(np.uint8))
            frame = Frame(name, "rgb", img_path, K, w2c, resolution, resolution, mask_path=mask_path)
            entries.append(frame_to_nerfstudio(frame, tmp, w2c))
            view_dir = (eye - center) / np.linalg.norm(eye - center)
            records.append(
                {
                    "name": name,
                    "azimuth_deg": az,
                    "elevation_deg": el,
                    "angle_to_face_deg": math.degrees(math.acos(np.clip(view_dir @ FACE_DIRECTION, -1, 1))),
                }
            )
        cams: dict = {"camera_model": "PINHOLE"}
        if lens is not None:
            cams = {"camera_model": "OPENCV", "k1": k1, "k2": k2, "p1": 0.0, "p2": 0.0}
        if points > 0:
            from .capture import write_points_ply

            xyz = np.concatenate([c[0] for c in cloud])[:points]
            col = np.concatenate([c[1] for c in cloud])[:points]
            write_points_ply(tmp / "sparse_pc.ply", xyz, col)
            cams["ply_file_path"] = "sparse_pc.ply"
        pio.write_json(tmp / "transforms.json", {**cams, "frames": entries})
        mesh_o3d = o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F.astype(np.int32))
        )
        with pio.atomic_path(tmp / "gt_mesh.ply") as p:
            if not o3d.io.write_triangle_mesh(str(p), mesh_o3d):
                raise PrivsplatError(f"could not write {p}")
        np.save(tmp / "gt_face_mask.npy", face_mask.astype(bool))
        pio.write_json(
            tmp / "synth.json",
            {
                "mesh": mesh,
                "units": units,
                "views": views,
                "resolution": resolution,
                "identity_seed": identity_seed,
                "identity_scale": identity_scale,
                "appearance": appearance,
                "expression": list(expression),
                "fov_deg": fov_deg,
                "fill": fill,
                "background": background,
                "distortion": [k1, k2],
                "masks": masks,
                "head_center": center,
                "head_radius": radius,
                "camera_distance": distance,
                "face_direction": FACE_DIRECTION,
                "light_direction": LIGHT_DIRECTION,
                "ambient": AMBIENT,
                "frames": records,
            },
        )
    return out


def rear_view_names(dataset_dir: Path, n_neutral: int) -> tuple[list[str], list[str]]:
    """(neutral, sensitive) frame names of a synth dataset: the n_neutral views looking most at
    the back of the head, and the rest."""
    info = json.loads((Path(dataset_dir) / "synth.json").read_text())
    frames = sorted(info["frames"], key=lambda f: f["angle_to_face_deg"], reverse=True)
    names = [f["name"] for f in frames]
    return names[:n_neutral], names[n_neutral:]
