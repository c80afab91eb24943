"""Choosing the sensitive views for `--sensitive auto`: a face detector AND the camera poses.

A view left RGB that shows a face is a privacy failure; protecting a rear view only
costs accuracy. So a view is called neutral only when (1) no detector finds a face in it
and (2) it looks at the head from the far side of the views where faces were found
(angle between its direction from the scene centre and the face direction at least
`neutral_angle_deg`). If no face is found anywhere, every view is sensitive.

Detectors (no download): dlib's HOG frontal-face detector (its five sub-detectors cover
frontal and half-profile faces) when dlib is installed (`pip install dlib-bin`, the `fr`
extra), and OpenCV's Haar cascades (frontal + profile, both ways) where the installed
OpenCV still ships them (4.x; OpenCV 5 dropped them). Views are upscaled so the long side
is at least 256 px first, since 64 px views are too small for either detector.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

log = logging.getLogger("privsplat")

MIN_DETECT_SIDE = 256


@dataclass
class Detection:
    found: bool
    detail: str  # which detector and score, or why nothing ran


def _upscaled_uint8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    img = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
    f = MIN_DETECT_SIDE / max(img.shape[:2])
    if f > 1:
        img = cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(img)


def _dlib_detector() -> Callable[[np.ndarray], str | None] | None:
    try:
        import dlib
    except ImportError:
        return None
    hog = dlib.get_frontal_face_detector()

    def detect(img: np.ndarray) -> str | None:
        # a slightly negative threshold: a false face costs accuracy, a missed one privacy
        _, scores, _ = hog.run(img, 1, -0.3)
        return f"dlib HOG score {max(scores):.2f}" if len(scores) else None

    return detect


def _haar_detector() -> Callable[[np.ndarray], str | None] | None:
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        return None
    cascades = []
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml"):
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if not c.empty():
            cascades.append((name, c))
    if not cascades:
        return None

    def detect(img: np.ndarray) -> str | None:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        for name, c in cascades:
            for g in (grey, grey[:, ::-1].copy()):  # the profile cascade sees one side only
                if len(c.detectMultiScale(g, scaleFactor=1.1, minNeighbors=3, minSize=(24, 24))):
                    return f"OpenCV {name.removesuffix('.xml')}"
        return None

    return detect


def available_detectors() -> list[Callable[[np.ndarray], str | None]]:
    return [d for d in (_dlib_detector(), _haar_detector()) if d is not None]


def detect_face(rgb: np.ndarray, detectors) -> Detection:
    img = _upscaled_uint8(rgb)
    for d in detectors:
        hit = d(img)
        if hit:
            return Detection(True, hit)
    return Detection(False, "no face found")


def pose_rule(detections: list[Detection], directions: np.ndarray, neutral_angle_deg: float) -> list[tuple[bool, str]]:
    """(sensitive, reason) per view from the detections and the view directions."""
    found = [d.found for d in detections]
    if not any(found):
        return [(True, "no face found in any view, so the face side is unknown: protecting every view")] * len(found)
    face = directions[np.asarray(found)].sum(axis=0)
    if np.linalg.norm(face) < 1e-6:
        return [(True, "faces found on all sides: protecting every view")] * len(found)
    face /= np.linalg.norm(face)
    out = []
    for det, d in zip(detections, directions):
        angle = math.degrees(math.acos(float(np.clip(d @ face, -1.0, 1.0))))
        if det.found:
            out.append((True, f"face found ({det.detail}); {angle:.0f}° from the face direction"))
        elif angle >= neutral_angle_deg:
            out.append((False, f"no face found and {angle:.0f}° from the face direction (>= {neutral_angle_deg:g}°)"))
        else:
            out.append(
                (
                    True,
                    f"no face found, but only {angle:.0f}° from the face direction "
                    f"(< {neutral_angle_deg:g}°): a missed face is likely",
                )
            )
    return out
