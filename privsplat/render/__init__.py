"""One rasterize interface for 2D Gaussian surfels, three backends.

- "torch": pure PyTorch (CPU or CUDA), differentiable by autograd: the reference (render/torch_backend.py).
- "numba": compiled CPU kernels with hand-written backward passes, held to the torch reference by
  tests (render/numba_backend.py).
- "gsplat": gsplat.rasterization_2dgs on CUDA (render/gsplat_backend.py).
- "auto": gsplat when the inputs are on CUDA, numba on the CPU (torch where numba is missing).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..cameras import Cameras

Backend = Literal["auto", "torch", "gsplat", "numba"]
DepthConvention = Literal["intersection", "center"]
LowPass = Literal["area", "gsplat"]


@dataclass
class RenderOutput:
    """Per-camera images, all [C, H, W, k] float tensors on the inputs' device.

    rgb: [C,H,W,D] blended colours (D = colour channels passed in), background added.
    alpha: [C,H,W,1] accumulated opacity.
    normals: [C,H,W,3] alpha-blended surfel normals, world space, facing the camera.
    depth_normals: [C,H,W,3] normals from finite differences of the rendered (expected)
        depth, world space, facing the camera (zero at the image border / empty pixels).
    depth_expected: [C,H,W,1] alpha-blended depth divided by alpha (0 where alpha is 0).
    depth_median: [C,H,W,1] depth of the last surfel entered while transmittance was still
        above 0.5 (gsplat's rule: the front surfel if T never drops below 0.5; 0 where no
        surfel contributes).
    distortion: [C,H,W,1] 2DGS depth-distortion loss per pixel.
    meta: what gsplat.strategy.DefaultStrategy needs: "means2d" (a [C,N,2] tensor that
        retains its grad after backward), "gradient_2dgs" (same shape, the 2DGS
        densification signal), "radii" [C,N,2] (int per-axis pixel radii, 0 = not visible;
        DefaultStrategy requires the last axis), "width", "height", "n_cameras",
        and backend-specific stats (e.g. "n_pairs").
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    normals: torch.Tensor
    depth_normals: torch.Tensor
    depth_expected: torch.Tensor
    depth_median: torch.Tensor
    distortion: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)


def resolve_backend(backend: Backend, device: torch.device) -> str:
    from ..errors import PrivsplatError

    if backend == "auto":
        if device.type == "cuda" and torch.cuda.is_available():
            return "gsplat"
        return "numba" if device.type == "cpu" and importlib.util.find_spec("numba") else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise PrivsplatError("the gsplat backend needs CUDA tensors; use backend='numba' or 'torch' on CPU")
    if backend == "numba" and device.type != "cpu":
        raise PrivsplatError("the numba backend runs on the CPU; use backend='gsplat' or 'torch' on CUDA")
    return backend


def rasterize(
    means: torch.Tensor,  # [N,3]
    quats: torch.Tensor,  # [N,4] wxyz, need not be normalised
    scales: torch.Tensor,  # [N,2] or [N,3] (third ignored), positive (not log)
    opacities: torch.Tensor,  # [N] in (0,1)
    colors: torch.Tensor,  # [N,D], [C,N,D], or SH coefficients [N,K,3] with sh_degree
    cameras: Cameras,
    *,
    sh_degree: int | None = None,
    backgrounds: torch.Tensor | None = None,  # [C,D]
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    backend: Backend = "auto",
    depth_convention: DepthConvention = "intersection",
    absgrad: bool = False,
    lowpass: LowPass = "area",
) -> RenderOutput:
    """Render 2D Gaussian surfels into every camera. See RenderOutput for the outputs.

    depth_convention: "intersection" (default) takes each surfel's depth where the pixel
    ray meets its plane; "center" takes the surfel centre's depth, as gsplat 1.5.3 does
    (gsplat issues #477, #863), and exists so the backends can be compared.
    lowpass: "area" (default) scales the screen-space low-pass blob of each surfel by its own
    screen area, so that silhouettes are not dilated (common.lowpass_offset); "gsplat" is
    gsplat's kernel, which widens silhouettes by 1.5-2 px and makes fits sit about a pixel inside
    the true surface. The torch and numba backends have both; gsplat's CUDA kernel knows only its
    own ("area" is served as "gsplat" there, with a one-time warning).
    """
    which = resolve_backend(backend, means.device)
    if which == "gsplat":
        from .gsplat_backend import rasterize_gsplat as impl
    elif which == "numba":
        from .numba_backend import rasterize_numba as impl
    else:
        from .torch_backend import rasterize_torch as impl
    return impl(
        means,
        quats,
        scales,
        opacities,
        colors,
        cameras,
        sh_degree=sh_degree,
        backgrounds=backgrounds,
        near_plane=near_plane,
        far_plane=far_plane,
        depth_convention=depth_convention,
        absgrad=absgrad,
        lowpass=lowpass,
    )
