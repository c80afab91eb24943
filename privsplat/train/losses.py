"""Losses of the two stages. Images are [H,W,C] tensors in 0..1."""

from __future__ import annotations

import torch


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of two [H,W,C] images (pytorch-msssim, Gaussian window 11 or the largest odd size that fits)."""
    from pytorch_msssim import ssim as _ssim

    h, w = a.shape[:2]
    win = min(11, (min(h, w) - 1) // 2 * 2 + 1)
    return _ssim(
        a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None], data_range=1.0, size_average=True, win_size=max(win, 3)
    )


def photometric_loss(
    render: torch.Tensor, target: torch.Tensor, ssim_weight: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """(1 - w) L1 + w (1 - SSIM), as in 2DGS. `valid` [H,W] masks pixels out of both terms
    (they are set equal before SSIM so they contribute no structure)."""
    if valid is not None:
        v = valid[..., None]
        target = target * v + render.detach() * (1 - v)
        l1 = ((render - target).abs() * v).sum() / (v.sum() * render.shape[-1]).clamp_min(1.0)
    else:
        l1 = (render - target).abs().mean()
    if ssim_weight <= 0:
        return l1
    return (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim(render, target))


def normal_consistency(normals: torch.Tensor, depth_normals: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """1 - <rendered normal, normal from rendered depth>, weighted by (detached) alpha, as in 2DGS."""
    cos = (normals * depth_normals).sum(-1, keepdim=True)
    return (alpha.detach() * (1 - cos)).mean()


def mask_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (alpha[..., 0] - mask).abs().mean()


def gradient_loss(
    magnitude: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None, levels: int = 1
) -> torch.Tensor:
    """Paper eq. 5: L1 between sigma(render) and the protected magnitude (inside `region` if given).

    levels > 1 adds the same L1 on the levels of a Gaussian pyramid of both magnitude images (blur
    sigma 1 px, then 2x area downsample; the region is downsampled alike), each level with weight 1:
    an edge a few pixels from its target overlaps it only once blurred, and only then does the loss
    pull it there (eq. 5 alone is flat in the shift of an edge that misses its target)."""
    import torch.nn.functional as F

    from ..privacy.sigma import gaussian_blur

    total = magnitude.new_zeros(())
    m, t = magnitude[None, None], target[None, None]
    r = None if region is None else region[None, None]
    for level in range(max(1, levels)):
        if level:
            h, w = m.shape[-2] // 2, m.shape[-1] // 2
            if min(h, w) < 2:
                break
            m = F.interpolate(gaussian_blur(m, 1.0), size=(h, w), mode="area")
            t = F.interpolate(gaussian_blur(t, 1.0), size=(h, w), mode="area")
            r = None if r is None else F.interpolate(r, size=(h, w), mode="area")
        diff = (m - t).abs()
        total = total + (diff.mean() if r is None else (diff * r).sum() / r.sum().clamp_min(1.0))
    return total


def neighbour_smoothness(values: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of a per-surfel quantity [N,D] to its k nearest neighbours [N,k]."""
    return ((values[:, None, :] - values[neighbours]) ** 2).sum(-1).mean()


def normal_smoothness(normals: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - (n_i . n_j)^2 over surfels [N,3] and their k nearest neighbours [N,k]: zero for
    parallel normals of either sign (a surfel's normal has no sign)."""
    c = (normals[:, None, :] * normals[neighbours]).sum(-1)
    return (1.0 - c * c).mean()
