"""Compiled CPU rasterizer for 2D Gaussian surfels (numba), forward and backward.

Same math and outputs as the pure-torch reference (render/torch_backend.py, itself gsplat
1.5.3's 2DGS): the projection and every per-surfel quantity stay in torch (autograd does
their backward), and only the per-pixel work, which is where the time goes, is compiled:

1. per surfel a pixel box (the dual-conic box of the alpha >= 1/255 support, as the torch
   backend) and, per pixel row, the exact x-span of that support: the ray-transform
   ellipse u^2 + v^2 <= rho^2 is a quadratic in x on a row (interval between its roots),
   the screen-space low-pass disc a chord; their hull is the span. Only span pixels are
   ever evaluated, and surfels are binned only into the 8x8 tiles their spans touch.
2. tiles are composited in parallel (numba prange), each by one thread: surfels front to
   back in gsplat's order (camera, centre depth), per pixel until the transmittance would
   drop to 1e-4 (exclusive), keeping the final T, the last contributing surfel, the median
   surfel and the distortion sums.
3. backward walks each tile back to front, recovering T by division (gsplat's scheme, in
   float64 here), and writes one gradient row per (tile, surfel) entry; a serial sum over
   the entries gives the per-surfel gradient. Nothing is shared between threads, so the
   results do not depend on the thread count or scheduling.

Everything per pixel is float64; the images come back in the inputs' dtype.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch

from ..cameras import Cameras
from ..errors import PrivsplatError
from . import RenderOutput
from .torch_backend import (ALPHA_MAX, ALPHA_MIN, EXPECTED_DEPTH_EPS, LOWPASS, T_MIN, _visible_colors,
                            check_render_inputs, depth_to_normals, project_surfels)

TILE = 8            # pixels per tile side: small tiles waste few span tests on a CPU
SPAN_MARGIN = 0.01  # px added to each row span so float rounding never drops a pixel
# Columns of the per-visible-surfel table handed to the kernels.
COL_A, COL_B, COL_C = 0, 3, 6     # a, b, c: (u, v, 1) ~ a x + b y + c  (3 each)
COL_M2D, COL_OPAC, COL_M2 = 9, 11, 12  # projected centre (2), opacity, row M2 = (t20, t21, z)
COL_FEAT = 15                     # colours (D), then normals (3)


# ---------------------------------------------------------------------------------------
# Per-surfel geometry (no grad)
# ---------------------------------------------------------------------------------------

@nb.njit(cache=True, error_model="numpy")
def _support_boxes(trows, tab, W, H, bx0, bx1, by0, by1, rho2):
    """Integer pixel boxes (inclusive) of the alpha >= 1/255 support; torch_backend._support_boxes."""
    big = float(max(W, H) + 2)
    for v in range(tab.shape[0]):
        o = tab[v, COL_OPAC]
        lg = math.log(255.0 * o) if o > 0 else 0.0
        lg = max(lg, 0.0)
        rho = math.sqrt(2.0 * lg)
        rho2[v] = 2.0 * lg
        r0 = (trows[v, 0] * rho, trows[v, 1] * rho, trows[v, 2])
        r1 = (trows[v, 3] * rho, trows[v, 4] * rho, trows[v, 5])
        r2 = (trows[v, 6] * rho, trows[v, 7] * rho, trows[v, 8])
        d = r2[0] * r2[0] + r2[1] * r2[1] - r2[2] * r2[2]
        r2d = math.sqrt(lg)
        mx, my = tab[v, COL_M2D], tab[v, COL_M2D + 1]
        if d < 0:
            cx = (r0[0] * r2[0] + r0[1] * r2[1] - r0[2] * r2[2]) / d
            cy = (r1[0] * r2[0] + r1[1] * r2[1] - r1[2] * r2[2]) / d
            sx = (r0[0] * r0[0] + r0[1] * r0[1] - r0[2] * r0[2]) / d
            sy = (r1[0] * r1[0] + r1[1] * r1[1] - r1[2] * r1[2]) / d
            hx = math.sqrt(max(cx * cx - sx, 0.0))
            hy = math.sqrt(max(cy * cy - sy, 0.0))
            lox, hix = min(cx - hx, mx - r2d), max(cx + hx, mx + r2d)
            loy, hiy = min(cy - hy, my - r2d), max(cy + hy, my + r2d)
        else:  # the support circle crosses the camera plane: its image is unbounded
            lox, hix, loy, hiy = 0.0, float(W), 0.0, float(H)
        bx0[v] = int(max(math.ceil(min(max(lox, -big), big) - 0.5), 0.0))
        bx1[v] = int(min(math.floor(min(max(hix, -big), big) - 0.5), W - 1.0))
        by0[v] = int(max(math.ceil(min(max(loy, -big), big) - 0.5), 0.0))
        by1[v] = int(min(math.floor(min(max(hiy, -big), big) - 0.5), H - 1.0))


@nb.njit(cache=True, inline="always", error_model="numpy")
def _row_span(tab, v, rho2, py, x0, x1):
    """Pixel columns [i0, i1] of row centre py (within [x0, x1]) that may have alpha >= 1/255.

    The ray-transform kernel's support on the row solves (a0 x + e0)^2 + (a1 x + e1)^2
    <= rho^2 (a2 x + e2)^2, e_j = b_j py + c_j: between the roots when the x^2 coefficient
    is positive, otherwise (support unbounded on this row) the whole range. The low-pass
    kernel's support is the chord of the disc |d|^2 <= rho^2 / LOWPASS.
    """
    a0, a1, a2 = tab[v, COL_A], tab[v, COL_A + 1], tab[v, COL_A + 2]
    e0 = tab[v, COL_B] * py + tab[v, COL_C]
    e1 = tab[v, COL_B + 1] * py + tab[v, COL_C + 1]
    e2 = tab[v, COL_B + 2] * py + tab[v, COL_C + 2]
    A = a0 * a0 + a1 * a1 - rho2 * a2 * a2
    if not A > 0.0:
        return x0, x1
    B = 2.0 * (a0 * e0 + a1 * e1 - rho2 * a2 * e2)
    Cq = e0 * e0 + e1 * e1 - rho2 * e2 * e2
    disc = B * B - 4.0 * A * Cq
    lo, hi = math.inf, -math.inf
    if disc >= 0.0:
        sq = math.sqrt(disc)
        q = -0.5 * (B + sq) if B >= 0.0 else -0.5 * (B - sq)  # stable roots
        if q != 0.0:
            ra, rb = q / A, Cq / q
            lo, hi = min(ra, rb), max(ra, rb)
        else:
            lo, hi = 0.0, 0.0
    dy = tab[v, COL_M2D + 1] - py
    r2 = rho2 / LOWPASS - dy * dy
    if r2 >= 0.0:
        r = math.sqrt(r2)
        mx = tab[v, COL_M2D]
        lo, hi = min(lo, mx - r), max(hi, mx + r)
    if not lo <= hi:
        return 1, 0
    lo = max(lo - SPAN_MARGIN - 0.5, x0 - 1.0)
    hi = min(hi + SPAN_MARGIN - 0.5, x1 + 1.0)
    return max(int(math.ceil(lo)), x0), min(int(math.floor(hi)), x1)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _kernel(tab, v, px, py):
    """gsplat's 2DGS kernel at pixel centre (px, py): alpha and what its gradient needs."""
    cx = tab[v, COL_A] * px + (tab[v, COL_B] * py + tab[v, COL_C])
    cy = tab[v, COL_A + 1] * px + (tab[v, COL_B + 1] * py + tab[v, COL_C + 1])
    cz = tab[v, COL_A + 2] * px + (tab[v, COL_B + 2] * py + tab[v, COL_C + 2])
    dx = tab[v, COL_M2D] - px
    dy = tab[v, COL_M2D + 1] - py
    s2 = LOWPASS * (dx * dx + dy * dy)
    use3 = (cx * cx + cy * cy) <= s2 * (cz * cz) and cz != 0.0
    u = 0.0
    w = 0.0
    if use3:
        u = cx / cz
        w = cy / cz
        sigma = u * u + w * w
    else:
        sigma = s2
    g = math.exp(-0.5 * sigma)
    raw = tab[v, COL_OPAC] * g
    return min(raw, ALPHA_MAX), raw, g, use3, u, w, cz, dx, dy


