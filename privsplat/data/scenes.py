"""`privsplat synth --scene car`: a vehicle-like scene with two licence plates, rendered on the CPU.

A scene to test region protection on, where the sensitive content is text, not a face.
Primitives (units: metres, up +y, the car's front faces +z like the heads' faces):
a box body, a narrower cabin with dark windows, four wheels, and front and rear plates
(thin slabs proud of the body) on a large textured ground. The plates carry random
characters chosen by `seed` ("KX 482": two letters, a space, three digits; no I, O or Q,
which read as 1 and 0), drawn with an OpenCV Hershey font, which ships with OpenCV and
needs no licence beyond OpenCV's.

Legibility: a real plate (0.52 m on a 1.8 m wide car) would be ~30 px wide in a 256 px
view of the whole car, too small for any OCR. The plates here are 1.2 x 0.32 m, and the
cameras frame the car tightly (35° field of view, bounding sphere filling 95 % of it), so
at the default 256 px a frontal plate is ~85 x 23 px with ~15 px tall characters:
legible to tesseract once rectified (see privsplat.eval.ocr), and still a small part of
the view (~3 %). 128 px halves that and OCR fails even on the originals.

Output (same layout as the head synth, so load_dataset / protect / fit read it):
images/, masks/ (the car's coverage: the ground is background, as a head's backdrop is),
transforms.json, gt_mesh.ply (the car's visible surfaces: no underside, no faces hidden
where parts touch), gt_plate_mask.npy (per GT vertex: the plates; pass it to
`privsplat eval --gt-face-mask` for the plate-region Chamfer), synth.json, and
plate_masks/<frame>.png (coverage of either plate's face) with plates.json, the sidecar:
each plate's string and world corners, and per view each plate's pixel box, projected
corners, visible pixels, angle to the plate normal and whether it is readable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from .synth import LIGHT_DIRECTION, SUPERSAMPLE

CAR_ELEVATIONS_DEG = (5.0, 20.0, 35.0)  # the heads' rings sit at -15°, which is under the ground here
PLATE_WIDTH, PLATE_HEIGHT, PLATE_PROUD = 1.2, 0.32, 0.02
PLATE_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: they read as 1, 0, 0
PLATE_DIGITS = "0123456789"
PLATE_TEXTURE = (960, 256)  # texels (w, h), same aspect as the plate
READABLE_MAX_ANGLE_DEG = 65.0  # beyond this a plate is too foreshortened to read at 256 px
AMBIENT = 0.4
FILL_LIGHT = np.array([-0.4, 0.5, -0.75]) / np.linalg.norm([-0.4, 0.5, -0.75])  # lights the rear plate

# Part ids (per triangle) decide the albedo.
GROUND, BODY, CABIN, WHEEL, PLATE_FRONT, PLATE_REAR, PLATE_EDGE = range(7)
BODY_X, BODY_Y, BODY_Z = (-0.9, 0.9), (0.3, 1.0), (-1.6, 1.6)
CABIN_X, CABIN_Y, CABIN_Z = (-0.8, 0.8), (1.0, 1.5), (-1.0, 0.6)
WHEEL_RADIUS, WHEEL_X, WHEEL_Z = 0.33, (0.92, 1.17), (-1.05, 1.05)
PLATE_Y = (0.48, 0.48 + PLATE_HEIGHT)
GROUND_HALF = 15.0


def plate_strings(seed: int) -> dict[str, str]:
    """{"front": "KX 482", "rear": "..."}: two different random plates per seed."""
    rng = np.random.default_rng(seed)
    out = {}
    for pid in ("front", "rear"):
        while True:
            s = "".join(rng.choice(list(PLATE_LETTERS), 2)) + " " + "".join(rng.choice(list(PLATE_DIGITS), 3))
            if s not in out.values():
                break
        out[pid] = s
    return out


def plate_texture(text: str, size: tuple[int, int] = PLATE_TEXTURE) -> np.ndarray:
    """Albedo [h, w] in 0..1 of a plate: near-white field, dark border, dark centred text."""
    import cv2

    w, h = size
    img = np.full((h, w), 242, np.uint8)
    border = max(2, h // 32)
    cv2.rectangle(img, (border, border), (w - 1 - border, h - 1 - border), 20, border)
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(0.62 * h / th, 0.86 * w / tw)
    thickness = max(1, int(round(scale * 2.4)))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(img, text, org, font, scale, 15, thickness, cv2.LINE_AA)
    return img.astype(np.float64) / 255.0


def _quad(p0, p1, p2, p3) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p0, p1, p2, p3], np.float64), np.array([[0, 1, 2], [0, 2, 3]])


def _rect(axis: int, value: float, lo: tuple[float, float], hi: tuple[float, float]):
    """Axis-aligned rectangle in the plane coord[axis] = value, spanning lo..hi in the other two axes."""
    a, b = [k for k in range(3) if k != axis]
    corners = []
    for ua, ub in ((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])):
        p = np.zeros(3)
        p[axis], p[a], p[b] = value, ua, ub
        corners.append(p)
    return _quad(*corners)


def _box(x, y, z, skip: tuple[str, ...] = ()) -> list[tuple[np.ndarray, np.ndarray]]:
    faces = {
        "left": (0, x[0], (y[0], z[0]), (y[1], z[1])),
        "right": (0, x[1], (y[0], z[0]), (y[1], z[1])),
        "bottom": (1, y[0], (x[0], z[0]), (x[1], z[1])),
        "top": (1, y[1], (x[0], z[0]), (x[1], z[1])),
        "back": (2, z[0], (x[0], y[0]), (x[1], y[1])),
        "front": (2, z[1], (x[0], y[0]), (x[1], y[1])),
    }
    return [_rect(*v) for k, v in faces.items() if k not in skip]


def _wheel(side: float, cz: float, segments: int = 24):
    """Tyre (lateral surface) and outer cap; the inner cap faces the body and is never seen."""
    ang = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    yz = np.stack([WHEEL_RADIUS * np.sin(ang) + WHEEL_RADIUS, WHEEL_RADIUS * np.cos(ang) + cz], 1)
    inner = np.concatenate([np.full((segments, 1), side * WHEEL_X[0]), yz], 1)
    outer = np.concatenate([np.full((segments, 1), side * WHEEL_X[1]), yz], 1)
    V = np.concatenate([inner, outer, [[side * WHEEL_X[1], WHEEL_RADIUS, cz]]])
    n = segments
    F = []
    for i in range(n):
        j = (i + 1) % n
        F += [[i, j, n + j], [i, n + j, n + i], [n + i, n + j, 2 * n]]
    return V, np.array(F)


def car_parts() -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(part id, vertices, faces) of every primitive of the car (not the ground)."""
    parts = []
    # Body: no underside (no camera sees it); the top is a ring around the cabin's footprint.
    for V, F in _box(BODY_X, BODY_Y, BODY_Z, skip=("bottom", "top")):
        parts.append((BODY, V, F))
    top = BODY_Y[1]
    for lo, hi in (
        ((BODY_X[0], CABIN_Z[1]), (BODY_X[1], BODY_Z[1])),
        ((BODY_X[0], BODY_Z[0]), (BODY_X[1], CABIN_Z[0])),
        ((BODY_X[0], CABIN_Z[0]), (CABIN_X[0], CABIN_Z[1])),
        ((CABIN_X[1], CABIN_Z[0]), (BODY_X[1], CABIN_Z[1])),
    ):
        parts.append((BODY, *_rect(1, top, lo, hi)))
    for V, F in _box(CABIN_X, CABIN_Y, CABIN_Z, skip=("bottom",)):
        parts.append((CABIN, V, F))
    for sx in (-1, 1):
        for cz in WHEEL_Z:
            parts.append((WHEEL, *_wheel(float(sx), cz)))
    px = (-PLATE_WIDTH / 2, PLATE_WIDTH / 2)
    for pid, z0, z1 in (
        (PLATE_FRONT, BODY_Z[1], BODY_Z[1] + PLATE_PROUD),
        (PLATE_REAR, BODY_Z[0] - PLATE_PROUD, BODY_Z[0]),
    ):
        outer = z1 if pid == PLATE_FRONT else z0
        parts.append((pid, *_rect(2, outer, (px[0], PLATE_Y[0]), (px[1], PLATE_Y[1]))))
        # rim: the slab's four sides (its back lies on the body)
        for V, F in _box(px, PLATE_Y, (z0, z1), skip=("front", "back")):
            parts.append((PLATE_EDGE, V, F))
    return parts


