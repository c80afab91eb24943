"""Text regions for `protect --sensitive-regions`: auto covers every plate pixel of the synthetic
car (recall), nothing of a plate survives as RGB in the protected folder, user boxes work."""

import json

import cv2
import numpy as np
import pytest

from privsplat.data import load_dataset
from privsplat.errors import PrivsplatError
from privsplat.privacy.text import (
    TextBox,
    decisions,
    detect_text_regions,
    merge_lines,
    regions_from_json,
    tesseract_available,
    write_region_masks,
)

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="needs tesseract-ocr (apt) and pytesseract (pip)"
)
RECALL_MIN = 0.995  # of all plate pixels over all views (anti-aliased edge pixels may fall outside); measured 1.000
VIEW_RECALL_MIN = 0.95  # per view showing >= 50 plate pixels; measured 1.000 in every view


@pytest.fixture(scope="module")
def car(tmp_path_factory):
    """18 views at 256 px: tesseract reads each plate surely in one view only (frame_000, frame_003);
    the other 13 views showing a plate must get their region from those readings."""
    pytest.importorskip("open3d")
    from privsplat.data.scenes import synthesize_car

    return synthesize_car(tmp_path_factory.mktemp("car") / "car", views=18, resolution=256, seed=3)


@pytest.fixture(scope="module")
def regions(car):
    if not tesseract_available():
        pytest.skip("needs tesseract-ocr (apt) and pytesseract (pip)")
    return detect_text_regions(load_dataset(car, warn_unprotected=False))


def _face_leak_scanner():
    """tests/test_protect.py's leaks(): the scanner the face tests use (loaded by path: tests/ is no package)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_test_protect_leaks", Path(__file__).with_name("test_protect.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.leaks


def _plate_mask(car, name):
    return cv2.imread(str(car / "plate_masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 0


@pytest.mark.slow  # ~25 s alone on 2 cores: 18 views rendered at 256 px and read twice by tesseract
@needs_tesseract
def test_auto_regions_cover_every_plate(car, regions):
    total = covered = 0
    for name, r in regions.items():
        plate = _plate_mask(car, name)
        total += plate.sum()
        covered += (plate & r.mask).sum()
        if plate.sum() >= 50:
            assert (plate & r.mask).sum() / plate.sum() >= VIEW_RECALL_MIN, (name, r.reason)
            assert r.sensitive
    assert total > 5000
    assert covered / total >= RECALL_MIN
    # and the regions are regions, not whole views: most of the car and ground stays RGB
    assert np.mean([r.mask.mean() for r in regions.values()]) < 0.6
    # the plates were read and anchored in 3D: some view with a plate shows it although
    # tesseract read nothing sure there
    anchored = [r.reason for r in regions.values() if "faces this view" in r.reason]
    assert len(anchored) >= 6
    dec = decisions(regions)
    assert set(dec) == set(regions) and all(isinstance(why, str) and why for _, why in dec.values())


@pytest.mark.slow
@needs_tesseract
def test_no_plate_rgb_in_protected_folder(car, regions, tmp_path):
    from privsplat.privacy.protect import protect

    leaks = _face_leak_scanner()

    names = write_region_masks(regions, tmp_path / "regions")
    out = tmp_path / "prot"
    protect(car, out, ",".join(names), region_masks=tmp_path / "regions", verbose=False)
    plates = {
        n: (car / "images" / f"{n}.png", _plate_mask(car, n)) for n in regions if _plate_mask(car, n).sum() >= 200
    }
    assert len(plates) >= 6
    assert len(leaks(car, plates)) >= len(plates)  # the scanner sees the plates in the input
    assert leaks(out, plates) == []
    manifest = json.loads((out / "privsplat_manifest.json").read_text())
    kinds = {f["name"]: (f["kind"], f["region"]) for f in manifest["frames"]}
    assert all(kinds[n] == ("protected", True) for n in plates)


@pytest.mark.slow  # renders a car at 256 px
def test_user_boxes_from_json(car, tmp_path):
    ds = load_dataset(car, warn_unprotected=False)
    spec = tmp_path / "boxes.json"
    spec.write_text(json.dumps({"frame_000": [[10, 20, 30.5, 25]], "frame_004": []}))
    r = regions_from_json(ds, spec)
    assert r["frame_000"].mask.sum() == 21 * 5 and r["frame_000"].mask[20:25, 10:31].all()
    assert not r["frame_004"].sensitive and not r["frame_001"].sensitive
    spec.write_text(json.dumps({"frame_999": [[0, 0, 1, 1]]}))
    with pytest.raises(PrivsplatError, match="unknown frame"):
        regions_from_json(ds, spec)
    spec.write_text(json.dumps({"frame_000": [[5, 5, 5, 9]]}))
    with pytest.raises(PrivsplatError, match="empty"):
        regions_from_json(ds, spec)


def test_merge_lines_joins_words_of_one_line():
    words = [
        TextBox((10, 10, 30, 20), "KX", 90, True),
        TextBox((36, 11, 60, 21), "482", 90, True),
        TextBox((11, 10, 60, 20), "482", 91, True),  # the same line again, from the other scale
        TextBox((10, 60, 40, 70), "AB", 90, True),  # another line
        TextBox((0, 0, 5, 5), "o", 10, False),
    ]  # unsure words are not merged
    lines = merge_lines(words)
    assert sorted(ln.box for ln in lines) == [(10, 10, 60, 21), (10, 60, 40, 70)]
    assert any(ln.text == "KX 482" for ln in lines)


def _true_sightings(car, ds):
    """Sightings of the plates' true pixel boxes (from the sidecar) in every view where they are readable."""
    from privsplat.privacy.text import _sighting

    plates = json.loads((car / "plates.json").read_text())
    texts = {p["id"]: p["text"] for p in plates["plates"]}
    index = {f.name: i for i, f in enumerate(ds.frames)}
    out = []
    for fr in plates["frames"]:
        for p in fr["plates"]:
            if p["readable"]:
                line = TextBox(tuple(float(v) for v in p["box"]), texts[p["id"]], 95.0, True)
                out.append((p["id"], _sighting(index[fr["name"]], line, ds.frames[index[fr["name"]]])))
    return out, {p["id"]: np.asarray(p["corners_world"]) for p in plates["plates"]}


