"""Compiled CPU rasterizer for 2D Gaussian surfels (numba), forward and backward.

Same math, outputs and meta as the pure-torch reference (render/torch_backend.py, itself
gsplat 1.5.3's 2DGS), tested against it in tests/test_render_numba.py. Four autograd
Functions with hand-written backward passes; torch autograd only joins them (and evaluates
the colours, e.g. SH, per visible surfel):

1. _Project: gsplat's projection (rows of the ray transform T, means2d, radii, facing
   normals) for every (camera, surfel), and its chain rule back to means, quats, scales.
2. _Composite: per visible surfel a pixel box (the dual-conic box of the alpha >= 1/255
   support, as the torch backend) and, per pixel row, the exact x-span of that support:
   the ray-transform ellipse u^2 + v^2 <= rho^2 is a quadratic in x on a row (interval
   between its roots), the screen-space low-pass disc a chord; their hull is the span. Only
   span pixels are evaluated, and a surfel joins only the TILE x TILE tiles its spans touch.
   Tiles are composited independently (numba prange when torch has more than one thread,
   a serial loop otherwise), surfels front to back in gsplat's order (camera, centre
   depth), per pixel until the transmittance would drop to 1e-4 (exclusive). The backward
   pass walks each tile back to front, recovering T by division (gsplat's scheme, float64
   here), writes one gradient row per (tile, surfel) entry, and a serial sum over entries
   gives the per-surfel gradient, so results are bit-identical for any thread count.
   lowpass="area": the per-surfel low-pass offset (common.lowpass_offset, compiled here as
   _lowpass_offset: in torch its small ops cost 5 ms per step at 20k surfels) joins the
   surfel table; the kernels add it to the low-pass exponent (and shrink the low-pass disc
   of the spans by it), its gradient is d loss / d sigma summed over the pixels where the
   low-pass branch wins, and _scatter_table_grad carries it back to the rows of T.
3. _DepthNormals: normals from the expected depth (common.depth_to_normals).

All per-pixel arithmetic is float64; images and gradients come back in the inputs' dtype.
The kernels compile on first use (about 10 s of CPU, twice that with threads > 1) and are
cached by numba (cache=True) next to this file or in the user's cache directory.
"""

from __future__ import annotations

import math
import warnings

import numba as nb
import numpy as np
import torch

from ..cameras import Cameras
from ..errors import PrivsplatError
from . import RenderOutput
from .common import (
    ALPHA_MAX,
    ALPHA_MIN,
    EXPECTED_DEPTH_EPS,
    LOWPASS,
    RADIUS_SIGMAS,
    T_MIN,
    check_lowpass,
    check_render_inputs,
    visible_colors,
)

# numba probes its TBB layer when the parallel kernels first run and warns when the system TBB is
# too old; it then uses OpenMP, which is what we want: the warning is noise for a user.
warnings.filterwarnings("ignore", message="The TBB threading layer requires TBB", category=nb.NumbaWarning)

TILE = 16  # pixels per tile side (spans are exact, so the size only sets per-entry overhead)
SPAN_MARGIN = 0.01  # px added to each row span so float rounding never drops a pixel
# Columns of the per-visible-surfel table handed to the kernels.
COL_A, COL_B, COL_C = 0, 3, 6  # a, b, c: (u, v, 1) ~ a x + b y + c  (3 each)
COL_M2D, COL_OPAC, COL_M2 = 9, 11, 12  # projected centre (2), opacity, row M2 = (t20, t21, z)
COL_LP = 15  # low-pass offset (_lowpass_offset; 0 for lowpass="gsplat")
COL_FEAT = 16  # colours (D), then normals (3)


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
        r2d = math.sqrt(max((2.0 * lg - tab[v, COL_LP]) / LOWPASS, 0.0))  # exactly sqrt(lg) when the offset is 0
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
    kernel's support is the chord of the disc |d|^2 <= (rho^2 - lp_off) / LOWPASS.
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
    r2 = (rho2 - tab[v, COL_LP]) / LOWPASS - dy * dy
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
def _kernel(a0, a1, a2, e0, e1, e2, o, mx, dy2, lp, px):
    """gsplat's 2DGS kernel at pixel centre px of a row (e_j = b_j py + c_j, dy2 = (my - py)^2,
    lp the low-pass offset, added to the low-pass exponent; 0 is gsplat's kernel bit for bit):
    alpha and what its gradient needs. Takes scalars so that the compiler keeps a surfel's
    parameters in registers across its pixels."""
    cx = a0 * px + e0
    cy = a1 * px + e1
    cz = a2 * px + e2
    dx = mx - px
    s2 = LOWPASS * (dx * dx + dy2) + lp
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
    raw = o * g
    return min(raw, ALPHA_MAX), raw, g, use3, u, w, cz, dx


