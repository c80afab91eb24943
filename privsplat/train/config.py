"""Fit configuration: frozen dataclasses grouped by concern; presets in configs/<name>.yaml.

`privsplat fit --help` shows one section per group. Field names are unique across groups, so
code reads them flat (`cfg.stage1_iters`), presets and config.yaml store them flat, and
`FitConfig.flat(**kw)` / `cfg.replace(**kw)` take flat names too.

Presets are YAML files shipped inside the package (the top-level configs/ folder, installed
as the package privsplat.configs), read with importlib.resources so an installed wheel finds them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import PrivsplatError


@dataclass(frozen=True)
class ModelConfig:
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
    template: Literal["auto", "always", "never"] = "auto"
    """auto: start from the ICT neutral head when fewer than min_neutral_views RGB views exist."""
    min_neutral_views: int = 3
    background_surfels: int = -1
    """Surfels that take the background of views without masks (a real capture): on the SfM points
    outside the cameras' common view, or on a shell beyond the cameras when there are none.
    -1 = auto: n_init of them when any view has no mask, else none."""


@dataclass(frozen=True)
class ScheduleConfig:
    stage1_iters: int = 1500
    stage2_iters: int = 800
    stage2_settle_iters: int = 0
    """Iterations appended to stage 2 after its schedule: the centres at their final learning rate,
    no densification (stage 2 of stage2_iters + these). Its surfels are still moving when the
    decay ends; a longer stage 2 that also grows and decays longer trades heads against each other
    (README, Table 1 notes). A fit without protected views (the full-RGB baseline) gets them too,
    after its stage1_iters + stage2_iters. 0 = none."""
    views_per_step: int = 1
    render_scale: float = 0.0
    """Render resolution relative to the camera resolution; renders are area-downsampled to the
    targets' size. 0 = auto: where the rasterizer has gsplat's full-strength screen-space blob (the
    gsplat CUDA backend, or lowpass 'gsplat'), render so the long side is at least 512 px (at most
    4x), which shrinks the blob to half a target pixel or less; 1 elsewhere."""
    seed: int = 0
    checkpoint_every: int = 200
    stage2_rgb: bool = False
    """Keep the neutral views' RGB loss in stage 2 (the paper drops them)."""
    stage2_only: bool = False
    """Ablation: skip stage 1 (start stage 2 from the initialisation or template)."""
    single_stage: bool = False
    """Ablation: one stage mixing RGB and gradient losses from the start."""
    stage1_mask_share: float = 0.25
    """Share of stage-1 steps spent on the masks of the protected views (mask, normal and distortion
    terms only, never their magnitudes): no neutral view sees the face, so without them stage 1
    has nothing that keeps a surface there and prunes it. 0 = neutral views only."""


@dataclass(frozen=True)
class OptimConfig:
    lr_means: float = 1.6e-3
    lr_means_final: float = 1.6e-5
    lr_scales: float = 5e-3
    lr_quats: float = 2e-3
    lr_opacities: float = 5e-2
    lr_colour: float = 1e-2
    lr_light: float = 5e-3
    stage2_lr_factor: float = 0.5
    """Stage 2 starts its geometry learning rates at this fraction of stage 1's."""


@dataclass(frozen=True)
class LossConfig:
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
    normal_smooth_weight: float = 0.0
    """Stage 2: mean over each surfel's 8 nearest neighbours of 1 - (n_i . n_j)^2 (sign-free), a
    smoothness prior on the surface where only the magnitudes |g| constrain it (shape from shading's
    classic regulariser; |g| carries no sign, so it alone leaves creases and ripples cheap)."""
    grad_levels: int = 1
    """Pyramid levels of the gradient-magnitude loss: 1 = eq. 5 at the protected images' size; each
    further level adds the same L1 on the next level of a Gaussian pyramid of both magnitudes
    (blurred by 1 px, halved), which pulls an edge that misses its target by a few pixels. Not in a
    preset: 3 levels made a head64 privacy fit worse (make_head long nose, plaster: 0.114 -> 0.146 cm)."""
    colour_reg: Literal["smooth", "freeze", "drift", "none"] = "smooth"
    """Stage 2 colour regulariser (the surfel analogue of the paper's Lipschitz bound):
    smooth = penalise albedo differences between neighbouring surfels; freeze = no colour
    updates; drift = penalise change from stage 1; none."""
    colour_reg_weight: float = 1.0
    stage2_shading: Literal["surfel", "depth"] = "surfel"
    """Stage 2 shading (shaded colour model): surfel = each surfel by its own normal, so the gradient
    loss can be met by tilting surfels without moving the surface; depth = each pixel by the normal
    of the rendered depth, so shading changes only when the surface moves."""


