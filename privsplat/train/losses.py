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


def gradient_loss(magnitude: torch.Tensor, target: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Paper eq. 5: L1 between sigma(render) and the protected magnitude (inside `region` if given)."""
    diff = (magnitude - target).abs()
    if region is None:
        return diff.mean()
    return (diff * region).sum() / region.sum().clamp_min(1.0)


def neighbour_smoothness(values: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of a per-surfel quantity [N,D] to its k nearest neighbours [N,k]."""
    return ((values[:, None, :] - values[neighbours]) ** 2).sum(-1).mean()