# ---------------------------------------------------------------------------------------
# Tiles
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True, error_model="numpy")
def _bin_tiles(tab, vc, rho2, bx0, bx1, by0, by1, n_cams, ntx, nty, span_off, spans, stats):
    """Per-tile surfel lists in depth order (CSR): a surfel joins a tile its row spans touch.

    Fills spans[span_off[v] + y - by0[v]] = (first, last) pixel column of row y of surfel v.

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
                spans[span_off[v] + y - by0[v], 0] = i0
                spans[span_off[v] + y - by0[v], 1] = i1
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
def _forward_tile(
    t,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    img,
    t_final,
    d_final,
    last,
    med,
    tile_stats,
):
    """Composite tile t. img [C*H*W, D+7]: colours, normals, sum w*depth, sum w, distortion,
    median depth. Per pixel: final T, sum w*z (distortion), the entry index of the last
    contributing surfel and of the median surfel (-1: none)."""
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
    feat = np.empty(D + 3)
    n_done = 0
    tested = 0
    pairs = 0
    for e in range(off[t], off[t + 1]):
        v = e  # entry-ordered arrays: one sequential sweep through memory
        a0, a1, a2 = etab[v, COL_A], etab[v, COL_A + 1], etab[v, COL_A + 2]
        b0, b1, b2 = etab[v, COL_B], etab[v, COL_B + 1], etab[v, COL_B + 2]
        c0, c1, c2 = etab[v, COL_C], etab[v, COL_C + 1], etab[v, COL_C + 2]
        mx, my, o = etab[v, COL_M2D], etab[v, COL_M2D + 1], etab[v, COL_OPAC]
        t20, t21, z = etab[v, COL_M2], etab[v, COL_M2 + 1], etab[v, COL_M2 + 2]
        lp = etab[v, COL_LP]
        for k in range(D + 3):
            feat[k] = etab[v, COL_FEAT + k]
        for y in range(max(by0[v], ya), min(by1[v], yb) + 1):
            py = y + 0.5
            r = span_off[v] + y - by0[v]
            i0, i1 = max(spans[r, 0], xa), min(spans[r, 1], xb)
            e0, e1, e2 = b0 * py + c0, b1 * py + c1, b2 * py + c2
            dy = my - py
            dy2 = dy * dy
            for x in range(i0, i1 + 1):
                p = (y - ya) * tw + (x - xa)
                if done[p]:
                    continue
                tested += 1
                alpha, raw, g, use3, u, w_, cz, dx = _kernel(a0, a1, a2, e0, e1, e2, o, mx, dy2, lp, x + 0.5)
                if alpha < ALPHA_MIN:
                    continue
                Tp = T[p]
                next_t = Tp * (1.0 - alpha)
                if next_t <= T_MIN:
                    done[p] = True
                    n_done += 1
                    continue
                wt = alpha * Tp
                depth = z
                if use3 and not center:
                    depth = t20 * u + t21 * w_ + z
                for k in range(D + 3):
                    acc[p, k] += wt * feat[k]
                acc[p, D + 3] += wt * depth
                acc[p, D + 4] += wt
                acc[p, D + 5] += 2.0 * (wt * z * (1.0 - Tp) - wt * dex[p])
                dex[p] += wt * z
                if Tp > 0.5:
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
def _backward_tile(
    t,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    gimg,
    t_final,
    d_final,
    last,
    med,
    egrad,
    eabs,
):
    """Per (tile, surfel) entry of tile t: the gradient of the loss w.r.t. the surfel's table
    row, summed over the tile's pixels (egrad [E, F]), and sum |d loss / d means2d| (eabs)."""
    ntx, nty = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
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
    feat = np.empty(D + 3)
    gfeat = np.empty(D + 3)
    for e in range(max(e_max + 1, off[t]), off[t + 1]):  # entries behind every pixel's end
        egrad[e, :] = 0.0
        eabs[e, :] = 0.0
    for e in range(e_max, off[t] - 1, -1):
        v = e  # entry-ordered arrays: one sequential sweep through memory
        a0, a1, a2 = etab[v, COL_A], etab[v, COL_A + 1], etab[v, COL_A + 2]
        b0, b1, b2 = etab[v, COL_B], etab[v, COL_B + 1], etab[v, COL_B + 2]
        c0, c1, c2 = etab[v, COL_C], etab[v, COL_C + 1], etab[v, COL_C + 2]
        mx, my, o = etab[v, COL_M2D], etab[v, COL_M2D + 1], etab[v, COL_OPAC]
        t20, t21, z = etab[v, COL_M2], etab[v, COL_M2 + 1], etab[v, COL_M2 + 2]
        lp = etab[v, COL_LP]
        for k in range(D + 3):
            feat[k] = etab[v, COL_FEAT + k]
            gfeat[k] = 0.0
        ga0 = ga1 = ga2 = gb0 = gb1 = gb2 = gc0 = gc1 = gc2 = 0.0
        gmx = gmy = go = gt20 = gt21 = gz = glp = 0.0
        abs_x = 0.0
        abs_y = 0.0
        for y in range(max(by0[v], ya), min(by1[v], yb) + 1):
            py = y + 0.5
            r = span_off[v] + y - by0[v]
            i0, i1 = max(spans[r, 0], xa), min(spans[r, 1], xb)
            e0, e1, e2 = b0 * py + c0, b1 * py + c1, b2 * py + c2
            dy = my - py
            dy2 = dy * dy
            for x in range(i0, i1 + 1):
                q = (c * H + y) * W + x
                if e > last[q]:
                    continue
                px = x + 0.5
                alpha, raw, g, use3, u, w_, cz, dx = _kernel(a0, a1, a2, e0, e1, e2, o, mx, dy2, lp, px)
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
                    gk = gimg[q, k]
                    dldw += gk * feat[k]
                    gfeat[k] += gk * wt
                a_i = 1.0 - T_i
                a_fin = 1.0 - t_final[q]
                d_fin = d_final[q]
                d_i = d_fin - Db[p] - wt * z
                gd = gimg[q, D + 5]
                dldw += gd * 2.0 * (2.0 * (z * a_i - d_i) + d_fin - z * a_fin)
                dalpha = T_i * dldw - R[p] / (1.0 - alpha)
                R[p] += dldw * wt
                Db[p] += wt * z
                Tc[p] = T_i
                ddepth = gimg[q, D + 3] * wt
                if med[q] == e:
                    ddepth += gimg[q, D + 6]
                gz += 2.0 * wt * gd * (2.0 * a_i + wt - a_fin) + ddepth
                dsig = 0.0
                if raw <= ALPHA_MAX:  # clamped alpha passes no gradient to o or sigma
                    go += dalpha * g
                    dsig = -0.5 * raw * dalpha
                if use3:
                    dldu = 2.0 * u * dsig
                    dldv = 2.0 * w_ * dsig
                    if not center:
                        dldu += ddepth * t20
                        dldv += ddepth * t21
                        gt20 += ddepth * u
                        gt21 += ddepth * w_
                    dcx = dldu / cz
                    dcy = dldv / cz
                    dcz = -(dldu * u + dldv * w_) / cz
                    ga0 += dcx * px
                    gb0 += dcx * py
                    gc0 += dcx
                    ga1 += dcy * px
                    gb1 += dcy * py
                    gc1 += dcy
                    ga2 += dcz * px
                    gb2 += dcz * py
                    gc2 += dcz
                else:
                    gx = dsig * 2.0 * LOWPASS * dx
                    gy = dsig * 2.0 * LOWPASS * dy
                    gmx += gx
                    gmy += gy
                    glp += dsig  # the offset enters sigma with slope 1
                    abs_x += abs(gx)
                    abs_y += abs(gy)
        egrad[e, COL_A], egrad[e, COL_A + 1], egrad[e, COL_A + 2] = ga0, ga1, ga2
        egrad[e, COL_B], egrad[e, COL_B + 1], egrad[e, COL_B + 2] = gb0, gb1, gb2
        egrad[e, COL_C], egrad[e, COL_C + 1], egrad[e, COL_C + 2] = gc0, gc1, gc2
        egrad[e, COL_M2D], egrad[e, COL_M2D + 1], egrad[e, COL_OPAC] = gmx, gmy, go
        egrad[e, COL_M2], egrad[e, COL_M2 + 1], egrad[e, COL_M2 + 2] = gt20, gt21, gz
        egrad[e, COL_LP] = glp
        for k in range(D + 3):
            egrad[e, COL_FEAT + k] = gfeat[k]
        eabs[e, 0] = abs_x
        eabs[e, 1] = abs_y


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _forward_par(
    n_tiles,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    img,
    t_final,
    d_final,
    last,
    med,
    tile_stats,
):
    for t in nb.prange(n_tiles):
        _forward_tile(
            t,
            etab,
            span_off,
            spans,
            bx0,
            bx1,
            by0,
            by1,
            off,
            n_cams,
            H,
            W,
            D,
            center,
            img,
            t_final,
            d_final,
            last,
            med,
            tile_stats,
        )


