"""`privsplat synth`: render a test dataset with ground truth (a head, or a car with licence plates)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..data.scenes import synthesize_car
from ..data.synth import synthesize
from ..errors import PrivsplatError

DEFAULTS = {"head": (36, 64, 30.0), "car": (48, 256, 35.0)}  # views, resolution, fov


@dataclass
class Synth:
    """Render a small multi-view dataset (images, masks, cameras, ground-truth mesh) on the CPU: a head
    (--scene head) or a car with a front and a rear licence plate (--scene car; plates.json holds
    the plate strings and per-view plate boxes, plate_masks/ the per-view plate pixels)."""

    out: Path
    """output folder (must not exist or be empty)"""
    scene: Literal["head", "car"] = "head"
    mesh: str = "ict"
    """head: 'ict' (parametric head, MIT), 'nefertiti' (public-domain bust) or a mesh file path (face +z, up +y)"""
    views: Optional[int] = None
    """default: 36 (head), 48 (car)"""
    resolution: Optional[int] = None
    """default: 64 (head), 256 (car: plates must be readable)"""
    identity_seed: int = 0
    """head: ICT identity: 0 = the generic neutral head, else weights ~ N(0, I) from this seed"""
    identity_scale: float = 1.0
    """head: multiplies the ICT identity weights (3 = a ±3σ identity; 0 = the generic head)"""
    expression: tuple[str, ...] = ()
    """head: ICT blendshapes as name:weight, e.g. jawOpen:0.5"""
    appearance: Literal["textured", "plaster"] = "textured"
    """head: procedural skin-like texture, or a near-uniform plaster colour (shading is the only signal)"""
    seed: int = 0
    """car: picks the plate strings and the body colour"""
    fov_deg: Optional[float] = None
    """default: 30 (head), 35 (car)"""
    background: Literal["black", "room"] = "black"
    """head: black, or a textured room around the head (what a real capture has behind the person)"""
    k1: float = 0.0
    """head: radial lens distortion k1 (OPENCV model; written to transforms.json, loaders undistort)"""
    k2: float = 0.0
    masks: bool = True
    """head: write object masks (--no-masks: none, like a real capture)"""
    points: int = 0
    """head: write this many surface points as sparse_pc.ply (like structure from motion's points)"""
    overwrite: bool = False

    def run(self) -> None:
        t0 = time.perf_counter()
        views, resolution, fov = DEFAULTS[self.scene]
        views = self.views if self.views is not None else views
        resolution = self.resolution if self.resolution is not None else resolution
        fov = self.fov_deg if self.fov_deg is not None else fov
        if self.scene == "car":
            head_only = self.background != "black" or self.k1 or self.k2 or not self.masks or self.points
            head_only = head_only or self.appearance != "textured" or self.identity_scale != 1.0
            if self.mesh != "ict" or self.expression or self.identity_seed or head_only:
                raise PrivsplatError(
                    "--mesh, --expression, --identity-seed, --identity-scale, --appearance, --background, "
                    "--k1/--k2 and --no-masks apply to --scene head only"
                )
            out = synthesize_car(self.out, views, resolution, self.seed, fov, overwrite=self.overwrite)
        else:
            out = synthesize(
                self.mesh,
                self.out,
                views,
                resolution,
                self.identity_seed,
                self.expression,
                fov,
                overwrite=self.overwrite,
                background=self.background,
                distortion=(self.k1, self.k2),
                masks=self.masks,
                points=self.points,
                appearance=self.appearance,
                identity_scale=self.identity_scale,
            )
        print(f"wrote {views} views to {out} in {time.perf_counter() - t0:.1f} s")
