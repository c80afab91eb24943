"""`privsplat fit` and `privsplat mesh`: reconstruct a run folder from a (protected) dataset."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from ..errors import PrivsplatError
from .config import FitConfig, load_preset

log = logging.getLogger("privsplat")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


def _check_out(data: Path, out: Path) -> None:
    data, out = data.resolve(), out.resolve()
    if out == data or data in out.parents:
        raise PrivsplatError(f"--out {out} is inside the input folder {data}; "
                             "choose a folder outside it (inputs are never written to)")


def fit_run(data: Path, out: Path, cfg: FitConfig, *, device: str = "auto", resume: bool = False,
            overwrite: bool = False, progress: bool = True, preset: str = "custom", threads: int = 0,
            mesh: bool = True) -> dict:
    """Fit, export splats.ply, renders/, mesh.ply and metrics.json into `out`. Returns the metrics."""
    import yaml

    from ..data import load_dataset
    from ..io import atomic_path, write_json
    from ..mesh.tsdf import extract_mesh, write_mesh_ply
    from .model import write_splats_ply
    from .trainer import Trainer, resolve_device

    data, out = Path(data), Path(out)
    _check_out(data, out)
    if resume:
        if not (out / "checkpoints" / "latest.pt").is_file():
            raise PrivsplatError(f"--resume: {out} holds no checkpoint; run without --resume")
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise PrivsplatError(f"output folder {out} exists and is not empty; choose another --out, "
                             "pass --resume to continue it, or --overwrite to replace its results")
    dev = resolve_device(device)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    dataset = load_dataset(data)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump({"data": str(data.resolve()), "preset": preset, "device": str(dev),
                                       "config": cfg.to_dict()}, sort_keys=False))
    trainer = Trainer(dataset, cfg, out, dev, progress=progress)
    log.info("fit: %d neutral RGB views, %d protected views; init: %s; stages: %s; device %s",
             len(trainer.rgb_views), len(trainer.protected_views), trainer.init_how,
             ", ".join(f"{n} ({i} it)" for n, i in trainer.stages), dev)
    if trainer.use_template:
        log.info("fewer than %d neutral views: stage 2 starts from the ICT neutral head template "
                 "placed from the cameras", cfg.min_neutral_views)
    if resume:
        trainer.load_checkpoint()
    metrics = trainer.fit()
    model = trainer.model

    write_splats_ply(model, out / "splats.ply", transform=(dataset.center, dataset.scale))
    save_renders(trainer, out / "renders")
    if mesh:
        t_mesh = time.perf_counter()
        V, F, mp = extract_mesh(model, dataset, resolution=mesh_resolution(cfg, dataset), n_orbit=cfg.mesh_orbit_views,
                                clusters=cfg.mesh_clusters, voxel=cfg.mesh_voxel, backend=cfg.backend)
        write_mesh_ply(out / "mesh.ply", V, F)
        metrics["mesh"] = {"vertices": len(V), "triangles": len(F),
                           "seconds": round(time.perf_counter() - t_mesh, 2),
                           **{k: (round(v, 6) if isinstance(v, float) else v)
                              for k, v in dataclasses.asdict(mp).items()}}
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 2)
    metrics["peak_rss_mb"] = peak_rss_mb()
    if dev.type == "cuda":
        import torch

        metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json(out / "metrics.json", metrics)
    log.info("fit done in %.1f s: %s", metrics["total_seconds"], out)
    return metrics


def mesh_resolution(cfg: FitConfig, dataset) -> int:
    """Depth-map long side for TSDF fusion: the config's, else 2x the cameras', at least 128."""
    f0 = dataset.frames[0]
    return cfg.mesh_resolution or max(128, 2 * max(f0.width, f0.height))


def peak_rss_mb() -> float:
    import resource
    import sys

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (2**20 if sys.platform == "darwin" else 2**10), 1)


def save_renders(trainer, folder: Path, n_each: int = 2) -> None:
    """For a few views: input | render (RGB views), protected | sigma(render) (protected views),
    and the normal map. Nothing here shows a protected view's RGB: only the model's render."""
    import cv2
    import numpy as np
    import torch

    from ..io import atomic_path
    from ..privacy.sigma import gradient_magnitude

    folder.mkdir(parents=True, exist_ok=True)

    def u8(img):
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)

    def grey(img, scale):
        return np.repeat(u8(img / max(scale, 1e-8))[..., None], 3, axis=-1)

    def save(name, rgb):
        with atomic_path(folder / f"{name}.png") as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    chosen = trainer.rgb_views[:n_each] + trainer.protected_views[:n_each]
    with torch.no_grad():
        for v in chosen:
            out = trainer.model.render(v.camera, backend=trainer.backend, background=trainer.cfg.background)
            render = out.rgb[0].clamp(0, 1)
            normal = u8(out.normals[0].cpu().numpy() * 0.5 + 0.5)
            if v.kind == "rgb":
                size = (render.shape[1], render.shape[0])
                row = [cv2.resize(u8(v.rgb.cpu().numpy()), size, interpolation=cv2.INTER_NEAREST),
                       u8(render.cpu().numpy()), normal]
            else:
                mag = gradient_magnitude(render, trainer.sigma).cpu().numpy()
                target = v.magnitude.cpu().numpy()
                s = float(np.percentile(target, 99.5)) or 1.0
                size = (render.shape[1], render.shape[0])
                row = [cv2.resize(grey(target, s), size, interpolation=cv2.INTER_NEAREST),
                       cv2.resize(grey(mag, s), size, interpolation=cv2.INTER_NEAREST),
                       u8(render.cpu().numpy()), normal]
            save(f"{v.kind}_{v.name}", np.concatenate(row, axis=1))


def _preset_from_args(args: list[str]) -> str:
    for i, a in enumerate(args):
        if a == "--preset" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--preset="):
            return a.split("=", 1)[1]
    return "head64"


@dataclass
class Fit:
    """Reconstruct surfels and a mesh from a (protected) folder: stage 1 on neutral RGB views,
    stage 2 on the gradient magnitudes of protected views, then TSDF fusion.

    A folder without a protection manifest is fitted with all views as RGB (the full-RGB baseline,
    same iteration budget). Outputs in --out: config.yaml, splats.ply (3DGS layout), mesh.ply
    (input units), metrics.json, renders/, checkpoints/.
    """

    data: Path
    """Dataset folder (output of `privsplat protect`, or any transforms.json / COLMAP / cameras.npz folder)."""
    out: Path
    """Run folder to create."""
    preset: str = "head64"
    """Config preset from configs/ (head64, head512, scene) or a path to a .yaml file; flags override it."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""
    overwrite: bool = False
    progress: bool = True
    threads: int = 0
    """CPU threads for torch (0 = torch's default). On a busy machine 1 avoids thread stalls."""
    mesh: bool = True
    """Extract mesh.ply after fitting (--no-mesh: later, with `privsplat mesh --run`)."""
    config: Annotated[FitConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=FitConfig)

    @classmethod
    def defaults_from_args(cls, args: list[str]) -> "Fit":
        preset = _preset_from_args(args)
        return cls(data=tyro.MISSING, out=tyro.MISSING, preset=preset, config=load_preset(preset))

    def run(self) -> None:
        setup_logging()
        fit_run(self.data, self.out, self.config, device=self.device, resume=self.resume,
                overwrite=self.overwrite, progress=self.progress, preset=self.preset, threads=self.threads,
                mesh=self.mesh)


