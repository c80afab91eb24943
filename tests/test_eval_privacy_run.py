"""`privsplat privacy-eval --run`: every candidate set derived from a run folder.

The run is faked cheaply (no fit): surfels on the ground-truth mesh of a tiny synthetic head,
a checkpoint as `privsplat fit` saves it, the GT mesh as mesh.ply.
"""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("dlib", reason="face-recognition extra not installed (pip install -e .[fr])")
pytest.importorskip("face_recognition_models", reason="face-recognition extra not installed")
pytest.importorskip("open3d", reason="synthetic heads and mesh renders need open3d")

from privsplat.commands.privacy_eval import PrivacyEval  # noqa: E402
from privsplat.errors import PrivsplatError  # noqa: E402
from privsplat.eval import privacy  # noqa: E402

N_SURFELS = 3000


def fake_run(data, run, seed: int = 0):
    """A run folder as `privsplat fit --data data --out run` leaves it, with an unfitted model."""
    import torch
    import yaml

    from privsplat.data import load_dataset
    from privsplat.eval.geometry import load_mesh, triangle_areas_normals
    from privsplat.train.config import FitConfig
    from privsplat.train.model import SurfelModel

    dataset = load_dataset(data, warn_unprotected=False)
    V, F = load_mesh(data.parent / "head" / "gt_mesh.ply")
    _, tri_n = triangle_areas_normals(V, F)
    rng = np.random.default_rng(seed)
    tris = rng.choice(len(F), N_SURFELS, replace=False)
    points = dataset.to_normalised(V[F[tris]].mean(axis=1))  # triangle centres, in the model's frame
    cfg = FitConfig()
    model = SurfelModel.from_points(points, tri_n[tris], cfg)
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"model": model.state()}, run / "checkpoints" / "latest.pt")
    (run / "config.yaml").write_text(
        yaml.safe_dump({"data": str(data.resolve()), "preset": "test", "device": "cpu", "config": cfg.to_dict()})
    )
    shutil.copy(data.parent / "head" / "gt_mesh.ply", run / "mesh.ply")
    return run


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    from privsplat.data.synth import synthesize
    from privsplat.privacy.protect import protect

    root = tmp_path_factory.mktemp("privacy_run")
    # 8 views: two of them frontal enough for dlib's detector at 64 px
    synthesize(mesh="ict", out=root / "head", views=8, resolution=64, identity_seed=1)
    protect(root / "head", root / "head_protected", sensitive="all", verbose=False)
    fake_run(root / "head_protected", root / "run")
    fake_run(root / "head", root / "rgb_run")
    return root


def test_run_report_has_every_set_with_sane_shares(head, capsys):
    r = head
    report = PrivacyEval(
        originals=r / "head",
        run_dir=r / "run",
        baseline_run=r / "rgb_run",
        attack="poisson",
        device="cpu",
        json=r / "report.json",
        md=r / "report.md",
    ).run()
    sets = [
        "original",
        "protected",
        "inverted (poisson, 2 guesses)",
        privacy.MODEL_RENDERS,
        privacy.MESH_RENDERS,
        privacy.BASELINE_RENDERS,
    ]
    assert list(report["sets"]) == sets
    faces = report["n_faces_found"]
    assert report["n_originals"] == 8 and faces >= 2  # every view is protected; frontal ones have a face
    for name in sets[1:]:
        s = report["sets"][name]
        assert s["missing"] == []
        assert s["same_view"]["pairs"] == faces  # one candidate per original with a face
        assert s["cross_view"]["pairs"] == faces * (faces - 1)
        for col in ("same_view", "cross_view"):
            share = s[col]["verified"] * s[col]["pairs"]  # a share of pairs: a whole number of them
            assert abs(share - round(share)) < 1e-6 and s[col]["mean_distance"] > 0
        assert s["false_accept"] is None  # one identity
    live = report["sets"]["original"]["cross_view"]
    assert live["pairs"] == faces * (faces - 1) // 2
    # liveness: other views of the same (synthetic) person are recognised; the protected |g| is not
    # closer to the originals than they are to each other
    assert live["verified"] >= 0.5, live
    assert report["sets"]["protected"]["same_view"]["mean_distance"] > live["mean_distance"]
    assert report["inputs"]["kernel"] == "sobel" and report["inputs"]["protected_views"] == 8
    table = (r / "report.md").read_text()
    assert table in capsys.readouterr().out
    for name in sets[1:]:
        assert f"| {name} |" in table
    assert json.loads((r / "report.json").read_text()) == json.loads(json.dumps(report))


def test_candidates_are_the_runs_views(head):
    """Renders are at the protected cameras' size, the mesh renders show the head, |g| is scaled to 1."""
    views = privacy.collect_run_views(head / "run", head / "head" / "images", attack="none", device="cpu")
    assert set(views.originals) == {f"frame_{i:03d}" for i in range(8)}  # a folder of images works too
    assert set(views.sets) == {"protected", privacy.MODEL_RENDERS, privacy.MESH_RENDERS}
    for k, img in views.originals.items():
        assert views.sets[privacy.MODEL_RENDERS][k].shape == img.shape == (64, 64, 3)
        mesh = views.sets[privacy.MESH_RENDERS][k]
        assert mesh.shape == (64, 64)
        # The GT mesh seen from the original's camera covers the original's foreground.
        fg = img.max(axis=-1) > 0.02
        assert ((mesh > 0) == fg).mean() > 0.95
        assert views.sets["protected"][k].max() == pytest.approx(1.0)


def test_run_errors_are_clear(head, tmp_path):
    r = head
    with pytest.raises(PrivsplatError, match="not a privsplat run folder"):
        privacy.evaluate_privacy_run(tmp_path, r / "head")
    with pytest.raises(PrivsplatError, match="no protected views"):
        privacy.evaluate_privacy_run(r / "rgb_run", r / "head")
    with pytest.raises(PrivsplatError, match="is a protected folder"):
        privacy.evaluate_privacy_run(r / "run", r / "head_protected")
    with pytest.raises(PrivsplatError, match="drop --protected"):
        PrivacyEval(originals=r / "head", run_dir=r / "run", protected=r / "head_protected").run()
    with pytest.raises(PrivsplatError, match="goes with --run"):
        PrivacyEval(originals=r / "head", baseline_run=r / "rgb_run").run()
    moved = tmp_path / "run"
    shutil.copytree(r / "run", moved)
    (moved / "mesh.ply").unlink()
    with pytest.raises(PrivsplatError, match="no mesh.ply"):
        privacy.evaluate_privacy_run(moved, r / "head")