@dataclass(frozen=True)
class DensifyConfig:
    densify: bool = True
    """Grow and prune surfels with gsplat's DefaultStrategy."""
    stage2_densify: bool = True
    """Densify (and prune) in stage 2 too, on the gradient loss, so that it can add surfels where |g| asks."""
    densify_start: float = 0.1
    densify_stop: float = 0.6
    densify_every: int = 100
    grow_grad2d: float = 2e-4
    prune_opa: float = 0.05
    reset_every: int = -1
    """Reset every surfel's opacity to 2 x prune_opa every this many steps of a densifying stage's
    refinement window (3DGS's floater removal; gsplat 1.5.3's own reset never fires). -1 = auto:
    three times per window when views lack masks (floaters in front of the background), never
    otherwise; 0 = never."""
    max_surfels: int = 60000
    max_scale_px: float = 0.0
    """Cap on each surfel's two scales (sigma), in pixels of the training cameras at the scene centre's
    distance; 0 = no cap. Overlapping surfels tangent to a curved surface render a silhouette wider
    than their own depth surface (a grazing ray crosses the tails of many), so a fit whose silhouettes
    match the masks sits inside by a growing share of a pixel as surfels grow (sphere, 64 px, 1000
    iterations: -0.30 px uncapped, -0.15 px at 1 px)."""


