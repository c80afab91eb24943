"""The pipeline a fit runs: dataset → trainer → splats, renders, mesh, metrics (and the report).

Used by `privsplat fit`, `privsplat mesh`, `privsplat demo` and batches; neither CLI nor trainer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import resource
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .data import Dataset, load_dataset
from .errors import PrivsplatError
from .io import atomic_path, write_json
from .mesh.tsdf import extract_mesh, write_mesh_ply
from .privacy.sigma import gradient_magnitude
from .report import write_report
from .run import RunFolder
from .threads import configure_cpu_threads
from .train.config import FitConfig
from .train.model import SurfelModel, write_splats_ply
from .train.trainer import Trainer, resolve_device, sigma_input

log = logging.getLogger("privsplat")

# What a fit writes into its run folder; --overwrite removes these first, so no stale output of an
# earlier run (a mesh, or renders of another dataset) survives beside the new one.
RUN_OUTPUTS = (
    "config.yaml",
    "checkpoints",
    "splats.ply",
    "mesh.ply",
    "metrics.json",
    "losses.jsonl",
    "renders",
    "report.html",
)
LOCK_NAME = ".privsplat.lock"
# Files other commands keep beside a run (a batch's eval): neither deleted nor foreign.
RUN_COMPANIONS = (LOCK_NAME, "eval.json")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")


def check_out_folder(data: Path, out: Path) -> None:
    data, out = Path(data).resolve(), Path(out).resolve()
    if out == data or data in out.parents:
        raise PrivsplatError(
            f"--out {out} is inside the input folder {data}; choose a folder outside it (inputs are never written to)"
        )
    if out.exists() and not out.is_dir():
        raise PrivsplatError(f"--out {out} is a file; pass a folder for the run")


def _prepare_run_folder(run: RunFolder, resume: bool, overwrite: bool) -> None:
    if resume:
        if not run.checkpoint_path.is_file():
            raise PrivsplatError(f"--resume: {run.path} holds no checkpoint; run without --resume")
        return
    entries = [p for p in run.path.iterdir() if p.name not in RUN_COMPANIONS] if run.path.exists() else []
    unfinished = (
        entries
        and all(p.name in RUN_OUTPUTS for p in entries)
        and not run.checkpoint_path.exists()
        and not run.metrics_path.exists()
    )
    if entries:
        if not overwrite and not unfinished:
            raise PrivsplatError(
                f"output folder {run.path} exists and is not empty; choose another --out, "
                "pass --resume to continue it, or --overwrite to replace its results"
            )
        foreign = sorted(p.name for p in entries if p.name not in RUN_OUTPUTS)
        if foreign:
            raise PrivsplatError(
                f"--overwrite: {run.path} holds files a fit does not write ({foreign[:5]}); "
                "refusing to delete anything there. Choose another --out"
            )
        for name in RUN_OUTPUTS:
            p = run.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()


@contextlib.contextmanager
def run_lock(run: RunFolder):
    """Hold an exclusive lock on the run folder while a fit writes it (two fits into one folder
    would otherwise both "succeed" with mixed outputs)."""
    run.path.mkdir(parents=True, exist_ok=True)
    with open(run.path / LOCK_NAME, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PrivsplatError(
                f"another privsplat process is writing to {run.path}; wait for it to finish or choose another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fit_run(
    data: Path,
    out: Path,
    cfg: FitConfig,
    *,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    preset: str = "custom",
    threads: int = 0,
    mesh: bool = True,
    report: bool = True,
    max_size: int | None = None,
) -> dict:
    """Fit, export splats.ply, renders/, mesh.ply and metrics.json into `out`. Returns the metrics."""
    data, out = Path(data), Path(out)
    check_out_folder(data, out)
    cfg.validate()
    run = RunFolder(out)
    dev = resolve_device(device)
    configure_cpu_threads(threads)
    t_start = time.perf_counter()
    if max_size is not None and max_size < 1:
        raise PrivsplatError(f"--max-size must be a positive number of pixels, got {max_size}")
    dataset = load_dataset(data, max_size=max_size)  # verified before anything is written
    with run_lock(run):
        metrics = _fit_locked(
            run, data, dataset, cfg, dev, resume, overwrite, progress, preset, mesh, t_start, max_size
        )
    if report:
        log.info("report: %s", write_report(run.path, device=str(dev)))
    return metrics


def _fit_locked(
    run: RunFolder,
    data: Path,
    dataset: Dataset,
    cfg: FitConfig,
    dev: torch.device,
    resume: bool,
    overwrite: bool,
    progress: bool,
    preset: str,
    mesh: bool,
    t_start: float,
    max_size: int | None,
) -> dict:
    if resume:
        _prepare_run_folder(run, resume=True, overwrite=False)
        saved = run.read_config()
        if saved.data.resolve() != data.resolve() or saved.max_size != max_size:
            raise PrivsplatError(
                f"--resume: {run.path} was fitted on {saved.data} (max size {saved.max_size}), not "
                f"{data.resolve()} (max size {max_size}); resume with the same --data and "
                "--max-size or start a new run"
            )
    else:
        _prepare_run_folder(run, resume=False, overwrite=overwrite)
        run.write_config(data, preset, str(dev), cfg, max_size)
    trainer = Trainer(dataset, cfg, run, dev, progress=progress)
    log.info(
        "fit: %d neutral RGB views, %d protected views; init: %s; stages: %s; device %s",
        len(trainer.rgb_views),
        len(trainer.protected_views),
        trainer.init_how,
        ", ".join(
            f"{s.name} ({s.iters - s.settle} + {s.settle} settle it)" if s.settle else f"{s.name} ({s.iters} it)"
            for s in trainer.stages
        ),
        dev,
    )
    if trainer.render_scales != [1.0]:
        log.info(
            "rendering at %s the cameras' resolution (render_scale %s), area-downsampled to the targets",
            "/".join(f"{s:g}x" for s in trainer.render_scales),
            "auto: gsplat's screen-space blob then covers half a target pixel or less"
            if cfg.render_scale == 0
            else f"{cfg.render_scale:g}",
        )
    if trainer.use_template:
        log.info(
            "fewer than %d neutral views: stage 2 starts from the ICT neutral head template placed from the cameras",
            cfg.min_neutral_views,
        )
    if resume:
        trainer.load_checkpoint()
    metrics = trainer.fit()
    model = trainer.model

    write_splats_ply(model, run.splats_path, transform=(dataset.center, dataset.scale))
    save_renders(trainer, run.renders_dir)
    if mesh:
        metrics["mesh"] = mesh_model(model, dataset, cfg, run.mesh_path)
    metrics["total_seconds"] = round(time.perf_counter() - t_start, 2)
    metrics["peak_rss_mb"] = peak_rss_mb()
    if dev.type == "cuda":
        metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    write_json(run.metrics_path, metrics)
    log.info("fit done in %.1f s: %s", metrics["total_seconds"], run.path)
    return metrics


def mesh_model(
    model: SurfelModel,
    dataset: Dataset,
    cfg: FitConfig,
    path: Path,
    *,
    resolution: int = 0,
    voxel: float = 0.0,
    n_orbit: int = -1,
    clusters: int = -1,
) -> dict:
    """TSDF-fuse the model's median depth into `path`; returns the mesh's statistics.
    Arguments left at 0 / -1 take the config's values."""
    t = time.perf_counter()
    V, F, mp = extract_mesh(
        model,
        dataset,
        resolution=resolution or mesh_resolution(cfg, dataset),
        n_orbit=cfg.mesh_orbit_views if n_orbit < 0 else n_orbit,
        clusters=cfg.mesh_clusters if clusters < 0 else clusters,
        voxel=voxel or cfg.mesh_voxel,
        backend=cfg.backend,
        crop=cfg.mesh_crop == "common-view"
        or (cfg.mesh_crop == "auto" and any(f.mask_path is None for f in dataset.frames)),
    )
    write_mesh_ply(path, V, F)
    return {
        "vertices": len(V),
        "triangles": len(F),
        "seconds": round(time.perf_counter() - t, 2),
        **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(mp).items()},
    }


