"""`privsplat report RUN`: one self-contained HTML page (images embedded) of a run folder.

What a person wants to see at a glance: the inputs, renders next to their targets, σ(render)
next to the protected |g|, normal and depth maps, loss curves, a mesh turntable, the metrics
and the config.

Privacy rule: inputs are read only through privsplat.data (load_rgb refuses a protected frame;
load_protected reads its gradient magnitude), so no sensitive original can reach the page. A
protected view appears as its |g| and as the model's render, never as the image it came from.

Every section is built on its own: a missing piece (no mesh yet, a moved dataset) becomes a
note in its section, never a failed report.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import PrivsplatError

log = logging.getLogger("privsplat")

REPORT_NAME = "report.html"
LOSSES_NAME = "losses.jsonl"  # the trainer's loss log: {"stage", "step", "surfels", <term>: value, ...} a line
EVAL_NAME = "eval.json"  # geometry metrics against ground truth (written by `privsplat batch`)
SECTIONS = {  # id -> heading; the page shows them in this order
    "inputs": "Inputs",
    "renders": "Renders and targets",
    "gradients": "σ(render) and protected |g|",
    "geometry": "Normals and depth",
    "losses": "Loss curves",
    "mesh": "Mesh turntable",
    "metrics": "Metrics",
    "config": "Config",
}
MAX_THUMBNAILS = 24  # per kind, in the inputs section
THUMB_PX = 96  # displayed size of one image (small images are upscaled by the browser, pixelated)


@dataclass
class RunContents:
    """What the report reads from a run folder; None where a piece is missing, with the reason."""

    run_dir: Path
    saved: dict  # config.yaml: data, preset, device, config
    metrics: dict | None
    evaluation: dict | None
    dataset: object | None  # privsplat.data.Dataset
    dataset_error: str | None
    model: object | None  # privsplat.train.model.SurfelModel
    model_error: str | None
    views: list | None = None  # renders of a few training cameras, made once for three sections


def write_report(run_dir: str | Path, *, max_views: int = 3, turntable_views: int = 8, device: str = "cpu") -> Path:
    """Write RUN/report.html from what the run folder holds; return its path.

    max_views: views of each kind (neutral, protected) rendered next to their targets.
    turntable_views: shaded views of mesh.ply around the up axis.
    """
    run_dir = Path(run_dir)
    contents = read_run(run_dir, device)
    body = [
        _section(key, builder(contents, max_views=max_views, turntable_views=turntable_views))
        for key, builder in _BUILDERS.items()
    ]
    page = _page(run_dir.name, _summary(contents), body)
    from .io import atomic_path

    out = run_dir / REPORT_NAME
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report: %s (%.0f kB)", out, out.stat().st_size / 1024)
    return out


# --- reading the run -------------------------------------------------------------------------


def read_run(run_dir: Path, device: str = "cpu") -> RunContents:
    import yaml

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise PrivsplatError(
            f"{run_dir} is not a privsplat run folder (no config.yaml); pass the --out folder of a `privsplat fit`"
        )
    saved = yaml.safe_load(cfg_path.read_text()) or {}
    metrics = _read_json(run_dir / "metrics.json")
    evaluation = _read_json(run_dir / EVAL_NAME)
    dataset, dataset_error = _load_dataset(run_dir)
    model, model_error = _load_model(run_dir, device)
    return RunContents(run_dir, saved, metrics, evaluation, dataset, dataset_error, model, model_error)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _load_dataset(run_dir: Path):
    from .run import RunFolder

    try:
        # verified against its manifest again (a folder changed since the fit is not shown), at the
        # run's --max-size
        return RunFolder(run_dir).load_dataset(quiet=True), None
    except PrivsplatError as e:
        return None, str(e)


def _load_model(run_dir: Path, device: str):
    from .run import RunFolder

    run = RunFolder(run_dir)
    if not run.checkpoint_path.is_file():
        return None, f"no checkpoint at {run.checkpoint_path}"
    try:
        return run.load_model(device), None  # tensors and plain data only: a foreign run runs no code here
    except PrivsplatError as e:
        return None, str(e)


def read_losses(run_dir: Path) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """RUN/losses.jsonl → {stage: {term: (steps, values)}}; {} when the file is absent.

    A line holds "stage", "step" and the loss terms, either flat beside them (what the trainer
    writes; "surfels" is not a term) or under "terms". A line that does not parse (a run killed
    mid-write) is skipped; steps repeated after a resume keep their last value."""
    path = run_dir / LOSSES_NAME
    if not path.is_file():
        return {}
    by_stage: dict[str, dict[str, dict[int, float]]] = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            stage, step = str(rec["stage"]), int(rec["step"])
            terms = (
                rec["terms"]
                if "terms" in rec
                else {k: v for k, v in rec.items() if k not in ("stage", "step", "surfels")}
            )
            values = {k: float(v) for k, v in terms.items()}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue
        for k, v in values.items():
            by_stage.setdefault(stage, {}).setdefault(k, {})[step] = v
    return {s: {k: (sorted(d), [d[i] for i in sorted(d)]) for k, d in terms.items()} for s, terms in by_stage.items()}


# --- images ----------------------------------------------------------------------------------


def _u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _grey(mag: np.ndarray, scale: float) -> np.ndarray:
    return _u8(mag / max(scale, 1e-8))


def _png_uri(img: np.ndarray) -> str:
    """uint8 [H,W] or [H,W,3] RGB → data: URI of a PNG."""
    import cv2

    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise PrivsplatError("could not encode a report image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _figure(img: np.ndarray, caption: str, kind: str = "", frame: str = "", width: int = THUMB_PX) -> str:
    h, w = img.shape[:2]
    height = round(width * h / max(w, 1))
    attrs = f' data-kind="{kind}"' if kind else ""
    attrs += f' data-frame="{html.escape(frame)}"' if frame else ""
    return (
        f'<figure{attrs}><img src="{_png_uri(img)}" width="{width}" height="{height}" '
        f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _depth_colour(depth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Median depth in turbo colours, near = red; empty pixels black."""
    import cv2

    valid = (alpha > 0.5) & (depth > 0)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(depth[valid], [1, 99])
    t = 1 - np.clip((depth - lo) / max(hi - lo, 1e-8), 0, 1)
    coloured = cv2.applyColorMap(_u8(t), cv2.COLORMAP_TURBO)[..., ::-1]
    out[valid] = coloured[valid]
    return out


