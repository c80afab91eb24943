"""The two-stage fit: stage 1 on neutral RGB views, stage 2 on protected gradient magnitudes.

A Trainer owns the model, its optimizers, the densification strategy and the schedule; it
checkpoints so that a killed run resumes with at most one checkpoint interval lost.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..cameras import Cameras, camera_distances
from ..data import Dataset, load_mask, load_protected, load_rgb, load_rgb_outside
from ..data.images import MIXED_EDGE, mixed_pixels
from ..errors import PrivsplatError
from ..privacy.sigma import SigmaParams, gradient_magnitude
from ..render import resolve_backend
from . import losses as L
from .config import FitConfig
from .init import (
    background_shell,
    common_view_init,
    point_normals,
    sample_hull,
    sample_points,
    sphere_points,
    split_points,
    template_points,
    visual_hull,
)
from .model import SurfelModel
from .stages import StageSpec, plan_stages

log = logging.getLogger(__name__)

COLOUR_KEYS = ("albedo", "sh0", "shN")
LOSS_LOG_EVERY = 10  # steps between lines of RUN/losses.jsonl
FINITE_CHECK_EVERY = 10  # steps between checks for a diverged model (each check is a host sync on a GPU)
MIN_POINTS = 50  # SfM points needed to start from them


@dataclass
class View:
    """One frame's training targets, as tensors on the training device."""

    name: str
    kind: str
    camera: Cameras
    rgb: torch.Tensor | None = None  # [H,W,3] neutral RGB (composited on the background)
    valid: torch.Tensor | None = None  # [H,W] where rgb may be used (region-protected frames)
    mask: torch.Tensor | None = None  # [H,W] object mask
    magnitude: torch.Tensor | None = None  # [h,w] protected gradient magnitude
    region: torch.Tensor | None = None  # [h,w] where the magnitude applies
    size: tuple[int, int] = (0, 0)  # (H, W) of the frame: renders at render_scale != 1 come back to it
    scale: float = 1.0  # render_scale_for this frame: the camera is the frame's, scaled by it


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PrivsplatError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


# render_scale auto: long side (px) at which gsplat's blob stops costing geometry. ICT 1 textured at
# 256 px, privacy fit with the blob (the H100's gsplat kernel; the CPU's emulation alike): 1x 0.240 /
# 0.238 cm, 2x 0.118 cm (CPU), the area low-pass at 1x 0.118 cm. 256 here left 256 px cameras at 1x.
GSPLAT_BLOB_MIN_SIZE = 512


def render_scale_for(cfg: FitConfig, device: torch.device, width: int, height: int) -> float:
    """The render scale of a width x height camera: cfg.render_scale, or for 0 (auto) enough to
    render GSPLAT_BLOB_MIN_SIZE px (at most 4x) where the rasterizer adds gsplat's full-strength
    low-pass blob, which widens silhouettes and pulls the fit inside by about a pixel (ICT 1 at
    64 px: 0.805 cm at 1x, 0.201 cm at 4x on an H100; 0.746 / 0.281 / 0.148 cm at 1x / 2x / 4x with
    the numba backend emulating the blob); 1 for the area low-pass, which has no such offset. A fit
    whose stage 2 alone has gsplat's low-pass (--stage2-lowpass gsplat) renders every stage so."""
    if cfg.render_scale > 0:
        return float(cfg.render_scale)
    blob = "gsplat" in (cfg.lowpass, cfg.stage2_lowpass) or resolve_backend(cfg.backend, device) == "gsplat"
    if not blob:
        return 1.0
    return float(min(4.0, max(1.0, math.ceil(GSPLAT_BLOB_MIN_SIZE / max(width, height)))))