@nb.njit(cache=True, error_model="numpy")
def _forward_ser(
    n_tiles,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    img,
    t_final,
    d_final,
    last,
    med,
    tile_stats,
):
    for t in range(n_tiles):
        _forward_tile(
            t,
            etab,
            span_off,
            spans,
            bx0,
            bx1,
            by0,
            by1,
            off,
            n_cams,
            H,
            W,
            D,
            center,
            img,
            t_final,
            d_final,
            last,
            med,
            tile_stats,
        )


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _backward_par(
    n_tiles,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    gimg,
    t_final,
    d_final,
    last,
    med,
    egrad,
    eabs,
):
    for t in nb.prange(n_tiles):
        _backward_tile(
            t,
            etab,
            span_off,
            spans,
            bx0,
            bx1,
            by0,
            by1,
            off,
            n_cams,
            H,
            W,
            D,
            center,
            gimg,
            t_final,
            d_final,
            last,
            med,
            egrad,
            eabs,
        )


@nb.njit(cache=True, error_model="numpy")
def _backward_ser(
    n_tiles,
    etab,
    span_off,
    spans,
    bx0,
    bx1,
    by0,
    by1,
    off,
    n_cams,
    H,
    W,
    D,
    center,
    gimg,
    t_final,
    d_final,
    last,
    med,
    egrad,
    eabs,
):
    for t in range(n_tiles):
        _backward_tile(
            t,
            etab,
            span_off,
            spans,
            bx0,
            bx1,
            by0,
            by1,
            off,
            n_cams,
            H,
            W,
            D,
            center,
            gimg,
            t_final,
            d_final,
            last,
            med,
            egrad,
            eabs,
        )


@nb.njit(cache=True, error_model="numpy")
def _entry_arrays(ids, tab, span_off, bx0, bx1, by0, by1):
    """Per-surfel arrays copied into entry order (tile by tile, front to back), so the
    kernels read them sequentially instead of jumping through the depth-sorted table."""
    E, F = ids.shape[0], tab.shape[1]
    etab = np.empty((E, F))
    eint = np.empty((5, E), np.int64)
    for e in range(E):
        v = ids[e]
        for k in range(F):
            etab[e, k] = tab[v, k]
        eint[0, e] = span_off[v]
        eint[1, e] = bx0[v]
        eint[2, e] = bx1[v]
        eint[3, e] = by0[v]
        eint[4, e] = by1[v]
    return etab, eint


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
# Projection (gsplat's fully_fused_projection_2dgs, as torch_backend.project_surfels)
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always", error_model="numpy")
def _unit_quat(quats, n):
    w, x, y, z = quats[n, 0], quats[n, 1], quats[n, 2], quats[n, 3]
    norm = math.sqrt(w * w + x * x + y * y + z * z)
    inv = 1.0 / max(norm, 1e-12)  # F.normalize's eps
    return w * inv, x * inv, y * inv, z * inv, inv


@nb.njit(cache=True, inline="always", error_model="numpy")
def _surfel_rows(means, quats, scales, viewmats, Ks, c, n, out):
    """out[0:9] = rows M0, M1, M2 of T = K [s_u t_u, s_v t_v, mu_c]; out[9:12] = the world z axis."""
    w, x, y, z, _ = _unit_quat(quats, n)
    su, sv = scales[n, 0], scales[n, 1]
    u0, u1, u2 = (1.0 - 2.0 * (y * y + z * z)) * su, 2.0 * (x * y + w * z) * su, 2.0 * (x * z - w * y) * su
    v0, v1, v2 = 2.0 * (x * y - w * z) * sv, (1.0 - 2.0 * (x * x + z * z)) * sv, 2.0 * (y * z + w * x) * sv
    out[9], out[10], out[11] = 2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y)
    fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
    for i in range(3):  # row i of [s_u t_u, s_v t_v, mu_c] in camera coordinates
        R0, R1, R2 = viewmats[c, i, 0], viewmats[c, i, 1], viewmats[c, i, 2]
        out[12 + 3 * i] = R0 * u0 + R1 * u1 + R2 * u2
        out[13 + 3 * i] = R0 * v0 + R1 * v1 + R2 * v2
        out[14 + 3 * i] = R0 * means[n, 0] + R1 * means[n, 1] + R2 * means[n, 2] + viewmats[c, i, 3]
    for j in range(3):  # M0 = fx P0 + cx P2, M1 = fy P1 + cy P2, M2 = P2
        out[j] = fx * out[12 + j] + cx * out[18 + j]
        out[3 + j] = fy * out[15 + j] + cy * out[18 + j]
        out[6 + j] = out[18 + j]


@nb.njit(cache=True, error_model="numpy")
def _project(means, quats, scales, viewmats, Ks, W, H, near, far, rows, m2d, depth, radii, nrm, facing):
    C, N = rows.shape[0], rows.shape[1]
    buf = np.empty(21)
    for c in range(C):
        for n in range(N):
            _surfel_rows(means, quats, scales, viewmats, Ks, c, n, buf)
            for k in range(9):
                rows[c, n, k] = buf[k]
            M0, M1, M2 = buf[0:3], buf[3:6], buf[6:9]
            dist = M2[0] * M2[0] + M2[1] * M2[1] - M2[2] * M2[2]
            inv = 1.0 / dist if dist != 0.0 else 1.0
            mx = (M0[0] * M2[0] + M0[1] * M2[1] - M0[2] * M2[2]) * inv
            my = (M1[0] * M2[0] + M1[1] * M2[1] - M1[2] * M2[2]) * inv
            sx = (M0[0] * M0[0] + M0[1] * M0[1] - M0[2] * M0[2]) * inv
            sy = (M1[0] * M1[0] + M1[1] * M1[1] - M1[2] * M1[2]) * inv
            rx = math.ceil(RADIUS_SIGMAS * math.sqrt(max(mx * mx - sx, 1e-4)))
            ry = math.ceil(RADIUS_SIGMAS * math.sqrt(max(my * my - sy, 1e-4)))
            d = buf[20]
            depth[c, n] = d
            ok = dist != 0.0 and d > near and d < far and mx + rx > 0 and mx - rx < W and my + ry > 0 and my - ry < H
            radii[c, n, 0] = int(rx) if ok else 0
            radii[c, n, 1] = int(ry) if ok else 0
            m2d[c, n, 0] = mx if ok else 0.0
            m2d[c, n, 1] = my if ok else 0.0
            # the normal faces the camera (gsplat: dot(-n_c, mu_c) > 0)
            nc = 0.0
            for i in range(3):
                nc += (viewmats[c, i, 0] * buf[9] + viewmats[c, i, 1] * buf[10] + viewmats[c, i, 2] * buf[11]) * buf[
                    14 + 3 * i
                ]
            f = 1.0 if -nc > 0 else -1.0
            facing[c, n] = f
            for k in range(3):
                nrm[c, n, k] = buf[9 + k] * f


