"""Text regions (licence plates, signs) to protect, found offline with tesseract.

`protect --sensitive-regions auto` protects the pixels returned here (|g| inside, RGB
outside). Missing a plate leaks it; protecting a bit of car costs a little accuracy; so
every step leans toward protecting more:

1. Per view, tesseract's sparse-text mode (--psm 11) on the view upsampled x2 and x3.
   Words read with confidence >= `min_conf` and >= 2 letters/digits are "text"; every
   other word tesseract reports with a letter or digit, however garbled or unsure (it
   misreads oblique plates), is kept as "unsure" and protected all the same. Dropped as
   not text: no letter or digit, rings read as o/O/0 (wheels), words taller than a
   quarter of the view.
2. Across views (the cameras are known), each sure reading becomes a 3D rectangle that is
   projected into every view looking at its front (within 105° of its normal, so an error in
   the normal errs toward protecting) — also where tesseract saw nothing, e.g. a plate at
   60-80°, or one hidden behind the car (whose region then costs some car pixels, never
   privacy). Two ways:
   - on the object's visual hull (where every view has an object mask): the box's centre and
     corners are ray-cast into the hull; the plane through those points gives the text's
     tilt. One reading is enough.
   - by triangulation: lines read in two or more views that meet at one 3D point (their
     rays pass within the text's own size of it, from directions 10°..130° apart, as one
     planar sign can be read from, and their readings share two characters, so a wheel
     read as "oO" cannot join a plate) span a rectangle on a plane through that point
     facing the mean direction of those cameras (without masks, or for readings whose rays
     miss the hull).
   Rectangles are grown to a plate's field around its characters (x1.3 wide, x1.8 high).
3. Every region is grown by `margin_px` plus a fifth of its height.
A view where nothing is found and no anchored text faces it stays RGB: without a reading,
a rectangle or a user mask there is no evidence of text; pass masks or a JSON of boxes
for text tesseract cannot see. Without tesseract, every view is protected whole.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import PrivsplatError

MIN_CONF = 70.0
SCALES = (2, 3)
FACING_MAX_DEG = 105.0
PAIR_ANGLE_DEG = (10.0, 130.0)
RECT_GROW = (1.3, 1.8)  # (wide, high): a plate's or sign's field around its characters, with room to spare
LINE_GROW = 0.8  # a plate's field and border reach ~0.7 text heights beyond its characters
UNSURE_GROW = 0.3
POLY_GROW = 0.35  # projected rectangles: their tilt is rough (see _mean_normal)


@dataclass
class TextBox:
    """A word (or merged line) in one view, in that view's pixels: (x0, y0, x1, y1), x1/y1 exclusive."""

    box: tuple[float, float, float, float]
    text: str
    conf: float
    sure: bool


@dataclass
class ViewRegion:
    """What to protect in one view: mask [H, W] bool (all False: nothing, stays RGB) and why."""

    mask: np.ndarray
    reason: str
    boxes: list[TextBox] = field(default_factory=list)

    @property
    def sensitive(self) -> bool:
        return bool(self.mask.any())


@functools.lru_cache(maxsize=1)
def require_tesseract():
    """The pytesseract module with a working tesseract binary, or a PrivsplatError saying how to get them."""
    try:
        import pytesseract
    except ImportError:
        raise PrivsplatError(
            "text detection and OCR need pytesseract: pip install pytesseract "
            "(and the tesseract binary: apt-get install tesseract-ocr)"
        ) from None
    try:
        pytesseract.get_tesseract_version()
    except Exception:  # pytesseract raises its own NotFound / OSError variants
        raise PrivsplatError(
            "the tesseract binary is not installed (apt-get install tesseract-ocr; "
            "its English model is included, nothing is downloaded)"
        ) from None
    # tesseract's OpenMP threads slow small images down and fight torch for the cores.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    return pytesseract


