"""gsplat.rasterization_2dgs (CUDA) behind the one rasterize interface.

One call in render_mode "RGB+ED" gives colours, expected depth, alpha, world normals,
the distortion map and the median depth (the median needs the depth channel, gsplat #714).
gsplat only knows the surfel-centre depth convention (issues #477, #863), so
depth_convention "intersection" is served as "center" with a one-time warning, and
meta["depth_convention"] says which was used; likewise it knows only its own screen-space
low-pass, so lowpass "area" is served as "gsplat" (meta["lowpass"]). depth_normals come from the same
depth_to_normals as the torch backend, so both backends mask empty pixels alike.
"""

from __future__ import annotations

import logging

import torch

from ..cameras import Cameras
from ..errors import PrivsplatError
from . import RenderOutput
from .common import check_lowpass, check_render_inputs, depth_to_normals

log = logging.getLogger(__name__)
_warned_center_depth = False
_warned_lowpass = False


def _warn_center_depth_once() -> None:
    global _warned_center_depth
    if not _warned_center_depth:
        _warned_center_depth = True
        log.warning(
            "gsplat 1.5.3 renders surfel-centre depth only; depth_convention='intersection' "
            "is served as 'center' (use backend='torch' for ray-plane intersection depth)"
        )


def _warn_lowpass_once() -> None:
    global _warned_lowpass
    if not _warned_lowpass:
        _warned_lowpass = True
        log.warning(
            "gsplat 1.5.3 has only its own screen-space low-pass, which widens silhouettes by "
            "1.5-2 px (fits sit about a pixel inside); lowpass='area' is served as 'gsplat' "
            "(use backend='numba' or 'torch' for the area-preserving low-pass)"
        )


def gsplat_inputs(means, quats, scales, opacities, colors, cameras: Cameras, sh_degree):
    """The argument tuple rasterization_2dgs expects (also used by the benchmark)."""
    C = len(cameras)
    if scales.shape[1] == 2:  # gsplat wants [N,3]; the third scale is ignored
        scales = torch.cat([scales, torch.zeros_like(scales[:, :1])], 1)
    if sh_degree is None and colors.dim() == 2:
        colors = colors[None].expand(C, -1, -1)  # with one camera and RGB+ED, [N,D] fails
    return (
        means.contiguous(),
        quats.contiguous(),
        scales.contiguous(),
        opacities.contiguous(),
        colors.contiguous(),
        cameras.viewmats.to(means).contiguous(),
        cameras.Ks.to(means).contiguous(),
        cameras.width,
        cameras.height,
    )


def rasterize_gsplat(
    means,
    quats,
    scales,
    opacities,
    colors,
    cameras: Cameras,
    *,
    sh_degree=None,
    backgrounds=None,
    near_plane=0.01,
    far_plane=1e10,
    depth_convention="intersection",
    absgrad=False,
    lowpass="area",
) -> RenderOutput:
    if not means.is_cuda:
        raise PrivsplatError("the gsplat backend needs CUDA tensors; use backend='torch' on CPU")
    if means.dtype != torch.float32:
        raise PrivsplatError(f"the gsplat backend renders float32 only, got {means.dtype}")
    if depth_convention not in ("intersection", "center"):
        raise PrivsplatError(f"depth_convention must be 'intersection' or 'center', got {depth_convention!r}")
    check_lowpass(lowpass)
    check_render_inputs(means, quats, scales, opacities, colors, cameras, sh_degree, backgrounds)
    if depth_convention == "intersection":
        _warn_center_depth_once()
    if lowpass == "area":
        _warn_lowpass_once()
    from gsplat import rasterization_2dgs  # compiles its CUDA extension on first use

    cameras = cameras.to(means.device, means.dtype)
    D = 3 if sh_degree is not None else colors.shape[-1]
    render, alpha, normals, _surf_normals, distort, median, meta = rasterization_2dgs(
        *gsplat_inputs(means, quats, scales, opacities, colors, cameras, sh_degree),
        near_plane=near_plane,
        far_plane=far_plane,
        sh_degree=sh_degree,
        backgrounds=None if backgrounds is None else backgrounds.to(means),
        render_mode="RGB+ED",
        absgrad=absgrad,
        distloss=True,
        depth_mode="expected",
        packed=False,
    )
    depth = render[..., D : D + 1]  # already divided by alpha (clamped at 1e-10)
    meta = dict(meta)
    meta.update(
        depth_convention="center", lowpass="gsplat", backend="gsplat", n_isects=int(meta["flatten_ids"].numel())
    )
    return RenderOutput(
        rgb=render[..., :D],
        alpha=alpha,
        normals=normals,
        depth_normals=depth_to_normals(depth, alpha, cameras),
        depth_expected=depth,
        depth_median=median,
        distortion=distort,
        meta=meta,
    )