# ---------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------

@nb.njit(cache=True, error_model="numpy")
def _bin_tiles(tab, vc, rho2, bx0, bx1, by0, by1, n_cams, ntx, nty, stats):
    """Per-tile surfel lists in depth order (CSR): a surfel joins a tile its row spans touch.

    stats[0] = box pixels, stats[1] = span pixels (the most candidates the kernels evaluate).
    """
    per_cam = ntx * nty
    V = tab.shape[0]
    cap = 0  # tiles touched by the boxes: an upper bound on the entries
    for v in range(V):
        if bx0[v] <= bx1[v] and by0[v] <= by1[v]:
            cap += (bx1[v] // TILE - bx0[v] // TILE + 1) * (by1[v] // TILE - by0[v] // TILE + 1)
    tile_of = np.empty(cap, np.int64)
    surfel = np.empty(cap, np.int32)
    counts = np.zeros(n_cams * per_cam + 1, np.int64)
    n = 0
    for v in range(V):
        if bx0[v] > bx1[v] or by0[v] > by1[v]:
            continue
        base = vc[v] * per_cam
        stats[0] += (bx1[v] - bx0[v] + 1) * (by1[v] - by0[v] + 1)
        for ty in range(by0[v] // TILE, by1[v] // TILE + 1):
            lo, hi = bx1[v] + 1, bx0[v] - 1
            for y in range(max(by0[v], ty * TILE), min(by1[v], ty * TILE + TILE - 1) + 1):
                i0, i1 = _row_span(tab, v, rho2[v], y + 0.5, bx0[v], bx1[v])
                if i0 <= i1:
                    lo, hi = min(lo, i0), max(hi, i1)
                    stats[1] += i1 - i0 + 1
            if lo > hi:
                continue
            for tx in range(lo // TILE, hi // TILE + 1):
                t = base + ty * ntx + tx
                tile_of[n] = t
                surfel[n] = v
                counts[t + 1] += 1
                n += 1
    for t in range(n_cams * per_cam):
        counts[t + 1] += counts[t]
    ids = np.empty(n, np.int32)
    fill = counts[:-1].copy()
    for i in range(n):  # stable: each tile keeps the depth order of the surfels
        t = tile_of[i]
        ids[fill[t]] = surfel[i]
        fill[t] += 1
    return counts, ids


# ---------------------------------------------------------------------------------------
# Forward / backward kernels
# ---------------------------------------------------------------------------------------

@nb.njit(cache=True, error_model="numpy")
def _forward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
             img, t_final, d_final, last, med, tile_stats):
    """Composite every tile. img [C*H*W, D+7]: colours, normals, sum w*depth, sum w,
    distortion, median depth. Per pixel: final T, sum w*z (distortion), the entry index of
    the last contributing surfel and of the median surfel (-1: none)."""
    ntx, nty = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
    K = D + 7
    c = t // (ntx * nty)
    ty = (t % (ntx * nty)) // ntx
    tx = t % ntx
    xa, ya = tx * TILE, ty * TILE
    xb, yb = min(xa + TILE, W) - 1, min(ya + TILE, H) - 1
    tw = xb - xa + 1
    npix = tw * (yb - ya + 1)
    T = np.ones(npix)
    dex = np.zeros(npix)
    acc = np.zeros((npix, K))
    done = np.zeros(npix, np.bool_)
    lst = np.full(npix, -1, np.int64)
    mde = np.full(npix, -1, np.int64)
    n_done = 0
    tested = 0
    pairs = 0
    for e in range(off[t], off[t + 1]):
        v = ids[e]
        feat = COL_FEAT
        for y in range(max(by0[v], ya), min(by1[v], yb) + 1):
            py = y + 0.5
            i0, i1 = _row_span(tab, v, rho2[v], py, max(bx0[v], xa), min(bx1[v], xb))
            for x in range(i0, i1 + 1):
                p = (y - ya) * tw + (x - xa)
                if done[p]:
                    continue
                tested += 1
                alpha, raw, g, use3, u, w_, cz, dx, dy = _kernel(tab, v, x + 0.5, py)
                if alpha < ALPHA_MIN:
                    continue
                next_t = T[p] * (1.0 - alpha)
                if next_t <= T_MIN:
                    done[p] = True
                    n_done += 1
                    continue
                wt = alpha * T[p]
                z = tab[v, COL_M2 + 2]
                depth = z
                if use3 and not center:
                    depth = tab[v, COL_M2] * u + tab[v, COL_M2 + 1] * w_ + z
                for k in range(D + 3):
                    acc[p, k] += wt * tab[v, feat + k]
                acc[p, D + 3] += wt * depth
                acc[p, D + 4] += wt
                acc[p, D + 5] += 2.0 * (wt * z * (1.0 - T[p]) - wt * dex[p])
                dex[p] += wt * z
                if T[p] > 0.5:
                    acc[p, D + 6] = depth
                    mde[p] = e
                lst[p] = e
                T[p] = next_t
                pairs += 1
        if n_done == npix:
            break
    for y in range(ya, yb + 1):
        for x in range(xa, xb + 1):
            p = (y - ya) * tw + (x - xa)
            q = (c * H + y) * W + x
            for k in range(K):
                img[q, k] = acc[p, k]
            t_final[q] = T[p]
            d_final[q] = dex[p]
            last[q] = lst[p]
            med[q] = mde[p]
    tile_stats[t, 0] = tested
    tile_stats[t, 1] = pairs


@nb.njit(cache=True, error_model="numpy")
def _backward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
              gimg, t_final, d_final, last, med, egrad, eabs):
    """Per (tile, surfel) entry: the gradient of the loss w.r.t. the surfel's table row,
    summed over the tile's pixels (egrad [E, F]), and sum |d loss / d means2d| (eabs [E, 2])."""
    ntx, nty = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
    F = egrad.shape[1]
    c = t // (ntx * nty)
    ty = (t % (ntx * nty)) // ntx
    tx = t % ntx
    xa, ya = tx * TILE, ty * TILE
    xb, yb = min(xa + TILE, W) - 1, min(ya + TILE, H) - 1
    tw = xb - xa + 1
    npix = tw * (yb - ya + 1)
    Tc = np.empty(npix)
    R = np.zeros(npix)
    Db = np.zeros(npix)
    e_max = -1
    for y in range(ya, yb + 1):
        for x in range(xa, xb + 1):
            q = (c * H + y) * W + x
            Tc[(y - ya) * tw + (x - xa)] = t_final[q]
            e_max = max(e_max, last[q])
    loc = np.zeros(F)
    for e in range(e_max, off[t] - 1, -1):
        v = ids[e]
        loc[:] = 0.0
        abs_x = 0.0
        abs_y = 0.0
        z = tab[v, COL_M2 + 2]
        t20, t21 = tab[v, COL_M2], tab[v, COL_M2 + 1]
        for y in range(max(by0[v], ya), min(by1[v], yb) + 1):
            py = y + 0.5
            i0, i1 = _row_span(tab, v, rho2[v], py, max(bx0[v], xa), min(bx1[v], xb))
            for x in range(i0, i1 + 1):
                q = (c * H + y) * W + x
                if e > last[q]:
                    continue
                px = x + 0.5
                alpha, raw, g, use3, u, w_, cz, dx, dy = _kernel(tab, v, px, py)
                if alpha < ALPHA_MIN:
                    continue
                p = (y - ya) * tw + (x - xa)
                T_i = Tc[p] / (1.0 - alpha)
                wt = alpha * T_i
                depth = z
                if use3 and not center:
                    depth = t20 * u + t21 * w_ + z
                # d loss / d w for this pair: features, depth, alpha, distortion
                dldw = gimg[q, D + 3] * depth + gimg[q, D + 4]
                for k in range(D + 3):
                    dldw += gimg[q, k] * tab[v, COL_FEAT + k]
                    loc[COL_FEAT + k] += gimg[q, k] * wt
                a_i = 1.0 - T_i
                a_fin = 1.0 - t_final[q]
                d_i = d_final[q] - Db[p] - wt * z
                gd = gimg[q, D + 5]
                dldw += gd * 2.0 * (2.0 * (z * a_i - d_i) + d_final[q] - z * a_fin)
                dalpha = T_i * dldw - R[p] / (1.0 - alpha)
                R[p] += dldw * wt
                Db[p] += wt * z
                Tc[p] = T_i
                ddepth = gimg[q, D + 3] * wt
                if med[q] == e:
                    ddepth += gimg[q, D + 6]
                dz = 2.0 * wt * gd * (2.0 * a_i + wt - a_fin)
                dsig = 0.0
                if raw <= ALPHA_MAX:  # clamped alpha passes no gradient to o or sigma
                    loc[COL_OPAC] += dalpha * g
                    dsig = -0.5 * raw * dalpha
                if use3:
                    dldu = 2.0 * u * dsig
                    dldv = 2.0 * w_ * dsig
                    if not center:
                        dldu += ddepth * t20
                        dldv += ddepth * t21
                        loc[COL_M2] += ddepth * u
                        loc[COL_M2 + 1] += ddepth * w_
                    dcx = dldu / cz
                    dcy = dldv / cz
                    dcz = -(dldu * u + dldv * w_) / cz
                    loc[COL_A] += dcx * px
                    loc[COL_B] += dcx * py
                    loc[COL_C] += dcx
                    loc[COL_A + 1] += dcy * px
                    loc[COL_B + 1] += dcy * py
                    loc[COL_C + 1] += dcy
                    loc[COL_A + 2] += dcz * px
                    loc[COL_B + 2] += dcz * py
                    loc[COL_C + 2] += dcz
                else:
                    gx = dsig * 2.0 * LOWPASS * dx
                    gy = dsig * 2.0 * LOWPASS * dy
                    loc[COL_M2D] += gx
                    loc[COL_M2D + 1] += gy
                    abs_x += abs(gx)
                    abs_y += abs(gy)
                loc[COL_M2 + 2] += ddepth + dz
        for k in range(F):
            egrad[e, k] = loc[k]
        eabs[e, 0] = abs_x
        eabs[e, 1] = abs_y


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _forward_par(n_tiles, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                 img, t_final, d_final, last, med, tile_stats):
    for t in nb.prange(n_tiles):
        _forward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                      img, t_final, d_final, last, med, tile_stats)


