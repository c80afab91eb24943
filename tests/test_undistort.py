"""Undistortion and downsizing: stored (distorted, large) images map to the frame's pinhole camera.

The lens models are written out here in numpy (Brown-Conrady and OpenCV's fisheye), so the
test does not check OpenCV against itself.
"""

import json

import cv2
import numpy as np
import pytest

from privsplat.cameras import look_at
from privsplat.data import load_mask, load_rgb
from privsplat.data.colmap import ColmapCamera, ColmapImage, rotation_to_qvec, write_model_txt
from privsplat.data.dataset import Frame, SourceCamera
from privsplat.data.formats import GL_TO_CV, parse
from privsplat.data.undistort import _maps, pinhole_K, to_pinhole
from privsplat.errors import PrivsplatError

W, H = 320, 240
K_SRC = np.array([[250.0, 0, 163.3], [0, 252.0, 117.6], [0, 0, 1]])
LENSES = {
    "opencv": SourceCamera("OPENCV", K_SRC, (-0.28, 0.09, 0.0012, -0.0009, -0.01), W, H),
    "fisheye": SourceCamera(
        "OPENCV_FISHEYE",
        np.array([[175.0, 0, 163.3], [0, 176.0, 117.6], [0, 0, 1]]),
        (0.06, -0.02, 0.004, -0.001),
        W,
        H,
    ),
}


def distort(src: SourceCamera, xy: np.ndarray) -> np.ndarray:
    """Forward lens model: normalised pinhole (x, y) [N,2] → stored pixels (+0.5 centres)."""
    x, y = xy[:, 0], xy[:, 1]
    c = src.coeffs
    if src.model == "PINHOLE":
        xd, yd = x, y
    elif src.model == "OPENCV":
        k1, k2, p1, p2, k3 = (tuple(c) + (0.0,) * 5)[:5]
        r2 = x * x + y * y
        rad = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        xd = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    else:
        r = np.maximum(np.hypot(x, y), 1e-12)
        th = np.arctan(r)
        thd = th * (1 + c[0] * th**2 + c[1] * th**4 + c[2] * th**6 + c[3] * th**8)
        xd, yd = x * thd / r, y * thd / r
    K = src.K
    return np.stack([K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]], axis=1)


def undistort(src: SourceCamera, uv: np.ndarray) -> np.ndarray:
    """Inverse of `distort` by Newton steps on the numpy model (numeric Jacobian)."""
    K = src.K
    target = uv
    xy = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    for _ in range(12):
        r = distort(src, xy) - target
        e = 1e-6
        jx = (distort(src, xy + [e, 0]) - distort(src, xy)) / e
        jy = (distort(src, xy + [0, e]) - distort(src, xy)) / e
        J = np.stack([jx, jy], axis=2)  # [N, 2(uv), 2(xy)]
        xy = xy - np.linalg.solve(J, r[..., None])[..., 0]
    return xy


SQUARE = 0.08  # checker square in normalised units on the plane z = 1


def checker(xy: np.ndarray) -> np.ndarray:
    return ((np.floor(xy[:, 0] / SQUARE) + np.floor(xy[:, 1] / SQUARE)) % 2).astype(np.float64)


def render(pix_to_xy, ss=3) -> np.ndarray:
    """uint8 HxW image: supersampled checkerboard on the plane z = 1 seen through pix_to_xy."""
    o = (np.arange(ss) + 0.5) / ss
    u = (np.arange(W)[None, :, None, None] + o[None, None, None, :]) * np.ones((H, 1, ss, 1))
    v = (np.arange(H)[:, None, None, None] + o[None, None, :, None]) * np.ones((1, W, 1, ss))
    uv = np.stack([np.broadcast_to(u, (H, W, ss, ss)).ravel(), np.broadcast_to(v, (H, W, ss, ss)).ravel()], 1)
    val = checker(pix_to_xy(uv)).reshape(H, W, ss * ss).mean(axis=2)
    return np.round(40 + 180 * val).astype(np.uint8)


def corners_xy() -> np.ndarray:
    g = np.arange(-12, 13) * SQUARE
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel()], 1)


