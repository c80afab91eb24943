"""synthesize_car: deterministic per seed, the dataset layout load_dataset reads, a sidecar that
agrees with the rendered plate masks and with the plate's geometry."""

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("open3d")  # the scene is ray-cast with open3d

from privsplat.data import load_dataset, load_mask  # noqa: E402
from privsplat.data.scenes import (
    PLATE_DIGITS,
    PLATE_LETTERS,
    plate_corners_world,  # noqa: E402
    plate_strings,
    synthesize_car,
)
from privsplat.errors import PrivsplatError  # noqa: E402


@pytest.fixture(scope="module")
def car(tmp_path_factory):
    """3 views at 128 px (frame_000 looks at the front plate from 5° above)."""
    return synthesize_car(tmp_path_factory.mktemp("car") / "a", views=3, resolution=128, seed=5)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_files_other_seed_other_plates(car, tmp_path):
    again = synthesize_car(tmp_path / "b", views=3, resolution=128, seed=5)
    a, b = _files(car), _files(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = synthesize_car(tmp_path / "c", views=3, resolution=128, seed=6)
    pa = json.loads((car / "plates.json").read_text())["plates"]
    pc = json.loads((other / "plates.json").read_text())["plates"]
    assert [p["text"] for p in pa] != [p["text"] for p in pc]
    assert (car / "images" / "frame_000.png").read_bytes() != (other / "images" / "frame_000.png").read_bytes()


def test_plate_strings_follow_the_format():
    seen = set()
    for seed in range(50):
        s = plate_strings(seed)
        assert s["front"] != s["rear"]
        for text in s.values():
            assert len(text) == 6 and text[2] == " "
            assert set(text[:2]) <= set(PLATE_LETTERS) and set(text[3:]) <= set(PLATE_DIGITS)
            seen.add(text)
    assert len(seen) > 90  # random, not a handful of repeats
    assert plate_strings(7) == plate_strings(7)


def test_layout_loads_and_sidecar_matches_masks(car):
    ds = load_dataset(car, warn_unprotected=False)
    assert [f.name for f in ds.frames] == ["frame_000", "frame_001", "frame_002"]
    assert ds.normalisation == "masks"
    plates = json.loads((car / "plates.json").read_text())
    front = plates["frames"][0]["plates"][0]
    assert front["id"] == "front" and front["readable"] and front["angle_deg"] < 10
    mask = cv2.imread(str(car / "plate_masks" / "frame_000.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert int(mask.sum()) == front["visible_px"] > 300
    ys, xs = np.nonzero(mask)
    assert front["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the projected corners bound the rendered plate (to a pixel) and the plate is unoccluded
    c = np.array(front["corners"])
    assert c[:, 0].min() - 1 <= xs.min() and xs.max() + 1 <= c[:, 0].max() + 1
    assert front["visible_fraction"] > 0.95
    # the plate sits on the car: inside its object mask
    obj = load_mask(ds.frames[0]) > 0
    assert obj[mask].mean() == 1.0
    # a plate is 1/18 of a 128 px view at most: the rest of the view is car and ground
    assert 0.01 < mask.mean() < 0.06


def test_gt_mesh_and_plate_vertex_mask(car):
    import open3d as o3d

    m = o3d.io.read_triangle_mesh(str(car / "gt_mesh.ply"))
    V = np.asarray(m.vertices)
    plate_mask = np.load(car / "gt_plate_mask.npy")
    assert plate_mask.shape == (len(V),) and 0 < plate_mask.sum() < len(V) // 4
    # the plate vertices are exactly the two slabs at the car's front and rear
    corners = plate_corners_world()
    lo = np.minimum(corners["front"].min(0), corners["rear"].min(0))
    hi = np.maximum(corners["front"].max(0), corners["rear"].max(0))
    P = V[plate_mask]
    assert np.all(P[:, :2] >= lo[:2] - 1e-9) and np.all(P[:, :2] <= hi[:2] + 1e-9)
    assert set(np.round(np.abs(P[:, 2]), 3)) == {1.6, 1.62}
    assert V[:, 1].min() >= 0.0  # nothing under the ground


def test_bad_arguments(tmp_path):
    with pytest.raises(PrivsplatError, match="--resolution"):
        synthesize_car(tmp_path / "x", views=2, resolution=16)
    with pytest.raises(PrivsplatError, match="--views"):
        synthesize_car(tmp_path / "y", views=0)