@nb.njit(cache=True, error_model="numpy")
def _forward_ser(n_tiles, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                 img, t_final, d_final, last, med, tile_stats):
    for t in range(n_tiles):
        _forward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                      img, t_final, d_final, last, med, tile_stats)


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _backward_par(n_tiles, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                  gimg, t_final, d_final, last, med, egrad, eabs):
    for t in nb.prange(n_tiles):
        _backward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                       gimg, t_final, d_final, last, med, egrad, eabs)


@nb.njit(cache=True, error_model="numpy")
def _backward_ser(n_tiles, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                  gimg, t_final, d_final, last, med, egrad, eabs):
    for t in range(n_tiles):
        _backward_tile(t, tab, rho2, bx0, bx1, by0, by1, off, ids, n_cams, H, W, D, center,
                       gimg, t_final, d_final, last, med, egrad, eabs)


@nb.njit(cache=True, error_model="numpy")
def _sum_entries(ids, egrad, eabs, grad, absg):
    """Per-surfel sums of the per-entry rows, in entry order (deterministic)."""
    for e in range(ids.shape[0]):
        v = ids[e]
        for k in range(egrad.shape[1]):
            grad[v, k] += egrad[e, k]
        absg[v, 0] += eabs[e, 0]
        absg[v, 1] += eabs[e, 1]


