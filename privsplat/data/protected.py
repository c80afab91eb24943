"""The protected-folder format: σ's parameter record, the manifest, and its guard.

`protect` (privacy/) writes a folder in this format and the manifest last: σ's parameters,
the tool version, every frame with its kind (and why), the SHA-256 of every other file it
wrote, and a digest over all of that. The guard (`verify_manifest`, called by load_dataset)
refuses the folder unless
- every file in it (hidden ones included) is listed and unchanged, and every listed file is
  transforms.json, an image some frame uses, or points.ply when transforms.json's ply_file_path
  names it; nothing in it is a symbolic link;
- the digest matches σ's parameters, the frame list and the file list (a checksum against
  mistakes and careless edits, NOT a signature: anyone can recompute it);
- every frame kept its kind, and no frame was added or dropped;
- every PNG holds only critical chunks (IHDR, PLTE, IDAT, IEND) and nothing after IEND, so
  no text/metadata chunk or trailing bytes can carry a second image;
- points.ply (the SfM points) is binary PLY with one vertex element of x, y, z and nothing
  else: no colour (SfM colours are averaged over every view, the sensitive ones included), no
  other property or element, no header comment, no bytes after the points;
- every protected image is plausible as σ's output: 16-bit grey, at exactly the size σ's
  declared resolution gives, full range (its maximum is 65535 unless it is blank), a
  magnitude scale σ can reach, and edge-like content (`edge_likeness`, measured thresholds);
- every region-protected view's outside/ image is RGBA with binary alpha, black wherever
  alpha is 0, and its hole is exactly the region of regions/ (and |g| is 0 outside it).

What this proves: the folder is what a correct `protect` could have written and was not edited
by mistake afterwards. What it does not prove: that it *was* written by protect, or from which
photos. A client who wants to cheat can forge all of it (see SECURITY.md).

It lives in data/ because reading a dataset must verify it; the operator σ itself is in
privacy/sigma.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import PrivsplatError
from ..io import sha256_file, write_json

Kernel = Literal["sobel", "scharr", "central"]
KERNELS: tuple[str, ...] = ("sobel", "scharr", "central")

MANIFEST_NAME = "privsplat_manifest.json"
POINTS_NAME = "points.ply"  # SfM points, x, y, z only, in the frame of transforms.json's poses
MANIFEST_VERSION = 2  # 2: adds "digest" (σ parameters + frames + files)
MAX_BLUR_SIGMA = 64.0  # input pixels


@dataclass(frozen=True)
class SigmaParams:
    kernel: Kernel = "sobel"
    blur_sigma: float = 0.0  # Gaussian pre-blur, in input pixels; 0 = none
    resolution: int = 64  # long side after the area downsample; 0 = keep the input size

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise PrivsplatError(f"unknown σ kernel {self.kernel!r}; use one of {', '.join(KERNELS)}")
        if not (isinstance(self.blur_sigma, (int, float)) and math.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise PrivsplatError(f"σ blur_sigma must be a finite number >= 0, got {self.blur_sigma!r}")
        if self.blur_sigma > MAX_BLUR_SIGMA:
            raise PrivsplatError(
                f"σ blur_sigma {self.blur_sigma} is too large (at most {MAX_BLUR_SIGMA} px: a "
                "wider blur leaves nothing of the image and its kernel would not fit in memory)"
            )
        if not (isinstance(self.resolution, int) and not isinstance(self.resolution, bool) and self.resolution >= 0):
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


# --------------------------------------------------------------------------- writing


def manifest_digest(sigma: dict[str, Any], frames: list[Any], files: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of σ's parameters, the frame list and the file list.

    A checksum against mistakes (a hand-edited kernel, a frame list pasted from another folder),
    not a signature: it has no key, so whoever edits the manifest can recompute it.
    """
    canonical = json.dumps(
        {"sigma": sigma, "frames": frames, "files": files},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


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
    files = dict(sorted(files.items()))
    manifest = {
        "privsplat_manifest": MANIFEST_VERSION,
        "tool": "privsplat",
        "version": __version__,
        "sigma": sigma.to_dict(),
        "frames": frames,
        "files": files,
        "digest": manifest_digest(sigma.to_dict(), frames, files),
    }
    write_json(root / MANIFEST_NAME, manifest)
    return root / MANIFEST_NAME


# --------------------------------------------------------------------------- points.ply

POINT_TYPES = {"float": 4, "double": 8}


def write_points_xyz(path: Path, xyz) -> None:
    """points.ply as protect writes it: binary little-endian, one vertex element, double x, y, z."""
    import numpy as np

    from ..io import atomic_path

    xyz = np.ascontiguousarray(xyz, dtype="<f8").reshape(-1, 3)
    header = "ply\nformat binary_little_endian 1.0\nelement vertex {}\n{}end_header\n".format(
        len(xyz), "".join(f"property double {k}\n" for k in "xyz")
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + xyz.tobytes())


def check_points_clean(path: Path) -> str | None:
    """None if path is a PLY of x, y, z only, as write_points_xyz writes it; else why not."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"is unreadable ({e.strerror or e})"
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        return "is not a PLY file"
    lines = data[:end].decode("latin-1").splitlines()[1:]
    elements, props, types, other = [], [], set(), []
    for line in lines:
        tok = line.split()
        if tok[:1] == ["element"] and len(tok) == 3 and tok[2].isdigit():
            elements.append((tok[1], int(tok[2])))
        elif tok[:1] == ["property"] and len(tok) == 3 and elements:
            props.append(tok[2])
            types.add(tok[1])
        elif tok != ["format", "binary_little_endian", "1.0"]:
            other.append(line.strip()[:40])
    if len(elements) != 1 or elements[0][0] != "vertex":
        return f"holds the element(s) {[e for e, _ in elements]}; protect writes one 'vertex' element"
    if props != ["x", "y", "z"]:
        return (
            f"has the vertex properties {props}, not x, y, z alone (protect writes no colour: SfM "
            "colours are averaged over every view, the sensitive ones included)"
        )
    if other:
        return f"has the header line(s) {other} (protect writes no comment, and binary little-endian only)"
    if len(types) != 1 or next(iter(types)) not in POINT_TYPES:
        return f"stores x, y, z as {sorted(types)}; protect writes one float type (float or double)"
    n = elements[0][1]
    body = len(data) - (end + len(b"end_header\n"))
    if body != n * 3 * POINT_TYPES[types.pop()]:
        return f"holds {body} bytes after its header, not what {n} points need (truncated, or bytes appended)"
    return None


# --------------------------------------------------------------------------- PNG structure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What OpenCV's PNG writer emits (checked: IHDR, IDAT..., IEND, nothing else); PLTE is the one
# other critical chunk. Ancillary chunks (tEXt, zTXt, iTXt, eXIf, iCCP, private ones...) can
# carry arbitrary bytes, e.g. a sensitive view's RGB beside its |g|: refused.
CRITICAL_PNG_CHUNKS = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def png_chunks(path: Path) -> list[bytes] | str:
    """The chunk types of a PNG file in order, or a string saying why it is not a clean PNG
    (bad signature, truncated or corrupt chunk, bytes after IEND)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if data[:8] != PNG_SIGNATURE:
        return "not a PNG file"
    types, i = [], 8
    while i < len(data):
        if i + 12 > len(data):
            return "truncated chunk"
        (n,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if i + 12 + n > len(data):
            return "truncated chunk"
        (crc,) = struct.unpack(">I", data[i + 8 + n : i + 12 + n])
        if zlib.crc32(data[i + 4 : i + 8 + n]) != crc:
            return f"chunk {kind!r} has a bad CRC"
        types.append(kind)
        i += 12 + n
        if kind == b"IEND":
            break
    if not types or types[0] != b"IHDR" or types[-1] != b"IEND":
        return "does not start with IHDR and end with IEND"
    if i != len(data):
        return f"{len(data) - i} bytes follow the IEND chunk"
    return types


def check_png_clean(path: Path) -> str | None:
    """None if the PNG holds only critical chunks and nothing after IEND; else why not."""
    chunks = png_chunks(path)
    if isinstance(chunks, str):
        return chunks
    extra = sorted({c.decode("latin-1") for c in chunks if c not in CRITICAL_PNG_CHUNKS})
    if extra:
        return f"holds ancillary PNG chunk(s) {extra} (protect writes none; they can carry any data)"
    return None


def is_protected_png(path: Path) -> bool:
    """True for a 16-bit single-channel PNG (what protect writes for a protected view)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return False
    return len(head) == 26 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] == 0


# --------------------------------------------------------------------------- content plausibility

# The largest |g| σ can produce for colour in [0, 1]: per channel the derivative kernel
# (-1/2, 0, 1/2) after a normalised smoothing (and a blur/area downsample that keep values in
# [0, 1]) gives at most 1/2, the 2-norm over 3 channels sqrt(3)/2, and x plus y sqrt(3).
MAX_MAGNITUDE = math.sqrt(3.0)

# edge_likeness below this, for an operator whose blur is at most EDGE_TEST_MAX_BLUR output
# pixels, is refused as "looks like a photo, not a gradient magnitude". Measured for issue 14
# (numbers and method in SECURITY.md): real |g| images never went below 0.27 -- 768 views of
# synth heads (ICT identities 0-3, Nefertiti; 32-256 px) and the car scene at sobel/scharr/
# central, resolution 0/32/64 (min 0.70), 45 natural photos (min 0.67), 200 LFW faces (min
# 0.27: a face lit by a smooth ramp has a nearly flat |g|) -- and 110 real protected folders
# (1,280 views, region protection included) all passed the guard. Grey photos saved in their
# place range from 0.02 to 1.5, so with a 25 % margin below 0.27 the test refuses only the
# flattest forgeries (14 % of forged head views, 75 % of forged car views): it catches a tool
# that wrote photos, it proves nothing.
EDGE_LIKENESS_MIN = 0.2
EDGE_TEST_MAX_BLUR = 1.0  # output pixels; a wider blur makes a true |g| smooth and the test blind


def edge_likeness(img) -> float:
    """(mean |horizontal difference| + mean |vertical difference|) / mean value of an image.

    A gradient magnitude is concentrated on thin ridges along the edges of the photo it came
    from, so it varies from pixel to pixel about as much as its mean (about 1 on real |g|);
    a photo is mostly smooth areas of high value, so much less (0.1-0.4 on grey faces).
    Scale-free; nan for a blank image.
    """
    import numpy as np

    m = np.asarray(img, dtype=np.float64)
    mean = m.mean()
    if not mean > 0:
        return float("nan")
    return float((np.abs(np.diff(m, axis=1)).mean() + np.abs(np.diff(m, axis=0)).mean()) / mean)


def effective_blur(sigma: SigmaParams, width: int, height: int) -> float:
    """σ's pre-blur in output pixels (the blur is given in input pixels, before the downsample)."""
    w, h = protected_size(width, height, sigma.resolution)
    return sigma.blur_sigma * max(w, h) / max(width, height)


# --------------------------------------------------------------------------- the guard


def _refuse(root: Path, what: str) -> PrivsplatError:
    return PrivsplatError(
        f"protected dataset {root} failed verification: {what}. Refusing to use it; "
        "run privsplat protect again on the original data"
    )


def verify_manifest(root: Path, frames, points_path: Path | None = None) -> dict[str, Any]:
    """Check root against its manifest (see the module docstring); return σ's parameters (dict).

    points_path: the file transforms.json's ply_file_path names (None: it names none)."""
    m = _read_manifest(root)
    try:
        sigma = SigmaParams.from_dict(m.get("sigma"))
    except (PrivsplatError, TypeError) as e:
        raise _refuse(root, f"σ parameters are invalid ({e})") from None
    covered = _check_file_hashes(root, m)
    _check_nothing_unlisted(root, m)
    _check_frames(root, m, frames, covered)
    if points_path is not None and Path(points_path).resolve() != (root / POINTS_NAME).resolve():
        raise _refuse(root, f"transforms.json's ply_file_path names {points_path}; protect writes {POINTS_NAME}")
    _check_every_file_used(root, m, frames, points_path)
    for rel in m["files"]:
        if rel == POINTS_NAME:
            why = check_points_clean(root / rel)
        elif rel != "transforms.json":
            why = check_png_clean(root / rel)
        else:
            why = None
        if why is not None:
            raise _refuse(root, f"{rel} {why}")
    entries = _transforms_entries(root)
    regions = {fr["name"]: fr.get("region") for fr in m["frames"]}
    for f in frames:
        if f.kind == "protected":
            magnitude = _check_protected_image(root, sigma, f, entries)
            _check_region(root, sigma, f, magnitude, regions.get(f.name))
    _check_digest(root, m)
    return sigma.to_dict()


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    try:
        m = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _refuse(root, f"{MANIFEST_NAME} is unreadable ({e})") from None
    if isinstance(m, dict) and m.get("privsplat_manifest") == 1:
        raise _refuse(root, f"{MANIFEST_NAME} was written by an older privsplat (manifest version 1, without a digest)")
    if not isinstance(m, dict) or m.get("privsplat_manifest") != MANIFEST_VERSION:
        raise _refuse(root, f"{MANIFEST_NAME} is not a version-{MANIFEST_VERSION} privsplat manifest")
    if not isinstance(m.get("files"), dict) or not isinstance(m.get("frames"), list):
        raise _refuse(root, f"{MANIFEST_NAME} lacks its file or frame list")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in m["files"].items()):
        raise _refuse(root, f"{MANIFEST_NAME}'s file list must map relative paths to SHA-256 strings")
    return m


def _check_file_hashes(root: Path, m: dict[str, Any]) -> set[Path]:
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
    return covered


def _check_nothing_unlisted(root: Path, m: dict[str, Any]) -> None:
    """Every file in the folder, hidden ones included, is listed; nothing is a symbolic link."""
    listed = set(m["files"]) | {MANIFEST_NAME}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                raise _refuse(
                    root,
                    f"{rel} is a symbolic link (protect writes none; a link can point "
                    "anywhere on the machine that reads the folder)",
                )
            if n in filenames and rel not in listed:
                raise _refuse(
                    root,
                    f"{rel} is in the folder but the manifest does not cover it (an extra "
                    "file: remove it, or protect again)",
                )


def _check_frames(root: Path, m: dict[str, Any], frames, covered: set[Path]) -> None:
    kinds = {}
    for fr in m["frames"]:
        if (
            not isinstance(fr, dict)
            or not isinstance(fr.get("name"), str)
            or fr.get("kind") not in ("rgb", "protected")
        ):
            raise _refuse(root, "a manifest frame entry lacks a name or a valid kind")
        kinds[fr["name"]] = fr["kind"]
    for f in frames:
        if f.name not in kinds:
            raise _refuse(root, f"frame {f.name!r} was added after protection")
        if f.kind != kinds[f.name]:
            raise _refuse(root, f"frame {f.name!r} changed kind from {kinds[f.name]} to {f.kind} after protection")
        for p in _frame_files(f):
            if Path(p).resolve() not in covered:
                raise _refuse(root, f"frame {f.name!r} uses {p}, which the manifest does not cover")
        if f.kind == "protected" and not is_protected_png(f.image_path):
            raise _refuse(
                root,
                f"frame {f.name!r} is sensitive but {f.image_path.name} is not a protected "
                "(16-bit grey gradient-magnitude) image",
            )
    missing = set(kinds) - {f.name for f in frames}
    if missing:
        raise _refuse(root, f"frame(s) {sorted(missing)[:5]} listed in the manifest are gone")


def _frame_files(f) -> list[Path]:
    return [Path(p) for p in (f.image_path, f.mask_path, f.region_mask_path, f.rgb_outside_path) if p is not None]


def _check_every_file_used(root: Path, m: dict[str, Any], frames, points_path: Path | None) -> None:
    """A listed file no frame uses has no business in the folder (it would travel with the data)."""
    used = {p.resolve() for f in frames for p in _frame_files(f)} | {(root / "transforms.json").resolve()}
    if points_path is not None:
        used.add(Path(points_path).resolve())
    for rel in m["files"]:
        if (root / rel).resolve() not in used:
            raise _refuse(root, f"{rel} is listed in the manifest but no frame uses it (nor ply_file_path)")


def _transforms_entries(root: Path) -> dict[Path, dict[str, Any]]:
    """transforms.json's frame entries by the resolved path of their image (hash already checked)."""
    try:
        meta = json.loads((root / "transforms.json").read_text())
        return {
            (root / fr["file_path"]).resolve(): fr
            for fr in meta["frames"]
            if isinstance(fr, dict) and isinstance(fr.get("file_path"), str)
        }
    except (OSError, ValueError, KeyError, TypeError):
        raise _refuse(root, "transforms.json is unreadable") from None


def _check_protected_image(root: Path, sigma: SigmaParams, f, entries) -> Any:
    """The |g| image of a protected frame is plausible as σ's output; returns it (uint16 [h, w])."""
    import numpy as np

    from .images import read_image

    where = f"frame {f.name!r} ({f.image_path.name})"
    entry = entries.get(Path(f.image_path).resolve(), {})
    expected = protected_size(f.width, f.height, sigma.resolution)
    declared = entry.get("privsplat_protected_size")
    if not (isinstance(declared, list) and tuple(declared) == expected):
        raise _refuse(
            root,
            f"{where} declares privsplat_protected_size {declared!r}, but σ at resolution "
            f"{sigma.resolution} gives {list(expected)} for a {f.width}x{f.height} view",
        )
    img = read_image(f.image_path)
    if img.dtype != np.uint16 or img.ndim != 2 or (img.shape[1], img.shape[0]) != expected:
        raise _refuse(
            root,
            f"{where} is {img.shape[1]}x{img.shape[0]} ({img.dtype}), not the 16-bit grey "
            f"{expected[0]}x{expected[1]} image σ writes",
        )
    top = int(img.max())
    if top not in (0, 65535):
        raise _refuse(
            root, f"{where} peaks at {top}, not 65535: protect scales every |g| image to the full 16-bit range"
        )
    scale = float(f.extra.get("magnitude_scale", 0.0))
    if not 0 < scale <= MAX_MAGNITUDE * (1 + 1e-6):
        raise _refuse(
            root,
            f"{where} has privsplat_magnitude_scale {scale!r}; σ of colours in 0..1 never exceeds {MAX_MAGNITUDE:.4f}",
        )
    if top and effective_blur(sigma, f.width, f.height) <= EDGE_TEST_MAX_BLUR:
        e = edge_likeness(img)
        if e < EDGE_LIKENESS_MIN:
            raise _refuse(
                root,
                f"{where} does not look like a gradient magnitude (edge-likeness {e:.3f} < "
                f"{EDGE_LIKENESS_MIN}: smooth areas of high value, as in a photo)",
            )
    return img


def _check_region(root: Path, sigma: SigmaParams, f, magnitude, manifest_region) -> None:
    """A region-protected view: outside/ hides exactly the region of regions/, and |g| lies inside it."""
    import numpy as np

    has_region = f.region_mask_path is not None or f.rgb_outside_path is not None
    if manifest_region is not None and bool(manifest_region) != has_region:
        raise _refuse(
            root,
            f"frame {f.name!r} is {'' if manifest_region else 'not '}region-protected in the "
            f"manifest but {'has no' if manifest_region else 'has a'} region/outside image",
        )
    if not has_region:
        return
    if f.region_mask_path is None or f.rgb_outside_path is None:
        raise _refuse(root, f"frame {f.name!r} needs both a region mask and an outside image")
    from .images import read_image

    where = f"frame {f.name!r} ({Path(f.rgb_outside_path).name})"
    out = read_image(f.rgb_outside_path)
    if out.dtype != np.uint8 or out.ndim != 3 or out.shape != (f.height, f.width, 4):
        raise _refuse(root, f"{where}: the outside image must be 8-bit RGBA {f.width}x{f.height}")
    alpha = out[:, :, 3]
    if not np.isin(alpha, (0, 255)).all():
        raise _refuse(root, f"{where}: alpha must be 0 (region) or 255 (outside), got other values")
    hole = alpha == 0
    if not hole.any():
        raise _refuse(root, f"{where}: alpha is 255 everywhere, so the whole view's RGB is in the folder")
    if out[hole][:, :3].any():
        raise _refuse(root, f"{where}: pixels inside the protected region (alpha 0) hold colour; they must be black")
    expected = protected_size(f.width, f.height, sigma.resolution)
    region = read_image(f.region_mask_path)
    hole_lo = hole.astype(np.float32)
    if (f.width, f.height) != expected:
        import cv2

        hole_lo = cv2.resize(hole_lo, expected, interpolation=cv2.INTER_AREA)  # as protect does
    if (
        region.dtype != np.uint8
        or region.shape != hole_lo.shape
        or np.abs(region.astype(np.int32) - np.round(hole_lo * 255).astype(np.int32)).max() > 1
    ):
        raise _refuse(
            root,
            f"frame {f.name!r}: {Path(f.region_mask_path).name} is not the region that "
            f"{Path(f.rgb_outside_path).name} hides",
        )
    if magnitude[hole_lo == 0].any():
        raise _refuse(root, f"frame {f.name!r}: its |g| image is not zero outside the protected region")


def _check_digest(root: Path, m: dict[str, Any]) -> None:
    try:
        digest = manifest_digest(m.get("sigma"), m["frames"], m["files"])
    except (TypeError, ValueError):
        digest = None
    if not isinstance(m.get("digest"), str) or m["digest"] != digest:
        raise _refuse(
            root,
            f"{MANIFEST_NAME}'s digest does not match its σ parameters, frames and files (it "
            "was edited after protection)",
        )
