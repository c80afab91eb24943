"""The one-pixel bias: every fit sat about a pixel inside the true surface.

Measured on an analytic shape (a sphere rendered by `synth`), in pixels of the training cameras
at the sphere's front. Two sources, each checked without optimisation, and a fit end to end:
- gsplat's screen-space low-pass gives every surfel a full-strength blob of about a pixel; the
  blobs of the surfels along a silhouette add up and widen it by 1.5-2 px, so a fit pulls the
  surface inside until the widened silhouettes match the masks (render.common.lowpass_offset);
- the visual hull's surface voxels sat half a voxel (about a pixel at 64 px) inside the carved
  boundary, and the fit started from there (init.visual_hull);
- a photo's silhouette pixels mix the subject with its backdrop (synth's black): compositing them
  with the mask once more (photo x a) made them a^2 x colour, too dark, and the photometric loss
  pulled every fitted silhouette 0.4 px inside its mask (data.images.mixed_pixels: those pixels now
  leave the photometric loss; the mask loss places the silhouette).
What is left (not fixed, measured on this sphere): a shell of overlapping tangent surfels renders a
silhouette wider than its own median-depth surface (a grazing ray crosses the tails of many surfels),
by ~0.3 px at the fit's surfel size (sigma ~1.5 px, opacity 0.9); with silhouettes exact, a mask-only
fit's depth sits ~0.4 px inside, and a 1000-iteration fit's mesh drifts to ~0.3 px inside. head64's
centres keep a 10x higher final learning rate than before (1.6e-4: heads fit far better), so the
300-iteration fit below gets further along that drift: silhouettes -0.20 px, mesh -0.26 px (with the
old 100x decay -0.11 / -0.12; with the new decay and without the mixed-pixel fix -0.41 / -0.49).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privsplat.cameras import Cameras
from privsplat.render import rasterize


@pytest.fixture(scope="module")
def sphere_data(tmp_path_factory):
    """12 views of a radius-10 sphere at 64 px (synth's supersampled masks and images)."""
    o3d = pytest.importorskip("open3d")
    from privsplat.data.load import load_dataset
    from privsplat.data.synth import synthesize

    root = tmp_path_factory.mktemp("sphere")
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=10.0, resolution=60)
    o3d.io.write_triangle_mesh(str(root / "sphere.ply"), mesh)
    data = synthesize(mesh=str(root / "sphere.ply"), out=root / "data", views=12, resolution=64)
    ds = load_dataset(data, warn_unprotected=False)
    V = ds.to_normalised(np.asarray(o3d.io.read_triangle_mesh(str(data / "gt_mesh.ply")).vertices))
    center = V.mean(0)
    radius = float(np.linalg.norm(V - center, axis=1).mean())
    f0 = ds.frames[0]
    pixel = (np.linalg.norm(np.linalg.inv(f0.w2c)[:3, 3] - center) - radius) / f0.K[0, 0]
    return ds, center, radius, pixel


def fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (3 - np.sqrt(5)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def gt_depth(frame, center, radius) -> np.ndarray:
    """Analytic z-depth of the sphere at every pixel centre (inf where the ray misses)."""
    u, v = np.meshgrid(np.arange(frame.width) + 0.5, np.arange(frame.height) + 0.5)
    d_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(frame.K).T  # z = 1
    R, t = frame.w2c[:3, :3], frame.w2c[:3, 3]
    eye, d = -R.T @ t, d_cam @ R
    oc = eye - center
    a, b, c = (d * d).sum(-1), 2 * (d * oc).sum(-1), oc @ oc - radius**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        s = (-b - np.sqrt(disc)) / (2 * a)
    return np.where(disc > 0, s, np.inf)


def render_sphere_surfels(sphere_data, lowpass: str, n: int = 20000, size: float = 0.7, backend: str = "auto"):
    """Opaque surfels exactly on the sphere, tangent to it: (silhouette offset, median depth
    offset), both in pixels averaged over 4 views; + means outward / behind. The default
    backend: numba on a CPU with numba installed, else torch (both are held to each other by
    tests/test_render_numba.py)."""
    from privsplat.data.images import load_mask
    from privsplat.train.model import quats_from_normals

    ds, center, radius, pixel = sphere_data
    d = fibonacci_sphere(n)
    spacing = radius * math.sqrt(4 * math.pi / n)
    args = (
        torch.tensor(center + radius * d, dtype=torch.float32),
        torch.tensor(quats_from_normals(d, np.random.default_rng(0)), dtype=torch.float32),
        torch.full((n, 2), size * spacing),
        torch.full((n,), 0.99),
        torch.full((n, 3), 0.5),
    )
    offsets, depths = [], []
    for f in ds.frames[:4]:
        out = rasterize(*args, Cameras.from_numpy(f.K, f.w2c, f.width, f.height), backend=backend, lowpass=lowpass)
        alpha, depth = out.alpha[0, ..., 0].numpy(), out.depth_median[0, ..., 0].numpy()
        mask = load_mask(f)
        r_mask = math.sqrt((mask > 0.5).sum() / math.pi)
        offsets.append(((alpha > 0.5).sum() - (mask > 0.5).sum()) / (2 * math.pi * r_mask))
        z = gt_depth(f, center, radius)
        ok = np.isfinite(z) & (alpha > 0.5) & (mask > 0.99)
        depths.append(np.median((depth[ok] - z[ok]) / (z[ok] / f.K[0, 0])))
    return float(np.mean(offsets)), float(np.mean(depths))


def test_sphere_fixture_is_what_the_pixel_numbers_assume(sphere_data):
    _, center, radius, pixel = sphere_data
    assert radius == pytest.approx(1.0, abs=0.02)  # normalised: the silhouettes' radius
    assert 0.025 < pixel < 0.04  # ~30 px across the sphere's radius


def test_gsplat_lowpass_widens_silhouettes(sphere_data):
    """The cause, measured: gsplat's kernel renders surfels that lie exactly on the sphere with
    silhouettes more than a pixel too wide."""
    offset, _ = render_sphere_surfels(sphere_data, "gsplat")
    assert offset > 1.0


def test_surfels_on_a_sphere_render_its_silhouette_and_depth(sphere_data):
    """The default (area) low-pass: the same surfels render the sphere's own silhouette and depth."""
    offset, depth = render_sphere_surfels(sphere_data, "area")
    assert abs(offset) < 0.3
    assert abs(depth) < 0.3


@pytest.mark.slow  # carves a 96^3 hull
def test_visual_hull_surface_lies_on_the_carved_boundary(sphere_data):
    from privsplat.data.images import load_mask
    from privsplat.train.init import visual_hull

    ds, center, radius, pixel = sphere_data
    pts, normals, voxel = visual_hull(ds, {f.name: load_mask(f) for f in ds.frames})
    signed = (np.linalg.norm(pts - center, axis=1) - radius) / pixel
    assert voxel / pixel > 1.0  # the grid is coarser than a pixel here
    assert abs(np.median(signed)) < 0.3
    outward = ((pts - center) * normals).sum(1) / np.linalg.norm(pts - center, axis=1)
    assert np.median(outward) > 0.95


def test_mixed_silhouette_pixels_of_a_mask_file_leave_the_photometric_loss(tmp_path):
    """A frame with a soft mask file: its mixed pixels (0 < a < 1) are out of the photometric loss,
    the rest in; an RGBA image's own (straight) alpha composites exactly and keeps every pixel."""
    from privsplat.data.dataset import Dataset, Frame
    from privsplat.data.images import write_png
    from privsplat.train.config import load_preset
    from privsplat.train.trainer import load_views

    cover = np.zeros((8, 8))
    cover[2:6, 2:6] = 1.0
    cover[2:6, 6] = 0.5  # a silhouette column the edge cuts through
    rgb = np.round(cover[..., None] * np.array([200, 120, 80])).astype(np.uint8)  # over black, like a photo
    write_png(tmp_path / "a.png", rgb)
    write_png(tmp_path / "a_mask.png", np.round(cover * 255).astype(np.uint8))
    write_png(tmp_path / "b.png", np.dstack([np.full_like(rgb, 200), np.round(cover * 255).astype(np.uint8)]))
    K, w2c = np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]]), np.eye(4)
    w2c[2, 3] = 4.0
    frames = [
        Frame("a", "rgb", tmp_path / "a.png", K, w2c, 8, 8, mask_path=tmp_path / "a_mask.png"),
        Frame("b", "rgb", tmp_path / "b.png", K, w2c, 8, 8),
    ]
    ds = Dataset(tmp_path, frames, np.zeros(3), 1.0)
    a, b = load_views(ds, load_preset("head64"), torch.device("cpu"))
    assert a.valid is not None
    assert (a.valid[2:6, 6] == 0).all() and a.valid.sum() == 64 - 4
    assert b.mask is not None and b.valid is None


