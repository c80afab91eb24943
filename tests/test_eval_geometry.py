import json

import numpy as np
import pytest

from privsplat.commands.eval import Eval
from privsplat.errors import PrivsplatError
from privsplat.eval.geometry import evaluate_mesh, parse_face_sphere, sample_surface

N = 20_000  # samples per surface: enough for these analytic cases, fast on 2 cores


def uv_sphere(radius=1.0, center=(0.0, 0.0, 0.0), n_lat=48, n_lon=96, axes=(1.0, 1.0, 1.0)):
    """A closed UV sphere (or ellipsoid with `axes`) as (vertices, faces)."""
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    V = np.vstack([[0, 0, 1], ring, [0, 0, -1]]) * np.asarray(axes) * radius + np.asarray(center)
    faces, south = [], len(V) - 1
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        faces.append([0, idx(0, j), idx(0, j + 1)])
        faces.append([south, idx(n_lat - 2, j + 1), idx(n_lat - 2, j)])
        for i in range(n_lat - 2):
            faces += [[idx(i, j), idx(i + 1, j), idx(i + 1, j + 1)], [idx(i, j), idx(i + 1, j + 1), idx(i, j + 1)]]
    return V, np.asarray(faces)


def unit_square(z=0.0):
    V = np.array([[0, 0, z], [1, 0, z], [1, 1, z], [0, 1, z]], float)
    return V, np.array([[0, 1, 2], [0, 2, 3]])


def merge(*meshes):
    Vs, Fs, offset = [], [], 0
    for V, F in meshes:
        Vs.append(V)
        Fs.append(F + offset)
        offset += len(V)
    return np.vstack(Vs), np.vstack(Fs)


def test_sampler_is_uniform_by_area_and_deterministic():
    # Two squares, the second 4x the area: it must receive ~80% of the samples.
    small, big = unit_square(), (unit_square()[0] * [2, 2, 1] + [5, 0, 0], unit_square()[1])
    V, F = merge(small, big)
    p1, n1, tri = sample_surface(V, F, 10_000, seed=3)
    p2, _, _ = sample_surface(V, F, 10_000, seed=3)
    np.testing.assert_array_equal(p1, p2)
    assert abs((tri >= 2).mean() - 0.8) < 0.02
    assert np.allclose(np.abs(n1[:, 2]), 1.0)


def test_a_mesh_whose_areas_overflow_is_refused_not_sampled_as_nan():
    """Finite coordinates so large that triangle areas overflow (a corrupt PLY's flipped exponent byte,
    found by the PLY fuzz) get a clear error, not numpy's "probabilities contain NaN"."""
    square = unit_square()
    for big in (1e200, 1e155):
        V = square[0] * big
        with pytest.raises(PrivsplatError, match="too large"):
            sample_surface(V, square[1], 100)
        with pytest.raises(PrivsplatError, match="too large"):
            evaluate_mesh((V, square[1]), square, n_samples=100)


def test_identical_meshes_score_zero():
    mesh = uv_sphere()
    m = evaluate_mesh(mesh, mesh, n_samples=N)
    assert m["chamfer"] < 1e-6 * m["gt_bbox_diagonal"]
    assert m["normal_consistency"] > 0.9999
    assert all(f["fscore"] == 1.0 for f in m["fscore"])


def test_plane_shifted_along_normal_scores_the_shift():
    d = 0.01  # 0.707% of the unit square's diagonal sqrt(2)
    m = evaluate_mesh(unit_square(z=d), unit_square(), n_samples=N)
    assert m["accuracy"] == pytest.approx(d, rel=1e-4)
    assert m["completeness"] == pytest.approx(d, rel=1e-4)
    assert m["chamfer"] == pytest.approx(d, rel=1e-4)
    assert m["gt_bbox_diagonal"] == pytest.approx(np.sqrt(2))
    assert [f["fscore"] for f in m["fscore"]] == [0.0, 1.0, 1.0]
    assert m["fscore"][1]["threshold"] == pytest.approx(0.01 * np.sqrt(2))


def test_sphere_scaled_scores_the_radius_gap():
    # Concentric spheres of radius 1 and 1.05: every distance is 0.05 up to tessellation (~1e-3).
    m = evaluate_mesh(uv_sphere(1.05), uv_sphere(1.0), n_samples=N)
    assert m["chamfer"] == pytest.approx(0.05, abs=2e-3)


def test_face_crop_ignores_a_far_blob():
    sphere = uv_sphere()
    blob = uv_sphere(0.3, center=(0.0, 0.0, 2.5), n_lat=12, n_lon=24)  # floating in front of the face
    pred = merge(sphere, blob)
    face_mask = sphere[0][:, 2] > 0.5
    whole = evaluate_mesh(pred, sphere, n_samples=N)
    face = evaluate_mesh(pred, sphere, gt_face_mask=face_mask, n_samples=N)
    assert whole["accuracy"] > 0.01
    assert face["accuracy"] < 1e-5 and face["completeness"] < 1e-5
    assert face["n_scored_gt"] < 0.3 * N
    by_sphere = evaluate_mesh(pred, sphere, face_sphere=(0, 0, 1, 0.8), n_samples=N)
    assert by_sphere["chamfer"] < 1e-5
    assert by_sphere["region"].startswith("sphere")