@dataclass(frozen=True)
class RenderConfig:
    backend: Literal["auto", "torch", "gsplat", "numba"] = "auto"
    """auto: gsplat on CUDA, the compiled numba rasterizer on the CPU (torch where numba is missing)."""
    lowpass: Literal["area", "gsplat"] = "area"
    """Screen-space low-pass: area = each surfel's blob carries its own screen area (silhouettes stay
    where they are); gsplat = gsplat's full-strength blob, which widens silhouettes and puts the fitted
    surface about a pixel inside (the gsplat CUDA backend has only this one)."""
    stage2_lowpass: Literal["same", "area", "gsplat"] = "same"
    """Screen-space low-pass of stage 2 (the gradient-magnitude stage): same = `lowpass`."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MeshConfig:
    mesh_orbit_views: int = 144
    """Extra views around the subject, within the training cameras' band of elevations, fused with the
    training views. A surfel shell is a few surfels thick (median minus expected depth beyond ±2 mm on
    ~20 % of a head64 face's pixels), so each view's median depth jumps between layers, and the TSDF
    needs many views to average the jumps out: ICT 1 plaster privacy / full-RGB face Chamfer 0.102 /
    0.096 cm with 24 views over ±58° (NC 0.949 / 0.951), 0.101 / 0.094 with 144 in the band (NC 0.957),
    at ~2 s more per head64 mesh (docs/bench_quality/orbit_views.png)."""
    mesh_resolution: int = 0
    """Depth-map size (long side) used for TSDF fusion; 0 = 2x the camera resolution, at least 128."""
    mesh_voxel: float = 0.0
    """TSDF voxel in normalised units; 0 = auto from the scene radius and depth-map size."""
    mesh_clusters: int = 1
    mesh_crop: Literal["auto", "common-view", "none"] = "auto"
    """Fuse only depth inside the cameras' common view (what >= 90% of the views see), so the
    background of a capture without masks stays out of the mesh. auto: when any view has no mask."""


GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "schedule": ScheduleConfig,
    "optim": OptimConfig,
    "losses": LossConfig,
    "densification": DensifyConfig,
    "render": RenderConfig,
    "mesh": MeshConfig,
}
# flat field name -> group name
_FIELD_GROUP: dict[str, str] = {f.name: g for g, cls in GROUPS.items() for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class FitConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    densification: DensifyConfig = field(default_factory=DensifyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: flat access to a grouped field.
        group = _FIELD_GROUP.get(name)
        if group is None:
            raise AttributeError(f"FitConfig has no field {name!r}")
        return getattr(object.__getattribute__(self, group), name)

    @classmethod
    def flat(cls, **values: Any) -> "FitConfig":
        """A config from flat field names (the defaults for the rest)."""
        return cls().replace(**values)

    def replace(self, **values: Any) -> "FitConfig":
        unknown = sorted(set(values) - set(_FIELD_GROUP))
        if unknown:
            raise PrivsplatError(f"unknown config keys {unknown}; valid keys: {sorted(_FIELD_GROUP)}")
        by_group: dict[str, dict[str, Any]] = {}
        for k, v in values.items():
            by_group.setdefault(_FIELD_GROUP[k], {})[k] = v
        cfg = dataclasses.replace(
            self, **{g: dataclasses.replace(getattr(self, g), **kv) for g, kv in by_group.items()}
        )
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """Flat {field: value} (what presets and config.yaml hold)."""
        out: dict[str, Any] = {}
        for g in GROUPS:
            out.update(dataclasses.asdict(getattr(self, g)))
        out["background"] = list(out["background"])
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "config") -> "FitConfig":
        """From a flat mapping (nested {group: {...}} mappings are accepted too)."""
        if not isinstance(d, dict):
            raise PrivsplatError(f"{where} must be a mapping of config keys to values, got {type(d).__name__}")
        flat: dict[str, Any] = {}
        for k, v in d.items():
            if k in GROUPS and isinstance(v, dict):
                flat.update(v)
            else:
                flat[k] = v
        unknown = sorted(set(flat) - set(_FIELD_GROUP))
        if unknown:
            raise PrivsplatError(f"{where}: unknown config keys {unknown}; valid keys: {sorted(_FIELD_GROUP)}")
        return cls().replace(**{k: _coerce(k, v, where) for k, v in flat.items()})

    def validate(self) -> None:
        """Refuse values no fit can run with (before any work starts)."""

        def bad(name: str, why: str) -> PrivsplatError:
            return PrivsplatError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

        for name in ("n_init", "views_per_step", "densify_every", "max_surfels"):
            if getattr(self, name) < 1:
                raise bad(name, "must be at least 1")
        if not (self.max_scale_px >= 0 and math.isfinite(self.max_scale_px)):
            raise bad("max_scale_px", "must be 0 (no cap) or a positive number of pixels")
        if self.stage1_iters + self.stage2_iters < 1:
            raise bad("stage1_iters", "stage1_iters + stage2_iters must be at least 1")
        if self.sh_degree > 3:
            raise bad("sh_degree", "must be between 0 and 3")
        for g in GROUPS:
            for f in dataclasses.fields(GROUPS[g]):
                v = getattr(self, f.name)
                values = v if isinstance(v, tuple) else (v,)
                for x in values:
                    if isinstance(x, float) and not math.isfinite(x):
                        raise bad(f.name, "must be a finite number")
        for name in (
            "stage1_iters",
            "stage2_iters",
            "stage2_settle_iters",
            "checkpoint_every",
            "sh_degree",
            "mesh_orbit_views",
            "mesh_resolution",
            "min_neutral_views",
            "lr_means",
            "lr_means_final",
            "lr_scales",
            "lr_quats",
            "lr_opacities",
            "lr_colour",
            "lr_light",
            "stage2_lr_factor",
            "ssim_weight",
            "normal_weight",
            "dist_weight",
            "mask_weight",
            "grad_weight",
            "colour_reg_weight",
            "normal_smooth_weight",
            "grow_grad2d",
            "prune_opa",
            "mesh_voxel",
        ):
            if getattr(self, name) < 0:
                raise bad(name, "must be 0 or more")
        if self.grad_levels < 1:
            raise bad("grad_levels", "must be 1 or more (1 = the paper's loss at full size)")
        for name in ("reset_every", "background_surfels"):
            if getattr(self, name) < -1:
                raise bad(name, "must be -1 (auto), 0 or more")
        if self.lr_means > 0 and self.lr_means_final <= 0:
            raise bad("lr_means_final", "must be > 0 when lr_means > 0")
        if not 0 <= self.render_scale <= 8:
            raise bad("render_scale", "must be 0 (auto) or in (0, 8]")
        if not 0 < self.init_opacity < 1:
            raise bad("init_opacity", "must be in (0, 1)")
        if self.init_scale <= 0:
            raise bad("init_scale", "must be > 0")
        for name in ("normal_start", "dist_start", "densify_start", "densify_stop", "stage1_mask_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "is a fraction of the stage and must be in [0, 1]")
        if len(self.background) != 3:
            raise bad("background", "must be three numbers (R G B)")


def _coerce(name: str, value: Any, where: str) -> Any:
    """YAML values into the field's type, with a clear error for the wrong kind of value."""
    group = GROUPS[_FIELD_GROUP[name]]
    default = getattr(group(), name)
    kind = type(default)
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if kind is tuple:
            if not isinstance(value, (list, tuple)) or not all(isinstance(x, (int, float)) for x in value):
                raise TypeError
            return tuple(float(x) for x in value)
        if kind is str:
            allowed = group.__dataclass_fields__[name].type
            if not isinstance(value, str):
                raise TypeError
            if "Literal" in str(allowed) and f'"{value}"' not in str(allowed) and f"'{value}'" not in str(allowed):
                raise PrivsplatError(f"{where}: {name} = {value!r} is not one of {allowed}")
            return value
    except (TypeError, ValueError, OverflowError):
        raise PrivsplatError(f"{where}: {name} = {value!r} is not a valid {kind.__name__}") from None
    return value


def _preset_dir():
    return resources.files("privsplat") / "configs"


def available_presets() -> list[str]:
    d = _preset_dir()
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml")) if d.is_dir() else []


def load_preset(name: str) -> FitConfig:
    """A preset by name (shipped with the package) or a path to a .yaml file of config keys."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise PrivsplatError(f"preset file {path} does not exist")
        try:
            text, where = path.read_text(), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise PrivsplatError(
                f"preset file {path} is not readable text ({type(e).__name__}); it must be "
                "a YAML mapping of config keys"
            ) from None
    else:
        res = _preset_dir() / f"{name}.yaml"
        if not res.is_file():
            raise PrivsplatError(
                f"unknown preset {name!r}; choose one of {available_presets()} or pass a path to a .yaml file"
            )
        text, where = res.read_text(), f"preset {name}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise PrivsplatError(f"{where} is not valid YAML ({str(e).splitlines()[0]})") from None
    return FitConfig.from_dict(data, where=where)
