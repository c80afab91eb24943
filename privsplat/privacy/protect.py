"""`privsplat protect`: turn the sensitive views of a dataset into gradient magnitudes.

Runs on the user's machine. Output folder (written atomically, never inside the input):
- images/<name>.png      neutral views, re-encoded 8-bit RGB PNG (no metadata);
- protected/<name>.png   sensitive views: σ(image) as a 16-bit grey PNG; per frame,
                         transforms.json holds privsplat_magnitude_scale (value 65535 ↔ scale);
- regions/<name>.png     region-protected views: the protected region at σ's resolution;
- outside/<name>.png     region-protected views: RGBA, RGB outside the (dilated) region,
                         alpha = valid (0 inside the region, which is blacked out);
- masks/<name>.png       object masks for every view. A silhouette is not a face image,
                         but it does reveal the head's outline: drop masks from the input
                         first if that matters to you;
- points.ply             the input's SfM points (if it has any), x, y, z only, in the frame of
                         transforms.json's poses (ply_file_path). Never their colours: SfM
                         averages them over every view, the sensitive ones included;
- transforms.json        nerfstudio layout, OpenGL camera-to-world poses in the input's units,
                         the input's normalisation (so load_dataset gives the same cameras),
                         per-frame privsplat_kind "rgb" | "protected";
- privsplat_manifest.json  σ's parameters, tool version, every frame's kind and why, and the
                         SHA-256 of every other file (the guard in load_dataset checks it).
No RGB of a sensitive view, and nothing derived from it other than σ, is written.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from .sigma import SigmaParams

REGION_DILATE_PX = 4
log = logging.getLogger("privsplat")


def parse_sensitive(spec: str, names: list[str]) -> set[str] | str:
    """'auto' | 'all' | 'none' | 'a,b,c' | '@file' → the keyword or the set of listed names."""
    spec = spec.strip()
    if spec in ("auto", "all", "none"):
        return spec
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise PrivsplatError(f"--sensitive {spec}: file {path} does not exist")
        listed = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    else:
        listed = [s.strip() for s in spec.split(",") if s.strip()]
    if not listed:
        raise PrivsplatError("--sensitive lists no frame; use auto, all, none, a comma-separated list or @FILE")
    unknown = [n for n in listed if n not in names]
    if unknown:
        raise PrivsplatError(
            f"--sensitive names unknown frame(s) {unknown[:10]}; valid names: "
            f"{', '.join(names[:50])}{' ...' if len(names) > 50 else ''}"
        )
    return set(listed)


def choose_sensitive(dataset, spec: str, neutral_angle_deg: float = 120.0) -> dict[str, tuple[bool, str]]:
    """name -> (sensitive, reason) for every frame, per --sensitive."""
    from ..cameras import view_directions
    from ..data import load_rgb
    from .detect import available_detectors, detect_face, pose_rule

    names = [f.name for f in dataset.frames]
    choice = parse_sensitive(spec, names)
    if choice == "all":
        return {n: (True, "--sensitive all") for n in names}
    if choice == "none":
        return {n: (False, "--sensitive none: kept as RGB") for n in names}
    if isinstance(choice, set):
        return {
            n: (n in choice, "listed in --sensitive" if n in choice else "not listed in --sensitive") for n in names
        }
    detectors = available_detectors()
    if not detectors:
        return {n: (True, "no face detector available (install dlib-bin): protecting every view") for n in names}
    detections = [detect_face(load_rgb(f), detectors) for f in dataset.frames]
    dirs = view_directions(dataset.w2cs())
    return dict(zip(names, pose_rule(detections, dirs, neutral_angle_deg)))


def _check_paths(data: Path, out: Path) -> None:
    data_r, out_r = data.resolve(), out.resolve()
    if out_r == data_r or data_r in out_r.parents:
        raise PrivsplatError(f"--out {out} is the input folder or inside it; choose a folder outside {data}")
    if out_r in data_r.parents:
        raise PrivsplatError(f"--out {out} contains the input folder {data}; choose a separate folder")


def _area_downsample(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    if (a.shape[1], a.shape[0]) == size:
        return a.astype(np.float32)
    return cv2.resize(a.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def _dilate(region: np.ndarray, px: int) -> np.ndarray:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(region.astype(np.uint8), k) > 0


def _load_region(region_dir: Path | None, frame) -> np.ndarray | None:
    from ..data.images import read_in_frame, to_unit_float

    if region_dir is None or not (region_dir / f"{frame.name}.png").is_file():
        return None
    # drawn on the stored photo: mapped through the frame's camera (undistorted, max_size) like the RGB
    img = to_unit_float(read_in_frame(region_dir / f"{frame.name}.png", frame, "region mask"))
    if img.ndim == 3:
        img = img[:, :, 3] if img.shape[2] == 4 else img.max(axis=2)
    return img > 0.5


def find_regions(ds, spec: str, verbose: bool) -> tuple[dict[str, np.ndarray], dict[str, tuple[bool, str]]]:
    """Per-view sensitive regions (text, plates): `auto` (tesseract, placed in 3D across views), a
    folder of <frame>.png masks, or a JSON {frame: [[x0, y0, x1, y1], ...]}. Views without a region
    stay RGB. Returns (masks of the sensitive views, decisions as choose_sensitive gives them)."""
    import sys

    from . import text

    path = Path(spec)
    if spec == "auto":
        found = text.detect_text_regions(ds, progress=(lambda m: print(m, file=sys.stderr)) if verbose else None)
    elif spec.endswith(".json"):
        if not path.is_file():
            raise PrivsplatError(f"--sensitive-regions {spec}: no such file")
        found = text.regions_from_json(ds, path)
    elif path.is_dir():
        found = {}
        for f in ds.frames:
            mask = _load_region(path, f)
            if mask is not None and mask.any():
                found[f.name] = text.ViewRegion(mask, f"region mask {path / (f.name + '.png')}", [])
    else:
        raise PrivsplatError(
            f"--sensitive-regions takes auto, a folder of <frame>.png masks or a .json of boxes; got {spec!r}"
        )
    decisions = {f.name: (False, "no sensitive region found or given") for f in ds.frames}
    decisions.update(text.decisions(found))
    return {n: r.mask for n, r in found.items() if r.mask.any()}, decisions


def protect(
    data: str | Path,
    out: str | Path,
    sensitive: str = "auto",
    region_masks: str | Path | None = None,
    *,
    kernel: str = "sobel",
    blur_sigma: float = 0.0,
    resolution: int = 64,
    neutral_angle_deg: float = 120.0,
    overwrite: bool = False,
    dilate_px: int = REGION_DILATE_PX,
    verbose: bool = True,
    max_size: int | None = None,
    sensitive_regions: str | None = None,
) -> dict[str, tuple[bool, str]]:
    """Protect `data` into `out` (see the module docstring); return name -> (sensitive, reason).

    kernel, blur_sigma, resolution: σ's parameters (SigmaParams). dilate_px: how far the
    region of a region-protected view is grown (input pixels) before its RGB is removed.
    """
    from .. import io as pio
    from ..data import load_dataset, load_mask, load_rgb
    from ..data.dataset import Frame
    from ..data.formats import frame_to_nerfstudio
    from ..data.images import backdrop_to_black, write_png
    from ..data.protected import POINTS_NAME, write_manifest, write_points_xyz
    from .sigma import gradient_magnitude, protected_size

    params = SigmaParams(kernel, float(blur_sigma), resolution)
    if not (math.isfinite(neutral_angle_deg) and 90.0 <= neutral_angle_deg <= 180.0):
        raise PrivsplatError("--neutral-angle-deg must be between 90 and 180")
    data, out = Path(data), Path(out)
    _check_paths(data, out)
    region_dir = Path(region_masks) if region_masks is not None else None
    if region_dir is not None and not region_dir.is_dir():
        raise PrivsplatError(f"--region-masks {region_dir} is not a folder of <frame name>.png masks")
    ds = load_dataset(data, warn_unprotected=False, max_size=max_size)
    if ds.protection is not None or ds.frames_of("protected"):
        raise PrivsplatError(f"{data} is already protected; protect the original RGB dataset instead")
    regions: dict[str, np.ndarray] | None = None
    if sensitive_regions is not None:
        if region_dir is not None:
            raise PrivsplatError("--sensitive-regions replaces --region-masks; pass one of them")
        regions, decisions = find_regions(ds, sensitive_regions, verbose)
        if resolution == 0 or resolution > 64:
            # Measured on the car scene: at full resolution tesseract reads no plate in |g|, but a
            # person reads the letters' outlines at a glance. At 64 px characters are ~4 px tall.
            log.warning(
                "protect: --resolution %s keeps text regions legible to a person as outlines in |g|; "
                "use --resolution 64 (the default) or lower for plates and signs",
                resolution,
            )
    else:
        decisions = choose_sensitive(ds, sensitive, neutral_angle_deg)
    if verbose:
        width = max(len(n) for n in decisions)
        for name, (sens, why) in decisions.items():
            print(f"{name:<{width}}  {'SENSITIVE' if sens else 'neutral  '}  {why}")
    entries, manifest_frames = [], []
    with pio.atomic_dir(out, overwrite=overwrite) as tmp:
        for frame in ds.frames:
            sens, why = decisions[frame.name]
            rgb = load_rgb(frame)
            mask = load_mask(frame)
            paths = {}
            if mask is not None:
                paths["mask_path"] = tmp / "masks" / f"{frame.name}.png"
                write_png(paths["mask_path"], np.round(mask * 255).astype(np.uint8))
            if regions is not None:
                region = regions.get(frame.name) if sens else None
            else:
                region = _load_region(region_dir, frame) if sens else None
            if region is not None and not region.any():
                # An empty region (e.g. a detector that found nothing) must not leave the view's RGB:
                # err toward protection and protect the whole view.
                region = None
                why += "; its region mask is empty, so the whole view is protected"
                decisions[frame.name] = (sens, why)
                if verbose:
                    print(f"{frame.name}: its region mask is empty; protecting the whole view")
            if not sens:
                image_path = tmp / "images" / f"{frame.name}.png"
                write_png(image_path, np.round(rgb * 255).astype(np.uint8))
            else:
                # the backdrop is not the subject: σ sees it black, as it sees the fit's render
                src = rgb if mask is None else backdrop_to_black(rgb, mask, straight_alpha=frame.mask_path is None)
                mag = gradient_magnitude(src, params)
                del src
                if region is not None:
                    region = _dilate(region, dilate_px)
                    region_lo = _area_downsample(region, protected_size(frame.width, frame.height, params.resolution))
                    mag = np.where(region_lo > 0, mag, 0.0).astype(np.float32)
                    paths["region_mask_path"] = tmp / "regions" / f"{frame.name}.png"
                    write_png(paths["region_mask_path"], np.round(region_lo * 255).astype(np.uint8))
                    valid = (~region).astype(np.float32)
                    rgba = np.concatenate([rgb * valid[:, :, None], valid[:, :, None]], axis=2)
                    paths["rgb_outside_path"] = tmp / "outside" / f"{frame.name}.png"
                    write_png(paths["rgb_outside_path"], np.round(rgba * 255).astype(np.uint8))
                scale = float(mag.max()) if mag.max() > 0 else 1.0
                image_path = tmp / "protected" / f"{frame.name}.png"
                write_png(image_path, np.round(np.clip(mag / scale, 0, 1) * 65535).astype(np.uint16))
            del rgb  # nothing below may touch the RGB of this view
            kind = "protected" if sens else "rgb"
            new = Frame(
                frame.name,
                kind,
                image_path,
                frame.K,
                frame.w2c,
                frame.width,
                frame.height,
                mask_path=paths.get("mask_path"),
            )
            entry = frame_to_nerfstudio(new, tmp, frame.extra["w2c_input"])
            entry["privsplat_kind"] = kind
            if sens:
                entry["privsplat_magnitude_scale"] = scale
                entry["privsplat_protected_size"] = list(protected_size(frame.width, frame.height, params.resolution))
                for key, attr in (
                    ("privsplat_region_path", "region_mask_path"),
                    ("privsplat_rgb_outside_path", "rgb_outside_path"),
                ):
                    if attr in paths:
                        entry[key] = paths[attr].relative_to(tmp).as_posix()
            entries.append(entry)
            manifest_frames.append({"name": frame.name, "kind": kind, "region": region is not None, "reason": why})
        meta = {
            "camera_model": "PINHOLE",
            "frames": entries,
            "privsplat_normalisation": {"center": ds.center, "scale": ds.scale, "rule": ds.normalisation},
        }
        if ds.points is not None:  # input units, like the poses above (w2c_input)
            write_points_xyz(tmp / POINTS_NAME, ds.to_input_units(ds.points))
            meta["ply_file_path"] = POINTS_NAME
        pio.write_json(tmp / "transforms.json", meta)
        write_manifest(tmp, params, manifest_frames)
    return decisions