@nb.njit(cache=True, error_model="numpy")
def _project_backward(
    means, quats, scales, viewmats, Ks, m2d, radii, facing, g_rows, g_m2d, g_nrm, g_means, g_quats, g_scales
):
    """Chain rule of _project for every surfel, summed over cameras."""
    C, N = g_rows.shape[0], g_rows.shape[1]
    buf = np.empty(21)
    gt = np.empty(9)  # d loss / d (s_u t_u, s_v t_v, axis n), world space
    gM = np.empty(9)  # d loss / d (M0, M1, M2)
    for n in range(N):
        w, x, y, z, inv_norm = _unit_quat(quats, n)
        su, sv = scales[n, 0], scales[n, 1]
        gt[:] = 0.0
        for c in range(C):
            for k in range(9):
                gM[k] = g_rows[c, n, k]
            if radii[c, n, 0] > 0 and radii[c, n, 1] > 0 and (g_m2d[c, n, 0] != 0.0 or g_m2d[c, n, 1] != 0.0):
                _surfel_rows(means, quats, scales, viewmats, Ks, c, n, buf)
                dist = buf[6] * buf[6] + buf[7] * buf[7] - buf[8] * buf[8]
                mx, my = m2d[c, n, 0], m2d[c, n, 1]
                for k in range(3):
                    s = -1.0 if k == 2 else 1.0
                    gM[k] += g_m2d[c, n, 0] * s * buf[6 + k] / dist
                    gM[3 + k] += g_m2d[c, n, 1] * s * buf[6 + k] / dist
                    gM[6 + k] += (
                        g_m2d[c, n, 0] * s * (buf[k] - 2.0 * mx * buf[6 + k])
                        + g_m2d[c, n, 1] * s * (buf[3 + k] - 2.0 * my * buf[6 + k])
                    ) / dist
            fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
            # rows P_i of [tu_c, tv_c, mu_c]: P0 = M0 / fx .., so d/dP0 = fx dM0, d/dP2 = dM2 + cx dM0 + cy dM1
            for j in range(3):  # column j: 0 = s_u t_u, 1 = s_v t_v, 2 = mu
                gp0 = fx * gM[j]
                gp1 = fy * gM[3 + j]
                gp2 = gM[6 + j] + cx * gM[j] + cy * gM[3 + j]
                for k in range(3):  # back to world space: R^T g
                    gw = viewmats[c, 0, k] * gp0 + viewmats[c, 1, k] * gp1 + viewmats[c, 2, k] * gp2
                    if j == 2:
                        g_means[n, k] += gw
                    else:
                        gt[3 * j + k] += gw
            for k in range(3):
                gt[6 + k] += g_nrm[c, n, k] * facing[c, n]
        # scaled axes s_u axis_u, s_v axis_v: split into scale and axis gradients
        au = (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y))
        av = (2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x))
        g_scales[n, 0] += au[0] * gt[0] + au[1] * gt[1] + au[2] * gt[2]
        g_scales[n, 1] += av[0] * gt[3] + av[1] * gt[4] + av[2] * gt[5]
        gu0, gu1, gu2 = gt[0] * su, gt[1] * su, gt[2] * su
        gv0, gv1, gv2 = gt[3] * sv, gt[4] * sv, gt[5] * sv
        gn0, gn1, gn2 = gt[6], gt[7], gt[8]
        # d (axes) / d (w, x, y, z) of the unit quaternion
        gw_ = 2.0 * (z * gu1 - y * gu2 - z * gv0 + x * gv2 + y * gn0 - x * gn1)
        gx_ = 2.0 * (y * gu1 + z * gu2 + y * gv0 - 2.0 * x * gv1 + w * gv2 + z * gn0 - w * gn1 - 2.0 * x * gn2)
        gy_ = 2.0 * (-2.0 * y * gu0 + x * gu1 - w * gu2 + x * gv0 + z * gv2 + w * gn0 + z * gn1 - 2.0 * y * gn2)
        gz_ = 2.0 * (-2.0 * z * gu0 + w * gu1 + x * gu2 - w * gv0 - 2.0 * z * gv1 + y * gv2 + x * gn0 + y * gn1)
        # through the normalisation q / |q|
        dot = w * gw_ + x * gx_ + y * gy_ + z * gz_
        g_quats[n, 0] += (gw_ - w * dot) * inv_norm
        g_quats[n, 1] += (gx_ - x * dot) * inv_norm
        g_quats[n, 2] += (gy_ - y * dot) * inv_norm
        g_quats[n, 3] += (gz_ - z * dot) * inv_norm


@nb.njit(cache=True, inline="always", error_model="numpy")
def _cross(a0, a1, a2, b0, b1, b2):
    return a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0


@nb.njit(cache=True, error_model="numpy")
def _gather_table(vc, vn, rows, m2d, nrm, opac, col, shift, area, tab, trows):
    """Per visible surfel: a = M1 x M2, b = M2 x M0, c = M0 x M1 (the pixel -> (u, v) map),
    means2d, opacity, M2, low-pass offset (area: _lowpass_offset, else 0), colour, normal.
    The densification shift moves the centre in the image: it enters M0, M1's translation
    scaled by the centre depth (see torch_backend)."""
    D = col.shape[1]
    for v in range(vc.shape[0]):
        c, n = vc[v], vn[v]
        z = rows[c, n, 8]
        m0 = (rows[c, n, 0], rows[c, n, 1], rows[c, n, 2] + shift[c, n, 0] * z)
        m1 = (rows[c, n, 3], rows[c, n, 4], rows[c, n, 5] + shift[c, n, 1] * z)
        m2 = (rows[c, n, 6], rows[c, n, 7], z)
        a = _cross(m1[0], m1[1], m1[2], m2[0], m2[1], m2[2])
        b = _cross(m2[0], m2[1], m2[2], m0[0], m0[1], m0[2])
        cc = _cross(m0[0], m0[1], m0[2], m1[0], m1[1], m1[2])
        for k in range(3):
            tab[v, COL_A + k] = a[k]
            tab[v, COL_B + k] = b[k]
            tab[v, COL_C + k] = cc[k]
            tab[v, COL_M2 + k] = m2[k]
            tab[v, COL_FEAT + D + k] = nrm[c, n, k]
            trows[v, k] = m0[k]
            trows[v, 3 + k] = m1[k]
            trows[v, 6 + k] = m2[k]
        tab[v, COL_M2D] = m2d[c, n, 0]
        tab[v, COL_M2D + 1] = m2d[c, n, 1]
        tab[v, COL_OPAC] = opac[n]
        tab[v, COL_LP] = _lowpass_offset(trows, v, area)
        for k in range(D):
            tab[v, COL_FEAT + k] = col[v, k]


