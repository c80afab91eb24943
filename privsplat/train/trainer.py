"""The two-stage fit: stage 1 on neutral RGB views, stage 2 on protected gradient magnitudes.

A Trainer owns the model, its optimizers, the densification strategy and the schedule; it
checkpoints so that a killed run resumes with at most one checkpoint interval lost.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cameras import Cameras
from ..data.dataset import Dataset
from ..errors import PrivsplatError
from ..io import atomic_path
from . import losses as L
from .config import FitConfig
from ..cameras import camera_distances
from .init import sample_hull, sphere_points, template_points, visual_hull
from .model import SurfelModel

log = logging.getLogger(__name__)

COLOUR_KEYS = ("albedo", "sh0", "shN")


@dataclass
class View:
    """One frame's training targets, as tensors on the training device."""

    name: str
    kind: str
    camera: Cameras
    rgb: torch.Tensor | None = None          # [H,W,3] neutral RGB (composited on the background)
    valid: torch.Tensor | None = None        # [H,W] where rgb may be used (region-protected frames)
    mask: torch.Tensor | None = None         # [H,W] object mask
    magnitude: torch.Tensor | None = None    # [h,w] protected gradient magnitude
    region: torch.Tensor | None = None       # [h,w] where the magnitude applies


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise PrivsplatError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


def load_views(dataset: Dataset, cfg: FitConfig, device: torch.device) -> list[View]:
    """Read every frame's targets. Protected frames are read only through load_protected:
    their RGB is never opened (the privacy rule; load_rgb refuses them anyway)."""
    from ..data import load_mask, load_protected, load_rgb, load_rgb_outside

    bg = np.asarray(cfg.background, dtype=np.float32)

    def t(a):
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    views = []
    for f in dataset.frames:
        cam = Cameras.from_numpy(f.K, f.w2c, f.width, f.height, device=device)
        if cfg.render_scale != 1.0:
            cam = cam.scaled(cfg.render_scale)
        # Targets stay at the frame's own size; renders are area-downsampled to it (render_scale > 1
        # keeps surfels larger than the rasterizer's screen-space low-pass at low resolution).
        mask = load_mask(f)
        v = View(f.name, f.kind, cam, mask=t(mask))
        if f.kind == "rgb":
            v.rgb = t(_composite(load_rgb(f), mask, bg))
        else:
            mag, region = load_protected(f)
            v.magnitude, v.region = t(mag), t(region)
            if f.rgb_outside_path is not None:
                rgb, valid = load_rgb_outside(f)
                v.rgb = t(_composite(rgb, mask, bg))
                v.valid = t(valid)
        views.append(v)
    return views