def remesh_run(
    run_dir: Path,
    out: Path | None = None,
    *,
    resolution: int = 0,
    voxel: float = 0.0,
    orbit_views: int = -1,
    clusters: int = -1,
    device: str = "auto",
) -> dict:
    """Re-extract the mesh of a finished run with other TSDF parameters."""
    run = RunFolder.open(run_dir)
    cfg = run.read_config().config
    dataset = run.load_dataset()
    dev = resolve_device(device)
    model = run.load_model(dev)
    path = Path(out) if out is not None else run.mesh_path
    if path.exists() and path.is_dir():
        raise PrivsplatError(f"--out {path} is a folder; pass a .ply file path")
    stats = mesh_model(
        model, dataset, cfg, path, resolution=resolution, voxel=voxel, n_orbit=orbit_views, clusters=clusters
    )
    log.info(
        "mesh: %d vertices, %d triangles (voxel %.4g) -> %s",
        stats["vertices"],
        stats["triangles"],
        stats["voxel"],
        path,
    )
    return stats


def mesh_resolution(cfg: FitConfig, dataset: Dataset) -> int:
    """Depth-map long side for TSDF fusion: the config's, else 2x the cameras', at least 128."""
    f0 = dataset.frames[0]
    return cfg.mesh_resolution or max(128, 2 * max(f0.width, f0.height))


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (2**20 if sys.platform == "darwin" else 2**10), 1)


def save_renders(trainer: Trainer, folder: Path, n_each: int = 2) -> None:
    """For a few views: input | render (RGB views), protected | sigma(render) (protected views),
    and the normal map. Nothing here shows a protected view's RGB: only the model's render."""
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
            size = (render.shape[1], render.shape[0])
            if v.kind == "rgb":
                row = [
                    cv2.resize(u8(v.rgb.cpu().numpy()), size, interpolation=cv2.INTER_NEAREST),
                    u8(render.cpu().numpy()),
                    normal,
                ]
            else:
                src = sigma_input(render, out.alpha[0], trainer.cfg.background, v.mask is not None)
                mag = gradient_magnitude(src, trainer.sigma).cpu().numpy()
                target = v.magnitude.cpu().numpy()
                s = float(np.percentile(target, 99.5)) or 1.0
                row = [
                    cv2.resize(grey(target, s), size, interpolation=cv2.INTER_NEAREST),
                    cv2.resize(grey(mag, s), size, interpolation=cv2.INTER_NEAREST),
                    u8(render.cpu().numpy()),
                    normal,
                ]
            save(f"{v.kind}_{v.name}", np.concatenate(row, axis=1))