@nb.njit(cache=True, inline="always", error_model="numpy")
def _screen_jacobian(t):
    """common.lowpass_offset's J: d pixel / d (u, v) at the centre, from the rows t[0:9] of T."""
    z = t[8]
    inv_z2 = 1.0 / (z * z)
    return (
        (t[0] * z - t[2] * t[6]) * inv_z2,
        (t[1] * z - t[2] * t[7]) * inv_z2,
        (t[3] * z - t[5] * t[6]) * inv_z2,
        (t[4] * z - t[5] * t[7]) * inv_z2,
    )


LP_TINY = 1e-30  # common.lowpass_offset's clamp: an edge-on surfel's offset stays finite


@nb.njit(cache=True, inline="always", error_model="numpy")
def _lowpass_offset(trows, v, area):
    """common.lowpass_offset of the rows trows[v] (0 when not area)."""
    if not area:
        return 0.0
    j00, j01, j10, j11 = _screen_jacobian(trows[v])
    dj = j00 * j11 - j01 * j10
    det = dj * dj
    tr = j00 * j00 + j01 * j01 + j10 * j10 + j11 * j11
    s2 = 1.0 / LOWPASS
    lp = math.log(det + s2 * tr + s2 * s2) - math.log(max(det, LP_TINY))
    return lp - 2.0 * math.log(max(4.0 * det / max(tr * tr, LP_TINY), LP_TINY))


@nb.njit(cache=True, inline="always", error_model="numpy")
def _lowpass_offset_backward(t, g, gt):
    """gt[0:9] += g * d _lowpass_offset / d (rows of T), t = those rows."""
    j00, j01, j10, j11 = _screen_jacobian(t)
    dj = j00 * j11 - j01 * j10
    det = dj * dj
    tr = j00 * j00 + j01 * j01 + j10 * j10 + j11 * j11
    s2 = 1.0 / LOWPASS
    inv_a = 1.0 / (det + s2 * tr + s2 * s2)
    g_det, g_tr = inv_a, s2 * inv_a
    if det > LP_TINY:
        g_det -= 1.0 / det
    if 4.0 * det / max(tr * tr, LP_TINY) > LP_TINY:  # -2 log(4 det / tr^2) unclamped
        g_det -= 2.0 / det
        if tr * tr > LP_TINY:
            g_tr += 4.0 / tr
    g_det *= g
    g_tr *= g
    # det = dj^2, tr = sum j^2
    g00 = g_det * 2.0 * dj * j11 + g_tr * 2.0 * j00
    g01 = -g_det * 2.0 * dj * j10 + g_tr * 2.0 * j01
    g10 = -g_det * 2.0 * dj * j01 + g_tr * 2.0 * j10
    g11 = g_det * 2.0 * dj * j00 + g_tr * 2.0 * j11
    _jacobian_entry_backward(t, 0, 0, g00, gt)
    _jacobian_entry_backward(t, 0, 1, g01, gt)
    _jacobian_entry_backward(t, 1, 0, g10, gt)
    _jacobian_entry_backward(t, 1, 1, g11, gt)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _jacobian_entry_backward(t, r, k, gj, gt):
    """gt += gj * d j_rk / d t, j_rk = t[3r + k] / z - t[3r + 2] t[6 + k] / z^2, z = t[8]."""
    z = t[8]
    inv_z, inv_z2 = 1.0 / z, 1.0 / (z * z)
    t_rk, t_r2, t_2k = t[3 * r + k], t[3 * r + 2], t[6 + k]
    gt[3 * r + k] += gj * inv_z
    gt[3 * r + 2] -= gj * t_2k * inv_z2
    gt[6 + k] -= gj * t_r2 * inv_z2
    gt[8] += gj * (2.0 * t_r2 * t_2k * inv_z2 * inv_z - t_rk * inv_z2)


@nb.njit(cache=True, error_model="numpy")
def _scatter_table_grad(vc, vn, area, trows, gtab, g_rows, g_m2d, g_nrm, g_opac, g_col, g_shift):
    """Chain rule of _gather_table: table-row gradients back to rows, means2d, normals, ..."""
    D = g_col.shape[1]
    for v in range(vc.shape[0]):
        c, n = vc[v], vn[v]
        m0, m1, m2 = trows[v, 0:3], trows[v, 3:6], trows[v, 6:9]
        ga, gb, gc = gtab[v, COL_A : COL_A + 3], gtab[v, COL_B : COL_B + 3], gtab[v, COL_C : COL_C + 3]
        # a = m1 x m2: d/dm1 = m2 x ga, d/dm2 = ga x m1 (and likewise for b, c)
        x1 = _cross(m2[0], m2[1], m2[2], ga[0], ga[1], ga[2])
        x2 = _cross(ga[0], ga[1], ga[2], m1[0], m1[1], m1[2])
        y2 = _cross(m0[0], m0[1], m0[2], gb[0], gb[1], gb[2])
        y0 = _cross(gb[0], gb[1], gb[2], m2[0], m2[1], m2[2])
        z0 = _cross(m1[0], m1[1], m1[2], gc[0], gc[1], gc[2])
        z1 = _cross(gc[0], gc[1], gc[2], m0[0], m0[1], m0[2])
        for k in range(3):
            g_rows[c, n, k] = y0[k] + z0[k]
            g_rows[c, n, 3 + k] = x1[k] + z1[k]
            g_rows[c, n, 6 + k] = x2[k] + y2[k] + gtab[v, COL_M2 + k]
            g_nrm[c, n, k] = gtab[v, COL_FEAT + D + k]
        if area and gtab[v, COL_LP] != 0.0:  # before g_shift: the offset depends on T[0:2, 2] too
            _lowpass_offset_backward(trows[v], gtab[v, COL_LP], g_rows[c, n])
        g_shift[c, n, 0] = g_rows[c, n, 2] * m2[2]
        g_shift[c, n, 1] = g_rows[c, n, 5] * m2[2]
        g_m2d[c, n, 0] = gtab[v, COL_M2D]
        g_m2d[c, n, 1] = gtab[v, COL_M2D + 1]
        g_opac[n] += gtab[v, COL_OPAC]
        for k in range(D):
            g_col[v, k] = gtab[v, COL_FEAT + k]


