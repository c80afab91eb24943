"""`privsplat report`: one self-contained HTML page of a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from ..report import write_report


@dataclass
class Report:
    """Write RUN/report.html: one self-contained page (images embedded) with the run's inputs
    (neutral RGB, protected |g|; never a sensitive original), renders beside their targets,
    sigma(render) beside |g|, normal and depth maps, loss curves, a mesh turntable, metrics, config."""

    run_dir: tyro.conf.Positional[Path]
    """Run folder written by `privsplat fit`."""
    views: int = 3
    """Training views of each kind (neutral, protected) rendered beside their targets."""
    turntable: int = 8
    """Shaded views of mesh.ply around the up axis."""
    device: Literal["cpu", "cuda"] = "cpu"

    def run(self) -> None:
        print(write_report(self.run_dir, max_views=self.views, turntable_views=self.turntable, device=self.device))
