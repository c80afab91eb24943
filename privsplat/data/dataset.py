"""The one dataset type every format parser produces.

Coordinates are normalised at load time: world_normalised = (world_input - center) * scale,
so the object sits near the origin with radius about 1. `to_input_units` maps points back
so meshes are written in the input's units and frame.

Privacy rule: a frame whose kind is "protected" has no RGB the code can reach.
`privsplat.data.load_rgb` refuses it; only `load_protected` reads its gradient magnitude.
The parsers, the normalisation rule and the guard live beside this file (formats.py,
normalise.py, load.py, protected.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FrameKind = Literal["rgb", "protected"]


@dataclass(eq=False)
class SourceCamera:
    """The camera of the stored image file, where it differs from the frame's pinhole camera
    (lens distortion, or a larger size that `max_size` shrinks). Images are read through it:
    privsplat.data.undistort maps them to the frame's K, width and height on every read."""

    model: str  # "PINHOLE", "OPENCV" (k1 k2 p1 p2 [k3 [k4 k5 k6]]) or "OPENCV_FISHEYE" (k1..k4)
    K: np.ndarray  # [3,3] intrinsics of the stored image, pixel centres at integer + 0.5
    coeffs: tuple[float, ...]  # distortion coefficients in OpenCV's order for `model`
    width: int
    height: int

    def key(self) -> tuple:
        """Hashable identity (frames that share a lens share the undistortion maps)."""
        return (
            self.model,
            tuple(np.round(np.asarray(self.K, dtype=np.float64).ravel(), 9)),
            tuple(float(c) for c in self.coeffs),
            int(self.width),
            int(self.height),
        )


@dataclass
class Frame:
    name: str  # stem of file_path; what --sensitive LIST names
    kind: FrameKind
    image_path: Path  # RGB image (kind "rgb") or protected magnitude PNG (kind "protected")
    K: np.ndarray  # [3,3] float64 intrinsics at (width, height)
    w2c: np.ndarray  # [4,4] float64 world-to-camera, OpenCV axes, normalised world
    width: int
    height: int
    mask_path: Path | None = None  # object mask (foreground = 1), optional
    region_mask_path: Path | None = None  # protected frames only: region that was protected;
    # None = the whole view is protected
    rgb_outside_path: Path | None = None  # protected frames with a region: RGB with the region removed
    source: SourceCamera | None = None  # stored image's camera when it is not (K, width, height)
    extra: dict[str, Any] = field(default_factory=dict)
    # extra keys set by the loader: "w2c_input" ([4,4] w2c in the input's units and frame),
    # "magnitude_scale" (protected frames: magnitude = png16 / 65535 * scale)


@dataclass
class Dataset:
    root: Path
    frames: list[Frame]
    center: np.ndarray  # [3] input-units centre subtracted at load
    scale: float  # multiplier applied after centring
    protection: dict[str, Any] | None = None  # manifest's operator parameters, None = plain RGB folder
    normalisation: str = ""  # which rule chose center/scale (see privsplat/data/normalise.py)
    format: str = ""  # input format: "nerfstudio", "colmap" or "idr"
    points: np.ndarray | None = None  # [P,3] float64 SfM points, normalised world (to_normalised of the
    # input's points: nerfstudio ply_file_path, COLMAP points3D); None = the dataset has none

    def to_input_units(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points) / self.scale + self.center

    def to_normalised(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.center) * self.scale

    def w2cs(self, kind: FrameKind | None = None) -> np.ndarray:
        """[N,4,4] world-to-camera poses (normalised world) of every frame, or of one kind."""
        return np.stack([f.w2c for f in (self.frames if kind is None else self.frames_of(kind))])

    def camera_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(w2c [N,4,4] normalised, K [N,3,3], sizes [N,2] as (width, height)) of every frame."""
        f = self.frames
        return self.w2cs(), np.stack([x.K for x in f]), np.array([(x.width, x.height) for x in f])

    def frames_of(self, kind: FrameKind) -> list[Frame]:
        return [f for f in self.frames if f.kind == kind]
