"""The numba CPU rasterizer against the pure-torch reference: values and gradients in both
depth conventions and both screen-space low-passes ("area", the default, and "gsplat") (at the tolerances of the gsplat parity test, tests/test_render_gpu.py,
and far tighter ones where the two must agree to float rounding), densification meta,
determinism, and the tighter candidate spans.

The first test in a fresh checkout compiles the kernels (tens of seconds); numba caches
them in privsplat/render/__pycache__, after which the whole file takes seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("numba")

from privsplat.cameras import Cameras, intrinsics_from_fov, look_at  # noqa: E402
from privsplat.errors import PrivsplatError  # noqa: E402
from privsplat.render.numba_backend import rasterize_numba  # noqa: E402
from privsplat.render.torch_backend import rasterize_torch  # noqa: E402

IMAGES = ("rgb", "alpha", "normals", "depth_normals", "depth_expected", "depth_median", "distortion")


def scene(n=1500, size=48, seed=0, n_cams=2, big=4.0):
    """tests/test_render_gpu.py's scene on the CPU: a head-sized shell plus large tilted surfels."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = d * torch.tensor([0.08, 0.11, 0.10])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.012 + 0.002
    scales[: n // 10] *= big  # some surfels far larger than the low-pass filter
    opac = torch.rand(n, generator=g) * 0.8 + 0.15
    colors = torch.rand(n, 3, generator=g)
    K = intrinsics_from_fov(size, size, math.radians(30))
    eyes = [np.array([0.5 * math.sin(a), 0.05, -0.5 * math.cos(a)]) for a in np.linspace(-0.6, 0.6, n_cams)]
    cams = Cameras.from_numpy(
        np.stack([K] * n_cams), np.stack([look_at(e, np.zeros(3)) for e in eyes]), size, size, device="cpu"
    )
    return [means, quats, scales, opac, colors], cams


def robust_close(name, a, b, med_tol, p99_tol):
    """tests/test_render_gpu.py's statistic: median and 99th percentile of |a - b|."""
    err = (a - b).detach().abs().flatten().double()
    med, p99 = float(err.median()), float(torch.quantile(err, 0.99))
    assert med <= med_tol and p99 <= p99_tol, f"{name}: median {med:.3g} (<= {med_tol}), p99 {p99:.3g} (<= {p99_tol})"


def training_loss(out, target):
    """Every output the trainer uses, so every backward path is exercised."""
    consistency = (1 - (out.normals * out.depth_normals).sum(-1)).mean()
    return (
        (out.rgb - target).abs().mean()
        + 0.3 * out.alpha.mean()
        + 0.2 * consistency
        + 5.0 * out.distortion.mean()
        + 0.5 * out.depth_expected.mean()
        + 0.5 * out.depth_median.mean()
    )


def render_pair(params, cams, **kw):
    outs = {}
    for name, fn in (("numba", rasterize_numba), ("torch", rasterize_torch)):
        ps = [p.clone().requires_grad_(True) for p in params]
        outs[name] = (fn(*ps, cams, **kw), ps)
    return outs


# (convention, lowpass): every low-pass in the default convention, both conventions in the default low-pass
PARITY_CASES = [("intersection", "area"), ("center", "area"), ("intersection", "gsplat")]


@pytest.mark.parametrize("convention,lowpass", PARITY_CASES)
def test_forward_matches_torch(convention, lowpass):
    params, cams = scene()
    outs = render_pair(params, cams, depth_convention=convention, lowpass=lowpass)
    nb, ref = outs["numba"][0], outs["torch"][0]
    # radii are ceil()s that float64 (numba) and float32 (torch) may round to different sides
    diff = (nb.meta["radii"] - ref.meta["radii"]).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 0.01
    assert float(((nb.meta["radii"] > 0) != (ref.meta["radii"] > 0)).float().mean()) < 1e-3
    torch.testing.assert_close(nb.meta["means2d"], ref.meta["means2d"], atol=1e-4, rtol=1e-5)
    # same pairs up to float rounding at the 1/255 and 1e-4 cut-offs
    assert abs(nb.meta["n_pairs"] - ref.meta["n_pairs"]) <= 1e-3 * ref.meta["n_pairs"]
    for name in IMAGES:
        a, b = getattr(nb, name), getattr(ref, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = float(b.abs().max()) if name.startswith("depth_") and name != "depth_normals" else 1.0
        robust_close(name, a / scale, b / scale, 1e-5, 2e-3)  # the GPU parity tolerances
        # and float rounding (normals from depth differences amplify it: unit vectors from
        # central differences of depths that agree to ~1e-7)
        tight = (1e-5, 1e-4) if name == "depth_normals" else (1e-6, 1e-5)
        robust_close(name, a / scale, b / scale, *tight)
    assert float(nb.alpha.mean()) > 0.3  # the scene covers the image
    assert nb.meta["lowpass"] == ref.meta["lowpass"] == lowpass


@pytest.mark.parametrize("convention,lowpass", PARITY_CASES)
def test_gradients_match_torch(convention, lowpass):
    params, cams = scene(seed=1)
    target = torch.rand(len(cams), cams.height, cams.width, 3, generator=torch.Generator().manual_seed(3))
    outs = render_pair(params, cams, depth_convention=convention, absgrad=True, lowpass=lowpass)
    grads = {}
    for name, (out, ps) in outs.items():
        out.meta["gradient_2dgs"].retain_grad()
        training_loss(out, target).backward()
        grads[name] = {
            "means": ps[0].grad,
            "quats": ps[1].grad,
            "scales": ps[2].grad[:, :2],
            "opacities": ps[3].grad,
            "colors": ps[4].grad,
            "means2d": out.meta["means2d"].grad,
            "gradient_2dgs": out.meta["gradient_2dgs"].grad,
            "absgrad": out.meta["means2d"].absgrad,
        }
    for key, b in grads["torch"].items():
        a = grads["numba"][key]
        assert float(b.abs().max()) > 0, f"{key}: the reference gradient is zero, the test would prove nothing"
        scale = float(b.abs().quantile(0.99))
        robust_close(f"d/d {key}", a / scale, b / scale, 1e-3, 5e-2)  # the GPU parity tolerances
        robust_close(f"d/d {key}", a / scale, b / scale, 1e-5, 1e-3)
        cos = torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0)
        assert cos > 0.9999, f"{key}: cosine {float(cos):.6f}"


@pytest.mark.parametrize("lowpass", ["area", "gsplat"])
@pytest.mark.parametrize("convention", ["intersection", "center"])
@pytest.mark.slow  # compiles the float64 kernels
def test_float64_matches_torch_to_rounding(convention, lowpass):
    """In float64 both backends compute the same function: any difference beyond rounding
    (a missed pixel, a wrong derivative term, e.g. the low-pass offset's) would show here."""
    params, cams = scene(n=500, size=32, seed=8)
    params = [p.double() for p in params]
    cams = cams.to("cpu", torch.float64)
    target = torch.rand(2, 32, 32, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    outs = render_pair(params, cams, depth_convention=convention, lowpass=lowpass)
    assert outs["numba"][0].meta["n_pairs"] == outs["torch"][0].meta["n_pairs"]
    for name in IMAGES:
        torch.testing.assert_close(
            getattr(outs["numba"][0], name), getattr(outs["torch"][0], name), atol=1e-9, rtol=1e-7
        )
    for out, _ in outs.values():
        out.meta["gradient_2dgs"].retain_grad()
        training_loss(out, target).backward()
    (a, pa), (b, pb) = outs["numba"], outs["torch"]
    for x, y in zip(pa[:2] + pa[3:], pb[:2] + pb[3:]):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-7 * float(y.grad.abs().max()), rtol=1e-6)
    torch.testing.assert_close(
        pa[2].grad[:, :2], pb[2].grad[:, :2], atol=1e-7 * float(pb[2].grad.abs().max()), rtol=1e-6
    )
    for key in ("means2d", "gradient_2dgs"):
        g = b.meta[key].grad
        assert float(g.abs().max()) > 0
        torch.testing.assert_close(a.meta[key].grad, g, atol=1e-7 * float(g.abs().max()), rtol=1e-6)


def test_area_lowpass_shrinks_only_small_surfels_blobs():
    """The area low-pass removes low-pass pairs (sub-pixel and edge-on surfels lose their
    full-strength blob) and leaves a large face-on surfel's image as it was."""
    params, cams = scene(n=800, size=40, seed=12)
    area = rasterize_numba(*params, cams)  # the default
    gs = rasterize_numba(*params, cams, lowpass="gsplat")
    assert area.meta["lowpass"] == "area" and gs.meta["lowpass"] == "gsplat"
    assert area.meta["n_span_pixels"] < 0.95 * gs.meta["n_span_pixels"]
    assert float(area.alpha.mean()) < float(gs.alpha.mean())
    one = [
        torch.zeros(1, 3),
        torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        torch.tensor([[0.05, 0.05, 1e-3]]),
        torch.tensor([0.9]),
        torch.ones(1, 3),
    ]
    cam = Cameras.from_numpy(
        intrinsics_from_fov(32, 32, math.radians(30)), look_at(np.array([0, 0, -0.5]), np.zeros(3)), 32, 32
    )
    a, g = rasterize_numba(*one, cam), rasterize_numba(*one, cam, lowpass="gsplat")
    assert float(a.alpha.max()) > 0.8
    torch.testing.assert_close(a.alpha, g.alpha, atol=1e-6, rtol=0)


def test_edge_on_and_subpixel_surfels_match_torch_with_finite_gradients():
    """The area low-pass at its extremes: an exactly edge-on surfel (det S = 0, the offset's
    clamp), a nearly edge-on one and a sub-pixel one, in float64 against the torch backend."""
    r = math.sqrt(0.5)
    params = [
        torch.tensor([[0.0, 0.0, 0.0], [0.03, 0.02, 0.0], [-0.03, -0.01, 0.0]]),
        torch.tensor([[r, 0.0, r, 0.0], [0.72, 0.0, 0.69, 0.05], [1.0, 0.1, 0.0, 0.0]]),
        torch.tensor([[0.02, 0.01, 1e-3], [0.02, 0.015, 1e-3], [0.001, 0.0008, 1e-3]]),
        torch.tensor([0.9, 0.8, 0.95]),
        torch.tensor([[1.0, 0.2, 0.1], [0.1, 1.0, 0.2], [0.2, 0.1, 1.0]]),
    ]
    params = [p.double() for p in params]
    cam = Cameras.from_numpy(
        intrinsics_from_fov(32, 32, math.radians(30)), look_at(np.array([0, 0, -0.5]), np.zeros(3)), 32, 32
    ).to("cpu", torch.float64)
    outs = render_pair(params, cam)
    for name in IMAGES:
        torch.testing.assert_close(
            getattr(outs["numba"][0], name), getattr(outs["torch"][0], name), atol=1e-9, rtol=1e-7
        )
    assert float(outs["numba"][0].alpha.sum()) > 1.0
    for out, _ in outs.values():
        training_loss(out, torch.zeros(1, 32, 32, 3, dtype=torch.float64)).backward()
    for x, y in zip(outs["numba"][1], outs["torch"][1]):
        assert torch.isfinite(x.grad).all()
        torch.testing.assert_close(x.grad, y.grad, atol=1e-7 * float(y.grad.abs().max()), rtol=1e-6)


def test_huge_surfels_next_to_the_camera_match_torch():
    """Supports whose image is unbounded or far larger than the view (rows where the span
    quadratic opens downwards): the whole-image fallback must lose no pixel."""
    (means, quats, scales, opac, colors), cams = scene(n=300, size=40, seed=11)
    c2w = torch.linalg.inv(cams.viewmats[0])
    eye, ahead = c2w[:3, 3], c2w[:3, 2]
    means = torch.cat([means, torch.stack([eye + 0.15 * ahead + torch.tensor([0.02, 0.0, 0.0]), eye + 0.3 * ahead])])
    quats = torch.cat([quats, torch.tensor([[0.9, 0.4, 0.1, 0.0], [0.7, 0.0, 0.7, 0.1]])])
    scales = torch.cat([scales, torch.tensor([[0.3, 0.2, 1e-3], [0.5, 0.05, 1e-3]])])
    params = [
        p.double()
        for p in (
            means,
            quats,
            scales,
            torch.cat([opac, torch.tensor([0.3, 0.2])]),
            torch.cat([colors, torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]])]),
        )
    ]
    cams = cams.to("cpu", torch.float64)
    outs = render_pair(params, cams)
    a, b = outs["numba"][0], outs["torch"][0]
    assert int((a.meta["radii"][:, -2:] > 100).sum()) >= 2  # they really are huge on screen
    assert a.meta["n_pairs"] == b.meta["n_pairs"]
    for name in IMAGES:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-9, rtol=1e-7)
    for out, _ in outs.values():
        training_loss(out, torch.zeros(2, 40, 40, 3, dtype=torch.float64)).backward()
    for x, y in zip(outs["numba"][1], outs["torch"][1]):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-9 * float(y.grad.abs().max()), rtol=1e-6)


