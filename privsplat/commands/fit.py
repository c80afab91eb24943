"""`privsplat fit`: reconstruct a run folder from a (protected) dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..pipeline import fit_run, setup_logging
from ..train.config import FitConfig, available_presets, load_preset


@dataclass
class PresetChoice:
    """The first of two parses: only --preset, whose config becomes the defaults of the second."""

    preset: str = "head64"


@dataclass
class Fit:
    """Reconstruct surfels and a mesh from a (protected) folder: stage 1 on neutral RGB views,
    stage 2 on the gradient magnitudes of protected views, then TSDF fusion.

    A folder without a protection manifest is fitted with all views as RGB (the full-RGB baseline,
    same iteration budget). Outputs in --out: config.yaml, splats.ply (3DGS layout), mesh.ply
    (input units), metrics.json, losses.jsonl, renders/, checkpoints/.
    """

    data: Path
    """Dataset folder (output of `privsplat protect`, or any transforms.json / COLMAP / cameras.npz folder)."""
    out: Path
    """Run folder to create."""
    preset: str = "head64"
    """Config preset (head64, head256, head512, scene) or a path to a .yaml file of config keys; the
    defaults below are the preset's, and flags override them."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = False
    """Continue the run in --out from its last checkpoint (same data and flags)."""
    overwrite: bool = False
    """Replace the outputs of an earlier fit in --out (nothing else there is touched)."""
    progress: bool = True
    threads: int = 0
    """CPU threads (0 = one per core; waiting threads sleep, so a busy machine does not stall the fit)."""
    mesh: bool = True
    """Extract mesh.ply after fitting (--no-mesh: later, with `privsplat mesh --run`)."""
    max_size: int | None = None
    """Long side of every view after undistortion (area downsample, intrinsics scaled); None = as stored."""
    report: bool = True
    """Write RUN/report.html at the end (--no-report: later, with `privsplat report RUN`)."""
    config: Annotated[FitConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=FitConfig)

    @classmethod
    def parse(cls, args: list[str], prog: str, description: str) -> "Fit":
        """Two tyro parses: --preset first (ignoring every other flag), then every flag with the
        preset's values as defaults, so `--preset head512 --stage1-iters 100` means head512 with
        100 stage-1 iterations, and --help shows the preset's values."""
        choice, _ = tyro.cli(PresetChoice, args=args, return_unknown_args=True, add_help=False, console_outputs=False)
        default = cls(data=tyro.MISSING, out=tyro.MISSING, preset=choice.preset, config=load_preset(choice.preset))
        return tyro.cli(cls, args=args, default=default, prog=prog, description=description)

    def run(self) -> None:
        setup_logging()
        fit_run(
            self.data,
            self.out,
            self.config,
            device=self.device,
            resume=self.resume,
            overwrite=self.overwrite,
            progress=self.progress,
            preset=self.preset,
            threads=self.threads,
            mesh=self.mesh,
            report=self.report,
            max_size=self.max_size,
        )


__all__ = ["Fit", "available_presets"]