def tesseract_available() -> bool:
    try:
        require_tesseract()
    except PrivsplatError:
        return False
    return True


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """[H,W] / [H,W,C] float 0..1 or uint8/uint16 → uint8 [H,W]."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1)
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def _alnum(s: str) -> str:
    return "".join(ch for ch in s if ch.isalnum())


def _ring_like(text: str) -> bool:
    """Round things (wheels, hubcaps, logos) read as o/O/0: never "sure" text, only unsure."""
    return set(_alnum(text)) <= set("oO0Qq")


def _share_text(a: str, b: str, n: int = 2) -> bool:
    """Do two readings share a run of n letters/digits (the same text read twice, perhaps partly)?"""
    a, b = _alnum(a).upper(), _alnum(b).upper()
    return any(a[i : i + n] in b for i in range(len(a) - n + 1))


def find_words(image: np.ndarray, min_conf: float = MIN_CONF, scales=SCALES) -> list[TextBox]:
    """Every word tesseract reports in a view (sparse-text mode, at each upsampling scale)."""
    import cv2

    tess = require_tesseract()
    grey = to_grey_uint8(image)
    words = []
    for s in scales:
        up = cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
        d = tess.image_to_data(up, config="--psm 11 --oem 1", output_type=tess.Output.DICT)
        for text, conf, x, y, w, h in zip(d["text"], d["conf"], d["left"], d["top"], d["width"], d["height"]):
            # Not text at all: no letter or digit, a ring (wheel, hubcap) read as o/O/0, or a
            # "word" taller than a quarter of the view (tesseract's reading of a car's side).
            if not _alnum(text) or _ring_like(text) or w <= 0 or h <= 0 or h / s > 0.25 * grey.shape[0]:
                continue
            conf = float(conf)
            sure = conf >= min_conf and len(_alnum(text)) >= 2
            words.append(TextBox((x / s, y / s, (x + w) / s, (y + h) / s), text.strip(), conf, sure))
    return words


def merge_lines(words: list[TextBox]) -> list[TextBox]:
    """Sure words on one line (vertical overlap > half, gap < 1.5 heights) merged into line boxes,
    across scales too (the same word found at x2 and x3 overlaps itself)."""
    lines: list[TextBox] = []
    for w in sorted((w for w in words if w.sure), key=lambda w: w.box[0]):
        for i, ln in enumerate(lines):
            h = min(w.box[3] - w.box[1], ln.box[3] - ln.box[1])
            overlap = min(w.box[3], ln.box[3]) - max(w.box[1], ln.box[1])
            gap = w.box[0] - ln.box[2]
            if overlap > 0.5 * h and gap < 1.5 * h:
                box = (
                    min(ln.box[0], w.box[0]),
                    min(ln.box[1], w.box[1]),
                    max(ln.box[2], w.box[2]),
                    max(ln.box[3], w.box[3]),
                )
                text = ln.text if _alnum(w.text) in _alnum(ln.text) else f"{ln.text} {w.text}"
                lines[i] = TextBox(box, text, max(ln.conf, w.conf), True)
                break
        else:
            lines.append(w)
    return lines


# ---------------------------------------------------------------------------------------------
# Across views: anchor text found in several views in 3D, and project it everywhere


@dataclass
class _Sighting:
    view: int
    line: TextBox
    origin: np.ndarray  # camera centre (normalised world)
    direction: np.ndarray  # unit ray through the box centre
    half_size: float  # half the box diagonal, in radians


@dataclass
class Anchor:
    """Text seen in several views: a 3D rectangle (corners [4, 3], normalised world) and its front."""

    corners: np.ndarray
    normal: np.ndarray
    views: list[int]
    texts: list[str]


def _sighting(view: int, line: TextBox, frame) -> _Sighting:
    K, w2c = frame.K, frame.w2c
    R, t = w2c[:3, :3], w2c[:3, 3]
    cx, cy = 0.5 * (line.box[0] + line.box[2]), 0.5 * (line.box[1] + line.box[3])
    d = R.T @ (np.linalg.inv(K) @ np.array([cx, cy, 1.0]))
    diag = np.hypot(line.box[2] - line.box[0], line.box[3] - line.box[1])
    return _Sighting(view, line, -R.T @ t, d / np.linalg.norm(d), 0.5 * diag / K[0, 0])


def _closest(a: _Sighting, b: _Sighting) -> tuple[np.ndarray, float, float, float] | None:
    """Midpoint of the rays' closest approach, their gap and the depths along each, or None."""
    w = a.origin - b.origin
    d = float(a.direction @ b.direction)
    denom = 1.0 - d * d
    if denom < 1e-9:
        return None
    ta = (d * (b.direction @ w) - (a.direction @ w)) / denom
    tb = ((b.direction @ w) - d * (a.direction @ w)) / denom
    pa, pb = a.origin + ta * a.direction, b.origin + tb * b.direction
    return 0.5 * (pa + pb), float(np.linalg.norm(pa - pb)), float(ta), float(tb)