@dataclass
class Mesh:
    """Re-extract the mesh of a finished run with other TSDF parameters (writes RUN/mesh.ply or --out)."""

    run_dir: Annotated[Path, tyro.conf.arg(name="run")]
    """Run folder written by `privsplat fit`."""
    out: Path | None = None
    resolution: int = 0
    """Depth-map long side; 0 = the run's setting."""
    voxel: float = 0.0
    """TSDF voxel in normalised scene units; 0 = auto."""
    orbit_views: int = -1
    """Extra orbit views; -1 = the run's setting."""
    clusters: int = -1
    """Largest connected components to keep (0 = all); -1 = the run's setting."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def run(self) -> None:
        import torch
        import yaml

        from ..data import load_dataset
        from ..mesh.tsdf import extract_mesh, write_mesh_ply
        from .model import SurfelModel
        from .trainer import resolve_device

        setup_logging()
        cfg_path, ckpt = self.run_dir / "config.yaml", self.run_dir / "checkpoints" / "latest.pt"
        if not cfg_path.is_file() or not ckpt.is_file():
            raise PrivsplatError(f"{self.run_dir} is not a privsplat run folder (needs config.yaml and "
                                 "checkpoints/latest.pt from `privsplat fit`)")
        saved = yaml.safe_load(cfg_path.read_text())
        cfg = FitConfig.from_dict(saved["config"])
        dataset = load_dataset(Path(saved["data"]))
        dev = resolve_device(self.device)
        model = SurfelModel.from_state(torch.load(ckpt, map_location=dev, weights_only=False)["model"], dev)
        V, F, mp = extract_mesh(model, dataset, resolution=self.resolution or mesh_resolution(cfg, dataset),
                                n_orbit=cfg.mesh_orbit_views if self.orbit_views < 0 else self.orbit_views,
                                clusters=cfg.mesh_clusters if self.clusters < 0 else self.clusters,
                                voxel=self.voxel or cfg.mesh_voxel, backend=cfg.backend)
        out = self.out or self.run_dir / "mesh.ply"
        write_mesh_ply(out, V, F)
        log.info("mesh: %d vertices, %d triangles (voxel %.4g) -> %s", len(V), len(F), mp.voxel, out)
