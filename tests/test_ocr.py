"""The OCR attacker: it reads a clean rendered plate (liveness) and fails on that view's |g|."""

import json

import numpy as np
import pytest

from privsplat.eval.ocr import (
    PlateView,
    char_accuracy,
    edit_distance,
    format_ocr_table,
    normalise_text,
    ocr_report,
    plate_views,
    read_plate,
    rectify_plate,
)
from privsplat.privacy.sigma import SigmaParams, gradient_magnitude
from privsplat.privacy.text import tesseract_available

needs_tesseract = pytest.mark.skipif(
    not tesseract_available(), reason="needs tesseract-ocr (apt) and pytesseract (pip)"
)


def test_scores():
    assert edit_distance("KX482", "KX482") == 0
    assert edit_distance("KX482", "KX48") == 1 and edit_distance("KX482", "XK482") == 2
    assert normalise_text("kx 482\n") == "KX482"
    assert char_accuracy("KX 482", "KX482") == 1.0
    assert char_accuracy("KX 482", "KX4B2") == pytest.approx(0.8)
    assert char_accuracy("KX 482", "") == 0.0 and char_accuracy("KX 482", "ABCDEFGHIJK") == 0.0


@pytest.fixture(scope="module")
def front_view(tmp_path_factory):
    """The frontal view (5° elevation) of a 256 px car scene and its front plate."""
    pytest.importorskip("open3d")
    from privsplat.data.images import read_image
    from privsplat.data.scenes import synthesize_car

    car = synthesize_car(tmp_path_factory.mktemp("ocr") / "car", views=3, resolution=256, seed=11)
    pv = next(p for p in plate_views(json.loads((car / "plates.json").read_text())) if p.view == "frame_000")
    return read_image(car / "images" / "frame_000.png"), pv


def test_rectify_finds_the_plate(front_view):
    image, pv = front_view
    plate = rectify_plate(image, pv)
    assert plate.shape == (112, 452)
    # light field with dark characters: mostly bright (measured 0.80), with a real share of dark pixels
    assert 0.65 < float((plate > 0.5).mean()) < 0.9
    # corners shifted half a plate down (onto the bumper and ground) give no plate, and no reading
    off = PlateView(pv.view, pv.plate, pv.text, pv.corners + [0, 20], pv.image_size)
    assert float((rectify_plate(image, off) > 0.5).mean()) < 0.5
    assert normalise_text(pv.text) not in read_plate(image, off)


@needs_tesseract
def test_reads_clean_plate_and_fails_on_its_gradient_magnitude(front_view):
    image, pv = front_view
    assert normalise_text(pv.text) in read_plate(image, pv)
    rgb = image.astype(np.float32) / 255.0
    for res in (64, 128):  # σ at the protection resolution (64 is the default) and at twice that
        mag = gradient_magnitude(rgb, SigmaParams(resolution=res))
        reads = read_plate(mag / mag.max(), pv)
        assert normalise_text(pv.text) not in reads
        assert max(char_accuracy(pv.text, r) for r in reads) < 0.6, (res, reads)


@needs_tesseract
def test_report_counts(front_view):
    image, pv = front_view
    blank = np.zeros_like(image)
    rep = ocr_report(
        [pv],
        {
            "originals": {pv.view: image},
            "blank": {pv.view: blank},
            "guesses": {pv.view: [blank, image]},
            "elsewhere": {"frame_999": image},
        },
    )
    s = rep["sets"]
    assert (s["originals"]["plates"], s["originals"]["exact"], s["originals"]["char_accuracy"]) == (1, 1, 1.0)
    assert (s["blank"]["exact"], s["blank"]["char_accuracy"]) == (0, 0.0)
    assert s["guesses"]["exact"] == 1  # any guess of one attacker counts
    assert s["elsewhere"]["plates"] == 0 and s["elsewhere"]["exact_rate"] is None
    table = format_ocr_table(rep)
    assert "| originals | 1 | 1 | 100.0 | 100.0 |" in table and "| elsewhere | 0 | - | - | - |" in table