def _pick(items: list, n: int) -> list:
    """n items spread evenly over the list (all of them when it is short)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


# --- sections --------------------------------------------------------------------------------


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _inputs(c: RunContents, **_) -> str:
    """Neutral views as RGB thumbnails, protected views as their |g|: nothing else exists of them."""
    if c.dataset is None:
        return _note(f"inputs not shown: {c.dataset_error}")
    from .data import load_protected, load_rgb

    rgb, prot = c.dataset.frames_of("rgb"), c.dataset.frames_of("protected")
    parts = [
        f"<p>{len(rgb)} neutral RGB views, {len(prot)} protected views "
        f"(shown as the gradient magnitude |g| the fit received; their RGB is not in the dataset).</p>"
    ]
    figs = [_figure(_u8(load_rgb(f)), f.name, "rgb", f.name) for f in _pick(rgb, MAX_THUMBNAILS)]
    if figs:
        parts.append('<h3>Neutral views (RGB)</h3><div class="grid">' + "".join(figs) + "</div>")
    figs = []
    for f in _pick(prot, MAX_THUMBNAILS):
        mag, _ = load_protected(f)
        figs.append(_figure(_grey(mag, float(np.percentile(mag, 99.5)) or 1.0), f.name, "protected", f.name))
    if figs:
        parts.append('<h3>Protected views (|g|)</h3><div class="grid">' + "".join(figs) + "</div>")
    return "".join(parts)


@dataclass
class _ViewRender:
    name: str
    kind: str
    target: np.ndarray  # uint8 RGB (neutral) or grey |g| (protected)
    render: np.ndarray  # uint8 RGB
    sigma: np.ndarray | None  # uint8 grey σ(render), protected views only, on the target's scale
    normal: np.ndarray
    depth: np.ndarray


def _render_views(c: RunContents, max_views: int) -> list[_ViewRender]:
    """Render the fitted model from a few neutral and protected training cameras."""
    import cv2
    import torch

    from .cameras import Cameras
    from .data import load_protected, load_rgb
    from .privacy.sigma import SigmaParams, gradient_magnitude
    from .train.config import FitConfig
    from .train.trainer import render_scale_for, sigma_input, to_size

    cfg = FitConfig.from_dict(c.saved.get("config", {}))
    sigma = SigmaParams.from_dict(c.dataset.protection) if c.dataset.protection else SigmaParams()
    dev = c.model.device
    backend = "torch" if dev.type != "cuda" else cfg.backend
    frames = _pick(c.dataset.frames_of("rgb"), max_views) + _pick(c.dataset.frames_of("protected"), max_views)
    views = []
    with torch.no_grad():
        for f in frames:
            cam = Cameras.from_numpy(f.K, f.w2c, f.width, f.height, device=dev)
            render_scale = render_scale_for(cfg, dev, f.width, f.height)
            if render_scale != 1.0:
                cam = cam.scaled(render_scale)
            out = c.model.render(cam, backend=backend, background=cfg.background)
            render = out.rgb[0].clamp(0, 1)
            size = (render.shape[1], render.shape[0])
            alpha = out.alpha[0].cpu().numpy()
            normal = _u8((out.normals[0].cpu().numpy() * 0.5 + 0.5) * (alpha > 0.5))
            depth = _depth_colour(out.depth_median[0, ..., 0].cpu().numpy(), out.alpha[0, ..., 0].cpu().numpy())
            sig = None
            if f.kind == "rgb":
                target = cv2.resize(_u8(load_rgb(f)), size, interpolation=cv2.INTER_AREA)
            else:
                mag, _ = load_protected(f)
                scale = float(np.percentile(mag, 99.5)) or 1.0
                target = _grey(mag, scale)
                src = sigma_input(render, out.alpha[0], cfg.background, f.mask_path is not None)
                sig = _grey(gradient_magnitude(to_size(src, (f.height, f.width)), sigma).cpu().numpy(), scale)
            views.append(_ViewRender(f.name, f.kind, target, _u8(render.cpu().numpy()), sig, normal, depth))
    return views


def _views_or_reason(c: RunContents, max_views: int) -> tuple[list[_ViewRender], str | None]:
    if c.model is None:
        return [], f"no fitted model: {c.model_error}"
    if c.dataset is None:
        return [], f"the training cameras are not available: {c.dataset_error}"
    if c.views is None:
        c.views = _render_views(c, max_views)
    return c.views, None


def _pairs(pairs: list[list[str]]) -> str:
    """Figures that belong together (a target and its render) side by side, pairs flowing in lines."""
    return '<div class="pairs">' + "".join('<div class="pair">' + "".join(p) + "</div>" for p in pairs) + "</div>"


def _renders(c: RunContents, max_views: int, **_) -> str:
    views, why = _views_or_reason(c, max_views)
    if why:
        return _note(why)
    pairs = [
        [
            _figure(v.target, f"{v.name} target" + (" |g|" if v.kind == "protected" else ""), v.kind, v.name, 128),
            _figure(v.render, f"{v.name} render", "render", v.name, 128),
        ]
        for v in views
    ]
    return (
        "<p>The model rendered from training cameras. A protected view has no RGB target: "
        "its render stands beside the |g| it was fitted to.</p>" + _pairs(pairs)
    )


def _gradients(c: RunContents, max_views: int, **_) -> str:
    views, why = _views_or_reason(c, max_views)
    if why:
        return _note(why)
    prot = [v for v in views if v.sigma is not None]
    if not prot:
        return _note("this run has no protected views (a full-RGB fit)")
    pairs = [
        [
            _figure(v.target, f"{v.name} |g|", "protected", v.name, 128),
            _figure(v.sigma, f"{v.name} σ(render)", "sigma", v.name, 128),
        ]
        for v in prot
    ]
    return "<p>Stage 2 fits σ(render) to |g| (same grey scale in each pair).</p>" + _pairs(pairs)


def _geometry(c: RunContents, max_views: int, **_) -> str:
    views, why = _views_or_reason(c, max_views)
    if why:
        return _note(why)
    pairs = [
        [
            _figure(v.normal, f"{v.name} normals", "normal", v.name, 128),
            _figure(v.depth, f"{v.name} depth", "depth", v.name, 128),
        ]
        for v in views
    ]
    return "<p>Normals as 0.5·n + 0.5 (world axes); median depth, near = red, far = blue.</p>" + _pairs(pairs)


def _losses(c: RunContents, **_) -> str:
    curves = read_losses(c.run_dir)
    if curves:
        return f"<p>Loss terms per step from {LOSSES_NAME} (log scale).</p>" + _plot_uri_img(
            lambda fig: _plot_curves(fig, curves), len(curves)
        )
    stages = (c.metrics or {}).get("stages") or {}
    if not stages:
        return _note(f"no loss log ({LOSSES_NAME}) and no finished stage in metrics.json yet")
    return (
        f"<p>This run has no per-step log ({LOSSES_NAME}); shown: each term's mean over the "
        "first 20 steps and its smoothed final value, from metrics.json.</p>"
        + _plot_uri_img(lambda fig: _plot_endpoints(fig, stages), len(stages))
    )


def _plot_uri_img(draw: Callable, n_panels: int) -> str:
    try:
        import matplotlib
    except ImportError:
        return _note("loss curves need matplotlib: pip install matplotlib")

    matplotlib.use("Agg")  # no display: the report is written on servers and Ray workers
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.2 * max(n_panels, 1), 3.2), dpi=100)
    try:
        draw(fig)
        fig.tight_layout()
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)
    return _figure(img, "loss curves", "plot", "", img.shape[1])


def _plot_curves(fig, curves: dict) -> None:
    # One colour per term across the stages; the total loss in black.
    names = sorted({n for terms in curves.values() for n in terms} - {"loss"})
    colour = {n: f"C{i % 10}" for i, n in enumerate(names)} | {"loss": "k"}
    for i, (stage, terms) in enumerate(curves.items()):
        ax = fig.add_subplot(1, len(curves), i + 1)
        for name, (steps, values) in sorted(terms.items()):
            ax.plot(steps, np.maximum(values, 1e-12), label=name, color=colour[name], lw=1.6 if name == "loss" else 1.0)
        ax.set_yscale("log")
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)


def _plot_endpoints(fig, stages: dict) -> None:
    for i, (stage, s) in enumerate(stages.items()):
        ax = fig.add_subplot(1, len(stages), i + 1)
        first, last = s.get("initial_losses") or {}, s.get("final_losses") or {}
        names = sorted(set(first) | set(last))
        x = np.arange(len(names))
        # A term switched on later in the stage (normal, dist) has no first-steps value: no bar.
        for dx, values, label in ((-0.2, first, "first 20 steps"), (0.2, last, "final (smoothed)")):
            idx = [j for j, n in enumerate(names) if values.get(n, 0) > 0]
            ax.bar(x[idx] + dx, [values[names[j]] for j in idx], 0.4, label=label)
        ax.set_xticks(x, names, rotation=30, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{stage} ({s.get('iterations', '?')} it)")
        ax.legend(fontsize=7)


def _mesh(c: RunContents, turntable_views: int, **_) -> str:
    path = c.run_dir / "mesh.ply"
    if not path.is_file():
        return _note("no mesh.ply in this run (fitted with --no-mesh?); `privsplat mesh --run` makes one")
    from .eval.geometry import load_mesh
    from .eval.mesh_render import shade_mesh

    try:
        V, F = load_mesh(path)
    except PrivsplatError as e:
        return _note(f"mesh.ply cannot be shown: {e}")
    Ks, w2cs, size = turntable_cameras(V, c.dataset, turntable_views)
    shaded = shade_mesh(V, F, Ks, w2cs, size, size)
    figs = [_figure(_u8(img), f"{round(360 * i / len(shaded))}°", "mesh", "", 160) for i, img in enumerate(shaded)]
    return (
        f"<p>mesh.ply: {len(V):,} vertices, {len(F):,} triangles, grey shading with a headlight, "
        "turning about the cameras' up axis.</p>" + '<div class="grid">' + "".join(figs) + "</div>"
    )


def turntable_cameras(V: np.ndarray, dataset, n: int, size: int = 160, fov_deg: float = 30.0):
    """(Ks [n,3,3], w2cs [n,4,4], size): n views around the mesh at eye height, in the mesh's
    units. Up and the first direction come from the dataset's cameras when known (mesh.ply is
    in the input's units and frame), else +y and +z."""
    from .cameras import camera_centers, intrinsics_from_fov, look_at, world_up

    lo, hi = V.min(0), V.max(0)
    centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2
    up, first = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    if dataset is not None:
        w2c_in = np.stack([f.extra["w2c_input"] for f in dataset.frames])
        up = world_up(w2c_in)
        first = camera_centers(w2c_in)[0] - centre
    first = first - up * (first @ up)
    if np.linalg.norm(first) < 1e-9:
        first = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0.0, 0.0, 1.0])
    first /= np.linalg.norm(first)
    side = np.cross(up, first)
    dist = radius / np.sin(np.radians(fov_deg) / 2) * 1.05  # the bounding sphere fills the view
    Ks, w2cs = [], []
    for a in np.linspace(0, 2 * np.pi, n, endpoint=False):
        eye = centre + dist * (np.cos(a) * first + np.sin(a) * side)
        Ks.append(intrinsics_from_fov(size, size, np.radians(fov_deg)))
        w2cs.append(look_at(eye, centre, up))
    return np.stack(Ks), np.stack(w2cs), size


