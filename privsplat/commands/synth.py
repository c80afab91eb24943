"""`privsplat synth`: render a test dataset with ground truth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..data.synth import synthesize


@dataclass
class Synth:
    """Render a small multi-view head dataset (images, masks, cameras, ground-truth mesh) on the CPU."""

    out: Path
    """output folder (must not exist or be empty)"""
    mesh: str = "ict"
    """'ict' (parametric head, MIT), 'nefertiti' (public-domain bust) or a mesh file path (face +z, up +y)"""
    views: int = 36
    resolution: int = 64
    identity_seed: int = 0
    """ICT identity: 0 = the generic neutral head, else weights ~ N(0, I) from this seed"""
    expression: tuple[str, ...] = ()
    """ICT blendshapes as name:weight, e.g. jawOpen:0.5"""
    fov_deg: float = 30.0
    overwrite: bool = False

    def run(self) -> None:
        t0 = time.perf_counter()
        out = synthesize(self.mesh, self.out, self.views, self.resolution, self.identity_seed,
                         self.expression, self.fov_deg, overwrite=self.overwrite)
        print(f"wrote {self.views} views to {out} in {time.perf_counter() - t0:.1f} s")
