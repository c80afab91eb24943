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

    code = ("import time, sys\n"
            "import privsplat.privacy.sigma as S\n"
            "orig = S.gradient_magnitude\n"
            "def slow(*a, **k):\n"
            "    print('working', flush=True); time.sleep(30); return orig(*a, **k)\n"
            "S.gradient_magnitude = slow\n"
            "from privsplat.commands import main\n"
            f"sys.exit(main(['protect', '--data', {str(synth_head)!r}, '--out', {str(tmp_path / 'out')!r}, "
            "'--sensitive', 'all']))\n")
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