def _agrees(s: _Sighting, X: np.ndarray) -> bool:
    """Does sighting s see point X inside its box (within its own size)?"""
    v = X - s.origin
    depth = float(v @ s.direction)
    if depth <= 0:
        return False
    off = np.linalg.norm(v - depth * s.direction)
    return off < s.half_size * depth


def anchor_text(sightings: list[_Sighting], frames) -> list[Anchor]:
    """Greedy: the pair of sightings (different views) that meets best and has the most support,
    refined by least squares over its supporters; repeat on what is left."""
    from ..data.normalise import closest_point_to_axes

    left = list(sightings)
    anchors = []
    lo, hi = np.cos(np.radians(PAIR_ANGLE_DEG[1])), np.cos(np.radians(PAIR_ANGLE_DEG[0]))
    while len(left) >= 2:
        best = None
        for i, a in enumerate(left):
            for b in left[i + 1 :]:
                if (
                    a.view == b.view
                    or not lo <= float(a.direction @ b.direction) <= hi
                    or not _share_text(a.line.text, b.line.text)
                ):
                    continue
                c = _closest(a, b)
                if c is None or c[2] <= 0 or c[3] <= 0:
                    continue
                X, gap, ta, tb = c
                if gap > min(a.half_size * ta, b.half_size * tb):
                    continue
                support = [
                    s
                    for s in left
                    if _agrees(s, X)
                    and (_share_text(s.line.text, a.line.text) or _share_text(s.line.text, b.line.text))
                ]
                if len({s.view for s in support}) < 2:
                    continue
                key = (len({s.view for s in support}), -gap)
                if best is None or key > best[0]:
                    best = (key, support)
        if best is None:
            break
        support = best[1]
        X = closest_point_to_axes(np.stack([s.origin for s in support]), np.stack([s.direction for s in support]))
        anchors.append(_rectangle(X, support, frames))
        left = [s for s in left if s not in support]
    return anchors


def _backproject(support: list[_Sighting], frames, X: np.ndarray, n: np.ndarray) -> list[np.ndarray]:
    """Each supporter's box corners [4, 3] on the plane through X with normal n (None if it misses)."""
    out = []
    for s in support:
        f = frames[s.view]
        R, Kinv = f.w2c[:3, :3], np.linalg.inv(f.K)
        x0, y0, x1, y1 = s.line.box
        d = np.stack([R.T @ (Kinv @ np.array([px, py, 1.0])) for px, py in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))])
        denom = d @ n
        t = ((X - s.origin) @ n) / np.where(np.abs(denom) < 1e-9, np.nan, denom)
        out.append(s.origin + t[:, None] * d if np.all(t > 0) else None)
    return out


def _plane_axes(n: np.ndarray, support, frames) -> tuple[np.ndarray, np.ndarray]:
    ups = np.stack([-frames[s.view].w2c[1, :3] for s in support])  # camera up (image -y) in world
    up = ups.mean(axis=0) - (ups.mean(axis=0) @ n) * n
    up /= np.linalg.norm(up)
    return np.cross(up, n), up


