"""One parser per input format; each yields frames with OpenCV world-to-camera poses in
the input's own units and frame (normalisation happens once, in load.py).

Conventions converted here, once:
- nerfstudio / instant-ngp: `transform_matrix` is OpenGL camera-to-world (x right, y up,
  z backward): w2c_opencv = inv(c2w_gl @ diag(1, -1, -1, 1)).
- COLMAP: qvec/tvec are already OpenCV world-to-camera.
- SfM points (Parsed.points) stay in the frame of the poses: nerfstudio's `ply_file_path` is
  written in the transforms.json world (ns-process-data applies its `applied_transform` to the
  poses and the points alike; nerfstudio reads both with the same transform), COLMAP's
  points3D in the model's world. Only x, y, z are read; colours are ignored.
- IDR / NeuS / VolSDF: world_mat_i = K [R | t] (up to scale) maps the input world to
  pixels; scale_mat_i maps the unit sphere to the input world. We decompose world_mat_i
  (i.e. P = world_mat @ scale_mat composed with inv(scale_mat)), so poses stay in the
  input world, where DTU/H3DS ground-truth meshes live. Their pixel centres are at
  integer coordinates, ours at integer + 0.5, so cx, cy gain 0.5.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PrivsplatError
from .dataset import Frame, SourceCamera
from .undistort import apply_pinhole, check_source

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclass
class Parsed:
    frames: list[Frame]  # w2c in input units
    normalisation: dict[str, Any] | None  # stored by `protect`: {"center": [3], "scale": s}
    format: str
    points: np.ndarray | None = None  # [P,3] float64 SfM points in input units; None = none given
    points_path: Path | None = None  # the file they came from (the guard checks it in protected folders)


def detect_format(root: Path) -> str:
    from .colmap import find_model_dir

    if (root / "transforms.json").is_file():
        return "nerfstudio"
    if any((root / n).is_file() for n in ("cameras.npz", "cameras_sphere.npz")):
        return "idr"
    if find_model_dir(root) is not None:
        return "colmap"
    raise PrivsplatError(
        f"{root} holds no dataset privsplat can read: expected transforms.json "
        "(nerfstudio/instant-ngp), a COLMAP model (sparse/0/cameras.bin|txt) or "
        "cameras.npz with image/ and mask/ (IDR/NeuS)"
    )


def parse(root: Path, max_size: int | None = None) -> Parsed:
    """Frames with pinhole cameras: distorted inputs are undistorted (on read, see undistort.py) and
    the long side is capped at max_size (None: the stored size)."""
    fmt = detect_format(root)
    parsed = {"nerfstudio": parse_nerfstudio, "colmap": parse_colmap, "idr": parse_idr}[fmt](root)
    apply_pinhole(parsed.frames, max_size)
    return parsed


# ----------------------------------------------------------------------------- helpers


def check_last_row(m: np.ndarray, what: str, where: str) -> None:
    """A 4x4 rigid pose ends in [0, 0, 0, 1]; anything else is refused before it is inverted."""
    if np.abs(m[3] - (0, 0, 0, 1)).max() > 1e-6:
        raise PrivsplatError(f"{where}: {what}'s last row must be [0, 0, 0, 1], got {m[3].tolist()}")


def check_pose(w2c: np.ndarray, where: str) -> np.ndarray:
    w2c = np.asarray(w2c, dtype=np.float64)
    if w2c.shape != (4, 4) or not np.all(np.isfinite(w2c)):
        raise PrivsplatError(f"{where}: camera pose must be a finite 4x4 matrix")
    check_last_row(w2c, "camera pose", where)
    R = w2c[:3, :3]
    if abs(np.linalg.det(R) - 1.0) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
        raise PrivsplatError(
            f"{where}: camera rotation is not orthonormal (singular, scaled or mirrored "
            "pose); fix the dataset's camera matrices"
        )
    return w2c


def check_intrinsics(K: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise PrivsplatError(
            f"{where}: intrinsics must be finite with positive focal lengths, got fx={K[0, 0]!r}, fy={K[1, 1]!r}"
        )
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise PrivsplatError(f"{where}: image size must be positive integers, got {width!r}x{height!r}")
    side = max(width, height)
    # a field of view under ~0.06 degrees, or a principal point far outside the image, is a unit or
    # field mix-up (e.g. fl_x in micrometres), not a camera
    if K[0, 0] > 1000 * side or K[1, 1] > 1000 * side:
        raise PrivsplatError(
            f"{where}: focal length fx={K[0, 0]:.4g}, fy={K[1, 1]:.4g} px is implausible for a "
            f"{width}x{height} image (a field of view under 0.06 degrees); focal lengths are in pixels"
        )
    if not (-10 * width <= K[0, 2] <= 11 * width and -10 * height <= K[1, 2] <= 11 * height):
        raise PrivsplatError(
            f"{where}: principal point ({K[0, 2]:.4g}, {K[1, 2]:.4g}) is far outside the "
            f"{width}x{height} image; cx, cy are in pixels"
        )
    return K


def unique_names(paths: list[Path], root: Path) -> list[str]:
    """File stems; where stems collide, the path below root without suffix, '/' -> '_'."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    names = []
    for p in paths:
        try:
            rel = p.relative_to(root)
        except ValueError:
            rel = Path(p.name)
        names.append(str(rel.with_suffix("")).replace("/", "_").replace("\\", "_"))
    if len(set(names)) != len(names):
        raise PrivsplatError("two frames use the same image file; each frame needs its own image")
    return names


