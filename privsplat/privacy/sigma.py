"""The privacy operator σ: per-pixel gradient magnitude of a colour image (paper eq. 6).

    |g| = || ∂c/∂x ||_2 + || ∂c/∂y ||_2     (2-norm over the colour channels)

One implementation, in torch, serves both callers: `protect` on the user's machine
(numpy in, numpy out, no gradients) and the stage-2 loss on renders (torch in,
differentiable). Client and trainer can therefore never disagree about σ.

Order of operations: optional Gaussian pre-blur (sigma in *input* pixels) → area
downsample so the long side is `resolution` (never upsampled) → derivative kernels
with replicate padding. Kernels are normalised so a unit ramp c(x) = x has slope 1
per (output) pixel.
"""

from __future__ import annotations

import math

import numpy as np

# σ's parameter record belongs to the protected-folder format (the manifest stores it).
from ..data.protected import KERNELS, Kernel, SigmaParams, protected_size  # noqa: F401 (re-exported)
from ..errors import PrivsplatError

# Derivative [-1, 0, 1]/2 along the axis; smoothing across it, normalised to sum 1.
_SMOOTHING = {"sobel": (1.0, 2.0, 1.0), "scharr": (3.0, 10.0, 3.0), "central": (0.0, 1.0, 0.0)}

# Inside the sqrt so that d|g|/dc stays finite where the image is flat (0 · finite, not
# 0 · inf); subtracted back out so a flat image maps to exactly 0. Small enough that the
# bias elsewhere (~sqrt(eps) = 1e-10) is far below float32 resolution of typical slopes.
_EPS = 1e-20


def gradient_magnitude(image, params: SigmaParams = SigmaParams()):
    """σ(image). numpy [H,W,3] → numpy float32 [h,w]; torch [...,H,W,3] → torch [...,h,w].

    The image is linear colour in 0..1 (uint8 numpy input is divided by 255). The torch
    path keeps the autograd graph, dtype and device of its input.
    """
    import torch

    if isinstance(image, torch.Tensor):
        return _gradient_magnitude_torch(image, params)
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    with torch.no_grad():
        out = _gradient_magnitude_torch(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), params)
    return out.numpy().astype(np.float32)


def _gradient_magnitude_torch(image, params: SigmaParams):
    import torch
    import torch.nn.functional as F

    if image.dim() < 3 or image.shape[-1] < 1:
        raise PrivsplatError(f"σ expects an image [..., H, W, channels], got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        image = image.float()
    *batch, H, W, C = image.shape
    x = image.reshape(-1, H, W, C).permute(0, 3, 1, 2)  # [B, C, H, W]
    if params.blur_sigma > 0:
        x = gaussian_blur(x, params.blur_sigma)
    w, h = protected_size(W, H, params.resolution)
    if (w, h) != (W, H):
        x = F.interpolate(x, size=(h, w), mode="area")
    smooth = torch.tensor(_SMOOTHING[params.kernel], dtype=x.dtype, device=x.device)
    smooth = smooth / smooth.sum()
    deriv = torch.tensor((-0.5, 0.0, 0.5), dtype=x.dtype, device=x.device)
    kx = smooth[:, None] * deriv[None, :]  # rows smooth along y, columns differentiate along x
    ky = kx.T.contiguous()
    weight = torch.stack([kx, ky])[:, None]  # [2, 1, 3, 3]
    B = x.shape[0]
    xp = F.pad(x.reshape(B * C, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(xp, weight).reshape(B, C, 2, h, w)
    sq = (g * g).sum(dim=1)  # [B, 2, h, w]: squared 2-norm over colour, per direction
    eps = torch.tensor(max(_EPS, torch.finfo(sq.dtype).tiny), dtype=sq.dtype, device=sq.device)
    mag = (torch.sqrt(sq + eps) - torch.sqrt(eps)).sum(dim=1)
    return mag.reshape(*batch, h, w)


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of [B, C, H, W] (replicate padding, radius 3 sigma); also the
    gradient loss's pyramid (train.losses.gradient_loss)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    B, C, H, W = x.shape
    y = x.reshape(B * C, 1, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return y.reshape(B, C, H, W)