# ---------------------------------------------------------------------------------------
# Normals from the rendered depth (common.depth_to_normals, with its backward)
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always", error_model="numpy")
def _ray(Ks, rot, c, y, x, out):
    """out = R_c2w (dir of pixel centre (x, y) with z = 1): the world point per unit depth."""
    d0 = (x - Ks[c, 0, 2] + 0.5) / Ks[c, 0, 0]
    d1 = (y - Ks[c, 1, 2] + 0.5) / Ks[c, 1, 1]
    for i in range(3):
        out[i] = rot[c, i, 0] * d0 + rot[c, i, 1] * d1 + rot[c, i, 2]


@nb.njit(cache=True, error_model="numpy")
def _depth_normals(depth, alpha, Ks, rot, out, pts):
    """out [C,H,W,3]: normalised cross product of the central differences of the unprojected
    depth (rows x columns), zero on the border and next to empty pixels. pts [C,H,W,3]
    receives the unprojected points (R_c2w dir * depth; the translation cancels)."""
    C, H, W = depth.shape[0], depth.shape[1], depth.shape[2]
    ray = np.empty(3)
    for c in range(C):
        for y in range(H):
            for x in range(W):
                _ray(Ks, rot, c, y, x, ray)
                for i in range(3):
                    pts[c, y, x, i] = ray[i] * depth[c, y, x, 0]
                    out[c, y, x, i] = 0.0
        for y in range(1, H - 1):
            for x in range(1, W - 1):
                if not (
                    alpha[c, y, x, 0] > 0
                    and alpha[c, y + 1, x, 0] > 0
                    and alpha[c, y - 1, x, 0] > 0
                    and alpha[c, y, x + 1, 0] > 0
                    and alpha[c, y, x - 1, 0] > 0
                ):
                    continue
                r0, r1, r2 = (
                    pts[c, y + 1, x, 0] - pts[c, y - 1, x, 0],
                    pts[c, y + 1, x, 1] - pts[c, y - 1, x, 1],
                    pts[c, y + 1, x, 2] - pts[c, y - 1, x, 2],
                )
                q0, q1, q2 = (
                    pts[c, y, x + 1, 0] - pts[c, y, x - 1, 0],
                    pts[c, y, x + 1, 1] - pts[c, y, x - 1, 1],
                    pts[c, y, x + 1, 2] - pts[c, y, x - 1, 2],
                )
                m0, m1, m2 = _cross(r0, r1, r2, q0, q1, q2)
                inv = 1.0 / max(math.sqrt(m0 * m0 + m1 * m1 + m2 * m2), 1e-12)  # F.normalize
                out[c, y, x, 0], out[c, y, x, 1], out[c, y, x, 2] = m0 * inv, m1 * inv, m2 * inv


@nb.njit(cache=True, error_model="numpy")
def _depth_normals_backward(alpha, Ks, rot, pts, g_out, g_depth):
    C, H, W = alpha.shape[0], alpha.shape[1], alpha.shape[2]
    g_pts = np.zeros((H, W, 3))
    ray = np.empty(3)
    for c in range(C):
        g_pts[:] = 0.0
        for y in range(1, H - 1):
            for x in range(1, W - 1):
                if not (
                    alpha[c, y, x, 0] > 0
                    and alpha[c, y + 1, x, 0] > 0
                    and alpha[c, y - 1, x, 0] > 0
                    and alpha[c, y, x + 1, 0] > 0
                    and alpha[c, y, x - 1, 0] > 0
                ):
                    continue
                r0, r1, r2 = (
                    pts[c, y + 1, x, 0] - pts[c, y - 1, x, 0],
                    pts[c, y + 1, x, 1] - pts[c, y - 1, x, 1],
                    pts[c, y + 1, x, 2] - pts[c, y - 1, x, 2],
                )
                q0, q1, q2 = (
                    pts[c, y, x + 1, 0] - pts[c, y, x - 1, 0],
                    pts[c, y, x + 1, 1] - pts[c, y, x - 1, 1],
                    pts[c, y, x + 1, 2] - pts[c, y, x - 1, 2],
                )
                m0, m1, m2 = _cross(r0, r1, r2, q0, q1, q2)
                norm = math.sqrt(m0 * m0 + m1 * m1 + m2 * m2)
                g0, g1, g2 = g_out[c, y, x, 0], g_out[c, y, x, 1], g_out[c, y, x, 2]
                if norm > 1e-12:  # d (m / |m|) = (g - n (n . g)) / |m|
                    n0, n1, n2 = m0 / norm, m1 / norm, m2 / norm
                    dot = n0 * g0 + n1 * g1 + n2 * g2
                    g0, g1, g2 = (g0 - n0 * dot) / norm, (g1 - n1 * dot) / norm, (g2 - n2 * dot) / norm
                else:  # F.normalize divides by its eps there
                    g0, g1, g2 = g0 / 1e-12, g1 / 1e-12, g2 / 1e-12
                # m = r x q: d/dr = q x g, d/dq = g x r
                a0, a1, a2 = _cross(q0, q1, q2, g0, g1, g2)
                b0, b1, b2 = _cross(g0, g1, g2, r0, r1, r2)
                g_pts[y + 1, x, 0] += a0
                g_pts[y + 1, x, 1] += a1
                g_pts[y + 1, x, 2] += a2
                g_pts[y - 1, x, 0] -= a0
                g_pts[y - 1, x, 1] -= a1
                g_pts[y - 1, x, 2] -= a2
                g_pts[y, x + 1, 0] += b0
                g_pts[y, x + 1, 1] += b1
                g_pts[y, x + 1, 2] += b2
                g_pts[y, x - 1, 0] -= b0
                g_pts[y, x - 1, 1] -= b1
                g_pts[y, x - 1, 2] -= b2
        for y in range(H):
            for x in range(W):
                _ray(Ks, rot, c, y, x, ray)
                g_depth[c, y, x, 0] = ray[0] * g_pts[y, x, 0] + ray[1] * g_pts[y, x, 1] + ray[2] * g_pts[y, x, 2]


# ---------------------------------------------------------------------------------------
# autograd glue
# ---------------------------------------------------------------------------------------


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float64).numpy())


