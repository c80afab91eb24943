"""Pure-PyTorch 2D Gaussian surfel rasterizer: CPU or CUDA, differentiable by autograd.

The math is gsplat 1.5.3's 2DGS (fully_fused_projection_2dgs + rasterize_to_pixels_2dgs):
per (camera, surfel) a ray transform T = K [s_u t_u, s_v t_v, mu_c] (rows M0, M1, M2);
per pixel h_u = x M2 - M0, h_v = y M2 - M1 and (u, v) from h_u x h_v; the kernel is
exp(-min(u^2+v^2, 2|mean2d - pixel|^2) / 2) (the second term is gsplat's screen-space
low-pass); lowpass="area" (the default) scales the low-pass term by the surfel's screen
area over the filter's (common.lowpass_offset), lowpass="gsplat" is gsplat's kernel as is;
alpha = min(0.999, o * kernel), pairs with alpha < 1/255 are skipped, and a pixel stops
(exclusively) once its transmittance would drop to 1e-4. Pixel centres are at integer + 0.5.
Surfels are blended front to back by the camera depth of their centres.

How the work is organised (cost follows the number of (pixel, surfel) pairs, and on a CPU
gathers/scatters cost several times an elementwise op):
1. project_surfels: T, projected centres, gsplat's radii, facing normals, for all (c, n).
2. candidate pairs: each visible surfel gets a pixel box; boxes of similar size are
   evaluated densely ([surfels, ky, kx], no gathers, no grad) and pairs with
   alpha >= 1/255 are kept, encoded in one integer key (camera, pixel, depth rank).
3. one radix sort of the keys gives per-pixel lists in depth order.
4. a no-grad transmittance pass (float64 segmented cumulative sum of log(1 - alpha))
   drops every pair at or behind its pixel's termination point; this is exact.
5. the differentiable pass recomputes alpha for the kept pairs only (structure-of-arrays
   layout, one column gather and one column scatter) and composites colour, normals,
   depth, median depth and the distortion loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..cameras import Cameras
from ..errors import PrivsplatError
from . import RenderOutput
from .common import (  # noqa: F401 (constants re-exported for the tests)
    ALPHA_MAX,
    ALPHA_MIN,
    EXPECTED_DEPTH_EPS,
    LOWPASS,
    LOWPASS_MODES,
    RADIUS_SIGMAS,
    T_MIN,
    check_lowpass,
    check_render_inputs,
    depth_to_normals,
    lowpass_offset,
    quat_axes,
    quat_to_rotmat,
    visible_colors,
)

DENSE_CHUNK = 1 << 22  # elements per dense pre-pass block (bounds peak memory)


# ---------------------------------------------------------------------------------------
# Projection
# ---------------------------------------------------------------------------------------


@dataclass
class Projection:
    """Per (camera, surfel) quantities, [C, N, ...]."""

    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # M0, M1, M2 [C,N,3]: rows of T
    means2d: torch.Tensor  # [C,N,2] gsplat's projected centre (0 where culled)
    depths: torch.Tensor  # [C,N] camera z of the centre
    radii: torch.Tensor  # [C,N,2] int32, 0 = culled
    normals: torch.Tensor  # [C,N,3] world-space surfel normal, flipped toward the camera

    @property
    def ray_transforms(self) -> torch.Tensor:
        """[C,N,3,3] T = K [s_u t_u, s_v t_v, mu_c], row-major as gsplat stores it."""
        return torch.stack(self.rows, dim=-2)


def project_surfels(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projection:
    """gsplat's fully_fused_projection_2dgs (non-packed), written with autograd-friendly ops.

    Like gsplat, the intrinsics' skew K[0,1] is ignored.
    """
    Rt, t_cw = viewmats[:, :3, :3].transpose(1, 2), viewmats[:, :3, 3]
    ax_u, ax_v, ax_n = quat_axes(quats)
    means_c = means @ Rt + t_cw[:, None]  # [C,N,3]
    tu_c = (ax_u * scales[:, :1]) @ Rt
    tv_c = (ax_v * scales[:, 1:2]) @ Rt
    P0, P1, P2 = torch.stack([tu_c, tv_c, means_c], -1).unbind(-2)  # rows of [s_u t_u, s_v t_v, mu_c]
    fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
    cx, cy = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None]
    M0, M1, M2 = fx * P0 + cx * P2, fy * P1 + cy * P2, P2

    # Bounding box of the projected unit circle, from its dual conic (gsplat's "pro" AABB).
    sgn = M2.new_tensor([1.0, 1.0, -1.0])
    distance = (M2 * M2 * sgn).sum(-1)
    ok_distance = distance != 0
    inv_d = 1.0 / torch.where(ok_distance, distance, torch.ones_like(distance))
    means2d = torch.stack([(M0 * M2 * sgn).sum(-1), (M1 * M2 * sgn).sum(-1)], -1) * inv_d[..., None]
    with torch.no_grad():
        second = torch.stack([(M0 * M0 * sgn).sum(-1), (M1 * M1 * sgn).sum(-1)], -1) * inv_d[..., None]
        extent = (means2d * means2d - second).clamp_min(1e-4).sqrt()
        radius = torch.ceil(RADIUS_SIGMAS * extent)
        depth = means_c[..., 2]
        valid = ok_distance & (depth > near_plane) & (depth < far_plane)
        valid &= (
            (means2d[..., 0] + radius[..., 0] > 0)
            & (means2d[..., 0] - radius[..., 0] < width)
            & (means2d[..., 1] + radius[..., 1] > 0)
            & (means2d[..., 1] - radius[..., 1] < height)
        )
        radii = torch.where(valid[..., None], radius, torch.zeros_like(radius)).to(torch.int32)
        # Normal: the surfel's z axis, flipped to face the camera (gsplat: dot(-n_c, mu_c) > 0).
        facing = torch.where((-((ax_n @ Rt) * means_c).sum(-1, keepdim=True)) > 0, 1.0, -1.0).to(means.dtype)
    means2d = torch.where(valid[..., None], means2d, torch.zeros_like(means2d))
    normals = ax_n[None] * facing  # [C,N,3]
    return Projection((M0, M1, M2), means2d, P2[..., 2], radii, normals)


# ---------------------------------------------------------------------------------------
# Column gather / scatter with cheap backward passes (index_select per row, index_add on dim 1)
# ---------------------------------------------------------------------------------------


def _take_columns(table: torch.Tensor, idx: torch.Tensor) -> list[torch.Tensor]:
    # a 1-D index_select per row is ~2x faster than one 2-D gather on a CPU
    return [torch.index_select(row, 0, idx) for row in table.unbind(0)]


class _GatherRows(torch.autograd.Function):
    """(table[0, idx], table[1, idx], ...) for table [F, V]: one 1-D tensor per row.

    Separate outputs (rather than rows selected from one [F, K] tensor) keep autograd from
    building an [F, K] zero tensor per selected row in the backward pass.
    """

    @staticmethod
    def forward(ctx, table, idx):
        ctx.save_for_backward(idx)
        ctx.shape = table.shape
        return tuple(_take_columns(table, idx))

    @staticmethod
    def backward(ctx, *grads):
        (idx,) = ctx.saved_tensors
        ref = next(g for g in grads if g is not None)
        g = torch.stack([ref.new_zeros(idx.numel()) if g is None else g for g in grads])
        return ref.new_zeros(ctx.shape).index_add_(1, idx, g), None


class _ScatterRows(torch.autograd.Function):
    """Images out_r[j] = sum of rows[r][k] over idx[k] == j, one output per input row.

    Separate inputs and outputs let autograd prune every quantity the loss does not use
    (e.g. distortion or normals early in training) instead of back-propagating zeros.
    """

    @staticmethod
    def forward(ctx, idx, n, *rows):
        ctx.save_for_backward(idx)
        out = rows[0].new_zeros((len(rows), n)).index_add_(1, idx, torch.stack(rows))
        return tuple(out.unbind(0))

    @staticmethod
    def backward(ctx, *grads):
        (idx,) = ctx.saved_tensors
        return (None, None) + tuple(None if g is None else g.index_select(0, idx) for g in grads)


@dataclass
class Segments:
    """Runs of equal ids in a sorted id vector: each element's run start and end index."""

    first: torch.Tensor
    last: torch.Tensor

    @classmethod
    def of(cls, ids: torch.Tensor) -> "Segments":
        n = ids.numel()
        pos = torch.arange(n, device=ids.device)
        change = ids[1:] != ids[:-1]
        start = torch.cat([change.new_ones(1), change])
        end = torch.cat([change, change.new_ones(1)])
        first = torch.where(start, pos, torch.zeros_like(pos)).cummax(0).values
        last = torch.where(end, pos, torch.full_like(pos, n)).flip(0).cummin(0).values.flip(0)
        return cls(first, last)


