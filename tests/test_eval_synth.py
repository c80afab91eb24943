"""Evaluation on the bundled synthetic head (privsplat synth): GT metrics and mesh renders."""

import pytest

from privsplat.data.synth import synthesize
from privsplat.eval.geometry import evaluate_mesh


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return synthesize(mesh="ict", out=tmp_path_factory.mktemp("synth") / "head", views=6, resolution=64)


def test_gt_against_itself_on_the_face_region(synth_dir):
    m = evaluate_mesh(
        synth_dir / "gt_mesh.ply",
        synth_dir / "gt_mesh.ply",
        gt_face_mask=synth_dir / "gt_face_mask.npy",
        n_samples=20_000,
    )
    assert m["chamfer"] < 1e-6 * m["gt_bbox_diagonal"]
    assert 0 < m["n_scored_gt"] < 0.7 * m["n_samples"]


def test_mesh_renders_line_up_with_the_dataset_masks(synth_dir):
    # The mesh is in input units and the cameras in the normalised world: a wrong conversion
    # would shift or scale the silhouette.
    import cv2

    pytest.importorskip("dlib", reason="privacy-eval needs the fr extra")
    from privsplat.eval.privacy import render_mesh_views

    views = render_mesh_views(synth_dir / "gt_mesh.ply", synth_dir)
    assert len(views) == 6
    for name, img in views.items():
        mask = cv2.imread(str(synth_dir / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127
        drawn = img > 0
        iou = (mask & drawn).sum() / (mask | drawn).sum()
        assert iou > 0.95, name


def test_privacy_eval_renders_the_mesh_from_the_dataset_cameras(synth_dir, tmp_path):
    pytest.importorskip("dlib", reason="privacy-eval needs the fr extra")
    from privsplat.commands.privacy_eval import PrivacyEval

    report = PrivacyEval(
        originals=synth_dir / "images",
        mesh=synth_dir / "gt_mesh.ply",
        cameras=synth_dir,
        attack="none",
        md=tmp_path / "r.md",
    ).run()
    s = report["sets"]["mesh renders (shaded)"]
    assert s["n_candidates"] == 6 and s["missing"] == []
    assert s["same_view"]["pairs"] == report["n_faces_found"]
    assert "| mesh renders (shaded) |" in (tmp_path / "r.md").read_text()