class _Project(torch.autograd.Function):
    """(means, quats, scales [N,2]) -> rows of T [C,N,9], means2d [C,N,2], normals [C,N,3],
    plus (no grad) depths [C,N] and radii [C,N,2] int32."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, W, H, near, far):
        C, N = viewmats.shape[0], means.shape[0]
        args = (_np(means), _np(quats), _np(scales), _np(viewmats), _np(Ks))
        rows, m2d = np.empty((C, N, 9)), np.empty((C, N, 2))
        depth, nrm, facing = np.empty((C, N)), np.empty((C, N, 3)), np.empty((C, N))
        radii = np.empty((C, N, 2), np.int32)
        _project(*args, W, H, near, far, rows, m2d, depth, radii, nrm, facing)
        ctx.state = (args, m2d, radii, facing, means.dtype)
        dt = means.dtype
        # rows and normals only feed _Composite: they stay float64 (no round trip through float32)
        out = (
            torch.from_numpy(rows),
            torch.from_numpy(m2d).to(dt),
            torch.from_numpy(nrm),
            torch.from_numpy(depth).to(dt),
            torch.from_numpy(radii),
        )
        ctx.mark_non_differentiable(out[3], out[4])
        return out

    @staticmethod
    def backward(ctx, g_rows, g_m2d, g_nrm, _g_depth, _g_radii):
        args, m2d, radii, facing, dt = ctx.state
        N = args[0].shape[0]
        g_means, g_quats, g_scales = np.zeros((N, 3)), np.zeros((N, 4)), np.zeros((N, 2))
        _project_backward(*args, m2d, radii, facing, _np(g_rows), _np(g_m2d), _np(g_nrm), g_means, g_quats, g_scales)
        return (
            torch.from_numpy(g_means).to(dt),
            torch.from_numpy(g_quats).to(dt),
            torch.from_numpy(g_scales).to(dt),
        ) + (None,) * 6


class _DepthNormals(torch.autograd.Function):
    """common.depth_to_normals (gsplat's depth_to_normal) with a compiled forward and backward."""

    @staticmethod
    def forward(ctx, depth, alpha, Ks, viewmats):
        C, H, W = depth.shape[:3]
        Ks_np, rot = _np(Ks), np.ascontiguousarray(np.linalg.inv(_np(viewmats))[:, :3, :3])
        alpha_np = np.ascontiguousarray(alpha.detach().numpy())
        out, pts = np.empty((C, H, W, 3)), np.empty((C, H, W, 3))
        _depth_normals(_np(depth), alpha_np, Ks_np, rot, out, pts)
        ctx.state = (alpha_np, Ks_np, rot, pts)
        return torch.from_numpy(out).to(depth.dtype)

    @staticmethod
    def backward(ctx, g_out):
        alpha_np, Ks_np, rot, pts = ctx.state
        g_depth = np.empty(alpha_np.shape)
        _depth_normals_backward(alpha_np, Ks_np, rot, pts, _np(g_out), g_depth)
        return torch.from_numpy(g_depth).to(g_out.dtype), None, None, None


class _Raster:
    """Numpy state shared by the forward and backward pass of one composite."""

    def __init__(self, vc: np.ndarray, vn: np.ndarray, n_cams: int, H: int, W: int, center: bool):
        self.vc, self.vn = vc, vn
        self.n_cams, self.H, self.W, self.center = n_cams, H, W, center
        self.absgrad_to = None  # (means2d, flat visible index) when absgrad was asked for
        self.threads = _use_torch_threads()
        self.area = True  # lowpass="area"

    def prepare(self, tab: np.ndarray, trows: np.ndarray) -> None:
        V = tab.shape[0]
        self.bx0, self.bx1 = np.empty(V, np.int64), np.empty(V, np.int64)
        self.by0, self.by1 = np.empty(V, np.int64), np.empty(V, np.int64)
        self.rho2 = np.empty(V)
        _support_boxes(trows, tab, self.W, self.H, self.bx0, self.bx1, self.by0, self.by1, self.rho2)
        self.ntx, self.nty = -(-self.W // TILE), -(-self.H // TILE)
        self.n_tiles = self.n_cams * self.ntx * self.nty
        self.stats = np.zeros(2, np.int64)
        heights = np.maximum(self.by1 - self.by0 + 1, 0)
        self.span_off = np.zeros(V, np.int64)
        np.cumsum(heights[:-1], out=self.span_off[1:])
        self.spans = np.zeros((int(heights.sum()), 2), np.int64)
        self.off, self.ids = _bin_tiles(
            tab,
            self.vc,
            self.rho2,
            self.bx0,
            self.bx1,
            self.by0,
            self.by1,
            self.n_cams,
            self.ntx,
            self.nty,
            self.span_off,
            self.spans,
            self.stats,
        )

        self.etab, eint = _entry_arrays(self.ids, tab, self.span_off, self.bx0, self.bx1, self.by0, self.by1)
        self.e_span_off, self.e_bx0, self.e_bx1, self.e_by0, self.e_by1 = eint

    def args(self):
        """The kernels' inputs: per-entry copies of the surfel table, spans and boxes."""
        return (
            self.etab,
            self.e_span_off,
            self.spans,
            self.e_bx0,
            self.e_bx1,
            self.e_by0,
            self.e_by1,
            self.off,
            self.n_cams,
            self.H,
            self.W,
            self.D,
            self.center,
        )


class _Composite(torch.autograd.Function):
    """(rows [C,N,9], means2d [C,N,2], normals [C,N,3], opacities [N], visible colours [V,D],
    shift [C,N,2]) -> images [C*H*W, D+7]: colours, normals, sum w*depth, sum w, distortion,
    median depth. raster.area: the area low-pass (else gsplat's)."""

    @staticmethod
    def forward(ctx, rows, m2d, nrm, opac, col, shift, raster: _Raster):
        V, D = col.shape
        raster.D = D
        rows_np = _np(rows)
        tab, trows = np.empty((V, COL_FEAT + D + 3)), np.empty((V, 9))
        _gather_table(
            raster.vc, raster.vn, rows_np, _np(m2d), _np(nrm), _np(opac), _np(col), _np(shift), raster.area, tab, trows
        )
        raster.prepare(tab, trows)
        n_pix = raster.n_cams * raster.H * raster.W
        img = np.empty((n_pix, D + 7), np.float32 if col.dtype == torch.float32 else np.float64)
        raster.t_final, raster.d_final = np.empty(n_pix), np.empty(n_pix)
        raster.last, raster.med = np.empty(n_pix, np.int64), np.empty(n_pix, np.int64)
        tile_stats = np.zeros((raster.n_tiles, 2), np.int64)
        fwd = _forward_ser if raster.threads == 1 else _forward_par
        fwd(raster.n_tiles, *raster.args(), img, raster.t_final, raster.d_final, raster.last, raster.med, tile_stats)
        raster.n_tested, raster.n_pairs = (int(s) for s in tile_stats.sum(0))
        ctx.state = (raster, tab, trows, rows.shape, opac.shape[0], img.dtype)
        ctx.dtypes = tuple(t.dtype for t in (rows, m2d, nrm, opac, col, shift))
        # separate outputs: slicing one image tensor would cost a full-size zero gradient
        # per slice in the backward pass
        return tuple(torch.from_numpy(np.ascontiguousarray(img[:, a:b])) for a, b in _parts(D))

    @staticmethod
    def backward(ctx, *grads):
        raster, tab, trows, shape, N, dtype = ctx.state
        gimg = np.empty((raster.n_cams * raster.H * raster.W, raster.D + 7), dtype)
        for (a, b), g in zip(_parts(raster.D), grads):
            gimg[:, a:b] = 0.0 if g is None else g.detach().reshape(-1, b - a).numpy()
        E = raster.ids.shape[0]
        egrad, eabs = np.empty((E, tab.shape[1])), np.empty((E, 2))  # the kernel writes every row
        bwd = _backward_ser if raster.threads == 1 else _backward_par
        bwd(raster.n_tiles, *raster.args(), gimg, raster.t_final, raster.d_final, raster.last, raster.med, egrad, eabs)
        gtab, absg = np.zeros_like(tab), np.zeros((tab.shape[0], 2))
        _sum_entries(raster.ids, egrad, eabs, gtab, absg)
        C, Nn = shape[0], shape[1]
        g_rows, g_m2d, g_nrm = np.zeros((C, Nn, 9)), np.zeros((C, Nn, 2)), np.zeros((C, Nn, 3))
        g_opac, g_col, g_shift = np.zeros(N), np.zeros((tab.shape[0], raster.D)), np.zeros((C, Nn, 2))
        _scatter_table_grad(
            raster.vc, raster.vn, raster.area, trows, gtab, g_rows, g_m2d, g_nrm, g_opac, g_col, g_shift
        )
        if raster.absgrad_to is not None:
            means2d, fv = raster.absgrad_to
            means2d.absgrad.view(-1, 2).index_add_(0, fv, torch.from_numpy(absg).to(means2d.dtype))
        grads = (g_rows, g_m2d, g_nrm, g_opac, g_col, g_shift)
        return tuple(torch.from_numpy(g).to(dt) for g, dt in zip(grads, ctx.dtypes)) + (None,)


def _parts(D: int) -> list[tuple[int, int]]:
    """Column ranges of the composite's outputs: colours, normals, w*depth, w, distortion, median."""
    return [(0, D), (D, D + 3), (D + 3, D + 4), (D + 4, D + 5), (D + 5, D + 6), (D + 6, D + 7)]


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


def rasterize_numba(
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
    """Render surfels into every camera on the CPU; same outputs and meta as rasterize_torch.

    meta adds n_box_pixels (pixels in the surfels' support boxes, what a box-based CPU
    rasterizer tests), n_span_pixels (pixels in their exact row spans) and n_candidates
    (span pixels actually evaluated: pixels already terminated are skipped). Camera
    parameters get no gradient.
    """
    if depth_convention not in ("intersection", "center"):
        raise PrivsplatError(f"depth_convention must be 'intersection' or 'center', got {depth_convention!r}")
    check_lowpass(lowpass)
    if means.device.type != "cpu":
        raise PrivsplatError("the numba backend runs on the CPU; pass CPU tensors or use backend='gsplat' on CUDA")
    check_render_inputs(means, quats, scales, opacities, colors, cameras, sh_degree, backgrounds)
    dev, dt = means.device, means.dtype
    cams = cameras.to(dev, dt)
    C, W, H, N = len(cams), cams.width, cams.height, means.shape[0]

    rows, means2d, normals, depths, radii = _Project.apply(
        means, quats, scales[:, :2], cams.viewmats.detach(), cams.Ks.detach(), W, H, near_plane, far_plane
    )
    tracks_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means, quats, scales, opacities, colors))
    shift = torch.zeros((C, N, 2), dtype=dt, device=dev, requires_grad=tracks_grad)

    # Visible (camera, surfel) list ordered by camera, then float32 centre depth, then index
    # (gsplat's sort key, as the torch backend).
    radii_np, depth_np = radii.numpy(), depths.detach().float().numpy()
    visible = (radii_np > 0).all(-1) & (opacities.detach().numpy() >= ALPHA_MIN)[None]
    vc, vn = np.nonzero(visible)
    # positive float32 depths sort like their bit patterns: one stable sort of an int64 key
    order = np.argsort((vc.astype(np.int64) << 32) | depth_np[vc, vn].view(np.int32).astype(np.int64), kind="stable")
    vc, vn = vc[order].astype(np.int64), vn[order].astype(np.int64)
    vc_t, vn_t = torch.from_numpy(vc), torch.from_numpy(vn)
    col = visible_colors(colors, sh_degree, means, cams.centers, vc_t, vn_t)  # [V,D]

    raster = _Raster(vc, vn, C, H, W, depth_convention == "center")
    if absgrad and means2d.requires_grad:
        means2d.absgrad = torch.zeros_like(means2d, requires_grad=False)
        raster.absgrad_to = (means2d, vc_t * N + vn_t)
    raster.area = lowpass == "area"
    parts = _Composite.apply(rows, means2d, normals, opacities, col, shift, raster)
    rgb, nrm_img, wd, acc, distortion, median = (x.view(C, H, W, -1) for x in parts)
    if backgrounds is not None:
        rgb = rgb + (1.0 - acc) * backgrounds.to(dt)[:, None, None, :]
    depth_exp = wd / acc.clamp_min(EXPECTED_DEPTH_EPS)

    meta = {
        "means2d": means2d,
        "gradient_2dgs": shift,
        "radii": radii,
        "depths": depths,
        "width": W,
        "height": H,
        "n_cameras": C,
        "gaussian_ids": None,
        "camera_ids": None,
        "n_pairs": raster.n_pairs,
        "n_candidates": raster.n_tested,
        "n_box_pixels": int(raster.stats[0]),
        "n_span_pixels": int(raster.stats[1]),
        "depth_convention": depth_convention,
        "lowpass": lowpass,
        "backend": "numba",
    }
    if means2d.requires_grad:
        means2d.retain_grad()
    return RenderOutput(
        rgb=rgb,
        alpha=acc,
        normals=nrm_img,
        depth_normals=_DepthNormals.apply(depth_exp, acc.detach(), cams.Ks, cams.viewmats),
        depth_expected=depth_exp,
        depth_median=median,
        distortion=distortion,
        meta=meta,
    )
