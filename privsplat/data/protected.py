"""The protected-folder format: σ's parameter record, the manifest, and its guard.

`protect` (privacy/) writes a folder in this format and the manifest last: σ's parameters,
the tool version, every frame with its kind (and why), and the SHA-256 of every other file it
wrote. The guard (`verify_manifest`, called by load_dataset) refuses the folder if any listed
file is missing or changed, a frame was added or changed kind, a frame uses a file the manifest
does not cover, or a protected frame's file is not a protected (16-bit grey) image.

It lives in data/ because reading a dataset must verify it; the operator σ itself is in
privacy/sigma.py.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import PrivsplatError
from ..io import sha256_file, write_json

Kernel = Literal["sobel", "scharr", "central"]
KERNELS: tuple[str, ...] = ("sobel", "scharr", "central")

MANIFEST_NAME = "privsplat_manifest.json"
MANIFEST_VERSION = 1
MAX_BLUR_SIGMA = 64.0  # input pixels


@dataclass(frozen=True)
class SigmaParams:
    kernel: Kernel = "sobel"
    blur_sigma: float = 0.0   # Gaussian pre-blur, in input pixels; 0 = none
    resolution: int = 64      # long side after the area downsample; 0 = keep the input size

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise PrivsplatError(f"unknown σ kernel {self.kernel!r}; use one of {', '.join(KERNELS)}")
        if not (isinstance(self.blur_sigma, (int, float)) and math.isfinite(self.blur_sigma)
                and self.blur_sigma >= 0):
            raise PrivsplatError(f"σ blur_sigma must be a finite number >= 0, got {self.blur_sigma!r}")
        if self.blur_sigma > MAX_BLUR_SIGMA:
            raise PrivsplatError(f"σ blur_sigma {self.blur_sigma} is too large (at most {MAX_BLUR_SIGMA} px: a "
                                 "wider blur leaves nothing of the image and its kernel would not fit in memory)")
        if not (isinstance(self.resolution, int) and not isinstance(self.resolution, bool)
                and self.resolution >= 0):
            raise PrivsplatError(f"σ resolution must be an integer >= 0, got {self.resolution!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"operator": "gradient_magnitude", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SigmaParams":
        if not isinstance(d, dict):
            raise PrivsplatError("σ parameters must be a JSON object with kernel, blur_sigma, resolution")
        d = dict(d)
        op = d.pop("operator", "gradient_magnitude")
        if op != "gradient_magnitude":
            raise PrivsplatError(f"unknown privacy operator {op!r}; this privsplat knows 'gradient_magnitude'")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise PrivsplatError(f"unknown σ parameter(s) {sorted(unknown)}; expected {sorted(names)}")
        if "blur_sigma" in d and isinstance(d["blur_sigma"], int) and not isinstance(d["blur_sigma"], bool):
            d["blur_sigma"] = float(d["blur_sigma"])
        return cls(**d)


def protected_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(w, h) after the area downsample: long side = resolution, aspect kept, never upsampled."""
    long_side = max(width, height)
    if resolution <= 0 or resolution >= long_side:
        return int(width), int(height)
    f = resolution / long_side
    return max(1, round(width * f)), max(1, round(height * f))


def write_manifest(root: Path, sigma: SigmaParams, frames: list[dict[str, Any]]) -> Path:
    """Hash every file under root (hidden ones too) and write the manifest beside them."""
    from .. import __version__

    files = {}
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                files[rel] = sha256_file(p)
    manifest = {"privsplat_manifest": MANIFEST_VERSION, "tool": "privsplat", "version": __version__,
                "sigma": sigma.to_dict(), "frames": frames, "files": dict(sorted(files.items()))}
    write_json(root / MANIFEST_NAME, manifest)
    return root / MANIFEST_NAME


def is_protected_png(path: Path) -> bool:
    """True for a 16-bit single-channel PNG (what protect writes for a protected view)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return (len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
            and head[24] == 16 and head[25] == 0)


def _refuse(root: Path, what: str) -> PrivsplatError:
    return PrivsplatError(f"protected dataset {root} failed verification: {what}. Refusing to use it; "
                          "run privsplat protect again on the original data")


def verify_manifest(root: Path, frames) -> dict[str, Any]:
    """Check root against its manifest; return σ's parameters (dict) on success."""
    path = root / MANIFEST_NAME
    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _refuse(root, f"{MANIFEST_NAME} is unreadable ({e})") from None
    if not isinstance(m, dict) or m.get("privsplat_manifest") != MANIFEST_VERSION:
        raise _refuse(root, f"{MANIFEST_NAME} is not a version-{MANIFEST_VERSION} privsplat manifest")
    if not isinstance(m.get("files"), dict) or not isinstance(m.get("frames"), list):
        raise _refuse(root, f"{MANIFEST_NAME} lacks its file or frame list")
    try:
        sigma = SigmaParams.from_dict(m.get("sigma"))
    except (PrivsplatError, TypeError) as e:
        raise _refuse(root, f"σ parameters are invalid ({e})") from None
    root_resolved = root.resolve()
    covered = set()
    for rel, digest in m["files"].items():
        p = (root / rel).resolve()
        if root_resolved not in p.parents:
            raise _refuse(root, f"manifest lists a file outside the folder: {rel}")
        if not p.is_file():
            raise _refuse(root, f"{rel} is listed in the manifest but missing")
        if sha256_file(p) != digest:
            raise _refuse(root, f"{rel} changed after protection (SHA-256 mismatch)")
        covered.add(p)
    if (root / "transforms.json").exists() and (root / "transforms.json").resolve() not in covered:
        raise _refuse(root, "transforms.json is not covered by the manifest")
    kinds = {}
    for fr in m["frames"]:
        if not isinstance(fr, dict) or not isinstance(fr.get("name"), str) or fr.get("kind") not in ("rgb", "protected"):
            raise _refuse(root, "a manifest frame entry lacks a name or a valid kind")
        kinds[fr["name"]] = fr["kind"]
    for f in frames:
        if f.name not in kinds:
            raise _refuse(root, f"frame {f.name!r} was added after protection")
        if f.kind != kinds[f.name]:
            raise _refuse(root, f"frame {f.name!r} changed kind from {kinds[f.name]} to {f.kind} after protection")
        for p in (f.image_path, f.mask_path, f.region_mask_path, f.rgb_outside_path):
            if p is not None and Path(p).resolve() not in covered:
                raise _refuse(root, f"frame {f.name!r} uses {p}, which the manifest does not cover")
        if f.kind == "protected" and not is_protected_png(f.image_path):
            raise _refuse(root, f"frame {f.name!r} is sensitive but {f.image_path.name} is not a protected "
                                "(16-bit grey gradient-magnitude) image")
    missing = set(kinds) - {f.name for f in frames}
    if missing:
        raise _refuse(root, f"frame(s) {sorted(missing)[:5]} listed in the manifest are gone")
    return sigma.to_dict()
