"""`privsplat protect`: on the user's machine, turn sensitive views into gradient magnitudes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..privacy.protect import protect


@dataclass
class Protect:
    """Replace the sensitive views of a dataset by gradient magnitudes (run this on your own machine)."""

    data: Path
    """input dataset (transforms.json, COLMAP or cameras.npz folder)"""
    out: Path
    """output folder for the protected dataset (not inside the input)"""
    sensitive: str = "auto"
    """auto (face detector + poses), all, none, comma-separated frame names, or @FILE with one name per line"""
    region_masks: Path | None = None
    """folder of <frame name>.png masks: protect only those pixels of the sensitive views"""
    sensitive_regions: str | None = None
    """protect only regions of the views (text, licence plates): auto (tesseract finds text and places
    it in 3D across views; errs toward protecting more), a folder of <frame>.png masks, or a JSON
    {frame: [[x0,y0,x1,y1], ...]}; views without a region stay RGB. Replaces --sensitive"""
    kernel: Literal["sobel", "scharr", "central"] = "sobel"
    blur_sigma: float = 0.0
    """Gaussian pre-blur in input pixels before σ"""
    resolution: int = 64
    """long side of the protected images (area downsample); 0 = keep the input size"""
    neutral_angle_deg: float = 120.0
    """auto: a view without a detected face stays RGB only this far from the face direction"""
    max_size: int | None = None
    """long side of the views after undistortion (area downsample, intrinsics scaled); the neutral RGB
    is written at this size, so the protected folder stays small"""
    overwrite: bool = False

    def run(self) -> None:
        t0 = time.perf_counter()
        decisions = protect(
            self.data,
            self.out,
            self.sensitive,
            self.region_masks,
            kernel=self.kernel,
            blur_sigma=self.blur_sigma,
            resolution=self.resolution,
            neutral_angle_deg=self.neutral_angle_deg,
            overwrite=self.overwrite,
            max_size=self.max_size,
            sensitive_regions=self.sensitive_regions,
        )
        n = sum(s for s, _ in decisions.values())
        print(f"protected {n} of {len(decisions)} views into {self.out} in {time.perf_counter() - t0:.1f} s")