class _SegmentExclusiveCumsum(torch.autograd.Function):
    """y_i = sum of x_j over earlier j in i's segment (float64: millions of terms).

    Both directions are a global cumulative sum and one gather; autograd's version of
    `excl - excl[first]` would scatter-add into the segment starts instead.
    """

    @staticmethod
    def forward(ctx, x, first, last):
        ctx.save_for_backward(first, last)
        excl = torch.cumsum(x, 0) - x
        return excl - excl[first]

    @staticmethod
    def backward(ctx, g):
        first, last = ctx.saved_tensors
        after = g.flip(0).cumsum(0).flip(0) - g  # sum over later elements, globally
        return after - after[last], None, None


# ---------------------------------------------------------------------------------------
# Candidate pairs (no grad)
# ---------------------------------------------------------------------------------------


def _size_ladder(limit: int) -> torch.Tensor:
    sizes, s = [1, 2, 3, 4, 5, 6, 7, 8], 8
    while s < limit:
        s = int(math.ceil(s * 1.25))
        sizes.append(s)
    return torch.tensor(sizes)


def _support_boxes(
    T: torch.Tensor, means2d: torch.Tensor, opac: torch.Tensor, lp_off: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-coordinate boxes [V,2] (lo, hi) that hold every pixel where alpha >= 1/255.

    The ray-transform kernel reaches u^2+v^2 = rho^2 = 2 ln(255 o): the exact bounding box
    of that circle's image comes from the dual conic of T diag(rho, rho, 1) (gsplat uses
    the unit circle's box times 3.33, which can miss a pixel under perspective). The
    low-pass kernel exp(-(LOWPASS |d|^2 + lp_off) / 2) reaches
    |d| = sqrt((2 ln(255 o) - lp_off) / LOWPASS) around means2d. A circle
    that crosses the camera plane has an unbounded image: its box is the whole image.
    """
    rho = torch.sqrt(2.0 * torch.log(255.0 * opac).clamp_min(0.0))
    Ts = torch.cat([T[:, :, :2] * rho[:, None, None], T[:, :, 2:]], 2)
    sgn = T.new_tensor([1.0, 1.0, -1.0])
    d = (Ts[:, 2] * Ts[:, 2] * sgn).sum(-1)
    bounded = d < 0
    inv_d = 1.0 / torch.where(bounded, d, -torch.ones_like(d))
    centre = (
        torch.stack([(Ts[:, 0] * Ts[:, 2] * sgn).sum(-1), (Ts[:, 1] * Ts[:, 2] * sgn).sum(-1)], -1) * inv_d[:, None]
    )
    second = (
        torch.stack([(Ts[:, 0] * Ts[:, 0] * sgn).sum(-1), (Ts[:, 1] * Ts[:, 1] * sgn).sum(-1)], -1) * inv_d[:, None]
    )
    half = (centre * centre - second).clamp_min(0.0).sqrt()
    r2d = torch.sqrt(((2.0 * torch.log(255.0 * opac) - lp_off) / LOWPASS).clamp_min(0.0))[:, None]
    lo = torch.minimum(centre - half, means2d - r2d)
    hi = torch.maximum(centre + half, means2d + r2d)
    lo = torch.where(bounded[:, None], lo, torch.zeros_like(lo))
    hi = torch.where(bounded[:, None], hi, hi.new_tensor([float(width), float(height)]).expand_as(hi))
    return lo, hi


@torch.no_grad()
def _candidate_pairs(
    abc: torch.Tensor,
    means2d: torch.Tensor,
    opac: torch.Tensor,
    lp_off: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    keybase: torch.Tensor,
    vbits: int,
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (key, alpha) with alpha >= 1/255 for the visible surfels.

    abc [V,9]: the rows a, b, c of the per-pixel linear map (u, v, 1) ~ a x + b y + c;
    lo, hi [V,2]: support boxes in pixel coordinates; keybase [V]: key of pixel (0, 0).
    """
    device = abc.device
    big = float(max(width, height) + 2)  # keeps float->int conversion in range for huge boxes
    x_lo = torch.ceil(lo[:, 0].clamp(-big, big) - 0.5).clamp_min(0)
    x_hi = torch.floor(hi[:, 0].clamp(-big, big) - 0.5).clamp_max(width - 1)
    y_lo = torch.ceil(lo[:, 1].clamp(-big, big) - 0.5).clamp_min(0)
    y_hi = torch.floor(hi[:, 1].clamp(-big, big) - 0.5).clamp_max(height - 1)
    nx = (x_hi - x_lo + 1).long()
    ny = (y_hi - y_lo + 1).long()
    has = (nx > 0) & (ny > 0)
    x_lo, y_lo = x_lo.long(), y_lo.long()
    keybase = (keybase + ((y_lo * width + x_lo) << vbits)).to(keybase.dtype)

    # Group boxes by (ladder(nx), ladder(ny)) so each group is one dense block.
    ladder = _size_ladder(max(width, height)).to(device)
    bx = torch.searchsorted(ladder, nx.clamp_min(1))
    by = torch.searchsorted(ladder, ny.clamp_min(1))
    group = torch.where(has, bx * len(ladder) + by, torch.full_like(bx, -1))
    order = torch.argsort(group, stable=True)
    group_sorted = group[order]
    ids, counts = torch.unique_consecutive(group_sorted, return_counts=True)
    keys, alphas = [], []
    start = 0
    ladder_list = ladder.tolist()
    for gid, cnt in zip(ids.tolist(), counts.tolist()):
        members = order[start : start + cnt]
        start += cnt
        if gid < 0:
            continue
        kx, ky = ladder_list[gid // len(ladder_list)], ladder_list[gid % len(ladder_list)]
        step = max(1, DENSE_CHUNK // (kx * ky))
        for s in range(0, cnt, step):
            v = members[s : s + step]
            k, a = _dense_block(
                abc[v], means2d[v], opac[v], lp_off[v], x_lo[v], y_lo[v], nx[v], ny[v], keybase[v], kx, ky, vbits, width
            )
            keys.append(k)
            alphas.append(a)
    if not keys:
        return (torch.zeros(0, dtype=keybase.dtype, device=device), abc.new_zeros(0))
    return torch.cat(keys), torch.cat(alphas)


def _dense_block(abc, m2d, opac, lp_off, x_lo, y_lo, nx, ny, keybase, kx: int, ky: int, vbits: int, width: int):
    dev, dt = abc.device, abc.dtype
    ox = torch.arange(kx, device=dev)
    oy = torch.arange(ky, device=dev)
    px = (x_lo[:, None] + ox).to(dt) + 0.5  # [Vb,kx]
    py = (y_lo[:, None] + oy).to(dt) + 0.5  # [Vb,ky]
    # only the final additions below are [Vb,ky,kx]; everything else is per row or column
    cx, cy, cz = (
        abc[:, j, None, None] * px[:, None, :] + (abc[:, 3 + j, None] * py + abc[:, 6 + j, None])[:, :, None]
        for j in range(3)
    )
    dx = m2d[:, 0, None] - px
    dy = m2d[:, 1, None] - py
    s2 = LOWPASS * ((dx * dx)[:, None, :] + (dy * dy)[:, :, None]) + lp_off[:, None, None]
    s3 = (cx * cx + cy * cy) / (cz * cz)  # inf/nan where the ray misses: min() then drops it
    alpha = (opac[:, None, None] * torch.exp(-0.5 * torch.minimum(s3, s2))).clamp_max(ALPHA_MAX)
    ok = alpha >= ALPHA_MIN
    ok &= (ox < nx[:, None])[:, None, :] & (oy < ny[:, None])[:, :, None]
    offs = ((oy[:, None] * width + ox[None, :]) << vbits).to(keybase.dtype)  # [ky,kx]
    return torch.masked_select(keybase[:, None, None] + offs, ok), torch.masked_select(alpha, ok)


@torch.no_grad()
def _drop_terminated(keys: torch.Tensor, alphas: torch.Tensor, vbits: int) -> torch.Tensor:
    """Sort pairs by key and keep those before each pixel's termination point."""
    keys, perm = torch.sort(keys, stable=True)  # stable => radix sort on CPU
    log_t = torch.log1p(-alphas.index_select(0, perm)).double()
    pix = keys >> vbits
    start = torch.ones_like(pix, dtype=torch.bool)
    start[1:] = pix[1:] != pix[:-1]
    pos = torch.arange(pix.numel(), device=pix.device)
    first = torch.where(start, pos, torch.zeros_like(pos)).cummax(0).values
    incl = torch.cumsum(log_t, 0)
    keep = (incl - (incl - log_t).index_select(0, first)) > math.log(T_MIN)
    return keys if bool(keep.all()) else torch.masked_select(keys, keep)


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def rasterize_torch(
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
    """Render surfels into every camera; see privsplat.render.rasterize for the arguments.

    meta: means2d [C,N,2] (its .grad is gsplat's means2d gradient: the screen-space
    low-pass branch only; with absgrad=True also .absgrad, summed |per-pixel grad| as
    gsplat), gradient_2dgs [C,N,2] (a zero leaf whose .grad is the loss gradient w.r.t.
    translating each surfel in the image, through the ray-transform branch, as gsplat's),
    radii [C,N,2] int32, depths [C,N], width, height, n_cameras, gaussian_ids=None,
    n_pairs (pairs composited), n_candidates (pairs with alpha >= 1/255), depth_convention,
    lowpass.
    """
    if depth_convention not in ("intersection", "center"):
        raise PrivsplatError(f"depth_convention must be 'intersection' or 'center', got {depth_convention!r}")
    check_lowpass(lowpass)
    check_render_inputs(means, quats, scales, opacities, colors, cameras, sh_degree, backgrounds)
    dev, dt = means.device, means.dtype
    cams = cameras.to(dev, dt)
    C, W, H, N = len(cams), cams.width, cams.height, means.shape[0]

    proj = project_surfels(means, quats, scales[:, :2], cams.viewmats, cams.Ks, W, H, near_plane, far_plane)
    tracks_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means, quats, scales, opacities, colors))
    shift = torch.zeros((C, N, 2), dtype=dt, device=dev, requires_grad=tracks_grad)

    # Visible (camera, surfel) list, ordered by camera then centre depth (gsplat's sort key;
    # the bits of a positive float32 sort like its value, so one radix sort does it).
    with torch.no_grad():
        visible = (proj.radii > 0).all(-1) & (opacities >= ALPHA_MIN)[None]
        vc, vn = visible.nonzero(as_tuple=True)
        depth_bits = proj.depths[vc, vn].float().view(torch.int32).long()
        order = torch.sort((vc << 32) | depth_bits, stable=True).indices
        vc, vn = vc[order], vn[order]
        fv = vc * N + vn
    V = vc.numel()
    vbits = max(1, int(V).bit_length())

    def per_visible(x):  # [C,N,k] -> [V,k]; backward is one index_add
        return x.reshape(C * N, -1).index_select(0, fv)

    # Rows of T per visible surfel, with the densification shift folded into M0, M1 the way
    # gsplat defines gradient_2dgs: d loss / d T[0:2, 2] times the centre depth.
    M0, M1, M2 = (per_visible(r) for r in proj.rows)
    z = M2[:, 2]
    sv = per_visible(shift) * z.detach()[:, None]
    e_z = M2.new_tensor([0.0, 0.0, 1.0])
    M0, M1 = M0 + sv[:, :1] * e_z, M1 + sv[:, 1:] * e_z
    # h_u x h_v = x (M1 x M2) + y (M2 x M0) + (M0 x M1): linear in the pixel coordinates.
    a, b, c = torch.linalg.cross(M1, M2), torch.linalg.cross(M2, M0), torch.linalg.cross(M0, M1)
    m2d = per_visible(proj.means2d)
    opac = opacities[vn]
    col = visible_colors(colors, sh_degree, means, cams.centers, vc, vn)  # [V,D]
    D = col.shape[1]
    nrm = per_visible(proj.normals)
    # from the rows with the shift folded in: gradient_2dgs is d loss / d T[0:2, 2] through every path
    lp_off = lowpass_offset(M0, M1, M2) if lowpass == "area" else M2.new_zeros(V)

    with torch.no_grad():
        T_rows = torch.stack([M0, M1, M2], 1).detach()
        lo, hi = _support_boxes(T_rows, m2d.detach(), opac.detach(), lp_off.detach(), W, H)
        key_dtype = torch.int32 if vbits + (C * H * W - 1).bit_length() <= 31 else torch.int64
        keybase = (((vc * H) * W << vbits) + torch.arange(V, device=dev)).to(key_dtype)
        abc = torch.cat([a, b, c], 1).detach()
        keys, alphas = _candidate_pairs(abc, m2d.detach(), opac.detach(), lp_off.detach(), lo, hi, keybase, vbits, W, H)
        n_candidates = keys.numel()
        keys = _drop_terminated(keys, alphas, vbits)
        keys = keys.long()
        vid = keys & ((1 << vbits) - 1)
        pix = keys >> vbits
        seg = Segments.of(pix)
        pw = pix % (W * H) if C > 1 else pix
        py = torch.div(pw, W, rounding_mode="floor")
        px = (pw - py * W).to(dt) + 0.5
        py = py.to(dt) + 0.5

    # Differentiable pass over the kept pairs, one 1-D tensor per quantity.
    table = torch.cat([a.T, b.T, c.T, m2d.T, opac[None], M2.T, lp_off[None], col.T, nrm.T], 0).contiguous()
    g = _GatherRows.apply(table, vid)
    a0, a1, a2, b0, b1, b2, c0, c1, c2, gmx, gmy, go, t20, t21, gz, goff = g[:16]
    gcol, gnrm = g[16 : 16 + D], g[16 + D : 19 + D]
    if absgrad and gmx.requires_grad:
        _attach_absgrad(proj.means2d, gmx, gmy, fv, vid)

    cx = a0 * px + (b0 * py + c0)
    cy = a1 * px + (b1 * py + c1)
    cz = a2 * px + (b2 * py + c2)
    dx, dy = gmx - px, gmy - py
    s2 = LOWPASS * (dx * dx + dy * dy) + goff
    with torch.no_grad():  # which kernel gsplat uses; the other branch gets no gradient
        use3 = ((cx * cx + cy * cy) <= s2 * (cz * cz)) & (cz != 0)
    den = torch.where(use3, cz, torch.ones_like(cz))  # safe denominator: no 0*inf in backward
    u, v = cx / den, cy / den
    sigma = torch.where(use3, u * u + v * v, s2)
    alpha = (go * torch.exp(-0.5 * sigma)).clamp_max(ALPHA_MAX)
    if depth_convention == "center":
        depth = gz
    else:  # camera z of the ray-plane intersection mu + u s_u t_u + v s_v t_v
        depth = torch.where(use3, t20 * u + t21 * v + gz, gz)

    log_t = torch.log1p(-alpha).double()
    T = torch.exp(_SegmentExclusiveCumsum.apply(log_t, seg.first, seg.last)).to(dt)  # before this pair
    w = alpha * T
    wd = w * depth
    # Distortion (gsplat's L1 form 2 sum_i w_i sum_{j<i} w_j (d_i - d_j)) needs depths in the
    # order pairs are sorted, i.e. centre depths: with intersection depths a tilted surfel can
    # come "before" its predecessor and the sum goes negative, which the optimiser then exploits.
    wd_sorted = wd if depth_convention == "center" else w * gz
    d_excl = _SegmentExclusiveCumsum.apply(wd_sorted.double(), seg.first, seg.last).to(dt)
    distortion = 2.0 * (wd_sorted * (1.0 - T) - w * d_excl)
    with torch.no_grad():  # median: the last pair entered with T > 0.5
        half_T = T > 0.5
        median_sel = half_T.clone()
        median_sel[:-1] &= ~(half_T[1:] & (pix[1:] == pix[:-1]))
    rows = [w * x for x in gcol] + [w * x for x in gnrm] + [wd, w, distortion, depth * median_sel.to(dt)]
    img = [im.view(C, H, W, 1) for im in _ScatterRows.apply(pix, C * H * W, *rows)]
    rgb, nrm_img = torch.cat(img[:D], -1), torch.cat(img[D : D + 3], -1)
    acc = img[D + 4]
    if backgrounds is not None:
        rgb = rgb + (1.0 - acc) * backgrounds.to(dt)[:, None, None, :]
    depth_exp = img[D + 3] / acc.clamp_min(EXPECTED_DEPTH_EPS)

    meta = {
        "means2d": proj.means2d,
        "gradient_2dgs": shift,
        "radii": proj.radii,
        "depths": proj.depths,
        "width": W,
        "height": H,
        "n_cameras": C,
        "gaussian_ids": None,
        "camera_ids": None,
        "n_pairs": int(pix.numel()),
        "n_candidates": int(n_candidates),
        "depth_convention": depth_convention,
        "lowpass": lowpass,
        "backend": "torch",
    }
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    return RenderOutput(
        rgb=rgb,
        alpha=acc,
        normals=nrm_img,
        depth_normals=depth_to_normals(depth_exp, acc, cams),
        depth_expected=depth_exp,
        depth_median=img[D + 6],
        distortion=img[D + 5],
        meta=meta,
    )


def _attach_absgrad(means2d, gmx, gmy, fv, vid):
    """Give means2d an .absgrad after backward: sum over pixels of |d loss / d means2d| (gsplat)."""
    means2d.absgrad = torch.zeros_like(means2d, requires_grad=False)
    flat = fv[vid]

    def hook(j):
        def add(grad):
            means2d.absgrad.view(-1, 2)[:, j].index_add_(0, flat, grad.detach().abs())

        return add

    gmx.register_hook(hook(0))
    gmy.register_hook(hook(1))
