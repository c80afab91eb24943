"""The pure-PyTorch surfel rasterizer: analytic cases, a brute-force reference of gsplat's
algorithm, gradients, densification meta and a small fit. All on CPU, small scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privsplat.cameras import Cameras, intrinsics_from_fov, look_at
from privsplat.errors import PrivsplatError
from privsplat.render import rasterize
from privsplat.render.sh import eval_sh, sh_basis
from privsplat.render.torch_backend import ALPHA_MAX, ALPHA_MIN, LOWPASS, T_MIN, project_surfels, quat_to_rotmat


def make_cameras(eyes, width=32, height=32, fov_deg=40.0, target=(0.0, 0.0, 0.0), dtype=torch.float32):
    K = intrinsics_from_fov(width, height, math.radians(fov_deg))
    Ks = np.stack([K] * len(eyes))
    vms = np.stack([look_at(np.array(e, float), np.array(target, float)) for e in eyes])
    return Cameras(torch.tensor(Ks, dtype=dtype), torch.tensor(vms, dtype=dtype), width, height)


def random_scene(n, seed=0, spread=0.4, scale=(0.02, 0.12), dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2 * spread
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * (scale[1] - scale[0]) + scale[0]
    opac = torch.rand(n, generator=g) * 0.8 + 0.15
    colors = torch.rand(n, 3, generator=g)
    return [t.to(dtype) for t in (means, quats, scales, opac, colors)]


def reference_lowpass_scale(means, quats, scales, cams, c, n):
    """The area low-pass's blob strength, from finite differences of projected points: the screen
    Jacobian J of the surfel's (u, v) at its centre, S = J J^T, sqrt(det S / det(S + I/2)) times
    4 det S / tr(S)^2."""
    R = quat_to_rotmat(quats[n : n + 1])[0].double()
    mu = means[n].double()
    K, vm = cams.Ks[c].double(), cams.viewmats[c].double()

    def pixel(p):
        q = K @ (vm[:3, :3] @ p + vm[:3, 3])
        return q[:2] / q[2]

    eps = 1e-5
    J = torch.stack([(pixel(mu + eps * scales[n, k].double() * R[:, k]) - pixel(mu)) / eps for k in (0, 1)], 1)
    S = J @ J.T
    det, tr = torch.linalg.det(S), torch.trace(S)
    return float(torch.sqrt(det / torch.linalg.det(S + torch.eye(2, dtype=S.dtype) / LOWPASS)) * 4 * det / tr**2)


def reference_render(means, quats, scales, opac, colors, cams, depth_convention="center", lowpass="gsplat"):
    """gsplat's per-pixel loop, written naively: every surfel against every pixel, front to back.
    lowpass="area" scales the low-pass term by reference_lowpass_scale."""
    C, H, W = len(cams), cams.height, cams.width
    proj = project_surfels(means, quats, scales[:, :2], cams.viewmats, cams.Ks, W, H)
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=means.dtype) + 0.5, torch.arange(W, dtype=means.dtype) + 0.5, indexing="ij"
    )
    out = {
        k: torch.zeros(C, H, W, d, dtype=means.dtype)
        for k, d in [
            ("rgb", colors.shape[1]),
            ("alpha", 1),
            ("normals", 3),
            ("depth", 1),
            ("median", 1),
            ("distortion", 1),
        ]
    }
    for c in range(C):
        T = torch.ones(H, W, dtype=means.dtype)
        done = torch.zeros(H, W, dtype=torch.bool)
        acc_wd = torch.zeros(H, W, dtype=means.dtype)
        for n in torch.argsort(proj.depths[c], stable=True).tolist():
            if not (proj.radii[c, n] > 0).all():
                continue
            M = proj.ray_transforms[c, n]
            h_u = xs[..., None] * M[2] - M[0]
            h_v = ys[..., None] * M[2] - M[1]
            cr = torch.linalg.cross(h_u, h_v)
            u, v = cr[..., 0] / cr[..., 2], cr[..., 1] / cr[..., 2]
            s3 = u * u + v * v
            m = proj.means2d[c, n]
            s2 = LOWPASS * ((m[0] - xs) ** 2 + (m[1] - ys) ** 2)
            if lowpass == "area":
                s2 = s2 - 2 * math.log(max(reference_lowpass_scale(means, quats, scales, cams, c, n), 1e-30))
            use3 = s3 <= s2
            alpha = torch.clamp_max(opac[n] * torch.exp(-0.5 * torch.minimum(s3, s2)), ALPHA_MAX)
            live = (alpha >= ALPHA_MIN) & ~done
            next_T = T * (1 - alpha)
            stop = live & (next_T <= T_MIN)
            done |= stop
            live &= ~stop
            w = torch.where(live, alpha * T, torch.zeros_like(T))
            d = proj.depths[c, n]
            if depth_convention == "intersection":
                d = torch.where(use3, M[2, 0] * u + M[2, 1] * v + M[2, 2], d)
            d = d * torch.ones_like(T)
            out["rgb"][c] += w[..., None] * colors[n]
            out["normals"][c] += w[..., None] * proj.normals[c, n]
            out["alpha"][c, ..., 0] += w
            out["depth"][c, ..., 0] += w * d
            dc = proj.depths[c, n]  # distortion always uses the (sorted) centre depths
            out["distortion"][c, ..., 0] += 2 * (w * dc * (1 - T) - w * acc_wd)
            acc_wd += w * dc
            out["median"][c, ..., 0] = torch.where(live & (T > 0.5), d, out["median"][c, ..., 0])
            T = torch.where(live, next_T, T)
    out["depth"] = out["depth"] / out["alpha"].clamp_min(1e-10)
    return out


# ---------------------------------------------------------------------------------------


def test_projection_matches_gsplat_reference():
    from gsplat.cuda._torch_impl_2dgs import _fully_fused_projection_2dgs

    means, quats, scales, _, _ = random_scene(300, seed=1)
    cams = make_cameras([(0, 0, -2.0), (1.2, 0.4, -1.5)], width=40, height=30)
    proj = project_surfels(means, quats, scales[:, :2], cams.viewmats, cams.Ks, 40, 30)
    radii, means2d, depths, M, _ = _fully_fused_projection_2dgs(means, quats, scales, cams.viewmats, cams.Ks, 40, 30)
    vis = (radii > 0).all(-1)
    assert vis.sum() > 100
    assert torch.equal(proj.radii > 0, radii > 0)
    assert torch.equal(proj.radii[vis], radii[vis])
    torch.testing.assert_close(proj.means2d[vis], means2d[vis], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(proj.depths, depths)
    torch.testing.assert_close(proj.ray_transforms[vis], M[vis], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "convention,lowpass", [("center", "gsplat"), ("intersection", "gsplat"), ("intersection", "area")]
)
def test_matches_bruteforce_reference(convention, lowpass):
    means, quats, scales, opac, colors = random_scene(80, seed=2)
    cams = make_cameras([(0, 0, -2.0), (0.8, -0.5, -1.8)], width=24, height=20)
    out = rasterize(
        means, quats, scales, opac, colors, cams, backend="torch", depth_convention=convention, lowpass=lowpass
    )
    ref = reference_render(means, quats, scales, opac, colors, cams, depth_convention=convention, lowpass=lowpass)
    assert out.meta["n_pairs"] > 1000
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.rgb, ref["rgb"], **tol)
    torch.testing.assert_close(out.alpha, ref["alpha"], **tol)
    torch.testing.assert_close(out.normals, ref["normals"], **tol)
    torch.testing.assert_close(out.depth_expected, ref["depth"], **tol)
    torch.testing.assert_close(out.distortion, ref["distortion"], rtol=1e-3, atol=1e-4)
    # median depth: a pixel whose T sits at 0.5 within float error may pick the neighbour surfel
    agree = (out.depth_median - ref["median"]).abs() < 1e-4
    assert agree.float().mean() > 0.995


def test_single_surfel_alpha_profile():
    """A large surfel facing the camera: alpha = o exp(-(u^2+v^2)/2) in its own coordinates."""
    W = H = 48
    cams = make_cameras([(0, 0, -2.0)], W, H)
    c2w = torch.linalg.inv(cams.viewmats[0])
    mu_c = torch.tensor([0.05, -0.03, 2.0])
    mu = (c2w[:3, :3] @ mu_c + c2w[:3, 3]).tolist()
    q = rotmat_to_quat(c2w[:3, :3])  # surfel axes = camera axes: t_u = x_c, t_v = y_c
    s_u, s_v, o = 0.25, 0.15, 0.8
    means = torch.tensor([mu])
    out = rasterize(
        means, q[None], torch.tensor([[s_u, s_v, 1e-3]]), torch.tensor([o]), torch.ones(1, 3), cams, backend="torch"
    )
    K = cams.Ks[0]
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    X = (xs - K[0, 2]) / K[0, 0] * mu_c[2]
    Y = (ys - K[1, 2]) / K[1, 1] * mu_c[2]
    u, v = (X - mu_c[0]) / s_u, (Y - mu_c[1]) / s_v
    expect = o * torch.exp(-0.5 * (u * u + v * v))
    expect = torch.where(expect >= ALPHA_MIN, expect, torch.zeros_like(expect))
    torch.testing.assert_close(out.alpha[0, ..., 0], expect, rtol=1e-4, atol=2e-6)
    torch.testing.assert_close(out.rgb[0, ..., 0], expect, rtol=1e-4, atol=2e-6)
    # flat, facing the camera: centre and intersection depth are the same
    inside = expect > 0
    torch.testing.assert_close(out.depth_expected[0, ..., 0][inside], torch.full_like(X[inside], 2.0))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    R = R.double()
    w = torch.sqrt(torch.clamp(1 + R[0, 0] + R[1, 1] + R[2, 2], min=1e-12)) / 2
    if w > 1e-3:
        q = torch.stack(
            [w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w)]
        )
    else:  # 180-degree turns: pick the largest diagonal
        i = int(torch.argmax(torch.diagonal(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        r = torch.sqrt(torch.clamp(1 + R[i, i] - R[j, j] - R[k, k], min=1e-12))
        q = torch.zeros(4, dtype=torch.float64)
        q[1 + i] = r / 2
        q[1 + j] = (R[j, i] + R[i, j]) / (2 * r)
        q[1 + k] = (R[k, i] + R[i, k]) / (2 * r)
        q[0] = (R[k, j] - R[j, k]) / (2 * r)
    return q.float()


def test_rotmat_quat_round_trip():
    R = quat_to_rotmat(torch.tensor([[0.3, -0.5, 0.7, 0.2]]))[0]
    torch.testing.assert_close(quat_to_rotmat(rotmat_to_quat(R)[None])[0], R, atol=1e-6, rtol=0)


def test_front_surfel_occludes_back_one():
    cams = make_cameras([(0, 0, -3.0)], 32, 32)
    means = torch.tensor([[0.0, 0.0, -0.5], [0.0, 0.0, 0.5]])  # first is nearer the camera
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2)
    scales = torch.tensor([[0.5, 0.5, 1e-3]] * 2)
    opac = torch.tensor([0.95, 0.9])
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    out = rasterize(means, quats, scales, opac, colors, cams, backend="torch", depth_convention="center")
    c, a = out.rgb[0, 16, 16], out.alpha[0, 16, 16, 0]
    a_front = float(c[0])  # the front colour is pure red: rgb.r is the front surfel's weight
    assert a_front == pytest.approx(0.95, abs=5e-3)  # the pixel centre is 0.5 px off the surfel centre
    # the back surfel only receives what the front one transmits
    assert float(c[1]) == pytest.approx((1 - a_front) * 0.9, rel=1e-2)
    assert float(a) == pytest.approx(float(c[0] + c[1]), abs=1e-6)
    assert out.depth_median[0, 16, 16, 0] == pytest.approx(2.5, abs=1e-5)  # T drops below 0.5 at the front


def test_tilted_surfel_depth_is_ray_plane_intersection():
    cams = make_cameras([(0, 0, -2.0)], 32, 32)
    angle = math.radians(50)
    q = torch.tensor([[math.cos(angle / 2), math.sin(angle / 2), 0.0, 0.0]])  # tilt about world x
    mu = torch.tensor([[0.02, 0.01, 0.0]])
    out = rasterize(
        mu,
        q,
        torch.tensor([[0.4, 0.4, 1e-3]]),
        torch.tensor([0.9]),
        torch.ones(1, 3),
        cams,
        backend="torch",
        depth_convention="intersection",
    )
    n = quat_to_rotmat(q)[0, :, 2]
    c2w = torch.linalg.inv(cams.viewmats[0])
    o = c2w[:3, 3]
    K = cams.Ks[0]
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    d_cam = torch.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], torch.ones_like(xs)], -1)
    d_w = d_cam @ c2w[:3, :3].T
    t = ((mu[0] - o) @ n) / (d_w @ n)  # ray o + t d_w meets the plane; camera z = t (d_cam.z = 1)
    mask = out.alpha[0, ..., 0] > 0.05
    assert mask.sum() > 100
    torch.testing.assert_close(out.depth_expected[0, ..., 0][mask], t[mask], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.depth_median[0, ..., 0][mask], t[mask], rtol=1e-4, atol=1e-4)
    # the depth map's normals are the plane normal, facing the camera
    dn = out.depth_normals[0][mask & (out.depth_normals[0].norm(dim=-1) > 0)]
    facing = n if float(n @ (o - mu[0])) > 0 else -n
    assert dn.shape[0] > 50
    assert float((dn @ facing).min()) > 0.999
    # centre convention: the centre's depth everywhere
    out_c = rasterize(
        mu,
        q,
        torch.tensor([[0.4, 0.4, 1e-3]]),
        torch.tensor([0.9]),
        torch.ones(1, 3),
        cams,
        backend="torch",
        depth_convention="center",
    )
    torch.testing.assert_close(out_c.depth_expected[0, ..., 0][mask], torch.full_like(t[mask], 2.0))
    assert float((out.depth_expected - out_c.depth_expected)[0, ..., 0][mask].abs().max()) > 0.1


@pytest.mark.parametrize("eye_z", [-2.0, 2.0])
def test_normals_face_the_camera_in_world_space(eye_z):
    cams = make_cameras([(0.3, 0.2, eye_z)], 32, 32)
    q = torch.tensor([[0.9, 0.2, -0.3, 0.1]])
    out = rasterize(
        torch.zeros(1, 3),
        q,
        torch.tensor([[0.5, 0.5, 1e-3]]),
        torch.tensor([0.99]),
        torch.ones(1, 3),
        cams,
        backend="torch",
    )
    n = quat_to_rotmat(q)[0, :, 2]
    cam = cams.centers[0]
    facing = n if float(n @ cam) > 0 else -n
    a = out.alpha[0]
    full = a[..., 0] > 0.5
    rendered = out.normals[0][full] / a[full]
    torch.testing.assert_close(rendered, facing.expand_as(rendered), atol=1e-5, rtol=0)


def test_gradcheck_tiny_scene():
    dt = torch.float64
    cams = make_cameras([(0, 0, -2.0)], 10, 9, fov_deg=50, dtype=dt)
    means = torch.tensor([[0.05, 0.02, 0.1], [-0.1, 0.05, 0.4]], dtype=dt)
    quats = torch.tensor([[0.95, 0.1, 0.05, 0.0], [0.9, -0.1, 0.2, 0.1]], dtype=dt)
    scales = torch.tensor([[0.8, 0.7, 1e-3], [0.9, 0.75, 1e-3]], dtype=dt)
    opac = torch.tensor([0.6, 0.7], dtype=dt)
    colors = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.5, 0.8]], dtype=dt)

    def f(means, scales, opac, colors):
        out = rasterize(means, quats, scales, opac, colors, cams, backend="torch")
        return out.rgb, out.alpha, out.depth_expected, out.distortion

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, scales, opac, colors))
    out = rasterize(*inputs[:1], quats, *inputs[1:], cams, backend="torch")
    assert out.meta["n_pairs"] == 2 * 90  # both surfels cover every pixel: no cut-offs in play
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradient_2dgs_is_screen_space_translation_gradient():
    """Facing surfel, 3D kernel everywhere: d loss / d(image shift) = d loss / d mu_x * z / fx."""
    cams = make_cameras([(0, 0, -2.0)], 32, 32)
    c2w = torch.linalg.inv(cams.viewmats[0])
    q = rotmat_to_quat(c2w[:3, :3])[None]
    mu_c = torch.tensor([0.05, 0.0, 2.0])
    means = (c2w[:3, :3] @ mu_c + c2w[:3, 3])[None].clone().requires_grad_(True)
    out = rasterize(
        means, q, torch.tensor([[0.3, 0.2, 1e-3]]), torch.tensor([0.8]), torch.ones(1, 3), cams, backend="torch"
    )
    target = torch.zeros(32, 32)
    target[:, :14] = 1.0
    loss = ((out.rgb[0, ..., 0] - target) ** 2).sum()
    loss.backward()
    g2 = out.meta["gradient_2dgs"].grad[0, 0]
    dmu_c = c2w[:3, :3].T @ means.grad[0]  # gradient w.r.t. the camera-frame centre
    fx = float(cams.Ks[0, 0, 0])
    torch.testing.assert_close(g2, dmu_c[:2] * 2.0 / fx, rtol=1e-3, atol=1e-6)
    assert abs(float(g2[0])) > 1e-2


def test_means2d_grad_and_absgrad():
    means, quats, scales, opac, colors = random_scene(60, seed=4, scale=(0.002, 0.01))  # tiny: low-pass branch
    cams = make_cameras([(0, 0, -2.0)], 32, 32)
    means.requires_grad_(True)
    out = rasterize(means, quats, scales, opac, colors, cams, backend="torch", absgrad=True)
    (out.rgb**2).sum().backward()
    m2d = out.meta["means2d"]
    assert m2d.grad is not None and m2d.grad.abs().sum() > 0
    assert (m2d.absgrad >= m2d.grad.abs() - 1e-6).all()
    assert m2d.absgrad.sum() > m2d.grad.abs().sum()  # pixels on both sides cancel in .grad only


def test_densification_with_default_strategy():
    from gsplat.strategy import DefaultStrategy

    means, quats, scales, opac, colors = random_scene(150, seed=5, scale=(0.01, 0.05))
    cams = make_cameras([(0, 0, -2.0), (1.0, 0.3, -1.6)], 32, 32)
    params = torch.nn.ParameterDict(
        {
            "means": means,
            "quats": quats,
            "scales": torch.log(scales),
            "opacities": torch.logit(opac),
            "colors": torch.logit(colors.clamp(0.05, 0.95)),
        }
    )
    optim = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(
        refine_start_iter=1,
        refine_every=2,
        reset_every=1000,
        grow_grad2d=1e-6,
        key_for_gradient="gradient_2dgs",
        prune_opa=0.05,
    )
    strategy.check_sanity(params, optim)
    state = strategy.initialize_state(scene_scale=1.0)
    target = torch.rand(2, 32, 32, 3)
    counts = [len(params["means"])]
    for step in range(6):
        out = rasterize(
            params["means"],
            params["quats"],
            torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]),
            torch.sigmoid(params["colors"]),
            cams,
            backend="torch",
        )
        strategy.step_pre_backward(params, optim, state, step, out.meta)
        loss = (out.rgb - target).abs().mean()
        loss.backward()
        if step == 0:  # (like gsplat's, the signal is zero for surfels fully in the low-pass regime)
            assert out.meta["gradient_2dgs"].grad.abs().sum() > 0
        strategy.step_post_backward(params, optim, state, step, out.meta)
        for o in optim.values():
            o.step()
            o.zero_grad(set_to_none=True)
        counts.append(len(params["means"]))
    # grow_grad2d is tiny, so every refinement (steps 2 and 4) clones or splits most surfels
    assert counts[3] > 1.5 * counts[0] and counts[-1] > counts[3], counts


@pytest.mark.slow  # a short optimisation
def test_small_fit_reduces_loss():
    torch.manual_seed(0)
    gt = random_scene(120, seed=6, spread=0.3, scale=(0.04, 0.1))
    cams = make_cameras([(0, 0, -2.0), (1.2, 0.0, -1.6), (-1.2, 0.3, -1.6)], 32, 32)
    with torch.no_grad():
        target = rasterize(*gt, cams, backend="torch").rgb
    means, quats, scales, opac, colors = random_scene(150, seed=7, spread=0.3, scale=(0.04, 0.1))
    params = [means, quats, torch.log(scales), torch.logit(opac), torch.logit(colors.clamp(0.05, 0.95))]
    params = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=0.01)
    losses = []
    for _ in range(80):
        m, q, s, o, c = params
        out = rasterize(m, q, torch.exp(s), torch.sigmoid(o), torch.sigmoid(c), cams, backend="torch")
        loss = (out.rgb - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_edge_on_surfel_gives_finite_gradients():
    cams = make_cameras([(0, 0, -2.0)], 24, 24)
    c2w = torch.linalg.inv(cams.viewmats[0])
    # surfel plane contains the viewing ray through its centre: seen exactly edge-on
    R = c2w[:3, :3] @ torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    q = rotmat_to_quat(R)[None].requires_grad_(True)
    means = torch.zeros(1, 3, requires_grad=True)
    scales = torch.tensor([[0.3, 0.3, 1e-3]], requires_grad=True)
    out = rasterize(means, q, scales, torch.tensor([0.9]), torch.ones(1, 3), cams, backend="torch")
    (out.rgb.sum() + out.depth_expected.sum() + out.distortion.sum()).backward()
    for t in (q, means, scales):
        assert torch.isfinite(t.grad).all()


def test_sh_colours_and_backgrounds():
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    dirs = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    torch.testing.assert_close(sh_basis(3, dirs), _eval_sh_bases_fast(16, dirs), rtol=1e-5, atol=1e-6)
    # degree 0 through the rasterizer: colour = C0 * dc + 0.5; background fills the rest
    cams = make_cameras([(0, 0, -2.0)], 16, 16)
    coeffs = torch.zeros(1, 4, 3)
    coeffs[0, 0] = torch.tensor([1.0, -1.0, 0.2])
    bg = torch.tensor([[0.1, 0.2, 0.3]])
    out = rasterize(
        torch.zeros(1, 3),
        torch.tensor([[1.0, 0, 0, 0]]),
        torch.tensor([[0.5, 0.5, 1e-3]]),
        torch.tensor([0.5]),
        coeffs,
        cams,
        sh_degree=1,
        backgrounds=bg,
        backend="torch",
    )
    a = out.alpha[0, 8, 8, 0]
    col = torch.clamp_min(0.28209479177387814 * coeffs[0, 0] + 0.5, 0)
    torch.testing.assert_close(out.rgb[0, 8, 8], a * col + (1 - a) * bg[0])
    torch.testing.assert_close(eval_sh(0, coeffs, torch.ones(1, 3))[0], 0.28209479177387814 * coeffs[0, 0])


def test_empty_and_bad_inputs():
    cams = make_cameras([(0, 0, -2.0)], 16, 16)
    # everything behind the camera: empty images, still differentiable
    means = torch.tensor([[0.0, 0.0, -5.0]], requires_grad=True)
    out = rasterize(
        means,
        torch.tensor([[1.0, 0, 0, 0]]),
        torch.ones(1, 3) * 0.1,
        torch.tensor([0.5]),
        torch.ones(1, 3),
        cams,
        backend="torch",
    )
    assert out.alpha.abs().sum() == 0 and out.meta["n_pairs"] == 0
    out.rgb.sum().backward()
    with pytest.raises(PrivsplatError, match="quats"):
        rasterize(
            torch.zeros(2, 3),
            torch.zeros(3, 4),
            torch.ones(2, 3),
            torch.ones(2),
            torch.ones(2, 3),
            cams,
            backend="torch",
        )
    with pytest.raises(PrivsplatError, match="colors"):
        rasterize(
            torch.zeros(2, 3),
            torch.ones(2, 4),
            torch.ones(2, 3),
            torch.ones(2),
            torch.ones(5, 3),
            cams,
            backend="torch",
        )
    with pytest.raises(PrivsplatError, match="CUDA"):
        rasterize(
            torch.zeros(2, 3),
            torch.ones(2, 4),
            torch.ones(2, 3),
            torch.ones(2),
            torch.ones(2, 3),
            cams,
            backend="gsplat",
        )


def test_distortion_is_never_negative_with_tilted_surfels():
    """Intersection depths of tilted surfels are not in sort order; distortion must stay >= 0
    (a negative distortion is a loss the optimiser can drive to minus infinity)."""
    means, quats, scales, opac, colors = random_scene(300, seed=5)
    scales = scales * 3  # large, overlapping, tilted
    cams = make_cameras([(0, 0, -2.0), (1.0, 0.3, -1.6)], width=32, height=24)
    out = rasterize(means, quats, scales, opac, colors, cams, backend="torch", depth_convention="intersection")
    assert out.meta["n_pairs"] > 2000
    assert out.distortion.min() >= -1e-6
    assert out.distortion.max() > 0