def load_views(dataset: Dataset, cfg: FitConfig, device: torch.device) -> list[View]:
    """Read every frame's targets. Protected frames are read only through load_protected:
    their RGB is never opened (the privacy rule; load_rgb refuses them anyway)."""
    bg = np.asarray(cfg.background, dtype=np.float32)

    def t(a):
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    views = []
    soft: dict[str, float] = {}
    for f in dataset.frames:
        cam = Cameras.from_numpy(f.K, f.w2c, f.width, f.height, device=device)
        scale = render_scale_for(cfg, device, f.width, f.height)
        if scale != 1.0:
            cam = cam.scaled(scale)
        # Targets stay at the frame's own size; renders are area-downsampled to it (render_scale > 1
        # keeps surfels larger than the rasterizer's screen-space low-pass at low resolution).
        mask = load_mask(f)
        v = View(f.name, f.kind, cam, mask=t(mask), size=(f.height, f.width), scale=scale)
        edges = mixed_pixels(mask) if f.mask_path is not None else None
        if f.kind == "rgb":
            v.rgb = t(_composite(load_rgb(f), mask, bg))
            v.valid = t(None if edges is None else (~edges).astype(np.float32))
            if edges is not None and edges.sum() > SOFT_MATTE_SHARE * (mask > MIXED_EDGE).sum():
                soft[f.name] = float(edges.sum()) / float((mask > MIXED_EDGE).sum())
        else:
            mag, region = load_protected(f)
            v.magnitude, v.region = t(mag), t(region)
            if f.rgb_outside_path is not None:
                rgb, valid = load_rgb_outside(f)
                v.rgb = t(_composite(rgb, mask, bg))
                v.valid = t(valid if edges is None else valid * ~edges)
        views.append(v)
    if soft:
        _warn_soft_matte(soft)
    return views


def sigma_input(rgb: torch.Tensor, alpha: torch.Tensor, background, masked: bool) -> torch.Tensor:
    """What σ is taken of for a protected view: the render [H,W,3] over black where the view has a
    mask (`protect` blacked out the photo's backdrop there: data.images.backdrop_to_black), the
    render as it is otherwise (a view without a mask shows a real background in every pixel)."""
    if not masked or not any(float(c) for c in background):  # the config's tuple: no device sync
        return rgb
    return rgb - (1.0 - alpha) * torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)