def inside(root: Path, path: Path, where: str) -> Path:
    """path, refused unless it -- after '..' and every symbolic link on the way -- lies inside root.

    A dataset comes from someone else: an absolute path, '..' or a link out of the folder would make
    privsplat read any file on this machine (and fit copies what it reads into renders/, which goes
    back to the sender). Links that stay inside the folder are fine.
    """
    real_root, real = root.resolve(), path.resolve()
    if real != real_root and real_root not in real.parents:
        raise PrivsplatError(
            f"{where}: {path} lies outside the dataset folder {root} (an absolute path, "
            "'..' or a symbolic link out of it); privsplat reads only files inside the "
            "dataset: copy the file into the folder and give a path relative to it"
        )
    return path


def resolve_image(root: Path, rel: str, where: str) -> Path:
    p = inside(root, root / rel, where)  # before looking: do not reveal which outside files exist
    if p.suffix and p.is_file():
        return inside(root, p, where)
    for s in IMAGE_SUFFIXES:
        q = p.with_name(p.name + s)
        if q.is_file():
            return inside(root, q, where)
    raise PrivsplatError(
        f"{where}: image {p} does not exist (tried with and without .png/.jpg); fix file_path or restore the image"
    )


def read_points_ply(path: Path, where: str) -> np.ndarray | None:
    """[P,3] float64 x, y, z of a PLY's vertices (other properties ignored); None for zero vertices."""
    from plyfile import PlyData, PlyParseError

    from ..io import check_ply_header

    counts = check_ply_header(path, f"{where}: point file")  # before plyfile allocates for the claimed count
    if "vertex" not in counts:
        raise PrivsplatError(f"{where}: point file {path} has no 'vertex' element; give a point cloud PLY")
    try:
        v = PlyData.read(str(path))["vertex"].data
    except (PlyParseError, ValueError, KeyError, IndexError, EOFError, struct.error, UnicodeDecodeError) as e:
        raise PrivsplatError(
            f"{where}: point file {path} cannot be read ({type(e).__name__}: {e}); re-export it"
        ) from None
    missing = [k for k in "xyz" if k not in (v.dtype.names or ())]
    if missing:
        raise PrivsplatError(f"{where}: point file {path} lacks the vertex propert(ies) {missing}; it needs x, y, z")
    xyz = np.stack([np.asarray(v[k], dtype=np.float64) for k in "xyz"], axis=1).reshape(-1, 3)
    if not np.all(np.isfinite(xyz)):
        raise PrivsplatError(f"{where}: point file {path} holds non-finite coordinates; re-export it")
    return xyz if len(xyz) else None


