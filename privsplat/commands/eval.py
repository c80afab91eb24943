"""`privsplat eval`: geometry metrics of a mesh against ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..eval.geometry import evaluate_mesh, format_summary, parse_face_sphere
from ..io import write_json


@dataclass
class Eval:
    """Geometry metrics of a predicted mesh against a ground-truth mesh (same units and frame).

    Prints accuracy, completeness, Chamfer, F-scores and normal consistency; with --json,
    writes them (and the ICP transform) to a file.
    """

    mesh: Path
    """predicted mesh (PLY or OBJ)"""
    gt: Path
    """ground-truth mesh (PLY or OBJ)"""
    gt_face_mask: Optional[Path] = None
    """.npy with one bool per GT vertex: score only the face region (as written by `privsplat synth`)"""
    face_region: Literal["nearest", "margin"] = "nearest"
    """with --gt-face-mask: score the predicted samples whose closest GT point is on the face
    ('nearest'), or every predicted sample near a GT face sample ('margin', the older rule: it
    also scores the surface bordering the face, e.g. an ICT head's neck)"""
    face_sphere: Optional[str] = None
    """'x,y,z,r': score only samples inside this sphere (GT units)"""
    align: Literal["none", "icp"] = "none"
    """'icp': rigidly align the prediction to the GT first (whole surfaces, before cropping)"""
    n_samples: int = 200_000
    """points sampled on each surface"""
    seed: int = 0
    json: Optional[Path] = None
    """write the metrics here as JSON"""

    def run(self) -> dict:
        sphere = parse_face_sphere(self.face_sphere) if self.face_sphere else None
        metrics = evaluate_mesh(
            self.mesh,
            self.gt,
            gt_face_mask=self.gt_face_mask,
            face_sphere=sphere,
            face_region=self.face_region,
            align=self.align,
            n_samples=self.n_samples,
            seed=self.seed,
        )
        metrics["pred_path"], metrics["gt_path"] = str(self.mesh), str(self.gt)
        print(format_summary(metrics))
        if self.json is not None:
            write_json(self.json, metrics)
            print(f"wrote {self.json}")
        return metrics