def _mean_normal(X: np.ndarray, support: list[_Sighting]) -> np.ndarray:
    """The text's front, estimated as the mean direction to the cameras that read it. Biased toward
    where those cameras happen to be (20-30° on the synthetic car; a search for the tilt that makes
    all boxes back-project alike did worse, as partial readings of one plate differ in extent), which
    the generous growth and FACING_MAX_DEG absorb."""
    mean = np.mean([(s.origin - X) / np.linalg.norm(s.origin - X) for s in support], axis=0)
    return mean / np.linalg.norm(mean)


def _rectangle(X: np.ndarray, support: list[_Sighting], frames, n: np.ndarray | None = None) -> Anchor:
    """The supporters' boxes back-projected onto the text's plane through X (normal n, default:
    _mean_normal), bounded and grown."""
    n = _mean_normal(X, support) if n is None else n
    right, up = _plane_axes(n, support, frames)
    P = np.concatenate([q for q in _backproject(support, frames, X, n) if q is not None]) - X
    u, v = P @ right, P @ up
    cu, cv = 0.5 * (u.max() + u.min()), 0.5 * (v.max() + v.min())
    hu, hv = 0.5 * RECT_GROW[0] * (u.max() - u.min()), 0.5 * RECT_GROW[1] * (v.max() - v.min())
    corners = np.stack(
        [X + (cu + su * hu) * right + (cv + sv * hv) * up for su, sv in ((-1, 1), (1, 1), (1, -1), (-1, -1))]
    )
    return Anchor(corners, n, sorted({s.view for s in support}), sorted({s.line.text for s in support}))


def hull_depths(origin: np.ndarray, dirs: np.ndarray, frames, masks, samples: int = 400) -> np.ndarray:
    """Depth [R] along each ray (origin, dirs [R, 3]) where it enters the masks' visual hull
    (nan where it never does): the first sample that projects inside every mask that sees it."""
    far = float(np.linalg.norm(origin)) + 2.0  # the normalised object lies within radius ~1 of 0
    ts = np.linspace(max(0.0, far - 4.0), far, samples)
    P = origin[None, None] + ts[None, :, None] * dirs[:, None]  # [R, S, 3]
    inside = np.ones(P.shape[:2], bool)
    for f, m in zip(frames, masks):
        cam = P @ f.w2c[:3, :3].T + f.w2c[:3, 3]
        z = cam[..., 2]
        uv = (cam @ f.K.T)[..., :2] / np.maximum(z, 1e-9)[..., None]
        u, v = np.floor(uv[..., 0]).astype(int), np.floor(uv[..., 1]).astype(int)
        seen = (z > 0) & (u >= 0) & (v >= 0) & (u < f.width) & (v < f.height)
        ok = np.ones(P.shape[:2], bool)  # outside this view: no evidence against
        ok[seen] = m[v[seen], u[seen]] > 0.5
        inside &= ok
    first = np.argmax(inside, axis=1)
    return np.where(inside.any(axis=1), ts[first], np.nan)


def hull_anchor(s: _Sighting, frames, masks) -> Anchor | None:
    """Text read in one view, placed on the object's visual hull: its centre and four points
    halfway to its box corners are ray-cast into the hull, and the plane through those points gives its tilt (facing the camera
    where they do not span a plane). None where the ray misses the hull."""
    f = frames[s.view]
    R, Kinv = f.w2c[:3, :3], np.linalg.inv(f.K)
    x0, y0, x1, y1 = s.line.box
    cx, cy, hx, hy = 0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.25 * (x1 - x0), 0.25 * (y1 - y0)
    # points halfway to the box corners: an axis-aligned box around tilted text has corners off it
    pix = [(cx, cy), (cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)]
    dirs = np.stack([R.T @ (Kinv @ np.array([px, py, 1.0])) for px, py in pix])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t = hull_depths(s.origin, dirs, frames, masks)
    if not np.isfinite(t[0]):
        return None
    X = s.origin + t[0] * dirs[0]
    n = (s.origin - X) / np.linalg.norm(s.origin - X)
    P = (s.origin + t[:, None] * dirs)[np.isfinite(t)]
    if len(P) >= 4:
        _, sv, vt = np.linalg.svd(P - P.mean(axis=0))
        fit = vt[2] if vt[2] @ n > 0 else -vt[2]
        if sv[1] > 1e-6 and sv[2] < 0.2 * sv[1] and fit @ n > np.cos(np.radians(80)):
            n = fit  # the points span a plane that the camera sees from its front
    return _rectangle(X, [s], frames, n)


