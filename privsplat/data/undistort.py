"""From the stored image's camera (lens distortion, full size) to the frame's pinhole camera.

Parsers attach a SourceCamera to frames whose stored images are distorted or larger than
`max_size`; `apply_pinhole` then gives every frame its pinhole K, width and height, and
images.py maps the stored pixels to that camera on every read (`to_pinhole`). So `protect`
(before σ), `fit` and `eval` all see the same pinhole images, masks and cameras.

Conventions
- Pixel centres sit at integer + 0.5 (privsplat, COLMAP, nerfstudio): an image of width W
  spans continuous x in [0, W]. OpenCV's maps address pixel centres at integers, so K's
  principal point is shifted by 0.5 at the OpenCV boundary only (`_cv`).
- New K after undistortion: same image size, the input's fx/fy ratio kept, and the widest
  view whose *every* output pixel lies inside the stored image (no black border, so no
  invalid area to mask). It is found by undistorting points spaced ~1 px apart on the
  stored image's outer edge and taking the innermost extent on each side; the principal
  point is the centre of that inscribed rectangle. This is cv2.getOptimalNewCameraMatrix
  with alpha=0 in spirit, but with the dense border rather than its 9x9 grid (so no
  invalid pixel slips in between grid points) and the same rule for the fisheye model.
- Undistortion resamples photos bilinearly and masks bicubically (see `to_pinhole`).
- Downsampling (`max_size`, long side): cv2.INTER_AREA to (round(W s), round(H s)). Area
  resampling maps pixel edges to pixel edges, so with centres at +0.5, K' = diag(sx, sy, 1) K
  with sx = W'/W, sy = H'/H exactly (in an integer-centre convention the principal point
  would need c' = (c + 0.5) s - 0.5 instead).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import PrivsplatError
from .dataset import Frame, SourceCamera

# model -> allowed numbers of coefficients (OpenCV order)
MODELS = {"PINHOLE": (0,), "OPENCV": (4, 5, 8), "OPENCV_FISHEYE": (4,)}
BORDER_MARGIN_PX = 0.5  # keep the inscribed view this far inside the stored image's edge


def check_source(src: SourceCamera, where: str) -> SourceCamera:
    if src.model not in MODELS:
        raise PrivsplatError(
            f"{where}: camera model {src.model} is not supported; privsplat undistorts "
            "PINHOLE, OPENCV (k1 k2 p1 p2 [k3]) and OPENCV_FISHEYE (k1..k4) cameras. "
            "Undistort the images first (e.g. `colmap image_undistorter`)"
        )
    if len(src.coeffs) not in MODELS[src.model] or not np.all(np.isfinite(src.coeffs)):
        raise PrivsplatError(
            f"{where}: {src.model} needs {' or '.join(map(str, MODELS[src.model]))} finite "
            f"distortion coefficients, got {list(src.coeffs)}"
        )
    return src


def is_distorted(src: SourceCamera) -> bool:
    return src.model != "PINHOLE" and any(c != 0.0 for c in src.coeffs)


def _cv(K: np.ndarray) -> np.ndarray:
    """K with pixel centres at integers (OpenCV's convention)."""
    K = np.array(K, dtype=np.float64)
    K[:2, 2] -= 0.5
    return K


def undistort_points(src: SourceCamera, pix: np.ndarray) -> np.ndarray:
    """Normalised pinhole coordinates [N,2] (x/z, y/z) of stored-image pixel coordinates [N,2] (+0.5 centres)."""
    import cv2

    pts = np.ascontiguousarray(np.asarray(pix, dtype=np.float64).reshape(-1, 1, 2) - 0.5)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    D = np.asarray(src.coeffs, dtype=np.float64)
    if src.model == "OPENCV_FISHEYE":
        out = cv2.fisheye.undistortPoints(pts, _cv(src.K), D, criteria=crit)
    elif src.model == "OPENCV":
        out = cv2.undistortPoints(pts, _cv(src.K), D, criteria=crit)
    else:
        K = np.asarray(src.K, dtype=np.float64)
        out = (pts + 0.5 - K[:2, 2]) / K[[0, 1], [0, 1]]
    return out.reshape(-1, 2)


def distort_points(src: SourceCamera, xy: np.ndarray) -> np.ndarray:
    """Stored-image pixel coordinates (+0.5 centres) of normalised pinhole coordinates [N,2]."""
    import cv2

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    pts3 = np.concatenate([xy, np.ones((len(xy), 1))], axis=1).reshape(-1, 1, 3)
    D = np.asarray(src.coeffs, dtype=np.float64)
    zero = np.zeros(3)
    if src.model == "OPENCV_FISHEYE":
        out = cv2.fisheye.projectPoints(pts3, zero, zero, _cv(src.K), D)[0]
    else:
        out = cv2.projectPoints(pts3, zero, zero, _cv(src.K), D if len(D) else np.zeros(4))[0]
    return out.reshape(-1, 2) + 0.5


def _border_pixels(width: int, height: int) -> dict[str, np.ndarray]:
    m = BORDER_MARGIN_PX
    xs = np.linspace(m, width - m, max(2, width + 1))
    ys = np.linspace(m, height - m, max(2, height + 1))
    return {
        "left": np.stack([np.full_like(ys, m), ys], 1),
        "right": np.stack([np.full_like(ys, width - m), ys], 1),
        "top": np.stack([xs, np.full_like(xs, m)], 1),
        "bottom": np.stack([xs, np.full_like(xs, height - m)], 1),
    }


@lru_cache(maxsize=64)
def _pinhole_K(key: tuple) -> np.ndarray:
    model, k, coeffs, width, height = key
    src = SourceCamera(model, np.array(k).reshape(3, 3), coeffs, width, height)
    K = np.asarray(src.K, dtype=np.float64)
    if not is_distorted(src):
        return K.copy()
    border = _border_pixels(width, height)
    b = {side: undistort_points(src, p) for side, p in border.items()}
    # the iterative inverse must have converged (it does not where the model folds over)
    redo = np.concatenate([distort_points(src, b[side]) - border[side] for side in border])
    if not (np.isfinite(redo).all() and np.abs(redo).max() < 0.05):
        raise PrivsplatError(
            f"the {model} lens {list(coeffs)} cannot be undistorted at the image edge (the "
            "model folds over or the coefficients are too strong); check the calibration"
        )
    x0, x1 = b["left"][:, 0].max(), b["right"][:, 0].min()
    y0, y1 = b["top"][:, 1].max(), b["bottom"][:, 1].min()
    if not (np.isfinite([x0, x1, y0, y1]).all() and x1 > x0 and y1 > y0):
        raise PrivsplatError(
            f"the {model} lens {list(coeffs)} does not undistort to a valid pinhole view "
            "(coefficients too strong for the field of view?); check the calibration"
        )
    # focal lengths that fit the inscribed rectangle in each axis; the smaller zoom-out of the two
    # keeps fx/fy as in the input and every pixel valid
    aspect = K[0, 0] / K[1, 1]
    fy = max(width / ((x1 - x0) * aspect), height / (y1 - y0))
    fx = fy * aspect
    cx = width / 2 - fx * (x0 + x1) / 2
    cy = height / 2 - fy * (y0 + y1) / 2
    Knew = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    # check: the new image's edge, pushed back through the lens, stays inside the stored image
    # (fails for lenses whose model folds over inside the frame, where undistortion has no answer)
    edge = np.concatenate(list(_border_pixels(width, height).values()))
    back = distort_points(src, (edge - Knew[:2, 2]) / Knew[[0, 1], [0, 1]])
    if not (np.isfinite(back).all() and back.min() > -1 and (back < [width + 1, height + 1]).all()):
        raise PrivsplatError(
            f"the {model} lens {list(coeffs)} cannot be undistorted to a pinhole view without "
            "invalid pixels (the model folds over inside the image); check the calibration"
        )
    return Knew


def pinhole_K(src: SourceCamera) -> np.ndarray:
    """The undistorted pinhole K at the stored size (a copy; see the module docstring for the rule)."""
    return _pinhole_K(src.key()).copy()


def scaled_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(W', H') with the long side at most max_size (None or 0: unchanged)."""
    if not max_size or max(width, height) <= max_size:
        return int(width), int(height)
    s = max_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def scale_K(K: np.ndarray, size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """K for an image area-resampled from size to new_size (pixel centres at +0.5: no shift)."""
    S = np.diag([new_size[0] / size[0], new_size[1] / size[1], 1.0])
    return S @ np.asarray(K, dtype=np.float64)


def apply_pinhole(frames: list[Frame], max_size: int | None = None) -> list[Frame]:
    """Give each frame its pinhole camera: undistorted K, then the long side capped at max_size.

    A frame with a SourceCamera is distorted; others get one only when max_size shrinks them.
    Protected frames keep their stored magnitude images; only their camera is scaled.
    """
    if max_size is not None and (not isinstance(max_size, int) or max_size < 8):
        raise PrivsplatError(f"--max-size must be an integer of at least 8 pixels, got {max_size!r}")
    for f in frames:
        src = f.source
        if src is None:
            src = SourceCamera("PINHOLE", np.asarray(f.K, dtype=np.float64), (), f.width, f.height)
        check_source(src, f"frame {f.name!r}")
        K = pinhole_K(src)
        size = scaled_size(src.width, src.height, max_size)
        K = scale_K(K, (src.width, src.height), size)
        if f.source is None and size == (src.width, src.height):
            continue
        if f.kind == "rgb" or f.rgb_outside_path is not None:
            f.source = src
        f.K, (f.width, f.height) = K, size
    return frames


@lru_cache(maxsize=4)
def _maps(key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables (stored image → pinhole image at the stored size), fixed-point for speed and memory."""
    import cv2

    model, k, coeffs, width, height = key
    src = SourceCamera(model, np.array(k).reshape(3, 3), coeffs, width, height)
    Knew = _cv(_pinhole_K(key))
    D = np.asarray(coeffs, dtype=np.float64)
    if model == "OPENCV_FISHEYE":
        return cv2.fisheye.initUndistortRectifyMap(_cv(src.K), D, np.eye(3), Knew, (width, height), cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(_cv(src.K), D, np.eye(3), Knew, (width, height), cv2.CV_16SC2)


def to_pinhole(img: np.ndarray, frame: Frame, cubic: bool = False) -> np.ndarray:
    """A stored image (uint8/uint16, [H,W] or [H,W,C]) of `frame` as seen by its pinhole camera.

    cubic (masks): bicubic resampling instead of bilinear, whose triangle kernel widens a mask's
    edge (pixels the fit treats as mixed) beyond what the camera saw. ICT 1 in a room, masks,
    k1 = -0.08, 64 px, privacy fit: bilinear masks 0.180 / 0.177 cm (seeds 0 / 1), bicubic 0.150 /
    0.159 cm. Photos stay bilinear (bicubic photos alone: 0.180; against a checkerboard rendered
    for the pinhole camera, bilinear is the closer, bicubic overshoots)."""
    import cv2

    src = frame.source
    if src is None:
        return img
    if is_distorted(src):
        m1, m2 = _maps(src.key())
        mode = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
        img = cv2.remap(img, m1, m2, mode, borderMode=cv2.BORDER_REPLICATE)
    if img.shape[:2] != (frame.height, frame.width):
        img = cv2.resize(img, (frame.width, frame.height), interpolation=cv2.INTER_AREA)
    return img