def image_size(path: Path) -> tuple[int, int]:
    from .images import read_image

    img = read_image(path)
    return img.shape[1], img.shape[0]


# ----------------------------------------------------------------------------- nerfstudio


def _num(d: dict, key: str, where: str):
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise PrivsplatError(f"{where}: {key} must be a finite number, got {v!r}")
    return float(v)


def _int(d: dict, key: str, where: str):
    v = _num(d, key, where)
    if v is None:
        return None
    if v != int(v) or v <= 0:
        raise PrivsplatError(f"{where}: {key} must be a positive integer, got {d[key]!r}")
    return int(v)


def parse_nerfstudio(root: Path) -> Parsed:
    path = root / "transforms.json"
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PrivsplatError(f"{path} is not valid JSON ({e}); fix or regenerate it") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise PrivsplatError(f"{path} needs a 'frames' list")
    if not meta["frames"]:
        raise PrivsplatError(f"{path} has an empty frame list; a dataset needs at least one view")
    frames_raw = meta["frames"]
    paths, poses, intr, masks, extras = [], [], [], [], []
    for i, fr in enumerate(frames_raw):
        where = f"{path} frame {i}"
        if not isinstance(fr, dict):
            raise PrivsplatError(f"{where}: each frame must be a JSON object")
        if not isinstance(fr.get("file_path"), str):
            raise PrivsplatError(f"{where}: missing file_path")
        img = resolve_image(root, fr["file_path"], where)
        try:
            c2w = np.array(fr.get("transform_matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            raise PrivsplatError(f"{where}: transform_matrix must be a 4x4 (or 3x4) number matrix") from None
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
            raise PrivsplatError(f"{where}: transform_matrix must be a finite 4x4 matrix")
        if abs(np.linalg.det(c2w[:3, :3])) < 1e-9:
            raise PrivsplatError(f"{where}: transform_matrix is singular")
        check_last_row(c2w, "transform_matrix", where)
        w2c = check_pose(np.linalg.inv(c2w @ GL_TO_CV), where)
        merged = {**{k: meta[k] for k in CAMERA_KEYS if k in meta}, **{k: fr[k] for k in CAMERA_KEYS if k in fr}}
        w, h = _int(merged, "w", where), _int(merged, "h", where)
        if w is None or h is None:
            w, h = image_size(img)
        fx, fy = _num(merged, "fl_x", where), _num(merged, "fl_y", where)
        ax, ay = _num(merged, "camera_angle_x", where), _num(merged, "camera_angle_y", where)
        if fx is None and ax is not None:
            if not 0 < ax < math.pi:
                raise PrivsplatError(f"{where}: camera_angle_x must be in (0, pi) radians, got {ax}")
            fx = 0.5 * w / math.tan(0.5 * ax)
        if fy is None and ay is not None and 0 < ay < math.pi:
            fy = 0.5 * h / math.tan(0.5 * ay)
        if fx is None:
            raise PrivsplatError(f"{where}: no focal length: give fl_x (pixels) or camera_angle_x (radians)")
        fy = fx if fy is None else fy
        cx = _num(merged, "cx", where)
        cy = _num(merged, "cy", where)
        K = np.array([[fx, 0, w / 2 if cx is None else cx], [0, fy, h / 2 if cy is None else cy], [0, 0, 1]])
        check_intrinsics(K, w, h, where)
        lens = nerfstudio_lens(merged, K, w, h, where)
        mask = None
        if fr.get("mask_path") is not None:
            if not isinstance(fr["mask_path"], str):
                raise PrivsplatError(f"{where}: mask_path must be a string")
            mask = resolve_image(root, fr["mask_path"], where + " mask")
        paths.append(img)
        poses.append(w2c)
        intr.append((K, w, h, lens))
        masks.append(mask)
        extras.append(fr)
    names = unique_names(paths, root)
    frames = []
    for name, img, w2c, (K, w, h, lens), mask, fr in zip(names, paths, poses, intr, masks, extras):
        kind = fr.get("privsplat_kind", "rgb")
        if kind not in ("rgb", "protected"):
            raise PrivsplatError(f"frame {name!r}: privsplat_kind must be 'rgb' or 'protected', got {kind!r}")
        if kind == "protected" and lens is not None:
            raise PrivsplatError(
                f"frame {name!r}: a protected frame cannot have lens distortion (protect "
                "writes undistorted views); re-run privsplat protect"
            )
        frame = Frame(
            name=name,
            kind=kind,
            image_path=img,
            K=K,
            w2c=w2c,
            width=w,
            height=h,
            mask_path=mask,
            source=lens,
            extra={"w2c_input": w2c},
        )
        if kind == "protected":
            scale = _num(fr, "privsplat_magnitude_scale", f"frame {name!r}")
            if scale is None or scale <= 0:
                raise PrivsplatError(
                    f"frame {name!r}: a protected frame needs a positive "
                    "privsplat_magnitude_scale; re-run privsplat protect"
                )
            frame.extra["magnitude_scale"] = scale
            for key, attr in (
                ("privsplat_region_path", "region_mask_path"),
                ("privsplat_rgb_outside_path", "rgb_outside_path"),
            ):
                if fr.get(key) is not None:
                    if not isinstance(fr[key], str):
                        raise PrivsplatError(f"frame {name!r}: {key} must be a string")
                    setattr(frame, attr, resolve_image(root, fr[key], f"frame {name!r} {key}"))
        frames.append(frame)
    norm = meta.get("privsplat_normalisation")
    if norm is not None:
        norm = _check_normalisation(norm, path)
    points, points_path = None, None
    if meta.get("ply_file_path") is not None:
        where = f"{path} ply_file_path"
        if not isinstance(meta["ply_file_path"], str):
            raise PrivsplatError(f"{where} must be a string (a path relative to the dataset folder)")
        points_path = inside(root, root / meta["ply_file_path"], where)  # before looking, as for images
        if not points_path.is_file():
            raise PrivsplatError(
                f"{where}: point file {points_path} does not exist; restore it or remove ply_file_path"
            )
        points = read_points_ply(points_path, where)
    return Parsed(frames, norm, "nerfstudio", points, points_path)


CAMERA_KEYS = (
    "fl_x",
    "fl_y",
    "cx",
    "cy",
    "w",
    "h",
    "camera_angle_x",
    "camera_angle_y",
    "camera_model",
    "k1",
    "k2",
    "k3",
    "k4",
    "p1",
    "p2",
)
PINHOLE_NAMES = ("PINHOLE", "SIMPLE_PINHOLE")


def nerfstudio_lens(cam: dict, K: np.ndarray, w: int, h: int, where: str) -> SourceCamera | None:
    """The stored camera of a nerfstudio/instant-ngp frame with lens distortion, else None.

    camera_model OPENCV (the default when k1.. are present): OpenCV (k1, k2, p1, p2, k3);
    OPENCV_FISHEYE: (k1, k2, k3, k4). k4 under OPENCV and p1/p2 under the fisheye model have
    no agreed meaning across tools, so they are refused rather than guessed.
    """
    model = cam.get("camera_model", "OPENCV")
    c = {k: _num(cam, k, where) or 0.0 for k in ("k1", "k2", "k3", "k4", "p1", "p2")}
    if model in PINHOLE_NAMES or not any(c.values()):
        if any(c.values()):
            raise PrivsplatError(
                f"{where}: camera_model {model} has no lens distortion but k1..p2 are set; "
                "set camera_model to OPENCV or OPENCV_FISHEYE"
            )
        return None
    if model == "OPENCV":
        if c["k4"]:
            raise PrivsplatError(
                f"{where}: k4 is not part of the OPENCV model (k1 k2 p1 p2 k3); use "
                "camera_model OPENCV_FISHEYE if it is a fisheye lens"
            )
        coeffs = (c["k1"], c["k2"], c["p1"], c["p2"], c["k3"])
    elif model == "OPENCV_FISHEYE":
        if c["p1"] or c["p2"]:
            raise PrivsplatError(f"{where}: OPENCV_FISHEYE has no tangential terms (p1, p2); set them to 0")
        coeffs = (c["k1"], c["k2"], c["k3"], c["k4"])
    else:
        raise PrivsplatError(
            f"{where}: camera_model {model!r} is not supported; privsplat reads PINHOLE, "
            "OPENCV and OPENCV_FISHEYE cameras. Undistort the images first "
            "(e.g. ns-process-data or colmap image_undistorter)"
        )
    return check_source(SourceCamera(model, K, coeffs, w, h), where)


def _check_normalisation(norm: Any, path: Path) -> dict[str, Any]:
    try:
        center = np.array(norm["center"], dtype=np.float64)
        scale = float(norm["scale"])
    except (TypeError, KeyError, ValueError):
        raise PrivsplatError(f"{path}: privsplat_normalisation needs center [3] and scale") from None
    if center.shape != (3,) or not np.all(np.isfinite(center)) or not (math.isfinite(scale) and scale > 0):
        raise PrivsplatError(f"{path}: privsplat_normalisation needs a finite center [3] and a scale > 0")
    return {"center": center, "scale": scale, "rule": str(norm.get("rule", "stored"))}


def frame_to_nerfstudio(frame: Frame, root: Path, w2c_input: np.ndarray) -> dict[str, Any]:
    """The transforms.json entry for a frame, paths relative to root (used by synth and protect)."""
    c2w_gl = np.linalg.inv(w2c_input) @ GL_TO_CV
    K = frame.K
    entry = {
        "file_path": frame.image_path.relative_to(root).as_posix(),
        "transform_matrix": c2w_gl.tolist(),
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "w": int(frame.width),
        "h": int(frame.height),
    }
    if frame.mask_path is not None:
        entry["mask_path"] = frame.mask_path.relative_to(root).as_posix()
    return entry


# ----------------------------------------------------------------------------- COLMAP


def parse_colmap(root: Path) -> Parsed:
    from .colmap import camera_lens, find_model_dir, qvec_to_rotation, read_model, read_points

    model_dir = find_model_dir(root)
    cams, images = read_model(model_dir)
    if not images:
        raise PrivsplatError(f"COLMAP model in {model_dir} has no registered images")
    image_dir = root / "images" if (root / "images").is_dir() else root
    mask_dir = next((d for d in (root / "masks", root / "mask") if d.is_dir()), None)
    order = sorted(images, key=lambda i: images[i].name)
    paths, rows = [], []
    for iid in order:
        im = images[iid]
        where = f"COLMAP image {im.name!r}"
        if im.camera_id not in cams:
            raise PrivsplatError(f"{where} refers to camera {im.camera_id}, which cameras file lacks")
        cam = cams[im.camera_id]
        K, lens = camera_lens(cam, where)
        check_intrinsics(K, cam.width, cam.height, where)
        w2c = np.eye(4)
        if not np.all(np.isfinite(im.tvec)):
            raise PrivsplatError(f"{where}: translation is not finite")
        w2c[:3, :3] = qvec_to_rotation(im.qvec)
        w2c[:3, 3] = im.tvec
        img = inside(root, image_dir / im.name, where)
        if not img.is_file():
            raise PrivsplatError(f"{where}: image {img} does not exist")
        inside(root, img, where)
        mask = None
        if mask_dir is not None:
            mask = next(
                (
                    inside(root, m, where + " mask")
                    for m in (mask_dir / (im.name + ".png"), mask_dir / Path(im.name).with_suffix(".png"))
                    if m.is_file()
                ),
                None,
            )
        paths.append(img)
        rows.append((K, w2c, cam.width, cam.height, mask, lens))
    names = unique_names(paths, image_dir)
    frames = [
        Frame(
            name=n,
            kind="rgb",
            image_path=p,
            K=K,
            w2c=w2c,
            width=w,
            height=h,
            mask_path=m,
            source=lens,
            extra={"w2c_input": w2c},
        )
        for n, p, (K, w2c, w, h, m, lens) in zip(names, paths, rows)
    ]
    return Parsed(frames, None, "colmap", read_points(model_dir))


# ----------------------------------------------------------------------------- IDR / NeuS


def decompose_projection(P: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """K (K[2,2] = 1, positive focals) and OpenCV w2c from a 3x4 projection matrix."""
    import cv2

    P = np.asarray(P, dtype=np.float64)
    if not np.all(np.isfinite(P)) or np.linalg.matrix_rank(P[:3, :3], tol=1e-9 * max(1.0, np.abs(P).max())) < 3:
        raise PrivsplatError(f"{where}: projection matrix is singular or not finite")
    P = P / np.abs(P).max()  # a projection matrix is defined up to scale; keeps RQ well scaled
    if np.linalg.cond(P[:3, :3]) > 1e12:
        raise PrivsplatError(f"{where}: projection matrix is singular (ill-conditioned)")
    try:
        K, R, c = cv2.decomposeProjectionMatrix(P[:3, :4])[:3]
    except cv2.error:
        raise PrivsplatError(f"{where}: projection matrix cannot be decomposed into K [R | t]") from None
    if abs(c[3, 0]) < 1e-12:
        raise PrivsplatError(f"{where}: projection matrix puts the camera at infinity")
    center = c[:3, 0] / c[3, 0]
    K = K / K[2, 2]
    D = np.diag(np.sign(np.diag(K)))  # make focals positive: K R = (K D)(D R)
    K, R = K @ D, D @ R
    if np.linalg.det(R) < 0:  # P was a negative multiple of K[R|t]
        R = -R
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ center
    return K, w2c


def _list_images(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix in IMAGE_SUFFIXES) if d.is_dir() else []


def parse_idr(root: Path) -> Parsed:
    npz = next(p for p in (root / "cameras.npz", root / "cameras_sphere.npz") if p.is_file())
    try:
        cams = dict(np.load(npz, allow_pickle=False))
    except Exception as e:  # numpy raises many types for a corrupt archive
        raise PrivsplatError(f"cannot read {npz} ({type(e).__name__}: {e}); regenerate it") from None
    images = _list_images(root / "image") or _list_images(root / "images")
    masks = _list_images(root / "mask") or _list_images(root / "masks")
    for p in images + masks:
        inside(root, p, f"{root} (IDR/NeuS)")
    if not images:
        raise PrivsplatError(f"{root}: no images in image/ (IDR/NeuS layout: image/*.png, mask/*.png)")
    if masks and len(masks) != len(images):
        raise PrivsplatError(
            f"{root}: {len(images)} images but {len(masks)} masks; they pair up in sorted "
            "order, so the counts must match"
        )
    frames = []
    names = unique_names(images, root)
    for i, (name, img) in enumerate(zip(names, images)):
        where = f"{npz.name} camera {i}"
        if f"world_mat_{i}" not in cams:
            raise PrivsplatError(
                f"{where}: world_mat_{i} is missing ({len(images)} images need world_mat_0..{len(images) - 1})"
            )
        try:
            P = np.asarray(cams[f"world_mat_{i}"], dtype=np.float64)
        except (TypeError, ValueError):
            raise PrivsplatError(f"{where}: world_mat_{i} is not a numeric matrix") from None
        if P.shape not in ((4, 4), (3, 4)):
            raise PrivsplatError(f"{where}: world_mat_{i} must be 4x4 or 3x4, got {P.shape}")
        K, w2c = decompose_projection(P[:3], where)
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        w, h = image_size(img)
        check_intrinsics(K, w, h, where)
        check_pose(w2c, where)
        frames.append(
            Frame(
                name=name,
                kind="rgb",
                image_path=img,
                K=K,
                w2c=w2c,
                width=w,
                height=h,
                mask_path=masks[i] if masks else None,
                extra={"w2c_input": w2c},
            )
        )
    return Parsed(frames, None, "idr")
