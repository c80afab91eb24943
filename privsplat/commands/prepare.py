"""`privsplat prepare`: photos or a video → poses → an undistorted dataset, on the user's machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..data.capture import prepare


@dataclass
class Prepare:
    """Photos or a video -> camera poses (structure from motion, pycolmap) -> an undistorted dataset
    that protect and fit read. Runs entirely on this machine, on your original images: nothing is
    uploaded or downloaded. The output still holds your original (undistorted) photos: run
    `privsplat protect` on it and share only protect's output."""

    out: Path
    """output dataset folder (images/, transforms.json, sparse_pc.ply, colmap/)"""
    images: Path | None = None
    """folder of photos (.jpg/.png/.tif)"""
    video: Path | None = None
    """a video file (anything OpenCV/FFmpeg reads)"""
    max_size: int | None = None
    """long side of the output images (area downsample)"""
    frames: int = 100
    """video: number of sharp, evenly spread frames to keep"""
    matching: Literal["auto", "sequential", "exhaustive"] = "auto"
    """auto: sequential for a video, exhaustive for photos"""
    cameras: Literal["auto", "single", "per_image"] = "auto"
    """auto: one shared camera if all photos have one size"""
    camera_model: Literal["SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "SIMPLE_PINHOLE", "PINHOLE"] = (
        "SIMPLE_RADIAL"
    )
    min_registered: float = 0.6
    """refuse when fewer than this share of the images get a pose"""
    threads: int = -1
    """pycolmap threads (-1: all cores)"""
    overwrite: bool = False

    def run(self) -> None:
        prepare(
            self.out,
            self.images,
            self.video,
            max_size=self.max_size,
            frames=self.frames,
            matching=self.matching,
            cameras=self.cameras,
            camera_model=self.camera_model,
            min_registered=self.min_registered,
            threads=self.threads,
            overwrite=self.overwrite,
        )
