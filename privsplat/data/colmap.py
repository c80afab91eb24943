"""A small reader for COLMAP sparse models (cameras, images and the xyz of points3D, .bin or .txt).

Pinhole models (PINHOLE, SIMPLE_PINHOLE) load as they are. The distorted models
SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV and OPENCV_FISHEYE become a SourceCamera in
OpenCV's coefficient order; images and masks are undistorted on read (undistort.py), so
every later pixel uses the same pinhole camera. Other models (FOV, the *_FISHEYE variants
other than OPENCV_FISHEYE, THIN_PRISM_FISHEYE) are refused with the command that fixes them.
COLMAP's pixel centres sit at integer + 0.5, like privsplat's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from .dataset import SourceCamera

# model id -> (name, number of parameters), from COLMAP's camera_models.h
MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in MODELS.items()}


@dataclass
class ColmapCamera:
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    qvec: np.ndarray  # world-to-camera rotation, wxyz
    tvec: np.ndarray  # world-to-camera translation
    camera_id: int
    name: str


def find_model_dir(root: Path) -> Path | None:
    for d in (root / "sparse" / "0", root / "sparse", root):
        if any((d / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return d
    return None


def read_model(model_dir: Path) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage]]:
    try:
        if (model_dir / "cameras.bin").is_file() and (model_dir / "images.bin").is_file():
            return _read_cameras_bin(model_dir / "cameras.bin"), _read_images_bin(model_dir / "images.bin")
        if (model_dir / "cameras.txt").is_file() and (model_dir / "images.txt").is_file():
            return _read_cameras_txt(model_dir / "cameras.txt"), _read_images_txt(model_dir / "images.txt")
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise PrivsplatError(
            f"COLMAP model in {model_dir} is corrupt ({e}); re-export it with `colmap model_converter`"
        ) from None
    raise PrivsplatError(f"COLMAP model in {model_dir} needs both cameras and images (.bin or .txt)")


def read_points(model_dir: Path) -> np.ndarray | None:
    """[P,3] float64 xyz of points3D in the model's world (the .bin or .txt that matches the cameras
    read_model reads, else the other); None without the file or when it holds no point. Colours,
    errors and tracks are skipped."""
    binary = (model_dir / "cameras.bin").is_file() and (model_dir / "images.bin").is_file()
    names = ("points3D.bin", "points3D.txt") if binary else ("points3D.txt", "points3D.bin")
    path = next((model_dir / n for n in names if (model_dir / n).is_file()), None)
    if path is None:
        return None
    try:
        xyz = _read_points_bin(path) if path.suffix == ".bin" else _read_points_txt(path)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
        raise PrivsplatError(
            f"COLMAP points3D in {model_dir} is corrupt ({e}); re-export the model with "
            "`colmap model_converter`, or remove points3D to load the cameras alone"
        ) from None
    if not np.all(np.isfinite(xyz)):
        raise PrivsplatError(f"COLMAP points3D in {model_dir} holds non-finite coordinates; re-export the model")
    return xyz if len(xyz) else None


def camera_lens(cam: ColmapCamera, where: str) -> tuple[np.ndarray, SourceCamera | None]:
    """(K of the stored images, their distortion as a SourceCamera or None when pinhole)."""
    from .undistort import check_source

    p = [float(v) for v in cam.params]
    m = cam.model
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        # radial terms only: OpenCV's (k1, k2, p1, p2) with p = 0
        coeffs = () if m == "SIMPLE_PINHOLE" else (p[3], p[4] if m == "RADIAL" else 0.0, 0.0, 0.0)
    elif m in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
        fx, fy, cx, cy = p[:4]
        coeffs = tuple(p[4:])  # COLMAP stores these in OpenCV's order already
    else:
        raise PrivsplatError(
            f"{where}: COLMAP camera model {m} is not supported (privsplat undistorts "
            "SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV and OPENCV_FISHEYE); run "
            "`colmap image_undistorter` and load its output"
        )
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if not any(coeffs):
        return K, None
    model = "OPENCV_FISHEYE" if m == "OPENCV_FISHEYE" else "OPENCV"
    return K, check_source(SourceCamera(model, K, coeffs, cam.width, cam.height), where)


def qvec_to_rotation(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise PrivsplatError(f"COLMAP image has an invalid rotation quaternion {q.tolist()}")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_to_qvec(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


def _model(model_id: int) -> tuple[str, int]:
    if model_id not in MODELS:
        raise PrivsplatError(f"unknown COLMAP camera model id {model_id}")
    return MODELS[model_id]


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    data = path.read_bytes()
    (n,), off = struct.unpack_from("<Q", data, 0), 8
    cams = {}
    for _ in range(n):
        cid, mid, w, h = struct.unpack_from("<iiQQ", data, off)
        off += 24
        name, k = _model(mid)
        params = np.array(struct.unpack_from(f"<{k}d", data, off))
        off += 8 * k
        cams[cid] = ColmapCamera(name, int(w), int(h), params)
    return cams


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    data = path.read_bytes()
    (n,), off = struct.unpack_from("<Q", data, 0), 8
    images = {}
    for _ in range(n):
        iid, *qt, cid = struct.unpack_from("<i7di", data, off)
        off += 4 + 56 + 4
        end = data.index(b"\0", off)
        name = data[off:end].decode("utf-8")
        off = end + 1
        (npts,) = struct.unpack_from("<Q", data, off)
        off += 8 + npts * 24
        if off > len(data):
            raise ValueError("file ends inside an image record")
        images[iid] = ColmapImage(np.array(qt[:4]), np.array(qt[4:]), cid, name)
    return images


POINT_BIN_MIN = 8 + 24 + 3 + 8 + 8  # id, xyz, rgb, error, track length (a track of 0 entries)


def _read_points_bin(path: Path) -> np.ndarray:
    data = path.read_bytes()
    (n,), off = struct.unpack_from("<Q", data, 0), 8
    if n * POINT_BIN_MIN > len(data) - off:  # before allocating for the claimed count
        raise ValueError(f"it claims {n} points but holds {len(data)} bytes")
    xyz = np.empty((n, 3))
    for i in range(n):
        xyz[i] = struct.unpack_from("<3d", data, off + 8)
        (track,) = struct.unpack_from("<Q", data, off + 43)
        off += POINT_BIN_MIN + 8 * track
    if off > len(data):
        raise ValueError("file ends inside a point record")
    return xyz


def _read_points_txt(path: Path) -> np.ndarray:
    rows = []
    for ln in _data_lines(path):
        tok = ln.split()
        if not tok:
            continue
        if len(tok) < 8 or len(tok) % 2:
            raise ValueError(f"point line {ln[:60]!r} needs id, x, y, z, r, g, b, error and (image, point) pairs")
        rows.append([float(t) for t in tok[1:4]])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _data_lines(path: Path) -> list[str]:
    return [ln.rstrip("\n") for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for ln in _data_lines(path):
        tok = ln.split()
        if not tok:
            continue
        if tok[1] not in MODEL_IDS:
            raise PrivsplatError(f"unknown COLMAP camera model {tok[1]!r} in {path}")
        k = MODEL_IDS[tok[1]][1]
        cams[int(tok[0])] = ColmapCamera(tok[1], int(tok[2]), int(tok[3]), np.array([float(t) for t in tok[4 : 4 + k]]))
        if len(tok) != 4 + k:
            raise ValueError(f"camera line has {len(tok) - 4} parameters, {tok[1]} needs {k}")
    return cams


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    images = {}
    lines = _data_lines(path)
    i = 0
    while i < len(lines):
        tok = lines[i].split()
        if not tok:  # blank line outside a record
            i += 1
            continue
        if len(tok) < 10:
            raise ValueError(f"image line {lines[i]!r} has fewer than 10 fields")
        vals = [float(t) for t in tok[1:8]]
        images[int(tok[0])] = ColmapImage(np.array(vals[:4]), np.array(vals[4:]), int(tok[8]), " ".join(tok[9:]))
        # The next line holds the 2D points (possibly empty): (x, y, id) triples. Writers that leave
        # it out would otherwise make us skip every second image silently.
        i += 2 if i + 1 < len(lines) and _is_points_line(lines[i + 1]) else 1
    return images


def _is_points_line(line: str) -> bool:
    tok = line.split()
    if len(tok) % 3:
        return False
    try:
        [float(t) for t in tok]
    except ValueError:
        return False
    return True


def write_model_txt(
    model_dir: Path, cams: dict[int, ColmapCamera], images: dict[int, ColmapImage], points: np.ndarray | None = None
) -> None:
    """Write cameras.txt/images.txt, and points3D.txt (xyz, grey, empty tracks) when points are given
    (used by tests and by anyone converting to COLMAP)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "cameras.txt", "w") as f:
        f.write("# CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        for cid, c in cams.items():
            f.write(f"{cid} {c.model} {c.width} {c.height} " + " ".join(repr(float(p)) for p in c.params) + "\n")
    with open(model_dir / "images.txt", "w") as f:
        f.write("# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n# POINTS2D[] as (X, Y, POINT3D_ID)\n")
        for iid, im in images.items():
            vals = " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec))
            f.write(f"{iid} {vals} {im.camera_id} {im.name}\n\n")
    if points is not None:
        with open(model_dir / "points3D.txt", "w") as f:
            f.write("# POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
            for i, p in enumerate(np.asarray(points, dtype=np.float64)):
                f.write(f"{i + 1} " + " ".join(repr(float(v)) for v in p) + " 128 128 128 0.5\n")


def write_model_bin(
    model_dir: Path, cams: dict[int, ColmapCamera], images: dict[int, ColmapImage], points: np.ndarray | None = None
) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    out = bytearray(struct.pack("<Q", len(cams)))
    for cid, c in cams.items():
        out += struct.pack("<iiQQ", cid, MODEL_IDS[c.model][0], c.width, c.height)
        out += struct.pack(f"<{len(c.params)}d", *c.params)
    (model_dir / "cameras.bin").write_bytes(bytes(out))
    out = bytearray(struct.pack("<Q", len(images)))
    for iid, im in images.items():
        out += struct.pack("<i7di", iid, *im.qvec, *im.tvec, im.camera_id)
        out += im.name.encode("utf-8") + b"\0" + struct.pack("<Q", 0)
    (model_dir / "images.bin").write_bytes(bytes(out))
    if points is not None:
        out = bytearray(struct.pack("<Q", len(points)))
        for i, p in enumerate(np.asarray(points, dtype=np.float64)):
            # a one-entry track (image_id, point2d_idx): the reader must step over tracks
            out += struct.pack("<Q3d3BdQ", i + 1, *p, 128, 128, 128, 0.5, 1) + struct.pack("<II", 1, i)
        (model_dir / "points3D.bin").write_bytes(bytes(out))
