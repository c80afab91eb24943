"""OCR attacker for text regions (licence plates): can anything we ship be read?

The attacker is strong, like the face attacker: it knows where each plate is (its four
corners in the ORIGINAL view, from the car scene's plates.json) and reuses them on every
candidate, which is first resized to the original's size. It rectifies the plate with a
homography to a 480 x 128 frontal image, stretches its contrast, binarises it (Otsu)
and reads one line with tesseract (LSTM, --psm 7) restricted to the plate alphabet, at
full and half that size. |g| and its inversions carry no polarity, so every candidate is
read as is and inverted, and a plate counts as read if any reading is right.

Scores per candidate set, over plate instances (a view x a plate readable in it):
- exact: the reading equals the plate string (spaces ignored);
- characters: 1 - edit distance / length, at least 0 (best of the two readings), averaged.
The originals give the liveness check: a low score elsewhere means something only where
the originals score high.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import PrivsplatError

RECTIFIED = (480, 128)  # (w, h) of the rectified plate
INSET = (0.03, 0.07)  # crop the plate's border off (fraction of w, h)
PLATE_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
READ_SCALES = (1.0, 0.5)


@dataclass(frozen=True)
class PlateView:
    """One plate as seen in one original view: its string and corners [4, 2] (top-left, top-right,
    bottom-right, bottom-left in reading order, pixel units of the original, centres at +0.5)."""

    view: str
    plate: str
    text: str
    corners: np.ndarray
    image_size: tuple[int, int]  # (H, W) of the original view


def plate_views(plates: dict, readable_only: bool = True) -> list[PlateView]:
    """PlateView of every plate in every view of a car scene's plates.json (only readable ones:
    in view, unoccluded, less than its readable_max_angle_deg off the plate's front)."""
    texts = {p["id"]: p["text"] for p in plates["plates"]}
    out = []
    for f in plates["frames"]:
        for p in f["plates"]:
            if p["corners"] is None or (readable_only and not p["readable"]):
                continue
            out.append(
                PlateView(
                    f["name"],
                    p["id"],
                    texts[p["id"]],
                    np.asarray(p["corners"], np.float64),
                    tuple(f.get("size", plates.get("image_size", (0, 0)))),
                )
            )
    return out


def normalise_text(s: str) -> str:
    return "".join(ch for ch in s.upper() if ch.isalnum())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(truth: str, read: str) -> float:
    t, r = normalise_text(truth), normalise_text(read)
    return max(0.0, 1.0 - edit_distance(t, r) / max(len(t), 1))


