"""An inversion attack on σ: rebuild an intensity image from a gradient magnitude |g| alone.

The privacy claim is only as good as the best attacker we try, so the privacy report
runs face recognition on these reconstructions as well as on |g| itself.

- "poisson": guess a gradient *direction* field (orientation across the ridges of |g|
  from its structure tensor; sign chosen so that intensity rises toward the image
  centre, where the face usually is) and integrate g = |g|·direction by a Neumann
  Poisson solve (DCT).
- "optim": start from the Poisson guess and optimise x so that σ(x) matches |g|
  (the project's own differentiable σ, L1) with a small smoothness prior. σ has no
  sign, so this never needs a direction guess; it only refines the start.

|g| fixes neither the overall brightness nor the polarity (σ(x) = σ(1 − x)), so the
result is min-max normalised to 0..1 and an attacker should try both x and 1 − x.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import PrivsplatError

InversionMethod = Literal["poisson", "optim"]


def invert_gradient_magnitude(
    mag: np.ndarray,
    out_size: tuple[int, int] | None = None,
    method: InversionMethod = "optim",
    *,
    kernel: str = "sobel",
    steps: int = 300,
    smoothness: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Grey image [H, W] in 0..1 whose gradient magnitude resembles `mag` [h, w].

    out_size: (H, W) of the result (default: the size of `mag`), e.g. the original view's size.
    kernel: the derivative kernel the protection used (see privsplat.privacy.sigma).
    """
    mag = _check_magnitude(mag)
    if method == "poisson":
        x = poisson_from_magnitude(mag)
    elif method == "optim":
        x, _ = fit_image_to_magnitude(
            mag, poisson_from_magnitude(mag), kernel=kernel, steps=steps, smoothness=smoothness, seed=seed
        )
    else:
        raise PrivsplatError(f"unknown inversion method {method!r}; use 'poisson' or 'optim'")
    return _to_unit_range(_resize(x, out_size or mag.shape))


def sigma_mismatch(image: np.ndarray, mag: np.ndarray, kernel: str = "sobel") -> float:
    """Mean |σ(image) − mag| after the best scale for σ(image) (|g| has no absolute scale once normalised).

    image: grey [H, W] at any size; σ is taken at mag's resolution, as the protection did.
    """
    from ..privacy.sigma import SigmaParams, gradient_magnitude

    mag = _check_magnitude(mag)
    image = np.asarray(image, np.float32)
    if image.shape != mag.shape:
        image = _resize(image, mag.shape, area=True)
    g = gradient_magnitude(np.repeat(image[..., None], 3, -1), SigmaParams(kernel=kernel, resolution=0))
    scale = float((g * mag).sum() / max((g * g).sum(), 1e-12))  # least-squares scale
    return float(np.abs(scale * g - mag).mean())


def fit_image_to_magnitude(
    mag: np.ndarray,
    init: np.ndarray,
    *,
    kernel: str = "sobel",
    steps: int = 300,
    lr: float = 0.02,
    smoothness: float = 0.05,
    seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """Optimise a grey image x [h, w] (from `init`) so that σ(x) ≈ mag; returns (x, σ-loss per step).

    The smoothness prior (mean squared neighbour difference, relative to the data term's
    scale) keeps the solution from putting energy in pixel-level noise that σ cannot see.
    """
    import torch

    from ..privacy.sigma import SigmaParams, gradient_magnitude

    params = SigmaParams(kernel=kernel, resolution=0)  # x already lives at |g|'s resolution
    target = torch.from_numpy(_check_magnitude(mag))
    init = np.asarray(init, np.float32)
    # Match the start's gradient scale to the target's so the loss starts in a sane range.
    g0 = gradient_magnitude(np.repeat(init[..., None], 3, -1), params)
    init = init * float(target.mean()) / max(float(g0.mean()), 1e-12)
    gen = torch.Generator().manual_seed(seed)
    # A little noise: at an exactly flat patch σ's gradient vanishes and Adam could not leave it.
    noise = 1e-3 * float(target.mean()) * torch.randn(init.shape, generator=gen)
    x = (torch.from_numpy(init) + noise).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr * max(float(init.std()), 1e-3))
    weight = smoothness * float(target.abs().mean())
    history = []
    threads = torch.get_num_threads()
    # A 64x64 problem is too small to share: one thread ran 3x faster than two here.
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            opt.zero_grad()
            g = gradient_magnitude(x[..., None].expand(*x.shape, 3), params)
            data = (g - target).abs().mean()
            smooth = ((x[1:] - x[:-1]) ** 2).mean() + ((x[:, 1:] - x[:, :-1]) ** 2).mean()
            (data + weight * smooth / max(float(target.mean()), 1e-12)).backward()
            opt.step()
            history.append(float(data.detach()))
    finally:
        torch.set_num_threads(threads)
    return x.detach().numpy(), history