@pytest.mark.slow  # compiles the SH path
def test_sh_colours_backgrounds_and_per_camera_colours():
    params, cams = scene(n=600, size=32, seed=2)
    means, quats, scales, opac, _ = params
    g = torch.Generator().manual_seed(4)
    sh = torch.randn(len(means), 4, 3, generator=g) * 0.3
    bg = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    for colors, kw in ((sh, {"sh_degree": 1}), (torch.rand(2, len(means), 2, generator=g), {})):
        bgs = bg if colors.shape[-1] == 3 else bg[:, :2]
        outs = render_pair([means, quats, scales, opac, colors], cams, backgrounds=bgs, **kw)
        for name, (out, ps) in outs.items():
            out.rgb.square().sum().backward()
        a, b = outs["numba"], outs["torch"]
        torch.testing.assert_close(a[0].rgb, b[0].rgb, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a[1][4].grad, b[1][4].grad, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(a[1][0].grad, b[1][0].grad, atol=1e-2, rtol=1e-3)


@pytest.mark.slow  # compiles the parallel kernels
def test_deterministic_and_thread_count_independent():
    params, cams = scene(n=800, size=40, seed=5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            ps = [p.clone().requires_grad_(True) for p in params]
            out = rasterize_numba(*ps, cams)
            training_loss(out, torch.zeros(2, 40, 40, 3)).backward()
            results.append([out.rgb.detach(), out.distortion.detach()] + [p.grad for p in ps])
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:  # tiles never share pixels; per-surfel sums run in a fixed order
        for x, y in zip(results[0], other):
            assert torch.equal(x, y)


def test_spans_are_tighter_than_boxes_and_lose_nothing():
    params, cams = scene(n=1500, size=48, seed=6)
    out = rasterize_numba(*params, cams)
    ref = rasterize_torch(*params, cams)
    m = out.meta
    assert m["n_span_pixels"] < 0.9 * m["n_box_pixels"]
    assert m["n_pairs"] <= m["n_candidates"] <= m["n_span_pixels"]
    assert abs(m["n_pairs"] - ref.meta["n_pairs"]) <= 1e-3 * ref.meta["n_pairs"]


def test_densification_with_default_strategy():
    from gsplat.strategy import DefaultStrategy

    (means, quats, scales, opac, colors), cams = scene(n=300, size=32, seed=7)
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
        out = rasterize_numba(
            params["means"],
            params["quats"],
            torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]),
            torch.sigmoid(params["colors"]),
            cams,
        )
        meta = dict(out.meta)
        strategy.step_pre_backward(params, optim, state, step, meta)
        (out.rgb - target).abs().mean().backward()
        assert meta["gradient_2dgs"].grad is not None and meta["gradient_2dgs"].grad.abs().sum() > 0
        strategy.step_post_backward(params, optim, state, step, meta, packed=False)
        for o in optim.values():
            o.step()
            o.zero_grad()
        counts.append(len(params["means"]))
    assert counts[-1] != counts[0]  # grew or pruned: the strategy saw real signals


def test_rejects_bad_convention_and_empty_view():
    params, cams = scene(n=50, size=16)
    with pytest.raises(PrivsplatError, match="depth_convention"):
        rasterize_numba(*params, cams, depth_convention="middle")
    with pytest.raises(PrivsplatError, match="lowpass"):
        rasterize_numba(*params, cams, lowpass="mip")
    means = params[0] + torch.tensor([0.0, 0.0, 5.0])  # everything far behind the cameras' view
    out = rasterize_numba(means * -100, *params[1:], cams)
    assert out.meta["n_pairs"] == 0 and float(out.alpha.abs().sum()) == 0.0
