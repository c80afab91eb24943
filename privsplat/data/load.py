"""`load_dataset`: detect the format, parse, verify the protection manifest, normalise."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from .dataset import Dataset
from .formats import parse
from .images import load_mask
from .normalise import normalise_w2c, scene_normalisation

log = logging.getLogger("privsplat")


def load_dataset(path: str | Path, warn_unprotected: bool = True, max_size: int | None = None) -> Dataset:
    """Any supported format → Dataset with OpenCV w2c (and SfM points, if any) in the normalised world.

    A folder written by `privsplat protect` (it has privsplat_manifest.json) is verified
    first (every file's SHA-256, σ parameters, every frame's kind); a folder without a
    manifest is an ordinary RGB reconstruction and loads with a warning. max_size: long side of
    every view after undistortion (area downsample, intrinsics scaled); None = as stored.
    """
    from .protected import MANIFEST_NAME, verify_manifest

    root = Path(path)
    if not root.is_dir():
        raise PrivsplatError(f"dataset folder {root} does not exist or is not a folder")
    parsed = parse(root, max_size=max_size)
    frames = parsed.frames
    if not frames:
        raise PrivsplatError(f"{root} has no frames")
    protection = None
    if (root / MANIFEST_NAME).exists():
        protection = verify_manifest(root, frames, parsed.points_path)
    elif any(f.kind == "protected" for f in frames):
        raise PrivsplatError(
            f"{root} has frames marked protected but no {MANIFEST_NAME}; the folder was "
            "altered after protection: run privsplat protect again on the original data"
        )
    elif warn_unprotected:
        log.warning(
            "%s has no protection manifest: loading every view as plain RGB (an ordinary "
            "reconstruction; run privsplat protect first to keep face views private)",
            root,
        )
    if parsed.normalisation is not None:
        center, scale, rule = (
            parsed.normalisation["center"],
            parsed.normalisation["scale"],
            parsed.normalisation["rule"],
        )
    else:
        center, scale, rule = scene_normalisation(frames, [load_mask(f) for f in frames], parsed.points)
    for f in frames:
        f.w2c = normalise_w2c(f.extra["w2c_input"], center, scale)
    ds = Dataset(
        root=root,
        frames=frames,
        center=np.asarray(center, dtype=np.float64),
        scale=float(scale),
        protection=protection,
        normalisation=rule,
        format=parsed.format,
    )
    if parsed.points is not None:  # normalised like the cameras (they set the scale under rule "points")
        ds.points = ds.to_normalised(parsed.points)
    return ds