def test_a_soft_matte_is_named_in_a_warning(tmp_path, caplog):
    """A mask that is partial over most of the subject (a soft matte, a probability map) would take
    those pixels out of the photometric loss; the fit says so, and an outline-only mask does not."""
    from privsplat.data.dataset import Dataset, Frame
    from privsplat.data.images import write_png
    from privsplat.train.config import load_preset
    from privsplat.train.trainer import load_views

    K, w2c = np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]]), np.eye(4)
    w2c[2, 3] = 4.0
    write_png(tmp_path / "a.png", np.full((8, 8, 3), 120, np.uint8))
    frames = []
    for name, level in (("hard", 1.0), ("soft", 0.6)):
        cover = np.zeros((8, 8))
        cover[1:7, 1:7] = level
        cover[1:7, 7] = 0.5
        write_png(tmp_path / f"{name}_mask.png", np.round(cover * 255).astype(np.uint8))
        frames.append(Frame(name, "rgb", tmp_path / "a.png", K, w2c, 8, 8, mask_path=tmp_path / f"{name}_mask.png"))
    with caplog.at_level("WARNING", logger="privsplat.train.trainer"):
        load_views(Dataset(tmp_path, frames, np.zeros(3), 1.0), load_preset("head64"), torch.device("cpu"))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "1 frame(s)" in warned[0] and "soft: 100 %" in warned[0], warned
    assert "hard" not in warned[0] and "threshold" in warned[0]


FIT_ITERS = 300
FIT_BOUND_PX = 0.3  # the target


@pytest.fixture(scope="module")
def sphere_fit(sphere_data, tmp_path_factory):
    """A short full-RGB fit of the sphere with the head64 preset (gsplat's low-pass, 4x renders)."""
    from privsplat.run import RunFolder
    from privsplat.train.config import load_preset
    from privsplat.train.trainer import Trainer

    ds = sphere_data[0]
    cfg = load_preset("head64").replace(stage1_iters=FIT_ITERS, stage2_iters=0, n_init=3000, checkpoint_every=0)
    trainer = Trainer(ds, cfg, RunFolder(tmp_path_factory.mktemp("sphere_fit")), torch.device("cpu"), progress=False)
    trainer.fit()
    return trainer


@pytest.mark.slow
def test_fitted_silhouettes_match_the_masks(sphere_data, sphere_fit):
    """The photometric loss no longer pulls silhouettes inside: on 3e27b4c (mixed pixels composited
    as photo x a) the fitted sphere's silhouettes were 0.40 px (radius) inside its masks; with the fix
    -0.11 px, and -0.20 px with head64's slower centre decay (-0.41 px there without the fix)."""
    from privsplat.data.images import load_mask
    from privsplat.train.trainer import to_size

    ds = sphere_data[0]
    diffs = []
    with torch.no_grad():
        for f, v in zip(ds.frames[:6], sphere_fit.views[:6]):
            alpha = to_size(sphere_fit.model.render(v.camera).alpha[0], (f.height, f.width))[..., 0].numpy()
            mask = load_mask(f)
            diffs.append(math.sqrt(alpha.sum() / math.pi) - math.sqrt(mask.sum() / math.pi))
    assert abs(np.mean(diffs)) < 0.25, diffs


@pytest.mark.slow
def test_fit_of_a_sphere_is_within_a_third_of_a_pixel(sphere_data, sphere_fit):
    """End to end: the sphere fit's TSDF mesh, median signed distance in pixels. Measured: -1.71 px
    before the first fixes (6fd9062), -0.44 px on 3e27b4c (this test failed there), -0.12 px after the
    mixed-pixel fix, -0.26 px with head64's slower centre decay (-0.49 px with it and without the fix).
    Longer fits drift inside (1000 iterations: -0.30 px; see the module docstring)."""
    from privsplat.mesh.tsdf import extract_mesh

    ds, center, radius, pixel = sphere_data
    V, _, _ = extract_mesh(sphere_fit.model, ds, resolution=128, n_orbit=12, backend="auto")
    signed = (np.linalg.norm(ds.to_normalised(V) - center, axis=1) - radius) / pixel
    assert abs(np.median(signed)) < FIT_BOUND_PX, np.median(signed)
