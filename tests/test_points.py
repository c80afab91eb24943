"""SfM points through the data layer: nerfstudio ply_file_path and COLMAP points3D load into the
normalised world and project where the cameras say; protect carries x, y, z only (never colours);
the guard refuses a points.ply with anything else, and ply_file_path cannot leave the dataset."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData

from privsplat.data import load_dataset
from privsplat.data.capture import write_points_ply
from privsplat.data.protected import MANIFEST_NAME, POINTS_NAME
from privsplat.errors import PrivsplatError
from privsplat.privacy.protect import protect
from tests.test_data_formats import H, W, scene, write_colmap, write_idr, write_nerfstudio
from tests.test_guard import refix

# pixels of camera 0 and their depths: the points are these pixels' back-projections
PIXELS = np.array([[12.5, 8.5], [9.25, 6.75], [15.0, 10.0], [11.0, 9.5], [14.5, 7.0]])
DEPTHS = np.array([4.0, 3.8, 4.3, 4.1, 3.9])


def known_points() -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Points (input world) that camera 0 of scene() sees at PIXELS, and the scene's cameras."""
    Ks, w2cs = scene()
    rays = np.c_[PIXELS, np.ones(len(PIXELS))] @ np.linalg.inv(Ks[0]).T
    cam = rays * DEPTHS[:, None]
    c2w = np.linalg.inv(w2cs[0])
    return cam @ c2w[:3, :3].T + c2w[:3, 3], Ks, w2cs


def project(K: np.ndarray, w2c: np.ndarray, X: np.ndarray) -> np.ndarray:
    c = X @ w2c[:3, :3].T + w2c[:3, 3]
    assert (c[:, 2] > 0).all()
    return (c @ K.T)[:, :2] / c[:, 2:]


def check_points_project(ds, X: np.ndarray, Ks, w2cs, atol: float) -> None:
    """ds.points are X normalised, land on PIXELS in camera 0 and inside every view, as the truth does."""
    assert ds.points.dtype == np.float64 and ds.points.shape == X.shape
    np.testing.assert_allclose(ds.points, (X - ds.center) * ds.scale, atol=1e-5)
    np.testing.assert_allclose(project(ds.frames[0].K, ds.frames[0].w2c, ds.points), PIXELS, atol=atol)
    for f, K, w2c in zip(ds.frames, Ks, w2cs):
        uv = project(f.K, f.w2c, ds.points)
        np.testing.assert_allclose(uv, project(K, w2c, X), atol=atol)
        assert ((uv >= 0) & (uv <= [W, H])).all()


def nerfstudio_with_points(d: Path) -> np.ndarray:
    """scene() as nerfstudio with sparse_pc.ply (x, y, z, red, green, blue) and, like
    ns-process-data, an applied_transform that the poses and the points already include."""
    X, Ks, w2cs = known_points()
    write_nerfstudio(d, Ks, w2cs)
    write_points_ply(d / "sparse_pc.ply", X, np.full((len(X), 3), 200, np.uint8))
    meta = json.loads((d / "transforms.json").read_text())
    meta["ply_file_path"] = "sparse_pc.ply"
    meta["applied_transform"] = [[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]]
    (d / "transforms.json").write_text(json.dumps(meta))
    return X