def _grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Candidate → float grey [H, W] at the original's size (H, W), scaled to 0..1 by its maximum
    where it is not already 0..1 (|g| has no absolute scale)."""
    import cv2

    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    a = a.astype(np.float32)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1)
    H, W = size
    if a.shape != (H, W):
        shrink = a.shape[0] > H
        a = cv2.resize(a, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return a


def rectify_plate(image: np.ndarray, pv: PlateView) -> np.ndarray:
    """The plate of `pv` from `image` (any size; resized to the original's), frontal, border cropped,
    contrast stretched to 0..1: float [h, w]."""
    import cv2

    H, W = pv.image_size if pv.image_size[0] else np.asarray(image).shape[:2]
    grey = _grey(image, (H, W))
    w, h = RECTIFIED
    src = (pv.corners - 0.5).astype(np.float32)  # pixel centres at +0.5 → OpenCV's index frame
    dst = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    plate = cv2.warpPerspective(grey, M, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    dx, dy = int(INSET[0] * w), int(INSET[1] * h)
    plate = plate[dy : h - dy, dx : w - dx]
    lo, hi = np.percentile(plate, [2, 98])
    return np.clip((plate - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def read_line(plate: np.ndarray, alphabet: str = PLATE_ALPHABET) -> str:
    """One line of text in a rectified plate image (dark text on light), binarised first."""
    import cv2

    from ..privacy.text import require_tesseract

    tess = require_tesseract()
    u8 = np.round(np.clip(plate, 0, 1) * 255).astype(np.uint8)
    _, b = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    b = cv2.copyMakeBorder(b, 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=255)
    config = f"--psm 7 --oem 1 -c tessedit_char_whitelist={alphabet}"
    return normalise_text(tess.image_to_string(b, config=config))


def read_plate(image: np.ndarray, pv: PlateView, alphabet: str = PLATE_ALPHABET) -> list[str]:
    """Readings of the plate in `image`, as is and inverted (the attacker does not know the
    polarity), each at READ_SCALES of the rectified size (tesseract reads best at ~30 px tall
    characters; thick or outlined strokes read better smaller)."""
    import cv2

    plate = rectify_plate(image, pv)
    if float(plate.max() - plate.min()) < 1e-6:
        return [""]  # nothing there (a blacked-out region): tesseract would only hallucinate
    reads = []
    for scale in READ_SCALES:
        p = plate if scale == 1.0 else cv2.resize(plate, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        reads += [read_line(p, alphabet), read_line(1.0 - p, alphabet)]
    return reads


def score_set(
    plates: list[PlateView],
    images: dict[str, object],
    alphabet: str = PLATE_ALPHABET,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Read every plate whose view is in `images` (view -> image, or a list of guesses of one
    attacker); a plate is read when any reading of any guess is exact; characters: the best."""
    rows = []
    todo = [pv for pv in plates if pv.view in images]
    for i, pv in enumerate(todo):
        if progress:
            progress(f"reading plate {i + 1}/{len(todo)} ({pv.view} {pv.plate})")
        guesses = images[pv.view]
        guesses = guesses if isinstance(guesses, list) else [guesses]
        reads = [r for g in guesses for r in read_plate(g, pv, alphabet)]
        exact = any(r == normalise_text(pv.text) for r in reads)
        best = max(reads, key=lambda r: char_accuracy(pv.text, r))
        rows.append(
            {
                "view": pv.view,
                "plate": pv.plate,
                "truth": pv.text,
                "read": best,
                "exact": exact,
                "characters": char_accuracy(pv.text, best),
            }
        )
    n = len(rows)
    return {
        "plates": n,
        "exact": sum(r["exact"] for r in rows),
        "exact_rate": sum(r["exact"] for r in rows) / n if n else None,
        "char_accuracy": float(np.mean([r["characters"] for r in rows])) if n else None,
        "reads": rows,
    }


def ocr_report(
    plates: list[PlateView],
    candidate_sets: dict[str, dict[str, object]],
    alphabet: str = PLATE_ALPHABET,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """{"sets": {name: score_set(...)}} for every candidate set (put the originals first)."""
    sets = {}
    for name, images in candidate_sets.items():
        if progress:
            progress(f"OCR on {name}")
        sets[name] = score_set(plates, images, alphabet)
    return {
        "sets": sets,
        "alphabet": alphabet,
        "attacker": "tesseract LSTM --psm 7 on the rectified plate, corners from the original, both polarities",
    }


def format_ocr_table(report: dict) -> str:
    lines = ["| set | plates | exact | exact % | characters % |", "|---|---:|---:|---:|---:|"]
    for name, s in report["sets"].items():
        if s["plates"]:
            lines.append(
                f"| {name} | {s['plates']} | {s['exact']} | {100 * s['exact_rate']:.1f} | "
                f"{100 * s['char_accuracy']:.1f} |"
            )
        else:
            lines.append(f"| {name} | 0 | - | - | - |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# A protected folder and fit runs: the candidate sets an attacker could hold


ORIGINALS = "originals"
PROTECTED = "protected |g|"
OUTSIDE = "RGB outside the region"
SHIPPED_RGB = "views shipped as RGB"
MODEL_RENDERS = "privacy-fit renders"
BASELINE_RENDERS = "full-RGB fit renders"


def inverted_name(attack: str) -> str:
    return f"inverted |g| ({attack}, both polarities)"


def protected_sets(
    protected: Path, plates: list[PlateView], attack: str = "optim", progress: Callable[[str], None] | None = None
) -> dict[str, dict[str, object]]:
    """From a `privsplat protect` folder: |g| of the protected views, the inversion attack on it,
    the RGB left outside their regions, and the views shipped as RGB (where a plate there is a leak)."""
    from ..data import load_protected, load_rgb, load_rgb_outside
    from ..data.load import load_dataset
    from .inversion import invert_gradient_magnitude

    ds = load_dataset(protected)
    kernel = (ds.protection or {}).get("kernel", "sobel")
    wanted = {pv.view for pv in plates}
    sets: dict[str, dict[str, object]] = {PROTECTED: {}, OUTSIDE: {}, SHIPPED_RGB: {}}
    if attack != "none":
        sets[inverted_name(attack)] = {}
    for f in ds.frames:
        if f.name not in wanted:
            continue
        if f.kind == "rgb":
            sets[SHIPPED_RGB][f.name] = load_rgb(f)
            continue
        mag, _ = load_protected(f)
        mag = mag / max(float(mag.max()), 1e-12)
        sets[PROTECTED][f.name] = mag
        if f.rgb_outside_path is not None:
            sets[OUTSIDE][f.name] = load_rgb_outside(f)[0]
        if attack != "none":
            if progress:
                progress(f"inverting |g| ({attack}) of {f.name}")
            sets[inverted_name(attack)][f.name] = invert_gradient_magnitude(
                mag, (f.height, f.width), attack, kernel=kernel
            )
    return sets


def evaluate_text_privacy(
    originals: Path,
    protected: Path | None = None,
    run: Path | None = None,
    baseline_run: Path | None = None,
    attack: str = "optim",
    device: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The OCR table for a car scene: originals (liveness), the protected folder's sets, renders of
    a fit run on it and of a full-RGB baseline run, over the plates readable in the originals.

    originals: the car scene folder (with plates.json); protected: its `privsplat protect` output
    (default: the run's data); run / baseline_run: `privsplat fit` run folders.
    """
    from ..data.scenes import load_plates
    from .privacy import load_originals, open_run, render_run_views

    plates = plate_views(load_plates(originals))
    if not plates:
        raise PrivsplatError(f"{originals}/plates.json lists no readable plate; nothing to attack")
    orig = load_originals(originals)
    plates = [pv for pv in plates if pv.view in orig]
    plates = [PlateView(pv.view, pv.plate, pv.text, pv.corners, orig[pv.view].shape[:2]) for pv in plates]
    views = {pv.view for pv in plates}
    sets: dict[str, dict[str, object]] = {ORIGINALS: {k: v for k, v in orig.items() if k in views}}
    fit = open_run(run) if run is not None else None
    if protected is None and fit is not None:
        protected = fit.dataset.root
    if protected is not None:
        sets.update(protected_sets(Path(protected), plates, attack, progress))
    if fit is not None:
        if progress:
            progress(f"rendering {run} from {len(views)} camera(s)")
        sets[MODEL_RENDERS] = render_run_views(fit, views, device)
    if baseline_run is not None:
        if progress:
            progress(f"rendering {baseline_run} from {len(views)} camera(s)")
        sets[BASELINE_RENDERS] = render_run_views(open_run(baseline_run, "--baseline-run"), views, device)
    report = ocr_report(plates, sets, progress=progress)
    report["inputs"] = {
        "originals": str(originals),
        "protected": None if protected is None else str(protected),
        "run": None if run is None else str(run),
        "baseline_run": None if baseline_run is None else str(baseline_run),
        "attack": attack,
    }
    return report
