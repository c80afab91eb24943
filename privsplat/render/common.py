"""Helpers every rasterizer backend shares: input checks, quaternion axes, depth-to-normals.

Kept apart from the backends so that no backend imports another.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cameras import Cameras
from ..errors import PrivsplatError
from .sh import MAX_SH_DEGREE, eval_sh

# gsplat 1.5.3's 2DGS constants, shared by every CPU backend.
ALPHA_MIN = 1.0 / 255.0  # gsplat ALPHA_THRESHOLD
ALPHA_MAX = 0.999  # gsplat clamps alpha here
T_MIN = 1e-4  # a pixel is done once T would drop to this (exclusive)
LOWPASS = 2.0  # gsplat FILTER_INV_SQUARE_2DGS: 2D kernel exp(-|d|^2)
LOWPASS_MODES = ("area", "gsplat")  # see lowpass_offset
RADIUS_SIGMAS = 3.33  # gsplat: radius = ceil(3.33 * extent)
EXPECTED_DEPTH_EPS = 1e-10  # gsplat clamps alpha before dividing accumulated depth


def check_lowpass(lowpass: str) -> None:
    if lowpass not in LOWPASS_MODES:
        raise PrivsplatError(f"lowpass must be one of {LOWPASS_MODES}, got {lowpass!r}")


def lowpass_offset(M0: torch.Tensor, M1: torch.Tensor, M2: torch.Tensor) -> torch.Tensor:
    """-2 ln c per surfel [V] from the rows of T [V,3] each, added to the low-pass exponent:
    kernel c exp(-|d|^2), i.e. exp(-(LOWPASS |d|^2 + offset) / 2). lowpass="area" uses it.

    gsplat's kernel is max(surfel, exp(-|d|^2)): every surfel, however small or edge-on, shows
    at least a full-strength blob of about a pixel. On a closed surface the blobs of the
    surfels along each silhouette add up, and silhouettes come out 1.5-2 px too wide (surfels
    placed exactly on a sphere, 64 px); a fit then pulls the whole surface inside until the
    widened silhouettes match the masks. Here the blob stands in only for what the ray kernel
    cannot sample, a surfel small in both screen directions:
      c = sqrt(det S / det(S + s^2 I)) * 4 det S / tr(S)^2,
    S the surfel's screen covariance at its centre (affine approximation of T), s^2 = 1/LOWPASS
    the filter's. The first factor gives the blob the surfel's own screen area (Mip-Splatting's
    2D filter for 3D Gaussians), so a sub-pixel surfel still shows and gets gradients; the
    second (1 when S is isotropic, ~4 l_min/l_max for a sliver) removes the blob of a surfel
    seen at grazing incidence, which the ray kernel already samples along its length and whose
    blob, stacked with its neighbours', is what widened the silhouettes. A large surfel is
    unchanged (the ray kernel wins). Measured on that sphere: silhouettes +0.05 px, median depth
    -0.04 px (gsplat's kernel: +1.9 px, -0.7 px). c <= 1, so the offset is >= 0.
    """
    z = M2[:, 2]
    inv_z2 = 1.0 / (z * z)
    # Jacobian of the pixel position (M0.h / M2.h, M1.h / M2.h), h = (u, v, 1), at u = v = 0
    j00 = (M0[:, 0] * z - M0[:, 2] * M2[:, 0]) * inv_z2
    j01 = (M0[:, 1] * z - M0[:, 2] * M2[:, 1]) * inv_z2
    j10 = (M1[:, 0] * z - M1[:, 2] * M2[:, 0]) * inv_z2
    j11 = (M1[:, 1] * z - M1[:, 2] * M2[:, 1]) * inv_z2
    det = (j00 * j11 - j01 * j10) ** 2  # det S
    tr = j00**2 + j01**2 + j10**2 + j11**2  # tr S
    s2 = 1.0 / LOWPASS
    tiny = 1e-30  # an edge-on surfel: c ~ 0, kept finite
    area = torch.log(det + s2 * tr + s2 * s2) - torch.log(
        det.clamp_min(tiny)
    )  # det(S + s^2 I) = det S + s^2 tr S + s^4
    isotropy = torch.log((4.0 * det / (tr * tr).clamp_min(tiny)).clamp_min(tiny))
    return area - 2.0 * isotropy


def quat_axes(quats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The columns (x, y, z axes) of the rotations of [N,4] wxyz quaternions (any norm), [N,3] each."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    return (
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1),
        torch.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1),
        torch.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], -1),
    )


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """[N,4] wxyz (any norm) -> [N,3,3] rotation matrices."""
    return torch.stack(quat_axes(quats), dim=-1)


def check_render_inputs(means, quats, scales, opacities, colors, cameras, sh_degree, backgrounds):
    def fail(msg):
        raise PrivsplatError(msg)

    if means.dim() != 2 or means.shape[1] != 3:
        fail(f"means must be [N,3], got {list(means.shape)}")
    N = means.shape[0]
    if quats.shape != (N, 4):
        fail(f"quats must be [N,4] (wxyz) with N={N}, got {list(quats.shape)}")
    if scales.dim() != 2 or scales.shape[0] != N or scales.shape[1] not in (2, 3):
        fail(f"scales must be [N,2] or [N,3] with N={N}, got {list(scales.shape)}")
    if opacities.shape != (N,):
        fail(f"opacities must be [N] with N={N}, got {list(opacities.shape)}")
    if not means.is_floating_point():
        fail("means must be a floating-point tensor")
    C = len(cameras)
    if sh_degree is not None:
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            fail(f"sh_degree must be between 0 and {MAX_SH_DEGREE}, got {sh_degree}")
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (colors.dim() == 4 and colors.shape[:2] == (C, N))
        if not ok or colors.shape[-1] != 3:
            fail(
                f"with sh_degree, colors must be SH coefficients [N,K,3] or [C,N,K,3] (N={N}, C={C}), "
                f"got {list(colors.shape)}"
            )
        if colors.shape[-2] < (sh_degree + 1) ** 2:
            fail(f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} coefficients, got {colors.shape[-2]}")
    else:
        ok = (colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))
        if not ok:
            fail(
                f"colors must be [N,D] or [C,N,D] (N={N}, C={C}), got {list(colors.shape)}; "
                "pass sh_degree for SH coefficients"
            )
    D = 3 if sh_degree is not None else colors.shape[-1]
    if backgrounds is not None and backgrounds.shape != (C, D):
        fail(f"backgrounds must be [C,D] = [{C},{D}], got {list(backgrounds.shape)}")
    if cameras.width <= 0 or cameras.height <= 0:
        fail(f"image size must be positive, got {cameras.width}x{cameras.height}")


def depth_to_normals(depth: torch.Tensor, alpha: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """World-space normals [C,H,W,3] from a z-depth map [C,H,W,1] (gsplat's depth_to_normal).

    Unprojects every pixel centre, takes the cross product of central differences
    (rows x columns, which faces the camera), and is zero on the image border and wherever
    the pixel or one of its four neighbours is empty (alpha == 0).
    """
    C, H, W = depth.shape[:3]
    dev, dt = depth.device, depth.dtype
    Ks = cameras.Ks.to(dev, dt)
    c2w = torch.linalg.inv(cameras.viewmats.to(dev, dt))
    ys, xs = torch.meshgrid(torch.arange(H, device=dev, dtype=dt), torch.arange(W, device=dev, dtype=dt), indexing="ij")
    fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
    cx, cy = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None]
    dirs = torch.stack([(xs - cx + 0.5) / fx, (ys - cy + 0.5) / fy, torch.ones_like(xs).expand(C, H, W)], -1)
    pts = torch.einsum("cij,chwj->chwi", c2w[:, :3, :3], dirs * depth) + c2w[:, None, None, :3, 3]
    normals = torch.zeros_like(pts)
    if H < 3 or W < 3:
        return normals
    d_rows = pts[:, 2:, 1:-1] - pts[:, :-2, 1:-1]
    d_cols = pts[:, 1:-1, 2:] - pts[:, 1:-1, :-2]
    inner = F.normalize(torch.linalg.cross(d_rows, d_cols), dim=-1)
    full = alpha[..., 0] > 0
    ok = full[:, 1:-1, 1:-1] & full[:, 2:, 1:-1] & full[:, :-2, 1:-1] & full[:, 1:-1, 2:] & full[:, 1:-1, :-2]
    normals[:, 1:-1, 1:-1] = inner * ok[..., None].to(dt)
    return normals


def visible_colors(colors, sh_degree, means, centers, vc, vn):
    if sh_degree is None:
        return colors[vn] if colors.dim() == 2 else colors[vc, vn]
    coeffs = colors[vn] if colors.dim() == 3 else colors[vc, vn]
    rgb = eval_sh(sh_degree, coeffs, means[vn] - centers[vc])
    return torch.clamp_min(rgb + 0.5, 0.0)  # as gsplat (and the Inria code) does
