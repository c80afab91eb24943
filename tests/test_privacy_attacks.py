"""Privacy regression suite: every way we know to get a sensitive view's RGB into a fit or out of a
run, each asserted to be refused (or to leave nothing). Reuses the leak scanner of test_protect."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from privsplat.data import load_dataset
from privsplat.privacy.protect import protect
from tests.test_protect import leaks, private_areas, sensitive_names_by_angle


def test_an_empty_region_mask_protects_the_whole_view(synth_head, tmp_path, capsys):
    """A detector that finds nothing (an all-black region mask) must not leave the view's RGB."""
    names = sensitive_names_by_angle(synth_head, 2)
    regions = tmp_path / "regions"
    regions.mkdir()
    cv2.imwrite(str(regions / f"{names[0]}.png"), np.zeros((32, 32), np.uint8))  # empty
    partial = np.zeros((32, 32), np.uint8)
    partial[10:14, 10:14] = 255
    cv2.imwrite(str(regions / f"{names[1]}.png"), partial)  # a tiny region
    out = tmp_path / "out"
    decisions = protect(synth_head, out, ",".join(names), region_masks=regions, resolution=16, dilate_px=1)
    assert "region mask is empty" in capsys.readouterr().out
    assert "whole view is protected" in decisions[names[0]][1]
    frames = {f.name: f for f in load_dataset(out).frames}
    assert frames[names[0]].kind == "protected" and frames[names[0]].rgb_outside_path is None
    assert not (out / "outside" / f"{names[0]}.png").exists()
    manifest = json.loads((out / "privsplat_manifest.json").read_text())
    entry = next(f for f in manifest["frames"] if f["name"] == names[0])
    assert entry["region"] is False
    # the empty-mask view leaks nothing anywhere; the partial one keeps RGB only outside its region
    assert leaks(out, private_areas(synth_head, [names[0]])) == []
    assert leaks(out, private_areas(synth_head, [names[1]], regions)) == []


def test_a_huge_blur_is_refused_before_any_work(synth_head, tmp_path):
    from privsplat.errors import PrivsplatError

    with pytest.raises(PrivsplatError, match="blur_sigma"):
        protect(synth_head, tmp_path / "out", "all", blur_sigma=1e9, verbose=False)
    assert not (tmp_path / "out").exists()


def test_sigterm_during_protect_leaves_no_temporary_folder(synth_head, tmp_path):
    """A killed protect (SIGTERM, as a scheduler sends) must not leave a hidden half-written folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import time, sys\n"
        "import privsplat.privacy.sigma as S\n"
        "orig = S.gradient_magnitude\n"
        "def slow(*a, **k):\n"
        "    print('working', flush=True); time.sleep(30); return orig(*a, **k)\n"
        "S.gradient_magnitude = slow\n"
        "from privsplat.commands import main\n"
        f"sys.exit(main(['protect', '--data', {str(synth_head)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--sensitive', 'all']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
        time.sleep(0.2)
    assert any(p.name.startswith(".out.") for p in tmp_path.iterdir()), "protect never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


# ----------------------------------------------------------------------------- finding 2: paths leaving the dataset
# A dataset folder comes from someone else; nothing in it may make privsplat read a file outside it
# (fit copies what it reads into renders/, which goes back to the sender). The loaders in
# data/formats.py refuse such paths.


def _outside_world(tmp_path):
    """(dataset folder with 2 views, a 'secret' image outside it)."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(data / "images" / f"v{i}.png"), np.full((12, 16, 3), 90, np.uint8))
    frames = [
        {"file_path": f"images/v{i}.png", "transform_matrix": [[1, 0, 0, i], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
        for i in range(2)
    ]
    (data / "transforms.json").write_text(json.dumps({"fl_x": 14, "w": 16, "h": 12, "frames": frames}))
    secret = tmp_path / "secret" / "face.png"
    secret.parent.mkdir()
    cv2.imwrite(str(secret), np.full((12, 16, 3), 200, np.uint8))
    return data, secret


def _set_frame0(data, **values):
    meta = json.loads((data / "transforms.json").read_text())
    meta["frames"][0].update(values)
    (data / "transforms.json").write_text(json.dumps(meta))


def _refused_outside(data):
    from privsplat.errors import PrivsplatError

    with pytest.raises(PrivsplatError, match="outside the dataset"):
        load_dataset(data, warn_unprotected=False)


def test_paths_absolute_file_path_is_refused(tmp_path):
    data, secret = _outside_world(tmp_path)
    _set_frame0(data, file_path=str(secret))
    _refused_outside(data)


def test_paths_dotdot_file_path_is_refused(tmp_path):
    data, secret = _outside_world(tmp_path)
    _set_frame0(data, file_path="images/../../secret/face.png")
    _refused_outside(data)


def test_paths_absolute_and_dotdot_mask_path_are_refused(tmp_path):
    data, secret = _outside_world(tmp_path)
    _set_frame0(data, mask_path=str(secret))
    _refused_outside(data)
    _set_frame0(data, mask_path="../secret/face.png")
    _refused_outside(data)


def test_paths_symlink_out_of_the_dataset_is_refused(tmp_path):
    import os

    data, secret = _outside_world(tmp_path)
    (data / "images" / "v0.png").unlink()
    os.symlink(secret, data / "images" / "v0.png")
    _refused_outside(data)


def test_paths_symlink_inside_the_dataset_is_allowed(tmp_path):
    import os

    data, _ = _outside_world(tmp_path)
    (data / "store").mkdir()
    (data / "images" / "v0.png").rename(data / "store" / "v0.png")
    os.symlink(data / "store" / "v0.png", data / "images" / "v0.png")
    assert len(load_dataset(data, warn_unprotected=False).frames) == 2


@pytest.mark.parametrize("name", ["../secret/face.png", "ABSOLUTE"])
def test_paths_colmap_image_name_leaving_images_is_refused(tmp_path, name):
    from privsplat.data.colmap import ColmapCamera, ColmapImage, write_model_txt

    data, secret = _outside_world(tmp_path)
    (data / "transforms.json").unlink()
    name = str(secret) if name == "ABSOLUTE" else "../" + name  # images/../../secret/face.png
    cams = {1: ColmapCamera("PINHOLE", 16, 12, np.array([14.0, 14.0, 8.0, 6.0]))}
    images = {
        1: ColmapImage(np.array([1.0, 0, 0, 0]), np.array([0.0, 0, 3]), 1, "v1.png"),
        2: ColmapImage(np.array([1.0, 0, 0, 0]), np.array([1.0, 0, 3]), 1, name),
    }
    (data / "sparse" / "0").mkdir(parents=True)
    write_model_txt(data / "sparse" / "0", cams, images)
    _refused_outside(data)


def test_paths_idr_symlinked_image_is_refused(tmp_path):
    import os

    data, secret = _outside_world(tmp_path)
    (data / "transforms.json").unlink()
    (data / "images").rename(data / "image")
    P = np.array([[14.0, 0, 8, 0], [0, 14, 6, 0], [0, 0, 1, 3]])
    np.savez(data / "cameras.npz", world_mat_0=P, world_mat_1=P + [[0, 0, 0, 14], [0] * 4, [0] * 4])
    (data / "image" / "v1.png").unlink()
    os.symlink(secret, data / "image" / "v1.png")
    _refused_outside(data)