def to_size(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsample an [H,W,C] render to (h, w) (identity when already that size)."""
    if tuple(img.shape[:2]) == tuple(size):
        return img
    return torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], size=size, mode="area")[0].permute(1, 2, 0)


def _composite(rgb: np.ndarray, mask: np.ndarray | None, bg: np.ndarray) -> np.ndarray:
    if mask is None:
        return rgb
    return rgb * mask[..., None] + bg * (1 - mask[..., None])


def initial_model(dataset: Dataset, views: list[View], cfg: FitConfig, use_template: bool,
                  rng: np.random.Generator) -> tuple[SurfelModel, str]:
    masks = {v.name: v.mask.cpu().numpy() for v in views if v.mask is not None}
    hull = visual_hull(dataset, masks) if len(masks) >= 2 else None
    if use_template:
        pts, nrm = template_points(dataset, cfg.n_init, rng, hull)
        how = "ICT neutral head template"
    elif hull is not None:
        pts, nrm = sample_hull(*hull, cfg.n_init, rng)
        how = f"visual hull of {len(masks)} masks"
    else:
        center, dists = camera_distances(dataset.w2cs())
        pts, nrm = sphere_points(center, 0.3 * float(np.median(dists)), cfg.n_init, rng)
        how = "sphere around the cameras' look-at point"
    return SurfelModel.from_points(pts, nrm, cfg, seed=cfg.seed), how


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
    def __init__(self, dataset: Dataset, cfg: FitConfig, run_dir: Path, device: torch.device,
                 progress: bool = True):
        from ..privacy.sigma import SigmaParams

        self.dataset, self.cfg, self.run_dir, self.device = dataset, cfg, Path(run_dir), device
        self.progress = progress
        self.ckpt_path = self.run_dir / "checkpoints" / "latest.pt"
        self.sigma = SigmaParams.from_dict(dataset.protection) if dataset.protection else SigmaParams()
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.views = load_views(dataset, cfg, device)
        self.rgb_views = [v for v in self.views if v.kind == "rgb"]
        self.protected_views = [v for v in self.views if v.kind == "protected"]
        self.use_template = (cfg.template == "always" or
                             (cfg.template == "auto" and self.protected_views
                              and len(self.rgb_views) < cfg.min_neutral_views))
        self.stages = self._plan_stages()
        self.scene_scale = 1.1 * float(camera_distances(dataset.w2cs())[1].max())
        self.model, self.init_how = initial_model(dataset, self.views, cfg, self.use_template, self.rng)
        self.model.to(device)
        self.backend = cfg.backend
        self.metrics: dict = {"device": str(device), "init": self.init_how, "stages": {},
                              "n_rgb_views": len(self.rgb_views), "n_protected_views": len(self.protected_views)}
        self.stage_index, self.step = 0, 0
        self.neighbours: torch.Tensor | None = None
        self.albedo_stage1: torch.Tensor | None = None
        self._setup_stage()

    # --- planning ---
    def _plan_stages(self) -> list[tuple[str, int]]:
        cfg = self.cfg
        total = cfg.stage1_iters + cfg.stage2_iters
        if not self.protected_views:
            return [("rgb", total)]  # the full-RGB baseline: same budget, all views RGB
        if cfg.single_stage:
            return [("mixed", total)]
        if cfg.stage2_only or self.use_template or not self.rgb_views:
            return [("stage2", cfg.stage2_iters)]
        return [("stage1", cfg.stage1_iters), ("stage2", cfg.stage2_iters)]

    @property
    def stage(self) -> str:
        return self.stages[self.stage_index][0]

    def _pool(self) -> list[View]:
        if self.stage in ("stage1", "rgb"):
            return self.rgb_views
        if self.stage == "mixed" or self.cfg.stage2_rgb:
            return self.views
        return self.protected_views

    # --- optimisation state ---
    def _setup_stage(self) -> None:
        from gsplat.strategy import DefaultStrategy

        cfg, p = self.cfg, self.model.params
        stage2 = self.stage == "stage2"
        geo = cfg.stage2_lr_factor if stage2 else 1.0
        colour_lr = 0.0 if (stage2 and cfg.colour_reg == "freeze") else cfg.lr_colour
        lrs = {"means": cfg.lr_means * geo, "quats": cfg.lr_quats * geo, "scales": cfg.lr_scales * geo,
               "opacities": cfg.lr_opacities * geo, "albedo": colour_lr, "sh0": colour_lr,
               "shN": colour_lr / 20}
        self.optimizers = {k: torch.optim.Adam([p[k]], lr=lrs[k], eps=1e-15) for k in p.keys()}
        # The irradiance is fitted on the neutral views (stage 1) and then held fixed.
        self.light_opt = torch.optim.Adam([self.model.light], lr=0.0 if stage2 else cfg.lr_light)
        self.means_lr0 = lrs["means"]
        n_steps = self.stages[self.stage_index][1]
        self.strategy = None
        if cfg.densify and self.stage != "stage2":
            self.strategy = DefaultStrategy(
                refine_start_iter=int(cfg.densify_start * n_steps),
                refine_stop_iter=int(cfg.densify_stop * n_steps),
                refine_every=cfg.densify_every, reset_every=cfg.reset_every,
                grow_grad2d=cfg.grow_grad2d, prune_opa=cfg.prune_opa,
                key_for_gradient="grad2d_full", verbose=False)
            self.strategy.check_sanity(p, self.optimizers)
            # gsplat's convention: the scene scale is the cameras' extent (1.1 x their largest
            # distance from the look-at point). It sets the size above which a surfel is split
            # rather than cloned (1 % of it); with 1.0 here (the object's radius) surfels were split
            # far below a pixel, rendered as screen-space low-pass blobs, and the fitted surface
            # sank about a pixel inside the silhouettes.
            self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        if stage2:
            self._setup_colour_reg()

    def _setup_colour_reg(self) -> None:
        if "albedo" not in self.model.params:
            return
        from scipy.spatial import cKDTree

        means = self.model.params["means"].detach().cpu().numpy()
        _, idx = cKDTree(means).query(means, k=min(9, len(means)))
        self.neighbours = torch.as_tensor(idx[:, 1:], device=self.device)
        self.albedo_stage1 = self.model.albedo().detach().clone()

    # --- one step ---
    def _view_losses(self, view: View, out, i: int, frac: float) -> dict[str, torch.Tensor]:
        """Data and geometry terms of view `view`, rendered as camera `i` of the batch `out`."""
        from ..privacy.sigma import gradient_magnitude

        cfg = self.cfg
        rgb = out.rgb[i]
        terms: dict[str, torch.Tensor] = {}
        if view.rgb is not None and (view.kind == "rgb" or self.stage != "stage1"):
            terms["rgb"] = L.photometric_loss(to_size(rgb, view.rgb.shape[:2]), view.rgb, cfg.ssim_weight,
                                              view.valid)
        if view.magnitude is not None:
            mag = gradient_magnitude(rgb, self.sigma)
            if mag.shape != view.magnitude.shape:
                raise PrivsplatError(
                    f"frame {view.name}: sigma(render) is {tuple(mag.shape)} but the protected image is "
                    f"{tuple(view.magnitude.shape)}; the camera size and the manifest's resolution disagree")
            terms["grad"] = cfg.grad_weight * L.gradient_loss(mag, view.magnitude, view.region)
        if view.mask is not None and cfg.mask_weight > 0:
            terms["mask"] = cfg.mask_weight * L.mask_loss(to_size(out.alpha[i], view.mask.shape), view.mask)
        first = self.stage in ("stage1", "rgb", "mixed")
        if cfg.normal_weight > 0 and (not first or frac >= cfg.normal_start):
            terms["normal"] = cfg.normal_weight * L.normal_consistency(out.normals[i], out.depth_normals[i],
                                                                       out.alpha[i])
        if cfg.dist_weight > 0 and (not first or frac >= cfg.dist_start):
            terms["dist"] = cfg.dist_weight * out.distortion[i].mean()
        return terms

    def _colour_terms(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if self.stage != "stage2" or self.neighbours is None or cfg.colour_reg_weight <= 0:
            return {}
        if cfg.colour_reg == "smooth":
            return {"colour": cfg.colour_reg_weight * L.neighbour_smoothness(self.model.albedo(), self.neighbours)}
        if cfg.colour_reg == "drift":
            return {"colour": cfg.colour_reg_weight * ((self.model.albedo() - self.albedo_stage1) ** 2).sum(-1).mean()}
        return {}

    def _train_step(self, frac: float) -> dict[str, float]:
        """One optimiser step on views_per_step views, rendered together (one rasterizer call per
        image size): on a GPU a batch costs little more than one view."""
        pool = self._pool()
        picks = [pool[i] for i in self.rng.choice(len(pool), size=min(self.cfg.views_per_step, len(pool)),
                                                  replace=False)]
        by_size: dict[tuple[int, int], list[View]] = {}
        for v in picks:
            by_size.setdefault((v.camera.width, v.camera.height), []).append(v)
        total: dict[str, float] = {}
        loss_sum = 0.0
        for (w, h), views in by_size.items():
            cams = Cameras(torch.cat([v.camera.Ks for v in views]), torch.cat([v.camera.viewmats for v in views]),
                           w, h)
            out = self.model.render(cams, backend=self.backend, background=self.cfg.background)
            terms: dict[str, torch.Tensor] = {}
            for i, v in enumerate(views):
                for k, t in self._view_losses(v, out, i, frac).items():
                    terms[k] = terms.get(k, 0.0) + t / len(picks)
            if len(by_size) == 1 or not total:  # regularisers once per step
                terms.update(self._colour_terms())
            loss = sum(terms.values())
            meta = out.meta
            if self.strategy is not None:
                for key in ("means2d", "gradient_2dgs"):
                    if meta[key].requires_grad:
                        meta[key].retain_grad()
            loss.backward()
            if self.strategy is not None:
                meta["grad2d_full"] = _full_screen_gradient(meta)
            self._last_meta = meta
            loss_sum += float(loss.detach())
            for k, t in terms.items():
                total[k] = total.get(k, 0.0) + float(t.detach())
        if not math.isfinite(loss_sum):
            raise PrivsplatError(f"the loss became {loss_sum} at {self.stage} step {self.step}; "
                                 "lower the learning rates (e.g. --lr-means) or check the cameras")
        total["loss"] = loss_sum
        # means learning rate decays exponentially to lr_means_final over the stage
        n_steps = self.stages[self.stage_index][1]
        ratio = self.cfg.lr_means_final / self.cfg.lr_means
        for g in self.optimizers["means"].param_groups:
            g["lr"] = self.means_lr0 * ratio ** (self.step / max(n_steps, 1))
        for opt in [*self.optimizers.values(), self.light_opt]:
            opt.step()
            opt.zero_grad(set_to_none=True)
        if self.strategy is not None:
            if self.model.n >= self.cfg.max_surfels:
                self.strategy.grow_grad2d = float("inf")  # at the cap: prune only
            self.strategy.step_post_backward(self.model.params, self.optimizers, self.strategy_state,
                                             self.step, self._last_meta)
        return total

    # --- the loop ---
    def fit(self) -> dict:
        from tqdm import tqdm

        while self.stage_index < len(self.stages):
            name, n_steps = self.stages[self.stage_index]
            smoothed: dict[str, float] = {}
            first: dict[str, list[float]] = {}
            t0 = time.perf_counter()
            start = self.step
            bar = tqdm(total=n_steps, initial=self.step, desc=name, disable=not self.progress,
                       dynamic_ncols=True, leave=True)
            while self.step < n_steps:
                terms = self._train_step(self.step / max(n_steps, 1))
                for k, v in terms.items():
                    smoothed[k] = v if k not in smoothed else 0.95 * smoothed[k] + 0.05 * v
                    if self.step - start < 20:
                        first.setdefault(k, []).append(v)
                self.step += 1
                bar.update(1)
                if self.step % 20 == 0:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in smoothed.items()} | {"n": self.model.n})
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            bar.close()
            prev = self.metrics["stages"].get(name, {})
            seconds = prev.get("seconds", 0.0) + time.perf_counter() - t0
            self.metrics["stages"][name] = {
                "iterations": n_steps, "seconds": round(seconds, 2),
                "iterations_per_second": round((self.step - start) / max(time.perf_counter() - t0, 1e-9), 2),
                "initial_losses": prev.get("initial_losses") or {k: round(float(np.mean(v)), 6) for k, v in first.items()},
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
            "stage_index": self.stage_index, "step": self.step, "model": self.model.state(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "light_opt": self.light_opt.state_dict(),
            "strategy_state": getattr(self, "strategy_state", None) if self.strategy is not None else None,
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "albedo_stage1": self.albedo_stage1, "metrics": self.metrics, "config": self.cfg.to_dict(),
        }
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> None:
        if not self.ckpt_path.is_file():
            raise PrivsplatError(f"--resume: no checkpoint at {self.ckpt_path}; start without --resume")
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
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
        log.info("resumed at %s step %d", self.stage, self.step)