def poisson_from_magnitude(mag: np.ndarray, orientation_sigma: float = 1.5) -> np.ndarray:
    """Integrate |g| along a guessed direction field (see module docstring); float [h, w], any offset."""
    from scipy.fft import dctn, idctn
    from scipy.ndimage import gaussian_filter, sobel

    mag = _check_magnitude(mag).astype(np.float64)
    h, w = mag.shape
    # Structure tensor of |g|: across an edge's ridge in |g|, |g| itself varies along the
    # image gradient's direction, so the tensor's major axis estimates it (up to sign).
    mx, my = sobel(mag, axis=1), sobel(mag, axis=0)
    jxx = gaussian_filter(mx * mx, orientation_sigma)
    jxy = gaussian_filter(mx * my, orientation_sigma)
    jyy = gaussian_filter(my * my, orientation_sigma)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    dx, dy = np.cos(theta), np.sin(theta)
    yy, xx = np.mgrid[0:h, 0:w]
    toward_centre = dx * ((w - 1) / 2 - xx) + dy * ((h - 1) / 2 - yy)
    flip = np.where(toward_centre < 0, -1.0, 1.0)  # sign guess: brighter toward the centre
    gx, gy = mag * dx * flip, mag * dy * flip
    gx[:, -1], gy[-1, :] = 0.0, 0.0  # no forward difference leaves the last column / row
    # Divergence with backward differences: the adjoint of the forward-difference gradient
    # whose Neumann Laplacian the DCT-II diagonalises.
    div = np.zeros_like(mag)
    div[:, 0] += gx[:, 0]
    div[:, 1:] += gx[:, 1:] - gx[:, :-1]
    div[0, :] += gy[0, :]
    div[1:, :] += gy[1:, :] - gy[:-1, :]
    ky = 2 * np.cos(np.pi * np.arange(h) / h) - 2
    kx = 2 * np.cos(np.pi * np.arange(w) / w) - 2
    denom = ky[:, None] + kx[None, :]
    denom[0, 0] = 1.0
    coeff = dctn(div, norm="ortho") / denom
    coeff[0, 0] = 0.0  # the mean is unknowable
    return idctn(coeff, norm="ortho").astype(np.float32)


def _check_magnitude(mag) -> np.ndarray:
    mag = np.asarray(mag, dtype=np.float32)
    if mag.ndim == 3 and mag.shape[-1] in (1, 3, 4):
        mag = mag[..., 0]  # a grey PNG read as colour: all channels are equal
    if mag.ndim != 2 or min(mag.shape) < 3:
        raise PrivsplatError(f"a gradient magnitude must be a 2-D image of at least 3x3 pixels, got shape {mag.shape}")
    if not np.isfinite(mag).all() or (mag < 0).any():
        raise PrivsplatError("a gradient magnitude must be finite and non-negative")
    return mag


def _resize(x: np.ndarray, size: tuple[int, int], area: bool = False) -> np.ndarray:
    import cv2

    H, W = int(size[0]), int(size[1])
    if x.shape == (H, W):
        return x.astype(np.float32)
    interp = cv2.INTER_AREA if area or (H < x.shape[0]) else cv2.INTER_CUBIC
    return cv2.resize(x.astype(np.float32), (W, H), interpolation=interp)


def _to_unit_range(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
