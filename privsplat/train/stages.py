"""Stages as data: what each stage of a fit trains on, with which terms, and what it holds fixed.

The trainer reads these fields and never compares stage names. `plan_stages` turns a config and
the dataset's view counts into the list of stages (the paper's two stages, the full-RGB baseline,
or an ablation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import FitConfig

ViewPool = Literal["rgb", "protected", "all"]


@dataclass(frozen=True)
class StageSpec:
    name: str
    iters: int
    views: ViewPool
    """Which views a step samples from."""
    rgb_loss: bool
    """Photometric loss on views that carry RGB (neutral views, and region-protected views' outside)."""
    rgb_on_neutral_only: bool
    """Apply the photometric loss only to neutral views (stage 1: region-protected views wait)."""
    grad_loss: bool
    """The gradient-magnitude loss (eq. 5) on protected views."""
    geometry_warmup: bool
    """Normal consistency / distortion switch on after cfg.normal_start / dist_start of the stage."""
    lr_factor: float
    """Multiplier of the geometry learning rates (means, quats, scales, opacities)."""
    freeze_light: bool
    """Hold the learned irradiance fixed (fitted on neutral views, then frozen)."""
    freeze_colour: bool
    densify: bool
    colour_reg: bool
    """Apply the colour regulariser (the surfel analogue of the paper's Lipschitz bound)."""
    mask_share: float = 0.0
    """Share of steps on the protected views' masks (mask, normal, distortion terms only)."""
    lowpass: str | None = None
    """Screen-space low-pass of this stage (None: the model's own, cfg.lowpass)."""
    shading: str = "surfel"
    """How the shaded colour model shades in this stage: by surfel normals or by depth normals."""
    settle: int = 0
    """The last `settle` of `iters` run after the schedule: the centres' learning rate held at its
    final value and no densification (the decay and the densification window span iters - settle;
    the warm-ups of normal_start / dist_start stay fractions of all iters, settle steps included)."""

    @property
    def schedule_iters(self) -> int:
        """Steps the learning-rate decay and the densification window are fractions of."""
        return max(self.iters - self.settle, 1)


def plan_stages(cfg: FitConfig, n_rgb: int, n_protected: int, use_template: bool) -> list[StageSpec]:
    """n_rgb: views carrying RGB (neutral, or region-protected with RGB outside the region)."""
    total = cfg.stage1_iters + cfg.stage2_iters
    settle = cfg.stage2_settle_iters if cfg.stage2_iters > 0 else 0

    def rgb_stage(name: str, iters: int, views: ViewPool, neutral_only: bool, grad: bool, **extra) -> StageSpec:
        """A stage fitted on RGB (grad: on the magnitudes too), light and colour free, no colour regulariser."""
        return StageSpec(
            name, iters, views, rgb_loss=True, rgb_on_neutral_only=neutral_only, grad_loss=grad,
            geometry_warmup=True, lr_factor=1.0, freeze_light=False, freeze_colour=False,
            densify=cfg.densify, colour_reg=False, **extra,
        )  # fmt: skip

    if n_protected == 0:  # the full-RGB baseline: the same budget (settle steps included), all views RGB
        return [rgb_stage("rgb", total + settle, "rgb", True, False, settle=settle)]
    if cfg.single_stage:
        return [rgb_stage("mixed", total + settle, "all", False, True, settle=settle)]
    stage2 = StageSpec(
        "stage2",
        cfg.stage2_iters + settle,
        "all" if cfg.stage2_rgb else "protected",
        rgb_loss=True,
        rgb_on_neutral_only=False,
        grad_loss=True,
        geometry_warmup=False,
        lr_factor=cfg.stage2_lr_factor,
        freeze_light=True,
        freeze_colour=cfg.colour_reg == "freeze",
        densify=cfg.densify and cfg.stage2_densify,
        colour_reg=True,
        lowpass=None if cfg.stage2_lowpass == "same" else cfg.stage2_lowpass,
        shading=cfg.stage2_shading,
        settle=settle,
    )
    if cfg.stage2_only or use_template or n_rgb == 0:
        return [stage2]
    # Stage 1 uses every view that carries RGB: neutral views, and region-protected views outside their
    # region (the photometric loss is masked to the valid pixels there).
    stage1 = rgb_stage("stage1", cfg.stage1_iters, "rgb", False, False, mask_share=cfg.stage1_mask_share)
    return [stage1, stage2]
