"""`privsplat mesh`: re-extract the mesh of a finished run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..pipeline import remesh_run, setup_logging


@dataclass
class Mesh:
    """Re-extract the mesh of a finished run with other TSDF parameters (writes RUN/mesh.ply or --out)."""

    run_dir: Annotated[Path, tyro.conf.arg(name="run")]
    """Run folder written by `privsplat fit`."""
    out: Path | None = None
    resolution: int = 0
    """Depth-map long side; 0 = the run's setting."""
    voxel: float = 0.0
    """TSDF voxel in normalised scene units; 0 = auto."""
    orbit_views: int = -1
    """Extra orbit views; -1 = the run's setting."""
    clusters: int = -1
    """Largest connected components to keep (0 = all); -1 = the run's setting."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def run(self) -> None:
        setup_logging()
        remesh_run(
            self.run_dir,
            self.out,
            resolution=self.resolution,
            voxel=self.voxel,
            orbit_views=self.orbit_views,
            clusters=self.clusters,
            device=self.device,
        )