def test_nerfstudio_points_load_normalised_and_project_onto_the_views(tmp_path):
    X = nerfstudio_with_points(tmp_path)
    _, Ks, w2cs = known_points()
    ds = load_dataset(tmp_path, warn_unprotected=False)
    check_points_project(ds, X, Ks, w2cs, atol=1e-3)  # sparse_pc.ply stores float32
    # the points do not move the normalisation: same centre and scale without them
    meta = json.loads((tmp_path / "transforms.json").read_text())
    del meta["ply_file_path"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    plain = load_dataset(tmp_path, warn_unprotected=False)
    assert plain.points is None
    np.testing.assert_array_equal(plain.center, ds.center)
    assert plain.scale == ds.scale and plain.normalisation == ds.normalisation == "masks"


@pytest.mark.parametrize("binary", [False, True], ids=["txt", "bin"])
def test_colmap_points3d_load_normalised_and_project_onto_the_views(tmp_path, binary):
    X, Ks, w2cs = known_points()
    write_colmap(tmp_path, Ks, w2cs, binary)
    ds0 = load_dataset(tmp_path, warn_unprotected=False)
    assert ds0.points is None  # no points3D: no points, not an error
    from privsplat.data.colmap import read_model, write_model_bin, write_model_txt

    model = tmp_path / "sparse" / "0"
    (write_model_bin if binary else write_model_txt)(model, *read_model(model), points=X)
    assert (model / f"points3D.{'bin' if binary else 'txt'}").is_file()
    ds = load_dataset(tmp_path, warn_unprotected=False)
    check_points_project(ds, X, Ks, w2cs, atol=1e-6)
    np.testing.assert_array_equal(ds.center, ds0.center)
    assert ds.scale == ds0.scale


def test_colmap_points3d_bin_with_a_forged_count_is_refused(tmp_path):
    X, Ks, w2cs = known_points()
    write_colmap(tmp_path, Ks, w2cs, True)
    (tmp_path / "sparse" / "0" / "points3D.bin").write_bytes((10**12).to_bytes(8, "little") + b"\0" * 60)
    with pytest.raises(PrivsplatError, match="points3D .* is corrupt"):
        load_dataset(tmp_path, warn_unprotected=False)


def test_idr_has_no_points(tmp_path):
    write_idr(tmp_path, *scene())
    assert load_dataset(tmp_path, warn_unprotected=False).points is None


@pytest.fixture(scope="module")
def protected_points(tmp_path_factory) -> tuple[Path, Path]:
    """(nerfstudio dataset with sparse_pc.ply, its protection with im0, im1 sensitive). Read-only."""
    data = tmp_path_factory.mktemp("points") / "data"
    nerfstudio_with_points(data)
    out = data.parent / "protected"
    protect(data, out, "im0,im1", resolution=16, verbose=False)
    return data, out


def test_protect_carries_xyz_only_and_loads_back_to_the_same_points(protected_points):
    data, out = protected_points
    v = PlyData.read(str(out / POINTS_NAME))["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z"]
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["ply_file_path"] == POINTS_NAME
    assert POINTS_NAME in json.loads((out / MANIFEST_NAME).read_text())["files"]
    src, ds = load_dataset(data, warn_unprotected=False), load_dataset(out)  # the guard passes
    assert ds.protection is not None and [f.kind for f in ds.frames[:3]] == ["protected", "protected", "rgb"]
    np.testing.assert_allclose(ds.points, src.points, atol=1e-5)
    np.testing.assert_allclose(ds.frames[0].w2c, src.frames[0].w2c, atol=1e-9)


def test_protect_without_points_writes_none(tmp_path):
    write_nerfstudio(tmp_path / "data", *scene())
    protect(tmp_path / "data", tmp_path / "out", "im0", resolution=16, verbose=False)
    assert not (tmp_path / "out" / POINTS_NAME).exists()
    assert "ply_file_path" not in json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert load_dataset(tmp_path / "out").points is None


def test_guard_refuses_points_with_colour(protected_points, copy_of):
    root = copy_of(protected_points[1])
    xyz = load_dataset(root).to_input_units(load_dataset(root).points)
    write_points_ply(root / POINTS_NAME, xyz, np.zeros((len(xyz), 3), np.uint8))  # x, y, z, red, green, blue
    refix(root)
    with pytest.raises(PrivsplatError, match=r"points.ply has the vertex properties \['x', 'y', 'z', 'red'"):
        load_dataset(root)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda b: b.replace(b"format", b"comment hi\nformat"), "header line"),
        (lambda b: b + b"\0" * 24, "bytes after its header"),
        (
            lambda b: b.replace(b"end_header", b"element face 0\nproperty list uchar int vertex_indices\nend_header"),
            "element",
        ),
    ],
    ids=["comment", "trailing-bytes", "extra-element"],
)
def test_guard_refuses_points_with_anything_else(protected_points, copy_of, edit, match):
    root = copy_of(protected_points[1])
    (root / POINTS_NAME).write_bytes(edit((root / POINTS_NAME).read_bytes()))
    refix(root)
    with pytest.raises(PrivsplatError, match=match):
        load_dataset(root)


def test_guard_refuses_extra_and_renamed_ply_files(protected_points, copy_of):
    root = copy_of(protected_points[1])
    (root / "extra.ply").write_bytes((root / POINTS_NAME).read_bytes())
    with pytest.raises(PrivsplatError, match="extra.ply is in the folder but the manifest does not cover it"):
        load_dataset(root)
    refix(root)  # listed, but nothing uses it
    with pytest.raises(PrivsplatError, match="extra.ply is listed in the manifest but no frame uses it"):
        load_dataset(root)
    meta = json.loads((root / "transforms.json").read_text())
    meta["ply_file_path"] = "extra.ply"
    (root / "transforms.json").write_text(json.dumps(meta))
    os.remove(root / POINTS_NAME)
    refix(root)
    with pytest.raises(PrivsplatError, match="ply_file_path names .*extra.ply; protect writes points.ply"):
        load_dataset(root)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_ply_file_path_out_of_the_dataset_is_refused(tmp_path, how):
    data = tmp_path / "data"
    X = nerfstudio_with_points(data)
    secret = tmp_path / "secret.ply"
    write_points_ply(secret, X, np.zeros((len(X), 3), np.uint8))
    rel = {"dotdot": "../secret.ply", "absolute": str(secret), "symlink": "link.ply"}[how]
    if how == "symlink":
        os.symlink(secret, data / "link.ply")
    meta = json.loads((data / "transforms.json").read_text())
    meta["ply_file_path"] = rel
    (data / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PrivsplatError, match="lies outside the dataset folder"):
        load_dataset(data, warn_unprotected=False)


def test_ply_file_path_missing_or_forged_is_refused(tmp_path):
    nerfstudio_with_points(tmp_path)
    ply = tmp_path / "sparse_pc.ply"
    ply.write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\n"
        b"property float y\nproperty float z\nend_header\n" + b"\0" * 12
    )
    with pytest.raises(PrivsplatError, match="claims 1000000000 vertex"):
        load_dataset(tmp_path, warn_unprotected=False)
    ply.unlink()
    with pytest.raises(PrivsplatError, match="sparse_pc.ply does not exist"):
        load_dataset(tmp_path, warn_unprotected=False)