def refine(img: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Saddle-point corner positions near `guess` (+0.5 centres), cv2.cornerSubPix."""
    pts = (guess - 0.5).astype(np.float32).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-4)
    return cv2.cornerSubPix(img, pts, (4, 4), (-1, -1), crit).reshape(-1, 2) + 0.5


def frame_for(src: SourceCamera) -> Frame:
    return Frame("f", "rgb", None, pinhole_K(src), np.eye(4), W, H, source=src)


@pytest.mark.parametrize("lens", list(LENSES))
def test_checkerboard_round_trip(lens):
    """A distorted checkerboard render undistorts to the pinhole render of the new K within 0.5 px."""
    src = LENSES[lens]
    frame = frame_for(src)
    Kp = frame.K
    distorted = render(lambda uv: undistort(src, uv))
    out = to_pinhole(distorted, frame)
    xy = corners_xy()
    want = xy @ Kp[:2, :2].T + Kp[:2, 2]
    inside = np.all((want > 12) & (want < [W - 12, H - 12]), axis=1)
    assert inside.sum() > 80
    xy, want = xy[inside], want[inside]
    # the test's own distorted render is right: corners sit where the numpy lens model puts them
    d_want = distort(src, xy)
    d_err = np.linalg.norm(refine(distorted, d_want + 0.7) - d_want, axis=1)  # curved edges: corner bias
    assert d_err.max() < 0.4 and d_err.mean() < 0.2
    # undistorted corners sit at the pinhole projection with the new K
    err = np.linalg.norm(refine(out, want + 0.7) - want, axis=1)
    assert err.max() < 0.5 and err.mean() < 0.15
    # and the distortion was real: uncorrected corners are far from the pinhole positions
    assert np.linalg.norm(d_want - want, axis=1).mean() > 2.0
    # pixel for pixel, too, away from the edges between squares
    ref = render(lambda uv: np.stack([(uv[:, 0] - Kp[0, 2]) / Kp[0, 0], (uv[:, 1] - Kp[1, 2]) / Kp[1, 1]], 1))
    assert np.median(np.abs(out.astype(int) - ref.astype(int))) <= 1


@pytest.mark.parametrize("lens", list(LENSES))
def test_new_K_keeps_every_pixel_valid_and_is_tight(lens):
    src = LENSES[lens]
    m1, m2 = _maps(src.key())
    ones = np.full((H, W), 255, np.uint8)
    valid = cv2.remap(ones, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    assert valid.min() >= 250  # no black border
    # tight: some output edge pixel maps to within 2 px of the stored image's edge
    Kp = pinhole_K(src)
    u = np.concatenate([np.arange(W) + 0.5, np.full(H, 0.5), np.arange(W) + 0.5, np.full(H, W - 0.5)])
    v = np.concatenate([np.full(W, 0.5), np.arange(H) + 0.5, np.full(W, H - 0.5), np.arange(H) + 0.5])
    d = distort(src, np.stack([(u - Kp[0, 2]) / Kp[0, 0], (v - Kp[1, 2]) / Kp[1, 1]], 1))
    gap = np.minimum.reduce([d[:, 0], d[:, 1], W - d[:, 0], H - d[:, 1]])
    assert gap.min() > -0.05 and gap.min() < 2.0
    np.testing.assert_allclose(Kp[0, 0] / Kp[1, 1], src.K[0, 0] / src.K[1, 1], rtol=1e-9)


# ----------------------------------------------------------------------------- datasets

POINTS = np.array([[0.0, 0.0, 4.0], [1.6, 0.9, 4.2], [-1.5, -1.0, 3.8], [1.7, -1.0, 4.0], [-1.6, 1.1, 4.1]])


def blobs(uv: np.ndarray, sigma=1.2) -> np.ndarray:
    """uint8 HxW image of Gaussian blobs centred at uv (+0.5 centres)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    img = sum(np.exp(-((u - a) ** 2 + (v - b) ** 2) / (2 * sigma**2)) for a, b in uv)
    return np.round(255 * np.clip(img, 0, 1)).astype(np.uint8)


def centroids(img: np.ndarray, near: np.ndarray, r=5) -> np.ndarray:
    out = []
    f = img.astype(np.float64)
    for a, b in near:
        u0, v0 = int(a), int(b)
        patch = f[v0 - r : v0 + r + 1, u0 - r : u0 + r + 1]
        v, u = np.mgrid[v0 - r : v0 + r + 1, u0 - r : u0 + r + 1] + 0.5
        out.append([(patch * u).sum() / patch.sum(), (patch * v).sum() / patch.sum()])
    return np.array(out)


def project(K: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = pts @ K.T
    return p[:, :2] / p[:, 2:]


def write_distorted(d, src: SourceCamera, fmt: str, colmap_model: str = ""):
    """Two views of POINTS drawn through the lens (image and mask) in nerfstudio or COLMAP layout."""
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    img = blobs(distort(src, POINTS[:, :2] / POINTS[:, 2:]))
    for i in range(2):
        cv2.imwrite(str(d / "images" / f"im{i}.png"), np.repeat(img[..., None], 3, 2))
        cv2.imwrite(str(d / "masks" / f"im{i}.png"), img)
    w2cs = [np.eye(4), look_at(np.array([1.0, 0, 0]), np.array([0.0, 0, 4]))]
    K, c = src.K, src.coeffs
    if fmt == "nerfstudio":
        keys = ("k1", "k2", "p1", "p2", "k3") if src.model == "OPENCV" else ("k1", "k2", "k3", "k4")
        meta = {
            "camera_model": src.model,
            "w": W,
            "h": H,
            "fl_x": K[0, 0],
            "fl_y": K[1, 1],
            "cx": K[0, 2],
            "cy": K[1, 2],
            **dict(zip(keys, c)),
            "frames": [
                {
                    "file_path": f"images/im{i}.png",
                    "mask_path": f"masks/im{i}.png",
                    "transform_matrix": (np.linalg.inv(w) @ GL_TO_CV).tolist(),
                }
                for i, w in enumerate(w2cs)
            ],
        }
        (d / "transforms.json").write_text(json.dumps(meta))
    else:
        params = {
            "OPENCV": [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *c[:4]],
            "OPENCV_FISHEYE": [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *c],
            "SIMPLE_RADIAL": [K[0, 0], K[0, 2], K[1, 2], c[0]],
            "RADIAL": [K[0, 0], K[0, 2], K[1, 2], c[0], c[1]],
        }[colmap_model]
        cams = {1: ColmapCamera(colmap_model, W, H, np.array(params))}
        imgs = {i + 1: ColmapImage(rotation_to_qvec(w[:3, :3]), w[:3, 3], 1, f"im{i}.png") for i, w in enumerate(w2cs)}
        write_model_txt(d / "sparse" / "0", cams, imgs)


CASES = {
    "nerfstudio_opencv": (LENSES["opencv"], "nerfstudio", ""),
    "nerfstudio_fisheye": (LENSES["fisheye"], "nerfstudio", ""),
    "colmap_opencv": (SourceCamera("OPENCV", K_SRC, (-0.25, 0.07, 0.001, -0.002), W, H), "colmap", "OPENCV"),
    "colmap_fisheye": (LENSES["fisheye"], "colmap", "OPENCV_FISHEYE"),
    "colmap_simple_radial": (
        SourceCamera(
            "OPENCV",
            np.diag([250.0, 250.0, 1]) + np.array([[0, 0, 160.5], [0, 0, 119.5], [0, 0, 0]]),
            (-0.2, 0, 0, 0),
            W,
            H,
        ),
        "colmap",
        "SIMPLE_RADIAL",
    ),
    "colmap_radial": (
        SourceCamera(
            "OPENCV",
            np.diag([250.0, 250.0, 1]) + np.array([[0, 0, 160.5], [0, 0, 119.5], [0, 0, 0]]),
            (-0.2, 0.05, 0, 0),
            W,
            H,
        ),
        "colmap",
        "RADIAL",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_distorted_dataset_loads_with_pinhole_K(tmp_path, case):
    """Points drawn through the lens appear at K_pinhole · X in the loaded image and mask."""
    src, fmt, model = CASES[case]
    write_distorted(tmp_path, src, fmt, model)
    frames = parse(tmp_path).frames
    f = frames[0]
    assert f.source is not None and f.source.model == src.model and (f.width, f.height) == (W, H)
    np.testing.assert_allclose(f.K, pinhole_K(src), atol=1e-9)  # same K for both readers of the same lens
    want = project(f.K, POINTS)
    for img in (load_rgb(f)[..., 0], load_mask(f)):
        got = centroids(img, want)
        assert np.abs(got - want).max() < 0.3
    # read as a pinhole camera (stored K, stored image), the outer points would be off by pixels
    assert np.abs(distort(src, POINTS[:, :2] / POINTS[:, 2:]) - project(src.K, POINTS)).max() > 2.0


def test_unsupported_models_are_refused(tmp_path):
    write_distorted(tmp_path, LENSES["opencv"], "nerfstudio")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["camera_model"] = "EQUIRECTANGULAR"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivsplatError, match="EQUIRECTANGULAR.*not supported"):
        parse(tmp_path)
    meta["camera_model"] = "OPENCV"
    meta["k4"] = 0.1
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivsplatError, match="k4"):
        parse(tmp_path)


def test_colmap_unsupported_model_is_refused(tmp_path):
    write_distorted(tmp_path, SourceCamera("OPENCV", K_SRC, (-0.2, 0, 0, 0), W, H), "colmap", "RADIAL")
    txt = (tmp_path / "sparse/0/cameras.txt").read_text().replace("RADIAL", "FOV")
    (tmp_path / "sparse/0/cameras.txt").write_text(txt)
    with pytest.raises(PrivsplatError, match="FOV is not supported.*image_undistorter"):
        parse(tmp_path)


# ----------------------------------------------------------------------------- max_size


def test_max_size_scales_K_with_pixel_centres_at_half(tmp_path):
    """Area-downsampled 4x: blob centroids stay at K'·X with K' = diag(s, s, 1) K (no half-pixel shift);
    the integer-centre rule c' = (c + 0.5) s - 0.5 would be 0.375 px off."""
    write_distorted(tmp_path, SourceCamera("PINHOLE", K_SRC, (), W, H), "nerfstudio")
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["camera_model"] = "PINHOLE"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    # big blobs, so their 4x-smaller images are still well sampled
    img = blobs(project(K_SRC, POINTS), sigma=6.0)
    cv2.imwrite(str(tmp_path / "images" / "im0.png"), np.repeat(img[..., None], 3, 2))
    f = parse(tmp_path, max_size=80).frames[0]
    assert (f.width, f.height) == (80, 60)
    np.testing.assert_allclose(f.K, np.diag([0.25, 0.25, 1]) @ K_SRC, atol=1e-12)
    small = load_rgb(f)[..., 0]
    assert small.shape == (60, 80)
    want = project(f.K, POINTS)
    err = np.abs(centroids(small, want, r=4) - want).max()
    assert err < 0.08
    assert parse(tmp_path, max_size=400).frames[0].source is None  # already small enough: untouched


def test_max_size_after_undistortion(tmp_path):
    src, fmt, model = CASES["colmap_opencv"]
    write_distorted(tmp_path, src, fmt, model)
    f = parse(tmp_path, max_size=160).frames[0]
    assert (f.width, f.height) == (160, 120)
    np.testing.assert_allclose(f.K, np.diag([0.5, 0.5, 1]) @ pinhole_K(src), atol=1e-9)
    assert load_rgb(f).shape == (120, 160, 3) and load_mask(f).shape == (120, 160)
    with pytest.raises(PrivsplatError, match="max-size"):
        parse(tmp_path, max_size=0.5)


def test_lens_that_folds_over_is_refused():
    """r (1 + k2 r^4) with k2 = -1.5 turns back at r = 0.6, inside this image: no pinhole view exists."""
    src = SourceCamera("OPENCV", K_SRC, (0.0, -1.5, 0.0, 0.0, 0.0), W, H)
    with pytest.raises(PrivsplatError, match="undistort"):
        pinhole_K(src)


@pytest.mark.parametrize("lens", list(LENSES))
def test_masks_undistort_with_narrower_edges_than_bilinear(lens):
    """Masks are resampled bicubically: bilinear's triangle kernel widens every edge, and the fit
    treats those pixels as mixed (out of the photometric loss, unmixed in protect). The checkerboard
    as a coverage map: the share of mixed pixels is above the pinhole render's either way (both
    resample), but lower with the mask path than with the photo path (bilinear)."""
    src = LENSES[lens]
    frame = frame_for(src)
    Kp = frame.K
    distorted = render(lambda uv: undistort(src, uv))
    ref = render(lambda uv: np.stack([(uv[:, 0] - Kp[0, 2]) / Kp[0, 0], (uv[:, 1] - Kp[1, 2]) / Kp[1, 1]], 1))
    inner = (slice(12, H - 12), slice(12, W - 12))

    def mixed(img):
        a = (img[inner].astype(float) - 40) / 180
        return float(((a > 0.02) & (a < 0.98)).mean())

    as_mask, as_photo = to_pinhole(distorted, frame, cubic=True), to_pinhole(distorted, frame)
    assert mixed(ref) < mixed(as_mask) < 0.96 * mixed(as_photo), (mixed(ref), mixed(as_mask), mixed(as_photo))
