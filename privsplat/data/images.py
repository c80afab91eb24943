"""Reading and writing the images of a dataset.

The privacy rule lives here: `load_rgb` refuses a protected frame, so no code path
that goes through this module can reach RGB that the user chose to protect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from ..io import atomic_path
from .dataset import Frame


def read_image(path: Path) -> np.ndarray:
    """The decoded image as stored: uint8/uint16, [H,W] or [H,W,C] with C in 3,4 as RGB(A)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise PrivsplatError(f"image {path} does not exist; check the dataset's file paths")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise PrivsplatError(f"cannot decode image {path} (corrupt or unsupported format); re-export it as PNG or JPEG")
    if img.dtype not in (np.uint8, np.uint16):
        raise PrivsplatError(f"image {path} has sample type {img.dtype}; use 8- or 16-bit PNG/JPEG")
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 3:
            img = img[:, :, ::-1]
        elif img.shape[2] == 4:
            img = img[:, :, [2, 1, 0, 3]]
        else:
            raise PrivsplatError(f"image {path} has {img.shape[2]} channels; expected 1, 3 or 4")
    return np.ascontiguousarray(img)


def write_png(path: Path, img: np.ndarray) -> None:
    """Write uint8/uint16 [H,W] or RGB(A) [H,W,3|4] as PNG, atomically, with no metadata."""
    import cv2

    img = np.asarray(img)
    if img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3] if img.shape[2] == 4 else [2, 1, 0]]
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(img)):
            raise PrivsplatError(f"could not write {path}")


def to_unit_float(img: np.ndarray) -> np.ndarray:
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / scale


def read_in_frame(path: Path, frame: Frame, what: str, cubic: bool = False) -> np.ndarray:
    """A stored image of `frame` (its RGB, mask, or any per-view image drawn on the original, such as a
    region mask) mapped to the frame's pinhole camera: undistorted, then area-downsampled; dtype kept.
    cubic: undistort bicubically (silhouette masks; see undistort.to_pinhole)."""
    return in_frame(read_image(path), path, frame, what, cubic)


def in_frame(img: np.ndarray, path: Path, frame: Frame, what: str, cubic: bool = False) -> np.ndarray:
    """read_in_frame of an image already read from `path`."""
    from .undistort import to_pinhole

    w, h = (frame.source.width, frame.source.height) if frame.source is not None else (frame.width, frame.height)
    if img.shape[:2] != (h, w):
        raise PrivsplatError(
            f"{what} {path} is {img.shape[1]}x{img.shape[0]} but frame {frame.name!r} "
            f"has a {w}x{h} camera; fix the image or the camera intrinsics (w, h)"
        )
    return to_pinhole(img, frame, cubic=cubic)


def load_rgb(frame: Frame) -> np.ndarray:
    """float32 [H,W,3] in 0..1 (8-bit values / 255, no gamma); alpha, if any, is the mask."""
    if frame.kind != "rgb":
        raise PrivsplatError(
            f"frame {frame.name!r} is protected: its RGB is not available by design; "
            "use load_protected (and load_rgb_outside for region-protected frames)"
        )
    img = read_in_frame(frame.image_path, frame, "image")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return to_unit_float(img[:, :, :3])


def load_mask(frame: Frame) -> np.ndarray | None:
    """float32 [H,W] in 0..1 (foreground 1), from mask_path or an RGB frame's alpha; else None."""
    if frame.mask_path is not None:
        m = to_unit_float(read_in_frame(frame.mask_path, frame, "mask", cubic=True))
        if m.ndim == 3:  # RGBA mask: alpha if present, else the brightest channel
            m = m[:, :, 3] if m.shape[2] == 4 else m.max(axis=2)
        return m
    if frame.kind == "rgb" and frame.image_path.suffix.lower() == ".png":
        img = read_image(frame.image_path)
        if img.ndim == 3 and img.shape[2] == 4:  # the alpha alone, bicubically (load_rgb: bilinear)
            return to_unit_float(
                in_frame(np.ascontiguousarray(img[:, :, 3]), frame.image_path, frame, "image", cubic=True)
            )
    return None


MIXED_EDGE = 0.02  # a mask value in (this, 1 - this) marks a pixel the silhouette cuts through


