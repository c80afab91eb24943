"""One synthetic scene written as nerfstudio, COLMAP (.txt and .bin) and IDR cameras.npz
must load to the same intrinsics and OpenCV world-to-camera poses."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from privsplat.cameras import look_at
from privsplat.data import load_dataset, load_mask, load_rgb
from privsplat.data.colmap import ColmapCamera, ColmapImage, rotation_to_qvec, write_model_bin, write_model_txt
from privsplat.data.formats import GL_TO_CV, decompose_projection
from privsplat.errors import PrivsplatError

W, H = 24, 16
TARGET = np.array([0.3, -0.2, 1.5])


def scene(n=5):
    """Cameras on a ring of radius 4 around TARGET, off-centre principal point, masks with a disc."""
    Ks, w2cs = [], []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = TARGET + 4.0 * np.array([np.sin(a), 0.3, np.cos(a)])
        w2cs.append(look_at(eye, TARGET))
        Ks.append(np.array([[30.0 + i, 0, 12.7], [0, 31.0 + i, 7.4], [0, 0, 1]]))
    return Ks, w2cs


def write_images(d: Path, n: int, sub="images", mask_sub="masks"):
    (d / sub).mkdir(parents=True)
    (d / mask_sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(d / sub / f"im{i}.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        m = np.zeros((H, W), np.uint8)
        cv2.circle(m, (12, 8), 4 + i % 2, 255, -1)
        cv2.imwrite(str(d / mask_sub / f"im{i}.png"), m)


def write_nerfstudio(d: Path, Ks, w2cs, ext=True):
    write_images(d, len(Ks))
    frames = []
    for i, (K, w2c) in enumerate(zip(Ks, w2cs)):
        frames.append(
            {
                "file_path": f"images/im{i}" + (".png" if ext else ""),
                "mask_path": f"masks/im{i}.png",
                "transform_matrix": (np.linalg.inv(w2c) @ GL_TO_CV).tolist(),
                "fl_x": K[0, 0],
                "fl_y": K[1, 1],
                "cx": K[0, 2],
                "cy": K[1, 2],
            }
        )
    (d / "transforms.json").write_text(json.dumps({"w": W, "h": H, "frames": frames}))


def write_colmap(d: Path, Ks, w2cs, binary: bool):
    write_images(d, len(Ks))
    cams = {
        i + 1: ColmapCamera("PINHOLE", W, H, np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])) for i, K in enumerate(Ks)
    }
    imgs = {
        i + 1: ColmapImage(rotation_to_qvec(w2c[:3, :3]), w2c[:3, 3], i + 1, f"im{i}.png") for i, w2c in enumerate(w2cs)
    }
    (write_model_bin if binary else write_model_txt)(d / "sparse" / "0", cams, imgs)


def write_idr(d: Path, Ks, w2cs):
    write_images(d, len(Ks), sub="image", mask_sub="mask")
    arrays = {}
    S = np.diag([2.0, 2.0, 2.0, 1.0])
    S[:3, 3] = TARGET
    for i, (K, w2c) in enumerate(zip(Ks, w2cs)):
        K_idr = K.copy()
        K_idr[:2, 2] -= 0.5  # IDR pixel centres sit at integers
        P = np.eye(4)
        P[:3, :4] = -2.5 * K_idr @ w2c[:3, :4]  # any nonzero multiple, even negative
        arrays[f"world_mat_{i}"] = P
        arrays[f"scale_mat_{i}"] = S
    np.savez(d / "cameras.npz", **arrays)


WRITERS = {
    "nerfstudio": write_nerfstudio,
    "colmap_txt": lambda d, K, P: write_colmap(d, K, P, False),
    "colmap_bin": lambda d, K, P: write_colmap(d, K, P, True),
    "idr": write_idr,
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    Ks, w2cs = scene()
    out = {}
    for name, writer in WRITERS.items():
        d = tmp_path_factory.mktemp(name)
        writer(d, Ks, w2cs)
        out[name] = load_dataset(d)
    return Ks, w2cs, out


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_every_format_loads_the_same_cameras(loaded, fmt):
    Ks, w2cs, ds = loaded
    d, ref = ds[fmt], ds["nerfstudio"]
    assert d.format == fmt.split("_")[0] and [f.name for f in d.frames] == [f"im{i}" for i in range(5)]
    for f, K, w2c, r in zip(d.frames, Ks, w2cs, ref.frames):
        np.testing.assert_allclose(f.K, K, atol=1e-5)
        np.testing.assert_allclose(f.extra["w2c_input"], w2c, atol=1e-5)
        np.testing.assert_allclose(f.w2c, r.w2c, atol=1e-5)
        assert (f.width, f.height) == (W, H)
        assert load_mask(f).shape == (H, W) and load_rgb(f).shape == (H, W, 3)
    np.testing.assert_allclose(d.center, TARGET, atol=1e-5)
    assert d.normalisation == "masks"


def test_normalised_world_maps_back_to_input(loaded):
    _, w2cs, ds = loaded
    d = ds["colmap_bin"]
    p = np.array([[0.1, 0.2, 0.3]])
    np.testing.assert_allclose(d.to_input_units(d.to_normalised(p)), p, atol=1e-12)
    # a point's camera-space direction is the same in both worlds
    f = d.frames[0]
    x_in = np.append(TARGET + [0.2, 0.1, -0.1], 1.0)
    x_n = np.append(d.to_normalised(x_in[:3]), 1.0)
    cam_in, cam_n = w2cs[0] @ x_in, f.w2c @ x_n
    np.testing.assert_allclose(cam_n[:3], cam_in[:3] * d.scale, atol=1e-9)


def test_camera_rule_without_masks_puts_cameras_at_radius_3(tmp_path):
    Ks, w2cs = scene()
    write_nerfstudio(tmp_path, Ks, w2cs)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    for f in meta["frames"]:
        del f["mask_path"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    d = load_dataset(tmp_path)
    assert d.normalisation == "cameras"
    radii = [np.linalg.norm(np.linalg.inv(f.w2c)[:3, 3]) for f in d.frames]
    np.testing.assert_allclose(radii, 3.0, atol=1e-6)


def test_nerfstudio_variants(tmp_path):
    """camera_angle_x, file_path without extension, per-frame intrinsics, RGBA alpha as mask."""
    Ks, w2cs = scene(2)
    write_nerfstudio(tmp_path, Ks, w2cs, ext=False)
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "images" / "im1.png"), rgba)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["camera_angle_x"] = 1.0
    for k in ("fl_x", "fl_y", "cx", "cy", "mask_path"):
        meta["frames"][1].pop(k)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    d = load_dataset(tmp_path)
    fx = 0.5 * W / np.tan(0.5)
    np.testing.assert_allclose(d.frames[1].K, [[fx, 0, W / 2], [0, fx, H / 2], [0, 0, 1]])
    np.testing.assert_allclose(d.frames[0].K, Ks[0])
    np.testing.assert_allclose(load_mask(d.frames[1]), 128 / 255)


def test_colmap_opencv_loads_undistorted(tmp_path):
    """An OPENCV camera loads as a pinhole camera with a zoomed-in K; pinhole-only cameras load as they are."""
    Ks, w2cs = scene(2)
    write_colmap(tmp_path, Ks, w2cs, binary=False)
    txt = (tmp_path / "sparse/0/cameras.txt").read_text().replace("1 PINHOLE 24 16 30.0", "1 OPENCV 24 16 30.0")
    txt = "\n".join(ln + " -0.1 0 0 0" if ln.startswith("1 OPENCV") else ln for ln in txt.splitlines())
    (tmp_path / "sparse/0/cameras.txt").write_text(txt)
    d = load_dataset(tmp_path)
    f0, f1 = d.frames
    assert f0.source is not None and f0.source.model == "OPENCV" and f0.source.coeffs == (-0.1, 0.0, 0.0, 0.0)
    assert f0.K[0, 0] > Ks[0][0, 0] * 1.01 and f0.K[0, 0] / f0.K[1, 1] == pytest.approx(30.0 / 31.0)
    assert f1.source is None
    np.testing.assert_allclose(f1.K, Ks[1])
    assert load_rgb(f0).shape == (H, W, 3) and load_mask(f0).shape == (H, W)


def test_simple_pinhole_and_sparse_root(tmp_path):
    Ks, w2cs = scene(2)
    write_images(tmp_path, 2)
    cams = {1: ColmapCamera("SIMPLE_PINHOLE", W, H, np.array([30.0, 12.0, 8.0]))}
    imgs = {i + 1: ColmapImage(rotation_to_qvec(w[:3, :3]), w[:3, 3], 1, f"im{i}.png") for i, w in enumerate(w2cs)}
    write_model_txt(tmp_path / "sparse", cams, imgs)
    d = load_dataset(tmp_path)
    np.testing.assert_allclose(d.frames[1].K, [[30, 0, 12], [0, 30, 8], [0, 0, 1]])


def test_colmap_images_txt_without_points_lines_keeps_every_image(tmp_path):
    """Some writers leave out the (empty) POINTS2D line; every second image was dropped silently."""
    Ks, w2cs = scene(4)
    write_images(tmp_path, 4)
    cams = {1: ColmapCamera("PINHOLE", W, H, np.array([30.0, 31.0, 12.0, 8.0]))}
    imgs = {i + 1: ColmapImage(rotation_to_qvec(w[:3, :3]), w[:3, 3], 1, f"im{i}.png") for i, w in enumerate(w2cs)}
    write_model_txt(tmp_path / "sparse", cams, imgs)
    txt = tmp_path / "sparse" / "images.txt"
    lines = [ln for ln in txt.read_text().splitlines() if ln.strip()]  # no POINTS2D lines at all
    txt.write_text("\n".join(lines) + "\n")
    assert [f.name for f in load_dataset(tmp_path).frames] == [f"im{i}" for i in range(4)]


def test_decompose_projection_signs():
    K = np.array([[50.0, 0.5, 20], [0, 60, 10], [0, 0, 1]])
    w2c = look_at(np.array([1.0, 2, 3]), np.zeros(3))
    for s in (1.0, -3.0):
        K2, w2c2 = decompose_projection(s * K @ w2c[:3], "test")
        np.testing.assert_allclose(K2, K, atol=1e-9)
        np.testing.assert_allclose(w2c2, w2c, atol=1e-9)
    with pytest.raises(PrivsplatError, match="singular"):
        decompose_projection(np.zeros((3, 4)), "test")
