"""`privsplat privacy-eval`: face recognition on what an attacker could hold."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from ..errors import PrivsplatError
from ..eval.ocr import evaluate_text_privacy, format_ocr_table
from ..eval.privacy import evaluate_privacy_folders, evaluate_privacy_run, format_markdown
from ..io import atomic_path, write_json


@dataclass
class PrivacyEval:
    """Face-recognition privacy report: can the views you hand over be matched to your face?

    Runs dlib's face recogniser on the original views and on each candidate set (protected
    |g| images, an inversion attack on them, renders of the fitted model, shaded mesh renders),
    with faces aligned by landmarks found on the ORIGINAL views (a strong attacker). Prints a
    markdown table (the paper's Table 2: verified share per set, the originals' liveness).

    With --run (a `privsplat fit` folder) every set is derived from the run: its dataset's
    protected views, the fitted model and mesh.ply rendered from their cameras; --originals is
    the folder you protected from, matched by frame name.

    Without --run, pass the sets as folders: files are matched by their path relative to each
    folder without the suffix (originals/v03.png <-> protected/v03.npy); a sub-folder per person
    (originals/alice/v03.png) marks identities, which enables the false-accept column.
    """

    originals: Path
    """the original (sensitive) views; they never leave your machine. With --run: the dataset folder
    you protected from (or a folder of its images), matched by frame name. Otherwise: a folder of
    images that every other folder's files are matched to by path without suffix"""
    run_dir: Annotated[Optional[Path], tyro.conf.arg(name="run")] = None
    """a `privsplat fit` run folder: derive every candidate set from it (replaces the folder flags)"""
    baseline_run: Optional[Path] = None
    """with --run: a full-RGB fit of the unprotected folder, rendered from the same cameras"""
    protected: Optional[Path] = None
    """folder of protected gradient-magnitude images (|g|, any scale; PNG or .npy)"""
    renders: Optional[Path] = None
    """folder of colour renders of the fitted model from the same cameras"""
    mesh_renders: Optional[Path] = None
    """folder of shaded renders of the reconstructed mesh from the same cameras"""
    mesh: Optional[Path] = None
    """reconstructed mesh (PLY/OBJ, as `privsplat fit` writes it): render it shaded from --cameras"""
    cameras: Optional[Path] = None
    """dataset folder whose cameras (transforms.json, COLMAP, cameras.npz) render --mesh; frames
    are matched to originals by name"""
    attack: Literal["optim", "poisson", "none"] = "optim"
    """inversion attack on the protected images before recognition ('none' to skip)"""
    kernel: Optional[Literal["sobel", "scharr", "central"]] = None
    """derivative kernel the protection used (the attacker is assumed to know it); default: the
    run data's manifest with --run, else sobel"""
    threshold: float = 0.6
    """descriptor distance below which a pair counts as the same person (dlib's default)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """with --run: where to render the fitted model"""
    json: Optional[Path] = None
    """write the full report here as JSON"""
    md: Optional[Path] = None
    """write the markdown table here"""
    text: bool = False
    """OCR attacker on licence plates instead of face recognition: --originals is the `synth --scene car`
    folder (with plates.json); reads the plates from the originals, the protected images, the inversion
    attack on them, the run's renders and (--baseline-run) a full-RGB fit's renders"""

    def run_report(self, progress) -> dict:
        if self.run_dir is None:
            if self.baseline_run is not None:
                raise PrivsplatError("--baseline-run goes with --run (it is rendered from the run's cameras)")
            return evaluate_privacy_folders(
                self.originals,
                self.protected,
                self.renders,
                self.mesh_renders,
                attack=self.attack,
                kernel=self.kernel or "sobel",
                threshold=self.threshold,
                mesh=self.mesh,
                cameras=self.cameras,
                progress=progress,
            )
        given = [
            flag
            for flag, v in (
                ("--protected", self.protected),
                ("--renders", self.renders),
                ("--mesh-renders", self.mesh_renders),
                ("--mesh", self.mesh),
                ("--cameras", self.cameras),
            )
            if v is not None
        ]
        if given:
            raise PrivsplatError(
                f"--run derives every set from the run folder; drop {', '.join(given)} (or drop --run to score folders)"
            )
        return evaluate_privacy_run(
            self.run_dir,
            self.originals,
            attack=self.attack,
            threshold=self.threshold,
            baseline_run=self.baseline_run,
            device=self.device,
            kernel=self.kernel,
            progress=progress,
        )

    def run(self) -> dict:
        progress = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
        if self.text:
            report = evaluate_text_privacy(
                self.originals,
                self.protected,
                self.run_dir,
                self.baseline_run,
                attack=self.attack,
                device=self.device,
                progress=progress,
            )
            table = format_ocr_table(report)
        else:
            report = self.run_report(progress=progress)
            table = format_markdown(report)
        print(table, end="")
        if self.json is not None:
            write_json(self.json, report)
        if self.md is not None:
            with atomic_path(self.md) as tmp:
                tmp.write_text(table)
        return report