def test_text_placed_in_3d_from_one_view_or_by_triangulation(car):
    """Without tesseract: the plates' true boxes, placed on the hull from one view each, and triangulated."""
    from privsplat.data import load_mask
    from privsplat.privacy.text import anchor_text, hull_anchor, project_anchor

    ds = load_dataset(car, warn_unprotected=False)
    sightings, corners = _true_sightings(car, ds)
    assert len(sightings) >= 6
    masks = [load_mask(f) for f in ds.frames]
    normals = {"front": np.array([0.0, 0.0, 1.0]), "rear": np.array([0.0, 0.0, -1.0])}
    for pid, s in sightings:
        a = hull_anchor(s, ds.frames, masks)
        centre = ds.to_input_units(a.corners.mean(axis=0)[None])[0]
        # on the plate (metres; the hull is the car's silhouette cone, the plate stands 2 cm proud)
        assert np.linalg.norm(centre - corners[pid].mean(axis=0)) < 0.08, (pid, centre)
        assert np.degrees(np.arccos(a.normal @ normals[pid])) < 25.0  # the 18-view hull bulges: 11-17° measured
        # its rectangle projected into its own view contains the plate's box
        poly = project_anchor(a, ds.frames[s.view])
        x0, y0, x1, y1 = s.line.box
        assert poly[:, 0].min() <= x0 and poly[:, 0].max() >= x1 and poly[:, 1].min() <= y0 and poly[:, 1].max() >= y1
    anchors = anchor_text([s for _, s in sightings], ds.frames)
    assert sorted(len(a.views) for a in anchors)[-2:] >= [2, 2]  # both plates anchored from >= 2 views
    for a in anchors:
        centre = ds.to_input_units(a.corners.mean(axis=0)[None])[0]
        pid = "front" if centre[2] > 0 else "rear"
        assert np.linalg.norm(centre - corners[pid].mean(axis=0)) < 0.15