def project_anchor(anchor: Anchor, frame) -> np.ndarray | None:
    """The anchor's rectangle as image polygon [4, 2] in `frame`, or None where it cannot be seen
    from there (behind the camera, or the camera is more than FACING_MAX_DEG off its front)."""
    center = anchor.corners.mean(axis=0)
    eye = -frame.w2c[:3, :3].T @ frame.w2c[:3, 3]
    to_eye = (eye - center) / np.linalg.norm(eye - center)
    if float(to_eye @ anchor.normal) < np.cos(np.radians(FACING_MAX_DEG)):
        return None
    cam = anchor.corners @ frame.w2c[:3, :3].T + frame.w2c[:3, 3]
    if (cam[:, 2] <= 1e-6).any():
        return None
    uv = (cam @ frame.K.T)[:, :2] / cam[:, 2:3]
    H, W = frame.height, frame.width
    if uv[:, 0].max() < 0 or uv[:, 1].max() < 0 or uv[:, 0].min() > W or uv[:, 1].min() > H:
        return None
    return uv


# ---------------------------------------------------------------------------------------------
# Masks


def _grown_box_mask(shape, box, margin_px: float, grow: float) -> np.ndarray:
    x0, y0, x1, y1 = box
    m = margin_px + grow * (y1 - y0)
    H, W = shape
    mask = np.zeros(shape, bool)
    mask[
        max(0, int(np.floor(y0 - m))) : min(H, int(np.ceil(y1 + m))),
        max(0, int(np.floor(x0 - m))) : min(W, int(np.ceil(x1 + m))),
    ] = True
    return mask


def _polygon_mask(shape, poly: np.ndarray, margin_px: float) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    # pixel centres sit at integer + 0.5: shift by -0.5 into OpenCV's pixel-index frame; 4 bits subpixel
    pts = np.round((poly - 0.5) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    height = 0.5 * (np.linalg.norm(poly[3] - poly[0]) + np.linalg.norm(poly[2] - poly[1]))
    r = int(np.ceil(margin_px + POLY_GROW * height))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask, k) > 0


