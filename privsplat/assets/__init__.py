"""Small meshes shipped with privsplat (see README.md and the licence notices here).

Read through importlib.resources, so they are found in a wheel install as in a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np


def asset_path(name: str) -> Path:
    return Path(str(resources.files(__name__) / name))


def load_ict() -> dict[str, np.ndarray]:
    """The decimated ICT-FaceKit head: neutral vertices/faces, identity and expression modes."""
    with np.load(asset_path("ict_head_small.npz")) as d:
        return {k: d[k] for k in d.files}


def neutral_template() -> tuple[np.ndarray, np.ndarray]:
    """The generic neutral ICT head: vertices [V,3] float32 in cm (face +z, up +y), faces [F,3]."""
    d = load_ict()
    return d["vertices"].astype(np.float32), d["faces"].astype(np.int64)