def _metrics(c: RunContents, **_) -> str:
    parts = []
    if c.evaluation:
        keys = ("chamfer", "accuracy", "completeness", "normal_consistency", "region")
        rows = [(k, c.evaluation[k]) for k in keys if k in c.evaluation]
        rows += [
            (f"F-score @ {f['fraction_of_diagonal'] * 100:g}% diag", f["fscore"])
            for f in c.evaluation.get("fscore", [])
        ]
        parts.append("<h3>Geometry against ground truth</h3>" + _table(rows))
    if c.metrics:
        parts.append("<h3>metrics.json</h3>" + _table(_flatten(c.metrics)))
    return "".join(parts) or _note("no metrics.json yet (the fit has not finished)")


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def _table(rows: list[tuple[str, object]]) -> str:
    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return (
        "<table>"
        + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _config(c: RunContents, **_) -> str:
    text = (c.run_dir / "config.yaml").read_text()
    return f"<pre>{html.escape(text)}</pre>"


_BUILDERS: dict[str, Callable[..., str]] = {
    "inputs": _inputs,
    "renders": _renders,
    "gradients": _gradients,
    "geometry": _geometry,
    "losses": _losses,
    "mesh": _mesh,
    "metrics": _metrics,
    "config": _config,
}
assert list(_BUILDERS) == list(SECTIONS)


# --- the page --------------------------------------------------------------------------------


def _section(key: str, content: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(SECTIONS[key])}</h2>{content}</section>'


def _summary(c: RunContents) -> str:
    m, s = c.metrics or {}, c.saved
    items = [("dataset", s.get("data", "?")), ("preset", s.get("preset", "?")), ("device", s.get("device", "?"))]
    if m:
        items += [
            ("views", f"{m.get('n_rgb_views', '?')} neutral RGB + {m.get('n_protected_views', '?')} protected"),
            ("surfels", m.get("surfels", "?")),
            ("fit + mesh", f"{m.get('total_seconds', '?')} s"),
        ]
    if c.evaluation and "chamfer" in c.evaluation:
        items.append(("Chamfer", f"{c.evaluation['chamfer']:.4g}"))
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items) + "</dl>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
nav a{margin-right:1em} dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600} dd{margin:0;word-break:break-all}
.grid,.pairs{display:flex;flex-wrap:wrap;gap:8px} .pairs{gap:18px} .pair{display:flex;gap:3px}
figure{margin:0;text-align:center;font-size:11px} figcaption{max-width:160px}
img{image-rendering:pixelated;background:#000;display:block}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}
th{font-weight:500;background:#f6f6f6} pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.note{color:#a40}
"""


def _page(title: str, summary: str, sections: list[str]) -> str:
    nav = "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in SECTIONS.items())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>privsplat report: {html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>privsplat run {html.escape(title)}</h1>{summary}<nav>{nav}</nav>" + "".join(sections) + "</body></html>\n"
    )