# ---------------------------------------------------------------------------------------
# autograd glue
# ---------------------------------------------------------------------------------------

class _Raster:
    """Numpy state shared by the forward and backward pass of one render."""

    def __init__(self, trows: np.ndarray, vc: np.ndarray, n_cams: int, H: int, W: int, D: int, center: bool):
        self.trows, self.vc = trows, vc
        self.n_cams, self.H, self.W, self.D, self.center = n_cams, H, W, D, center
        self.absgrad_to = None  # (means2d, fv) when absgrad was asked for
        self.threads = _use_torch_threads()

    def prepare(self, tab: np.ndarray) -> None:
        V = tab.shape[0]
        self.bx0, self.bx1 = np.empty(V, np.int64), np.empty(V, np.int64)
        self.by0, self.by1 = np.empty(V, np.int64), np.empty(V, np.int64)
        self.rho2 = np.empty(V)
        _support_boxes(self.trows, tab, self.W, self.H, self.bx0, self.bx1, self.by0, self.by1, self.rho2)
        self.ntx, self.nty = -(-self.W // TILE), -(-self.H // TILE)
        self.n_tiles = self.n_cams * self.ntx * self.nty
        self.stats = np.zeros(2, np.int64)
        self.off, self.ids = _bin_tiles(tab, self.vc, self.rho2, self.bx0, self.bx1, self.by0, self.by1,
                                        self.n_cams, self.ntx, self.nty, self.stats)

    def args(self):
        return (self.rho2, self.bx0, self.bx1, self.by0, self.by1, self.off, self.ids,
                self.n_cams, self.H, self.W, self.D, self.center)


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: torch.Tensor, raster: _Raster):
        tab = np.ascontiguousarray(table.detach().to(torch.float64).numpy())
        raster.prepare(tab)
        n_pix = raster.n_cams * raster.H * raster.W
        img = np.empty((n_pix, raster.D + 7))
        raster.t_final, raster.d_final = np.empty(n_pix), np.empty(n_pix)
        raster.last, raster.med = np.empty(n_pix, np.int64), np.empty(n_pix, np.int64)
        tile_stats = np.zeros((raster.n_cams * raster.ntx * raster.nty, 2), np.int64)
        fwd = _forward_ser if raster.threads == 1 else _forward_par
        fwd(raster.n_tiles, tab, *raster.args(), img, raster.t_final, raster.d_final, raster.last, raster.med, tile_stats)
        raster.n_tested, raster.n_pairs = (int(s) for s in tile_stats.sum(0))
        ctx.raster, ctx.tab, ctx.dtype = raster, tab, table.dtype
        return torch.from_numpy(img).to(table.dtype)

    @staticmethod
    def backward(ctx, grad_img):
        raster, tab = ctx.raster, ctx.tab
        gimg = np.ascontiguousarray(grad_img.detach().to(torch.float64).numpy())
        E = raster.ids.shape[0]
        egrad, eabs = np.zeros((E, tab.shape[1])), np.zeros((E, 2))
        bwd = _backward_ser if raster.threads == 1 else _backward_par
        bwd(raster.n_tiles, tab, *raster.args(), gimg, raster.t_final, raster.d_final, raster.last, raster.med,
                  egrad, eabs)
        grad, absg = np.zeros_like(tab), np.zeros((tab.shape[0], 2))
        _sum_entries(raster.ids, egrad, eabs, grad, absg)
        if raster.absgrad_to is not None:
            means2d, fv = raster.absgrad_to
            means2d.absgrad.view(-1, 2).index_add_(0, fv, torch.from_numpy(absg).to(means2d.dtype))
        return torch.from_numpy(grad).to(ctx.dtype), None