def detect_text_regions(
    dataset, *, min_conf: float = MIN_CONF, margin_px: float = 3.0, progress: Callable[[str], None] | None = None
) -> dict[str, ViewRegion]:
    """frame name -> ViewRegion for every frame of an (unprotected) dataset; see the module docstring."""
    from ..data import load_mask, load_rgb

    frames = dataset.frames
    if not tesseract_available():
        return {
            f.name: ViewRegion(
                np.ones((f.height, f.width), bool),
                "no text detector (install tesseract-ocr and pytesseract): whole view protected",
            )
            for f in frames
        }
    words, sightings = [], []
    for i, f in enumerate(frames):
        if progress:
            progress(f"looking for text in {f.name} ({i + 1}/{len(frames)})")
        w = find_words(load_rgb(f), min_conf)
        words.append(w)
        sightings += [_sighting(i, ln, f) for ln in merge_lines(w)]
    masks = [load_mask(f) for f in frames]
    if all(m is not None for m in masks):
        # Every sure reading placed on the object's hull. Its tilt comes from the hull (within 2°
        # on the car), triangulation's from the cameras' mean direction (25-50° off), which
        # made its rectangles several times larger: use it only for readings the hull misses.
        placed = [(s, hull_anchor(s, frames, masks)) for s in sightings]
        anchors = [a for _, a in placed if a is not None]
        anchors += anchor_text([s for s, a in placed if a is None], frames)
    else:
        anchors = anchor_text(sightings, frames)
    out = {}
    for i, f in enumerate(frames):
        shape = (f.height, f.width)
        mask = np.zeros(shape, bool)
        why = []
        sure = [w for w in words[i] if w.sure]
        unsure = [w for w in words[i] if not w.sure]
        for w in unsure:
            mask |= _grown_box_mask(shape, w.box, margin_px, UNSURE_GROW)
        for ln in merge_lines(words[i]):
            mask |= _grown_box_mask(shape, ln.box, margin_px, LINE_GROW)
        if sure:
            why.append("read " + ", ".join(sorted({repr(w.text) for w in sure})))
        if unsure:
            why.append(f"{len(unsure)} unsure word(s)")
        facing = []
        for a in anchors:
            poly = project_anchor(a, f)
            if poly is not None:
                mask |= _polygon_mask(shape, poly, margin_px)
                facing.append(a)
        if facing:
            texts = ", ".join(sorted({t for a in facing for t in a.texts}))
            why.append(f"text read elsewhere faces this view ({len(facing)} placement(s): {texts})")
        reason = "; ".join(why) if why else "no text found, and no text found elsewhere faces this view"
        out[f.name] = ViewRegion(mask, reason, words[i])
    return out


def decisions(regions: dict[str, ViewRegion]) -> dict[str, tuple[bool, str]]:
    """name -> (sensitive, reason), the shape protect's choose_sensitive returns."""
    return {
        n: (r.sensitive, f"{r.reason} ({100 * r.mask.mean():.1f}% of the view protected)" if r.sensitive else r.reason)
        for n, r in regions.items()
    }


def regions_from_json(dataset, path: str | Path) -> dict[str, ViewRegion]:
    """User boxes: {"<frame name>": [[x0, y0, x1, y1], ...], ...} in pixels (x1, y1 exclusive);
    frames not listed have no region (stay RGB)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PrivsplatError(f"--sensitive-regions {path}: cannot read it as JSON ({e})") from None
    if not isinstance(spec, dict):
        raise PrivsplatError(f"--sensitive-regions {path}: expected an object {{frame name: [[x0, y0, x1, y1], ...]}}")
    names = {f.name for f in dataset.frames}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise PrivsplatError(
            f"--sensitive-regions {path} names unknown frame(s) {unknown[:10]}; valid names: "
            f"{', '.join(sorted(names)[:20])}"
        )
    out = {}
    for f in dataset.frames:
        mask = np.zeros((f.height, f.width), bool)
        for box in spec.get(f.name, []):
            try:
                x0, y0, x1, y1 = (float(v) for v in box)
            except (TypeError, ValueError):
                raise PrivsplatError(
                    f"--sensitive-regions {path}: frame {f.name!r} has box {box!r}; use [x0, y0, x1, y1] in pixels"
                ) from None
            if not (x1 > x0 and y1 > y0):
                raise PrivsplatError(
                    f"--sensitive-regions {path}: frame {f.name!r} box {box!r} is empty (need x1 > x0 and y1 > y0)"
                )
            mask[
                max(0, int(np.floor(y0))) : max(0, int(np.ceil(y1))),
                max(0, int(np.floor(x0))) : max(0, int(np.ceil(x1))),
            ] = True
        n = len(spec.get(f.name, []))
        out[f.name] = ViewRegion(mask, f"{n} box(es) from {path.name}" if n else f"not listed in {path.name}")
    return out


def write_region_masks(regions: dict[str, ViewRegion], folder: str | Path) -> list[str]:
    """<folder>/<name>.png (255 = protect) for every sensitive view, the input of
    `protect --region-masks`; returns the names written (the views to protect)."""
    from ..data.images import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, r in regions.items():
        if r.sensitive:
            write_png(folder / f"{name}.png", r.mask.astype(np.uint8) * 255)
            names.append(name)
    return names