def to_size(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample an [H,W,C] render to (h, w) (identity when already that size)."""
    if tuple(img.shape[:2]) == tuple(size):
        return img
    return torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], size=size, mode="area")[0].permute(1, 2, 0)


SOFT_MATTE_SHARE = 0.25  # warn when more of a mask's subject pixels than this are "mixed"


def _warn_soft_matte(shares: dict[str, float]) -> None:
    """A hard or antialiased mask has mixed pixels only along its outline; a soft matte (hair, a
    segmentation network's probabilities) can make a large share of the subject "mixed", and
    those pixels all leave the photometric loss. Say so once, rather than fit silently on less."""
    worst = sorted(shares, key=shares.get, reverse=True)[:3]
    log.warning(
        "%d frame(s) have masks that are partial (between %.2f and %.2f) over much of the subject "
        "(%s); those pixels are left out of the photometric loss. If the masks are soft mattes or "
        "probability maps, threshold them to 0/1 (e.g. at 0.5) or give the images an alpha channel instead",
        len(shares),
        MIXED_EDGE,
        1 - MIXED_EDGE,
        ", ".join(f"{n}: {100 * shares[n]:.0f} %" for n in worst) + (", ..." if len(shares) > 3 else ""),
    )


def _composite(rgb: np.ndarray, mask: np.ndarray | None, bg: np.ndarray) -> np.ndarray:
    if mask is None:
        return rgb
    return rgb * mask[..., None] + bg * (1 - mask[..., None])


def initial_model(
    dataset: Dataset, views: list[View], cfg: FitConfig, use_template: bool, rng: np.random.Generator
) -> tuple[SurfelModel, str]:
    """Where the surfels start: the ICT template, the masks' visual hull, SfM points in the cameras'
    common view, that common view itself (no masks, no points), or a sphere. Views without masks
    also get background surfels (on the SfM points outside the common view, else on a shell)."""
    masks = {v.name: v.mask.cpu().numpy() for v in views if v.mask is not None}
    unmasked = len(views) - len(masks)
    hull = visual_hull(dataset, masks) if len(masks) >= 2 else None
    center, dists = camera_distances(dataset.w2cs())
    subject = backdrop = None
    if dataset.points is not None and len(dataset.points) and hull is None:
        subject, backdrop = split_points(dataset, np.asarray(dataset.points, dtype=np.float64))
    if use_template:
        pts, nrm = template_points(dataset, cfg.n_init, rng, hull)
        how = "ICT neutral head template"
    elif hull is not None:
        pts, nrm = sample_hull(*hull, cfg.n_init, rng)
        how = f"visual hull of {len(masks)} masks"
    elif subject is not None and len(subject) >= MIN_POINTS:
        pts, nrm = sample_points(subject, point_normals(subject, 2 * subject - center), cfg.n_init, rng)
        how = f"{len(subject)} SfM points in the cameras' common view"
    elif unmasked:
        pts, nrm = common_view_init(dataset, cfg.n_init, rng)
        how = "the cameras' common view (no masks)"
        # surfels filling a volume: half the usual size, or the cloud starts as an opaque ball
        cfg = cfg.replace(init_scale=0.5 * cfg.init_scale)
    else:
        pts, nrm = sphere_points(center, 0.3 * float(np.median(dists)), cfg.n_init, rng)
        how = "sphere around the cameras' look-at point"
    n_bg = cfg.background_surfels if cfg.background_surfels >= 0 else (cfg.n_init if unmasked else 0)
    if n_bg > 0:
        if backdrop is not None and len(backdrop) >= MIN_POINTS:
            bp, bn = sample_points(backdrop, point_normals(backdrop, center), n_bg, rng)
            where = f"{len(backdrop)} SfM points outside the common view"
        else:
            bp, bn = background_shell(dataset, n_bg, rng)
            where = "a shell beyond the cameras"
        pts, nrm = np.concatenate([pts, bp]), np.concatenate([nrm, bn])
        how += f" + {n_bg} background surfels on {where} ({unmasked} views without masks)"
    return SurfelModel.from_points(pts, nrm, cfg, seed=cfg.seed), how


def scale_cap(dataset: Dataset, dists: np.ndarray, max_scale_px: float) -> float | None:
    """log of max_scale_px pixels' footprint at the median camera distance `dists` to the cameras'
    look-at point (the frames' own focal lengths, not the render scale's), or None for no cap."""
    if max_scale_px <= 0:
        return None
    focal = float(np.median([f.K[0, 0] for f in dataset.frames]))
    return math.log(max_scale_px * float(np.median(dists)) / focal)


def _full_screen_gradient(meta: dict) -> torch.Tensor:
    """The densification signal: the screen-space gradient of the loss w.r.t. moving each surfel.

    gsplat's 2DGS signal (meta["gradient_2dgs"]) covers only pixels where the ray hits the surfel
    itself; pixels in the screen-space low-pass regime send their gradient to means2d instead. At
    64 px most surfels live in that regime, so the two are summed (on both backends alike)."""
    grads = [meta[k].grad for k in ("gradient_2dgs", "means2d") if meta[k].grad is not None]
    holder = torch.zeros_like(meta["means2d"]).detach()
    holder.grad = sum(grads) if grads else torch.zeros_like(holder)
    return holder


class Trainer:
    def __init__(self, dataset: Dataset, cfg: FitConfig, run, device: torch.device, progress: bool = True):
        """run: the RunFolder that checkpoints and the loss log go to."""
        self.dataset, self.cfg, self.run, self.device = dataset, cfg, run, device
        self.progress = progress
        self.sigma = SigmaParams.from_dict(dataset.protection) if dataset.protection else SigmaParams()
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.views = load_views(dataset, cfg, device)
        self.rgb_views = [v for v in self.views if v.kind == "rgb"]
        self.protected_views = [v for v in self.views if v.kind == "protected"]
        # Views whose RGB may be used: neutral views and region-protected views (RGB outside the region).
        self.rgb_carrying = [v for v in self.views if v.rgb is not None]
        self.masked_protected = [v for v in self.protected_views if v.mask is not None]
        self.has_unmasked = any(v.mask is None for v in self.views)
        self.share_step = False
        self.use_template = cfg.template == "always" or (
            cfg.template == "auto" and self.protected_views and len(self.rgb_carrying) < cfg.min_neutral_views
        )
        self.stages = plan_stages(cfg, len(self.rgb_carrying), len(self.protected_views), bool(self.use_template))
        _, dists = camera_distances(dataset.w2cs())
        self.scene_scale = 1.1 * float(dists.max())
        self.log_scale_cap = scale_cap(dataset, dists, cfg.max_scale_px)
        self.model, self.init_how = initial_model(dataset, self.views, cfg, self.use_template, self.rng)
        self.model.to(device)
        self.backend = cfg.backend
        self.render_scales = sorted({v.scale for v in self.views})
        self.metrics: dict = {
            "device": str(device),
            "render_scale": self.render_scales[-1],
            "init": self.init_how,
            "stages": {},
            "n_rgb_views": len(self.rgb_views),
            "n_protected_views": len(self.protected_views),
        }
        self.stage_index, self.step = 0, 0
        self.neighbours: torch.Tensor | None = None
        self.albedo_stage1: torch.Tensor | None = None
        self.means_stage1: torch.Tensor | None = None
        self._setup_stage()

    @property
    def spec(self) -> StageSpec:
        return self.stages[self.stage_index]

    @property
    def stage(self) -> str:
        return self.spec.name

    def _pool(self) -> list[View]:
        return {"rgb": self.rgb_carrying, "protected": self.protected_views, "all": self.views}[self.spec.views]

    def _pick_views(self) -> list[View]:
        """The views of one step. In stage 1 a share of the steps goes to the protected views' masks:
        no neutral view sees the face, and without them stage 1 prunes the surface there."""
        pool = self._pool()
        self.share_step = False
        if self.spec.mask_share > 0 and self.protected_views and self.rng.random() < self.spec.mask_share:
            if self.masked_protected and self.cfg.mask_weight > 0:
                pool, self.share_step = self.masked_protected, True
            elif not self.masked_protected:
                # no masks to hold the face: these steps use the protected views' magnitudes
                # (the data stage 2 fits anyway), so stage 1 does not prune what no neutral view sees
                pool, self.share_step = self.protected_views, True
        return [
            pool[i] for i in self.rng.choice(len(pool), size=min(self.cfg.views_per_step, len(pool)), replace=False)
        ]

    # --- optimisation state ---
    def _setup_stage(self) -> None:
        from gsplat.strategy import DefaultStrategy

        cfg, p, spec = self.cfg, self.model.params, self.spec
        self.model.lowpass = spec.lowpass or cfg.lowpass
        geo = spec.lr_factor
        colour_lr = 0.0 if spec.freeze_colour else cfg.lr_colour
        lrs = {
            "means": cfg.lr_means * geo,
            "quats": cfg.lr_quats * geo,
            "scales": cfg.lr_scales * geo,
            "opacities": cfg.lr_opacities * geo,
            "albedo": colour_lr,
            "sh0": colour_lr,
            "shN": colour_lr / 20,
        }
        self.optimizers = {k: torch.optim.Adam([p[k]], lr=lrs[k], eps=1e-15) for k in p.keys()}
        # The irradiance is fitted on the neutral views (stage 1) and then held fixed.
        self.light_opt = torch.optim.Adam([self.model.light], lr=0.0 if spec.freeze_light else cfg.lr_light)
        self.means_lr0 = lrs["means"]
        n_steps = spec.schedule_iters
        self.strategy = None
        if spec.densify:
            self.strategy = DefaultStrategy(
                refine_start_iter=int(cfg.densify_start * n_steps),
                refine_stop_iter=int(cfg.densify_stop * n_steps),
                refine_every=cfg.densify_every,
                reset_every=10**9,  # our own reset below (gsplat 1.5.3's never fires)
                grow_grad2d=cfg.grow_grad2d,
                prune_opa=cfg.prune_opa,
                key_for_gradient="grad2d_full",
                verbose=False,
            )
            self.strategy.check_sanity(p, self.optimizers)
            # gsplat's convention: the scene scale is the cameras' extent (1.1 x their largest
            # distance from the look-at point). It sets the size above which a surfel is split
            # rather than cloned (1 % of it); with 1.0 here (the object's radius) surfels were split
            # far below a pixel, rendered as screen-space low-pass blobs, and the fitted surface
            # sank about a pixel inside the silhouettes.
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
            self.reset_every = cfg.reset_every
            if self.reset_every < 0:
                window = self.strategy.refine_stop_iter - self.strategy.refine_start_iter
                # only where neutral RGB is fitted: a stage on magnitudes alone would not restore colours
                auto = self.has_unmasked and spec.views != "protected"
                self.reset_every = max(window // 3, cfg.densify_every) if auto else 0
        if spec.colour_reg:
            self._setup_neighbours()

    def _setup_neighbours(self) -> None:
        """Each surfel's 8 nearest surfels, for stage 2's colour regulariser and normal smoothness."""
        if "albedo" not in self.model.params and self.cfg.normal_smooth_weight <= 0:
            return
        from scipy.spatial import cKDTree

        means = self.model.params["means"].detach().cpu().numpy()
        _, idx = cKDTree(means).query(means, k=min(9, len(means)))
        self.neighbours = torch.as_tensor(idx[:, 1:], device=self.device)
        self.albedo_stage1 = self.model.albedo().detach().clone() if "albedo" in self.model.params else None
        self.means_stage1 = self.model.params["means"].detach().clone()

    def _refresh_neighbours(self) -> None:
        """After stage-2 densification: new neighbours, and each surfel's stage-1 albedo taken from
        the stage-1 surfel nearest to it."""
        self._check_finite_params()  # a KD-tree of NaN means would fail deep in scipy
        from scipy.spatial import cKDTree

        means = self.model.params["means"].detach().cpu().numpy()
        _, idx = cKDTree(means).query(means, k=min(9, len(means)))
        self.neighbours = torch.as_tensor(idx[:, 1:], device=self.device)
        if self.albedo_stage1 is not None and self.means_stage1 is not None:
            _, near = cKDTree(self.means_stage1.cpu().numpy()).query(means)
            self.albedo_stage1 = self.albedo_stage1[torch.as_tensor(near, device=self.device)]
            self.means_stage1 = self.model.params["means"].detach().clone()

    # --- one step ---
    def _view_losses(self, view: View, out, i: int, frac: float) -> dict[str, torch.Tensor]:
        """Data and geometry terms of view `view`, rendered as camera `i` of the batch `out`."""
        cfg, spec = self.cfg, self.spec
        rgb = out.rgb[i]
        terms: dict[str, torch.Tensor] = {}
        if spec.rgb_loss and view.rgb is not None and (view.kind == "rgb" or not spec.rgb_on_neutral_only):
            terms["rgb"] = L.photometric_loss(to_size(rgb, view.rgb.shape[:2]), view.rgb, cfg.ssim_weight, view.valid)
        if (spec.grad_loss or (self.share_step and view.mask is None)) and view.magnitude is not None:
            # σ of the render at the frame's own size, as `protect` took σ of the photo (its blur
            # is in the photo's pixels); a larger render is area-downsampled first
            src = sigma_input(rgb, out.alpha[i], self.cfg.background, view.mask is not None)
            mag = gradient_magnitude(to_size(src, view.size), self.sigma)
            if mag.shape != view.magnitude.shape:
                raise PrivsplatError(
                    f"frame {view.name}: sigma(render) is {tuple(mag.shape)} but the protected image is "
                    f"{tuple(view.magnitude.shape)}; the camera size and the manifest's resolution disagree"
                )
            terms["grad"] = cfg.grad_weight * L.gradient_loss(mag, view.magnitude, view.region, cfg.grad_levels)
        if view.mask is not None and cfg.mask_weight > 0:
            terms["mask"] = cfg.mask_weight * L.mask_loss(to_size(out.alpha[i], view.mask.shape), view.mask)
        first = spec.geometry_warmup
        if cfg.normal_weight > 0 and (not first or frac >= cfg.normal_start):
            terms["normal"] = cfg.normal_weight * L.normal_consistency(
                out.normals[i], out.depth_normals[i], out.alpha[i]
            )
        if cfg.dist_weight > 0 and (not first or frac >= cfg.dist_start):
            terms["dist"] = cfg.dist_weight * out.distortion[i].mean()
        return terms

    def _neighbour_terms(self) -> dict[str, torch.Tensor]:
        """Stage 2's regularisers over neighbouring surfels: the colour regulariser and normal smoothness."""
        cfg = self.cfg
        colour = cfg.colour_reg in ("smooth", "drift") and cfg.colour_reg_weight > 0 and "albedo" in self.model.params
        if not self.spec.colour_reg or self.neighbours is None or not (colour or cfg.normal_smooth_weight > 0):
            return {}
        if self.neighbours.shape[0] != self.model.n:  # no KD-tree rebuilt for terms that are off
            self._refresh_neighbours()
        terms = {}
        if cfg.normal_smooth_weight > 0:
            terms["nsmooth"] = cfg.normal_smooth_weight * L.normal_smoothness(self.model.normals(), self.neighbours)
        if colour and cfg.colour_reg == "smooth":
            terms["colour"] = cfg.colour_reg_weight * L.neighbour_smoothness(self.model.albedo(), self.neighbours)
        elif colour:  # drift
            terms["colour"] = cfg.colour_reg_weight * ((self.model.albedo() - self.albedo_stage1) ** 2).sum(-1).mean()
        return terms

    def _train_step(self, frac: float) -> dict[str, float]:
        """One optimiser step on views_per_step views, rendered together (one rasterizer call per
        image size): on a GPU a batch costs little more than one view."""
        picks = self._pick_views()
        by_size: dict[tuple[int, int], list[View]] = {}
        for v in picks:
            by_size.setdefault((v.camera.width, v.camera.height), []).append(v)
        total: dict[str, float] = {}
        loss_sum = 0.0
        metas = []
        for (w, h), views in by_size.items():
            cams = Cameras(torch.cat([v.camera.Ks for v in views]), torch.cat([v.camera.viewmats for v in views]), w, h)
            noise = all(v.mask is None for v in views)
            background = (0.0, 0.0, 0.0) if noise else self.cfg.background
            out = self.model.render(cams, backend=self.backend, background=background, shading=self.spec.shading)
            if noise:
                # Views without masks show a surface in every pixel: rendered over fresh noise each
                # step, any transparency costs in the photometric loss and, since noise has edges,
                # in the gradient-magnitude loss too (a uniform colour would not show through |g|).
                out.rgb = out.rgb + (1.0 - out.alpha) * torch.rand_like(out.rgb)
            terms: dict[str, torch.Tensor] = {}
            for i, v in enumerate(views):
                for k, t in self._view_losses(v, out, i, frac).items():
                    terms[k] = terms.get(k, 0.0) + t / len(picks)
            if len(by_size) == 1 or not total:  # regularisers once per step
                terms.update(self._neighbour_terms())
            loss = sum(terms.values())
            meta = out.meta
            if self.strategy is not None:
                for key in ("means2d", "gradient_2dgs"):
                    if meta[key].requires_grad:
                        meta[key].retain_grad()
            loss.backward()
            if self.strategy is not None:
                meta["grad2d_full"] = _full_screen_gradient(meta)
                metas.append(meta)
            loss_sum += float(loss.detach())
            for k, t in terms.items():
                total[k] = total.get(k, 0.0) + float(t.detach())
        if not math.isfinite(loss_sum):
            raise PrivsplatError(
                f"the loss became {loss_sum} at {self.stage} step {self.step}; "
                "lower the learning rates (e.g. --lr-means) or check the cameras"
            )
        total["loss"] = loss_sum
        # means learning rate decays exponentially to lr_means_final over the stage's schedule
        # (and stays there through its settle steps)
        ratio = self.cfg.lr_means_final / self.cfg.lr_means if self.cfg.lr_means > 0 else 1.0
        for g in self.optimizers["means"].param_groups:
            g["lr"] = self.means_lr0 * ratio ** min(self.step / self.spec.schedule_iters, 1.0)
        for opt in [*self.optimizers.values(), self.light_opt]:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.log_scale_cap is not None:
            with torch.no_grad():
                self.model.params["scales"][:, :2].clamp_(max=self.log_scale_cap)
        if self.step % FINITE_CHECK_EVERY == 0:
            self._check_finite_params()
        if self.strategy is not None:
            if self.model.n >= self.cfg.max_surfels:
                self.strategy.grow_grad2d = float("inf")  # at the cap: prune only
            # Every image-size group of the step feeds the densification statistics; the last one
            # goes through step_post_backward, which also refines (gsplat 1.5.3's own update).
            for meta in metas[:-1]:
                self.strategy._update_state(self.model.params, self.strategy_state, meta, packed=False)
            self.strategy.step_post_backward(
                self.model.params, self.optimizers, self.strategy_state, self.step, metas[-1]
            )
            s = self.strategy
            if self.reset_every > 0 and s.refine_start_iter < self.step < s.refine_stop_iter:
                if (self.step - s.refine_start_iter) % self.reset_every == 0:
                    from gsplat.strategy.ops import reset_opa

                    reset_opa(self.model.params, self.optimizers, self.strategy_state, value=2.0 * s.prune_opa)
        return total

    def _check_finite_params(self) -> None:
        """Stop on a diverged model: a NaN surfel is dropped by the rasterizer, so the loss alone
        can stay finite while the model turns to garbage."""
        finite = torch.stack([torch.isfinite(v).all() for v in self.model.params.values()])
        if not bool(finite.all()):  # one host sync for every parameter
            k = list(self.model.params.keys())[int((~finite).nonzero()[0])]
            raise PrivsplatError(
                f"the fit diverged at {self.stage} step {self.step}: surfel parameter "
                f"{k!r} became non-finite. Lower the learning rates (e.g. --lr-means, "
                "--lr-scales) or check the cameras"
            )

    # --- the loop ---
    def fit(self) -> dict:
        from tqdm import tqdm

        log_file = open(self.run.losses_path, "a", encoding="utf-8")
        try:
            return self._fit(tqdm, log_file)
        finally:
            log_file.close()

    def _fit(self, tqdm, log_file) -> dict:
        while self.stage_index < len(self.stages):
            name, n_steps = self.spec.name, self.spec.iters
            smoothed: dict[str, float] = {}
            first: dict[str, list[float]] = {}
            t0 = time.perf_counter()
            start = self.step
            bar = tqdm(
                total=n_steps, initial=self.step, desc=name, disable=not self.progress, dynamic_ncols=True, leave=True
            )
            while self.step < n_steps:
                terms = self._train_step(self.step / max(n_steps, 1))
                for k, v in terms.items():
                    smoothed[k] = v if k not in smoothed else 0.95 * smoothed[k] + 0.05 * v
                    if self.step - start < 20:
                        first.setdefault(k, []).append(v)
                self.step += 1
                bar.update(1)
                if self.step % LOSS_LOG_EVERY == 0 or self.step == n_steps:
                    log_file.write(
                        json.dumps(
                            {
                                "stage": name,
                                "step": self.step,
                                "surfels": self.model.n,
                                **{k: round(v, 7) for k, v in terms.items()},
                            }
                        )
                        + "\n"
                    )
                if self.step % 20 == 0:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in smoothed.items()} | {"n": self.model.n})
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            bar.close()
            self._check_finite_params()
            prev = self.metrics["stages"].get(name, {})
            seconds = prev.get("seconds", 0.0) + time.perf_counter() - t0
            self.metrics["stages"][name] = {
                "iterations": n_steps,
                "seconds": round(seconds, 2),
                "iterations_per_second": round((self.step - start) / max(time.perf_counter() - t0, 1e-9), 2),
                "initial_losses": prev.get("initial_losses")
                or {k: round(float(np.mean(v)), 6) for k, v in first.items()},
                "final_losses": {k: round(v, 6) for k, v in smoothed.items()},
                "surfels": self.model.n,
            }
            log.info("%s done: %d iterations in %.1f s, %d surfels", name, n_steps, seconds, self.model.n)
            self.stage_index += 1
            self.step = 0
            if self.stage_index < len(self.stages):
                self._setup_stage()
            self.save_checkpoint()
        self.metrics["surfels"] = self.model.n
        return self.metrics

    # --- checkpoints ---
    def save_checkpoint(self) -> None:
        state = {
            "stage_index": self.stage_index,
            "step": self.step,
            "model": self.model.state(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "light_opt": self.light_opt.state_dict(),
            "strategy_state": getattr(self, "strategy_state", None) if self.strategy is not None else None,
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "albedo_stage1": self.albedo_stage1,
            "means_stage1": self.means_stage1,
            "metrics": self.metrics,
            "config": self.cfg.to_dict(),
            "frames": self._frame_signature(),
        }
        self.run.save_checkpoint(state)

    def _frame_signature(self) -> list[list[str]]:
        return [[f.name, f.kind] for f in self.dataset.frames]

    def load_checkpoint(self) -> None:
        """Continue from the run's checkpoint; refuse one written for another config or dataset."""
        state = self.run.load_checkpoint(self.device)
        saved = state.get("config") if isinstance(state.get("config"), dict) else {}
        if saved:  # a key added since the checkpoint was written counts at its default
            try:
                saved = FitConfig.from_dict(saved, where="the checkpoint's config").to_dict()
            except PrivsplatError:
                pass
        if saved != self.cfg.to_dict():
            diff = sorted(k for k in set(saved) | set(self.cfg.to_dict()) if saved.get(k) != self.cfg.to_dict().get(k))
            raise PrivsplatError(
                f"--resume: the checkpoint in {self.run.path} was written with another "
                f"config (differs in {diff[:8]}); resume with the same flags and preset, "
                "or start a new run"
            )
        if state.get("frames") != self._frame_signature():
            raise PrivsplatError(
                f"--resume: the checkpoint in {self.run.path} was fitted on other data "
                "(its frames differ from this dataset's); resume on the same --data or start "
                "a new run"
            )
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise PrivsplatError(
                f"--resume: checkpoint {self.run.checkpoint_path} is incomplete "
                f"({type(e).__name__}: {e}); start a new run"
            ) from None

    def _restore(self, state: dict) -> None:
        self.stage_index, self.step = state["stage_index"], state["step"]
        self.model = SurfelModel.from_state(state["model"], self.device)
        self.metrics = state["metrics"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        if self.stage_index >= len(self.stages):
            return
        self._setup_stage()
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.light_opt.load_state_dict(state["light_opt"])
        if self.strategy is not None and state["strategy_state"] is not None:
            self.strategy_state = state["strategy_state"]
        if state["albedo_stage1"] is not None:
            self.albedo_stage1 = state["albedo_stage1"].to(self.device)
        if state.get("means_stage1") is not None:
            self.means_stage1 = state["means_stage1"].to(self.device)
        log.info("resumed at %s step %d", self.stage, self.step)