def mixed_pixels(mask: np.ndarray | None) -> np.ndarray | None:
    """Pixels a separate mask file says the silhouette cuts through, or None when there are none.

    A photo's pixel there mixes the subject with whatever was behind it (a synth render's black, a
    real backdrop); the mask gives the coverage a, not that backdrop, so the photo's colour cannot
    be composited onto the fit's background: photo x a + bg x (1 - a) is a^2 x colour over black,
    too dark, and the photometric loss pulled every silhouette ~0.4 px inside the mask (a sphere
    fit's silhouettes, 64 px). Those pixels leave the trainer's photometric loss (the mask loss,
    which is exact there, places the silhouette), and `protect` unmixes them (backdrop_to_black). (An RGBA image's own alpha is straight alpha: its
    composite is exact and keeps every pixel.)"""
    if mask is None:
        return None
    mixed = (mask > MIXED_EDGE) & (mask < 1.0 - MIXED_EDGE)
    return mixed if mixed.any() else None


def backdrop_to_black(rgb: np.ndarray, mask: np.ndarray, straight_alpha: bool) -> np.ndarray:
    """The photo as `protect` hands it to σ when the view has a mask: the backdrop black.

    σ of a masked photo would otherwise carry the backdrop's edges (a wall, a shelf) and an
    outline whose strength depends on how the subject contrasts with it, where the fit's render
    (taken over black for σ, trainer.sigma_input) has neither: an ICT head at 64 px composited
    over a plain wall with two edges fitted at 0.230 cm against 0.132 over black (privacy fit). With straight
    alpha (an RGBA image, the mask its own alpha) the composite is exact, rgb x a. With a
    separate mask file the photo already mixes subject and backdrop along the outline,
    photo = a x subject + (1 - a) x backdrop: the backdrop there is estimated from the nearby
    pixels the mask calls backdrop (a <= MIXED_EDGE; a normalised Gaussian blur) and taken out, so
    those pixels hold a x subject, as a render over black does. (Left in, the wall's residue on the
    outline alone kept that fit at 0.229 cm; unmixed: 0.132, as over black.)"""
    import cv2

    a = mask.astype(np.float32)
    m = a[..., None]
    if straight_alpha:
        return (rgb * m).astype(np.float32)
    rgb = rgb.astype(np.float32)
    back = (a <= MIXED_EDGE).astype(np.float32)
    mixed = mixed_pixels(a)
    out = np.where(m > MIXED_EDGE, rgb, 0.0).astype(np.float32)
    if mixed is not None and back.any():
        blur = dict(ksize=(0, 0), sigmaX=1.5, borderType=cv2.BORDER_REPLICATE)
        weight = cv2.GaussianBlur(back, **blur)[..., None]
        estimate = cv2.GaussianBlur(rgb * back[..., None], **blur) / np.maximum(weight, 1e-6)
        unmixed = np.clip(rgb - (1.0 - m) * np.where(weight > 1e-3, estimate, 0.0), 0.0, 1.0)
        out[mixed] = unmixed[mixed]
    return out


def load_protected(frame: Frame) -> tuple[np.ndarray, np.ndarray | None]:
    """(magnitude float32 [h,w] in σ's units, region float32 [h,w] in 0..1 or None = whole view)."""
    if frame.kind != "protected":
        raise PrivsplatError(f"frame {frame.name!r} is not protected; use load_rgb")
    img = read_image(frame.image_path)
    if img.dtype != np.uint16 or img.ndim != 2:
        raise PrivsplatError(
            f"protected image {frame.image_path} is not a 16-bit single-channel PNG; re-run privsplat protect"
        )
    scale = float(frame.extra.get("magnitude_scale", 1.0))
    magnitude = img.astype(np.float32) * np.float32(scale / 65535.0)
    region = None
    if frame.region_mask_path is not None:
        r = read_image(frame.region_mask_path)
        if r.ndim != 2 or r.shape != img.shape:
            raise PrivsplatError(
                f"region mask {frame.region_mask_path} must be single-channel "
                f"{img.shape[1]}x{img.shape[0]}; re-run privsplat protect"
            )
        region = to_unit_float(r)
    return magnitude, region


def load_rgb_outside(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """For a region-protected frame: (rgb float32 [H,W,3], valid float32 [H,W]); valid=0 in the region."""
    if frame.rgb_outside_path is None:
        raise PrivsplatError(
            f"frame {frame.name!r} has no RGB outside a protected region (it is fully protected or not protected)"
        )
    img = read_in_frame(frame.rgb_outside_path, frame, "outside-region image")
    if img.ndim != 3 or img.shape[2] != 4:
        raise PrivsplatError(f"{frame.rgb_outside_path} must be RGBA (alpha = valid); re-run privsplat protect")
    f = to_unit_float(img)
    return f[:, :, :3], f[:, :, 3]