def test_face_region_scores_the_surface_that_stands_for_the_face_not_its_border():
    """A prediction right on the face but wrong on the band just below the face mask (an ICT head's
    neck above its open cut) scores 0 with the default region: the band's closest GT points are not
    face. The older margin rule scored that band (every predicted sample within 5 % of the diagonal
    of the face), which is where identity-1 ICT privacy fits lost to full-RGB. A floater just in
    front of the face still counts."""
    V, F = uv_sphere()
    face_mask = V[:, 2] > 0.5
    band = (V[:, 2] > 0.1) & (V[:, 2] < 0.45)
    wrong = (V * np.where(band, 1.08, 1.0)[:, None], F)  # bulges 0.08 out, ~0.1 below the face
    near = evaluate_mesh(wrong, (V, F), gt_face_mask=face_mask, n_samples=N)
    old = evaluate_mesh(wrong, (V, F), gt_face_mask=face_mask, n_samples=N, face_region="margin")
    assert near["accuracy"] < 1e-3 < 0.01 < old["accuracy"]
    assert near["face_region"] == "nearest" and near["region"].startswith("predicted samples nearest")
    floater = merge((V, F), uv_sphere(0.1, center=(0.0, 0.0, 1.2), n_lat=12, n_lon=24))
    with_floater = evaluate_mesh(floater, (V, F), gt_face_mask=face_mask, n_samples=N)
    assert with_floater["accuracy"] > 1e-3
    with pytest.raises(PrivsplatError, match="face_region"):
        evaluate_mesh((V, F), (V, F), gt_face_mask=face_mask, n_samples=N, face_region="sphere")


def test_icp_recovers_a_small_shift():
    gt = uv_sphere(axes=(1.0, 0.7, 0.5))  # an ellipsoid: no sliding symmetry for the translation
    shift = np.array([0.03, -0.02, 0.01])
    pred = (gt[0] + shift, gt[1])
    before = evaluate_mesh(pred, gt, n_samples=N)
    after = evaluate_mesh(pred, gt, align="icp", n_samples=N)
    T = np.asarray(after["transform"])
    np.testing.assert_allclose(T[:3, 3], -shift, atol=1e-3)
    np.testing.assert_allclose(T[:3, :3], np.eye(3), atol=1e-3)
    assert after["chamfer"] < 1e-3 < before["chamfer"]


def test_bad_inputs_raise_privsplat_error(tmp_path):
    mesh = unit_square()
    with pytest.raises(PrivsplatError, match="does not exist"):
        evaluate_mesh(tmp_path / "missing.ply", mesh)
    with pytest.raises(PrivsplatError, match="no triangles"):
        evaluate_mesh((np.zeros((0, 3)), np.zeros((0, 3), int)), mesh)
    with pytest.raises(PrivsplatError, match="4 vertices"):
        evaluate_mesh(mesh, mesh, gt_face_mask=np.ones(7, bool))
    (tmp_path / "mask.png").write_bytes(b"\x89PNG not a mask")
    with pytest.raises(PrivsplatError, match="not a .npy array"):
        evaluate_mesh(mesh, mesh, gt_face_mask=tmp_path / "mask.png")
    with pytest.raises(PrivsplatError, match="x,y,z,r"):
        parse_face_sphere("1,2,3")


def test_cli_prints_and_writes_json(tmp_path, capsys):
    import open3d as o3d

    for name, z in (("pred.ply", 0.02), ("gt.ply", 0.0)):
        V, F = unit_square(z)
        o3d.io.write_triangle_mesh(
            str(tmp_path / name),
            o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(V), o3d.utility.Vector3iVector(F)),
        )
    np.save(tmp_path / "mask.npy", np.ones(4, bool))
    out = tmp_path / "metrics.json"
    Eval(
        mesh=tmp_path / "pred.ply", gt=tmp_path / "gt.ply", gt_face_mask=tmp_path / "mask.npy", n_samples=2000, json=out
    ).run()
    assert "Chamfer" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["chamfer"] == pytest.approx(0.02, rel=1e-3)
    assert saved["gt_path"].endswith("gt.ply")


def test_shaded_mesh_render_of_a_sphere_matches_its_analytic_silhouette():
    from privsplat.cameras import intrinsics_from_fov, look_at
    from privsplat.eval.mesh_render import shade_mesh

    V, F = uv_sphere(1.0, n_lat=96, n_lon=192)
    size, dist = 96, 4.0
    K = intrinsics_from_fov(size, size, np.deg2rad(40))
    w2c = look_at(np.array([0.0, 0.0, dist]), np.zeros(3))
    img = shade_mesh(V, F, K, w2c, size, size)[0]
    r_px = K[0, 0] * np.tan(np.arcsin(1.0 / dist))  # projected silhouette radius
    assert (img > 0).sum() == pytest.approx(np.pi * r_px**2, rel=0.03)
    assert img[size // 2, size // 2] == pytest.approx(1.0, abs=2e-3)  # facing the headlight
    assert img[0, 0] == 0.0 and img.max() <= 1.0