def plate_corners_world() -> dict[str, np.ndarray]:
    """Each plate face's corners [4, 3] in reading order: top-left, top-right, bottom-right, bottom-left
    (as seen from in front of that plate)."""
    x0, x1 = -PLATE_WIDTH / 2, PLATE_WIDTH / 2
    y0, y1 = PLATE_Y
    zf, zr = BODY_Z[1] + PLATE_PROUD, BODY_Z[0] - PLATE_PROUD
    return {
        "front": np.array([[x0, y1, zf], [x1, y1, zf], [x1, y0, zf], [x0, y0, zf]]),
        "rear": np.array([[x1, y1, zr], [x0, y1, zr], [x0, y0, zr], [x1, y0, zr]]),
    }


PLATE_NORMALS = {"front": np.array([0.0, 0.0, 1.0]), "rear": np.array([0.0, 0.0, -1.0])}
PLATE_PART = {"front": PLATE_FRONT, "rear": PLATE_REAR}


def _merge(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    Vs, Fs, ids, n = [], [], [], 0
    for pid, V, F in parts:
        Vs.append(V)
        Fs.append(F + n)
        ids.append(np.full(len(F), pid))
        n += len(V)
    return np.concatenate(Vs), np.concatenate(Fs), np.concatenate(ids)


def _noise(p: np.ndarray, freqs=(3.0, 7.0, 17.0), seed: int = 7) -> np.ndarray:
    """Smooth 3D noise in about -1..1 (sum of random plane waves, fixed)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(p))
    for f in freqs:
        for _ in range(3):
            k = rng.standard_normal(3)
            out += np.sin(p @ (k * f / np.linalg.norm(k)) + rng.uniform(0, 2 * np.pi)) / 3
    return out / len(freqs)


def _albedo(part: np.ndarray, p: np.ndarray, textures: dict[int, np.ndarray], body_colour: np.ndarray) -> np.ndarray:
    """Albedo [N, 3] of hit points p [N, 3] on parts `part` [N]."""
    a = np.zeros((len(p), 3))
    g = part == GROUND
    # Grey paving: 1 m slabs with dark joints, plus grain, so the ground has texture to match.
    frac = np.abs(((p[g][:, [0, 2]] + 0.5) % 1.0) - 0.5)
    joint = frac.min(axis=1) > 0.47
    a[g] = (0.45 + 0.08 * _noise(p[g], (2.0, 9.0, 31.0), 11) - 0.15 * joint)[:, None] * np.array([1.0, 0.98, 0.93])
    b = part == BODY
    a[b] = body_colour * (1.0 + 0.12 * _noise(p[b], seed=3))[:, None]
    c = part == CABIN
    a[c] = np.array([0.10, 0.12, 0.16]) * (1.0 + 0.5 * _noise(p[c], seed=5))[:, None]
    roof = c & (p[:, 1] > CABIN_Y[1] - 1e-4)
    a[roof] = body_colour
    w = part == WHEEL
    hub = np.hypot(p[w][:, 1] - WHEEL_RADIUS, np.abs(p[w][:, 2]) - WHEEL_Z[1]) < 0.55 * WHEEL_RADIUS
    outer_cap = np.abs(p[w][:, 0]) > WHEEL_X[1] - 1e-4
    a[w] = np.where((hub & outer_cap)[:, None], [0.55, 0.55, 0.58], [0.06, 0.06, 0.07])
    a[part == PLATE_EDGE] = 0.9
    for pid, sign in ((PLATE_FRONT, 1.0), (PLATE_REAR, -1.0)):
        m = part == pid
        tex = textures[pid]
        th, tw = tex.shape
        u = (sign * p[m][:, 0] + PLATE_WIDTH / 2) / PLATE_WIDTH  # the rear plate reads from behind
        v = (PLATE_Y[1] - p[m][:, 1]) / PLATE_HEIGHT
        iu = np.clip((u * tw).astype(int), 0, tw - 1)
        iv = np.clip((v * th).astype(int), 0, th - 1)
        a[m] = tex[iv, iu][:, None]
    return np.clip(a, 0.0, 1.0)


def _cast(scene, K, w2c, width, height):
    """Supersampled rays of one view: (eye, dirs [N,3], hit dict)."""
    import open3d as o3d

    s = SUPERSAMPLE
    u, v = np.meshgrid((np.arange(width * s) + 0.5) / s, (np.arange(height * s) + 0.5) / s)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
    R, t = w2c[:3, :3], w2c[:3, 3]
    dirs = (pix @ np.linalg.inv(K).T) @ R
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    eye = -R.T @ t
    rays = np.concatenate([np.broadcast_to(eye, dirs.shape), dirs], axis=1).astype(np.float32)
    return eye, dirs, scene.cast_rays(o3d.core.Tensor(rays))


def render_car_view(
    scene, part, fnormals, textures, body_colour, K, w2c, width, height
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(rgb [H,W,3], car coverage [H,W], plate id -> coverage [H,W]), all floats in 0..1."""
    eye, dirs, hit = _cast(scene, K, w2c, width, height)
    t_hit = hit["t_hit"].numpy()
    ok = np.isfinite(t_hit)
    prim = hit["primitive_ids"].numpy()[ok].astype(np.int64)
    hit_part = part[prim]
    n = fnormals[prim]
    n = np.where((np.sum(n * dirs[ok], axis=1) > 0)[:, None], -n, n)  # face the camera
    p = eye + dirs[ok] * t_hit[ok][:, None]
    light = AMBIENT + 0.45 * np.clip(n @ LIGHT_DIRECTION, 0, None) + 0.25 * np.clip(n @ FILL_LIGHT, 0, None)
    rgb = np.zeros((len(dirs), 3))
    rgb[ok] = np.clip(_albedo(hit_part, p, textures, body_colour) * light[:, None], 0.0, 1.0)
    s = SUPERSAMPLE

    def down(a):
        return a.reshape(height, s, width, s, *a.shape[1:]).mean(axis=(1, 3))

    def cover(sel):
        full = np.zeros(len(dirs))
        full[np.nonzero(ok)[0][sel]] = 1.0
        return down(full)

    plates = {pid: cover(hit_part == PLATE_PART[pid]) for pid in PLATE_PART}
    return down(rgb), cover(hit_part != GROUND), plates


def orbit_cameras(
    views: int, center: np.ndarray, distance: float, elevations: tuple[float, ...] = CAR_ELEVATIONS_DEG
) -> list[tuple[float, float, np.ndarray]]:
    """synth.ring_cameras with other elevations (azimuth 0 = in front of the car, +z)."""
    out = []
    for ring, el in enumerate(elevations):
        n = views // len(elevations) + (ring < views % len(elevations))
        for j in range(n):
            az = (360.0 * j / n + ring * 360.0 / (len(elevations) * max(n, 1))) % 360.0
            a, e = math.radians(az), math.radians(el)
            out.append(
                (
                    az,
                    el,
                    center + distance * np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)]),
                )
            )
    return out


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def plate_view_record(pid: str, coverage: np.ndarray, K: np.ndarray, w2c: np.ndarray, eye: np.ndarray) -> dict:
    """Where plate `pid` is in one view: pixel box of its visible face, projected corners, visibility."""
    corners = plate_corners_world()[pid]
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
    in_front = bool((cam[:, 2] > 1e-6).all())
    uv = (cam @ K.T)[:, :2] / np.maximum(cam[:, 2:3], 1e-6)
    centre = corners.mean(axis=0)
    to_eye = (eye - centre) / np.linalg.norm(eye - centre)
    angle = math.degrees(math.acos(float(np.clip(to_eye @ PLATE_NORMALS[pid], -1, 1))))
    visible = coverage > 0
    rec = {
        "id": pid,
        "visible_px": int(visible.sum()),
        "coverage_px": float(coverage.sum()),
        "corners": uv.tolist() if in_front else None,
        "angle_deg": angle,
        "box": None,
        "visible_fraction": 0.0,
        "readable": False,
    }
    if rec["visible_px"]:
        ys, xs = np.nonzero(visible)
        rec["box"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        H, W = coverage.shape
        inside = (
            in_front
            and (uv[:, 0] >= 0).all()
            and (uv[:, 0] <= W).all()
            and (uv[:, 1] >= 0).all()
            and (uv[:, 1] <= H).all()
        )
        area = _polygon_area(uv) if in_front else 0.0
        rec["visible_fraction"] = float(min(1.0, rec["coverage_px"] / area)) if area > 0 else 0.0
        rec["readable"] = bool(inside and angle < READABLE_MAX_ANGLE_DEG and rec["visible_fraction"] > 0.95)
    return rec


def _check_args(views, resolution, fov_deg, fill) -> None:
    if not isinstance(views, int) or views < 1:
        raise PrivsplatError(f"--views must be a positive integer, got {views!r}")
    if not isinstance(resolution, int) or not 32 <= resolution <= 2048:
        raise PrivsplatError(
            f"--resolution must be an integer in 32..2048 for the car scene, got {resolution!r} "
            "(its plates are legible from about 256 px)"
        )
    if not 5.0 <= fov_deg <= 120.0:
        raise PrivsplatError(f"--fov-deg must be in 5..120 degrees, got {fov_deg!r}")
    if not 0.1 <= fill <= 1.0:
        raise PrivsplatError(f"fill must be in 0.1..1, got {fill!r}")


def synthesize_car(
    out: str | Path = "car",
    views: int = 48,
    resolution: int = 256,
    seed: int = 0,
    fov_deg: float = 35.0,
    fill: float = 0.95,
    overwrite: bool = False,
) -> Path:
    """Render the car scene described in the module docstring into `out`; return `out`.

    seed picks the plate strings and the body colour; the same seed gives the same files.
    """
    import open3d as o3d

    from .. import io as pio
    from ..cameras import intrinsics_from_fov, look_at
    from .dataset import Frame
    from .formats import frame_to_nerfstudio
    from .images import write_png

    _check_args(views, resolution, fov_deg, fill)
    rng = np.random.default_rng([seed, 1])
    body_colour = np.array([0.15, 0.25, 0.6])[rng.permutation(3)] + rng.uniform(0.0, 0.15, 3)
    texts = plate_strings(seed)
    textures = {PLATE_PART[pid]: plate_texture(s) for pid, s in texts.items()}
    carV, carF, car_part = _merge(car_parts())
    gV, gF = _rect(1, 0.0, (-GROUND_HALF, -GROUND_HALF), (GROUND_HALF, GROUND_HALF))
    V = np.concatenate([carV, gV])
    F = np.concatenate([carF, gF + len(carV)])
    part = np.concatenate([car_part, [GROUND, GROUND]])
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(V.astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))

    center = 0.5 * (carV.min(0) + carV.max(0))
    radius = float(np.linalg.norm(carV - center, axis=1).max())
    distance = radius / math.sin(fill * math.radians(fov_deg) / 2)
    K = intrinsics_from_fov(resolution, resolution, math.radians(fov_deg))
    out = Path(out)
    with pio.atomic_dir(out, overwrite=overwrite) as tmp:
        for sub in ("images", "masks", "plate_masks"):
            (tmp / sub).mkdir()
        entries, records, plate_frames = [], [], []
        for i, (az, el, eye) in enumerate(orbit_cameras(views, center, distance)):
            w2c = look_at(eye, center)
            rgb, cover, plates = render_car_view(scene, part, fn, textures, body_colour, K, w2c, resolution, resolution)
            name = f"frame_{i:03d}"
            img_path, mask_path = tmp / "images" / f"{name}.png", tmp / "masks" / f"{name}.png"
            write_png(img_path, np.round(rgb * 255).astype(np.uint8))
            write_png(mask_path, np.round(cover * 255).astype(np.uint8))
            plate_cover = np.clip(plates["front"] + plates["rear"], 0, 1)
            write_png(tmp / "plate_masks" / f"{name}.png", np.round(plate_cover * 255).astype(np.uint8))
            frame = Frame(name, "rgb", img_path, K, w2c, resolution, resolution, mask_path=mask_path)
            entries.append(frame_to_nerfstudio(frame, tmp, w2c))
            records.append({"name": name, "azimuth_deg": az, "elevation_deg": el})
            plate_frames.append(
                {
                    "name": name,
                    "plates": [plate_view_record(pid, plates[pid], K, w2c, eye) for pid in ("front", "rear")],
                }
            )
        pio.write_json(tmp / "transforms.json", {"camera_model": "PINHOLE", "frames": entries})
        _write_mesh(tmp / "gt_mesh.ply", carV, carF)
        np.save(tmp / "gt_plate_mask.npy", _plate_vertex_mask(car_parts()))
        pio.write_json(
            tmp / "plates.json",
            {
                "plates": [
                    {
                        "id": pid,
                        "text": texts[pid],
                        "corners_world": plate_corners_world()[pid],
                        "normal": PLATE_NORMALS[pid],
                    }
                    for pid in ("front", "rear")
                ],
                "readable_max_angle_deg": READABLE_MAX_ANGLE_DEG,
                "image_size": [resolution, resolution],
                "frames": plate_frames,
            },
        )
        pio.write_json(
            tmp / "synth.json",
            {
                "scene": "car",
                "units": "m",
                "views": views,
                "resolution": resolution,
                "seed": seed,
                "fov_deg": fov_deg,
                "fill": fill,
                "car_center": center,
                "car_radius": radius,
                "camera_distance": distance,
                "elevations_deg": CAR_ELEVATIONS_DEG,
                "body_colour": body_colour,
                "light_direction": LIGHT_DIRECTION,
                "fill_light_direction": FILL_LIGHT,
                "ambient": AMBIENT,
                "frames": records,
            },
        )
    return out


def _plate_vertex_mask(parts) -> np.ndarray:
    return np.concatenate([np.full(len(V), pid in (PLATE_FRONT, PLATE_REAR, PLATE_EDGE)) for pid, V, _ in parts])


def _write_mesh(path: Path, V: np.ndarray, F: np.ndarray) -> None:
    import open3d as o3d

    from .. import io as pio

    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F.astype(np.int32)))
    with pio.atomic_path(path) as p:
        if not o3d.io.write_triangle_mesh(str(p), mesh):
            raise PrivsplatError(f"could not write {p}")


def load_plates(data: str | Path) -> dict:
    """The plates.json sidecar of a car scene (plate strings, per-view boxes and corners)."""
    import json

    path = Path(data) / "plates.json"
    if not path.is_file():
        raise PrivsplatError(
            f"{data} has no plates.json; it is written by `privsplat synth --scene car` "
            "(for your own captures, pass the plate strings and corners yourself)"
        )
    return json.loads(path.read_text())
