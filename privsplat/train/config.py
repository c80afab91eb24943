"""Fit configuration: one frozen dataclass; presets in configs/<name>.yaml override its defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from ..errors import PrivsplatError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class FitConfig:
    n_init: int = 6000
    """Surfels at initialisation (visual hull surface, sphere, or template)."""
    colour_model: Literal["shaded", "sh"] = "shaded"
    """shaded: albedo x learned world-space irradiance of the surfel normal (the normal drives
    shading, so stage 2's gradient loss can see a tilt); sh: plain view-dependent SH colour."""
    sh_degree: int = 1
    """SH degree of the view-dependent colour ("sh" model) or of the residual ("shaded" with view_residual)."""
    view_residual: bool = False
    """shaded model only: add a view-dependent SH residual on top of albedo x irradiance."""
    init_opacity: float = 0.5
    init_scale: float = 1.0
    """Initial surfel radius as a multiple of the mean nearest-neighbour spacing."""

    stage1_iters: int = 1500
    stage2_iters: int = 800
    views_per_step: int = 1
    render_scale: float = 1.0
    """Render resolution relative to the camera resolution (stage 2 downsamples to the protected size anyway)."""
    seed: int = 0

    lr_means: float = 1.6e-3
    lr_means_final: float = 1.6e-5
    lr_scales: float = 5e-3
    lr_quats: float = 2e-3
    lr_opacities: float = 5e-2
    lr_colour: float = 1e-2
    lr_light: float = 5e-3
    stage2_lr_factor: float = 0.5
    """Stage 2 starts its geometry learning rates at this fraction of stage 1's."""

    ssim_weight: float = 0.2
    """Photometric loss = (1 - w) L1 + w (1 - SSIM), as in 2DGS."""
    normal_weight: float = 0.05
    normal_start: float = 0.3
    """Fraction of stage 1 after which normal consistency switches on (2DGS: 7k of 30k)."""
    dist_weight: float = 10.0
    dist_start: float = 0.2
    mask_weight: float = 0.1
    grad_weight: float = 1.0
    """lambda_4 of the paper: the gradient-magnitude loss of stage 2 (eq. 5)."""
    colour_reg: Literal["smooth", "freeze", "drift", "none"] = "smooth"
    """Stage 2 colour regulariser (the surfel analogue of the paper's Lipschitz bound):
    smooth = penalise albedo differences between neighbouring surfels; freeze = no colour
    updates; drift = penalise change from stage 1; none."""
    colour_reg_weight: float = 1.0
    stage2_rgb: bool = False
    """Keep the neutral views' RGB loss in stage 2 (the paper drops them)."""
    stage2_only: bool = False
    """Ablation: skip stage 1 (start stage 2 from the initialisation or template)."""
    single_stage: bool = False
    """Ablation: one stage mixing RGB and gradient losses from the start."""

    densify: bool = True
    densify_start: float = 0.1
    densify_stop: float = 0.6
    densify_every: int = 100
    grow_grad2d: float = 2e-4
    prune_opa: float = 0.05
    reset_every: int = 100000
    max_surfels: int = 60000

    template: Literal["auto", "always", "never"] = "auto"
    """auto: start from the ICT neutral head when fewer than min_neutral_views RGB views exist."""
    min_neutral_views: int = 3

    backend: Literal["auto", "torch", "gsplat"] = "auto"
    checkpoint_every: int = 200
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)

    mesh_orbit_views: int = 24
    mesh_resolution: int = 0
    """Depth-map size (long side) used for TSDF fusion; 0 = 2x the camera resolution, at least 128."""
    mesh_voxel: float = 0.0
    """TSDF voxel in normalised units; 0 = auto from the scene radius and depth-map size."""
    mesh_clusters: int = 1

    def replace(self, **kw) -> "FitConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PrivsplatError(f"unknown config keys {unknown}; valid keys: {sorted(names)}")
        d = dict(d)
        if "background" in d:
            d["background"] = tuple(d["background"])
        return cls(**d)


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_preset(name: str) -> FitConfig:
    path = Path(name) if name.endswith((".yaml", ".yml")) else CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PrivsplatError(f"unknown preset {name!r}; choose one of {available_presets()} "
                             "or pass a path to a .yaml file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise PrivsplatError(f"preset {path} must be a mapping of config keys to values")
    return FitConfig.from_dict(data)