def _use_torch_threads() -> int:
    """Threads for the kernels: torch's count (privsplat.threads sets it), capped by numba's pool.

    With one thread the serial kernels run and numba's thread pool is never started: an
    idle OpenMP pool spins after every parallel region, which costs a busy machine dearly.
    """
    n = max(1, min(torch.get_num_threads(), nb.config.NUMBA_NUM_THREADS))
    if n > 1 and nb.get_num_threads() != n:
        nb.set_num_threads(n)
    return n


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------

def rasterize_numba(means, quats, scales, opacities, colors, cameras: Cameras, *,
                    sh_degree=None, backgrounds=None, near_plane=0.01, far_plane=1e10,
                    depth_convention="intersection", absgrad=False) -> RenderOutput:
    """Render surfels into every camera on the CPU; same outputs and meta as rasterize_torch.

    meta adds n_box_pixels (pixels in the surfels' support boxes, what a box-based CPU
    rasterizer tests), n_span_pixels (pixels in their exact row spans) and n_candidates
    (span pixels actually evaluated: pixels already terminated are skipped).
    """
    if depth_convention not in ("intersection", "center"):
        raise PrivsplatError(f"depth_convention must be 'intersection' or 'center', got {depth_convention!r}")
    if means.device.type != "cpu":
        raise PrivsplatError("the numba backend runs on the CPU; pass CPU tensors or use backend='gsplat' on CUDA")
    check_render_inputs(means, quats, scales, opacities, colors, cameras, sh_degree, backgrounds)
    dev, dt = means.device, means.dtype
    cams = cameras.to(dev, dt)
    C, W, H, N = len(cams), cams.width, cams.height, means.shape[0]

    proj = project_surfels(means, quats, scales[:, :2], cams.viewmats, cams.Ks, W, H, near_plane, far_plane)
    tracks_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, quats, scales, opacities, colors))
    shift = torch.zeros((C, N, 2), dtype=dt, device=dev, requires_grad=tracks_grad)

    # Visible (camera, surfel) list ordered by camera then centre depth, as the torch backend.
    with torch.no_grad():
        visible = (proj.radii > 0).all(-1) & (opacities >= ALPHA_MIN)[None]
        vc, vn = visible.nonzero(as_tuple=True)
        depth_bits = proj.depths[vc, vn].float().view(torch.int32).long()
        order = torch.sort((vc << 32) | depth_bits, stable=True).indices
        vc, vn = vc[order], vn[order]
        fv = vc * N + vn

    def per_visible(x):  # [C,N,k] -> [V,k]; backward is one index_add
        return x.reshape(C * N, -1).index_select(0, fv)

    # gradient_2dgs: the shift enters T's translation column scaled by depth (see torch_backend).
    M0, M1, M2 = (per_visible(r) for r in proj.rows)
    z = M2[:, 2]
    sv = per_visible(shift) * z.detach()[:, None]
    e_z = M2.new_tensor([0.0, 0.0, 1.0])
    M0, M1 = M0 + sv[:, :1] * e_z, M1 + sv[:, 1:] * e_z
    a, b, c = torch.linalg.cross(M1, M2), torch.linalg.cross(M2, M0), torch.linalg.cross(M0, M1)
    m2d = per_visible(proj.means2d)
    col = _visible_colors(colors, sh_degree, means, cams.centers, vc, vn)     # [V,D]
    D = col.shape[1]
    nrm = per_visible(proj.normals)
    table = torch.cat([a, b, c, m2d, opacities[vn, None], M2, col, nrm], 1)

    trows = torch.cat([M0, M1, M2], 1).detach().to(torch.float64).numpy()
    raster = _Raster(np.ascontiguousarray(trows), vc.numpy().astype(np.int64), C, H, W, D,
                     depth_convention == "center")
    if absgrad and tracks_grad and proj.means2d.requires_grad:
        proj.means2d.absgrad = torch.zeros_like(proj.means2d, requires_grad=False)
        raster.absgrad_to = (proj.means2d, fv)
    img = _Composite.apply(table, raster).view(C, H, W, D + 7)

    rgb, nrm_img = img[..., :D], img[..., D:D + 3]
    acc = img[..., D + 4:D + 5]
    if backgrounds is not None:
        rgb = rgb + (1.0 - acc) * backgrounds.to(dt)[:, None, None, :]
    depth_exp = img[..., D + 3:D + 4] / acc.clamp_min(EXPECTED_DEPTH_EPS)

    meta = {
        "means2d": proj.means2d, "gradient_2dgs": shift, "radii": proj.radii, "depths": proj.depths,
        "width": W, "height": H, "n_cameras": C, "gaussian_ids": None, "camera_ids": None,
        "n_pairs": raster.n_pairs, "n_candidates": raster.n_tested,
        "n_box_pixels": int(raster.stats[0]), "n_span_pixels": int(raster.stats[1]),
        "depth_convention": depth_convention, "backend": "numba",
    }
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()
    return RenderOutput(
        rgb=rgb, alpha=acc, normals=nrm_img,
        depth_normals=depth_to_normals(depth_exp, acc, cams),
        depth_expected=depth_exp, depth_median=img[..., D + 6:D + 7], distortion=img[..., D + 5:D + 6],
        meta=meta)
