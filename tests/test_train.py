"""The fit: PLY round trip, a tiny two-stage fit on CPU, resume after a kill, the guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from privsplat.errors import PrivsplatError
from privsplat.train.config import FitConfig, load_preset
from privsplat.train.model import SurfelModel, read_splats_ply, write_splats_ply

TINY = FitConfig.flat(
    n_init=600,
    stage1_iters=150,
    stage2_iters=200,
    densify_every=50,
    checkpoint_every=50,
    dist_weight=1.0,
    mesh_orbit_views=6,
    mesh_resolution=96,
    max_surfels=3000,
)


def test_presets_load_and_override():
    cfg = load_preset("head64")
    assert cfg.stage1_iters > 0 and cfg.colour_model == "shaded"
    assert load_preset("scene").colour_model == "sh"
    with pytest.raises(PrivsplatError, match="unknown preset"):
        load_preset("nope")
    with pytest.raises(PrivsplatError, match="unknown config keys"):
        FitConfig.from_dict({"stage_one": 3})


@pytest.mark.parametrize("colour_model", ["shaded", "sh"])
def test_splats_ply_round_trip(tmp_path, colour_model):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 3))
    nrm = rng.normal(size=(50, 3))
    model = SurfelModel.from_points(pts, nrm, FitConfig.flat(colour_model=colour_model, sh_degree=2))
    center, scale = np.array([1.0, -2.0, 3.0]), 0.25
    write_splats_ply(model, tmp_path / "s.ply", transform=(center, scale))
    back = read_splats_ply(tmp_path / "s.ply")
    p = model.params
    np.testing.assert_allclose(back["means"], p["means"].detach().numpy() / scale + center, atol=1e-4)
    np.testing.assert_allclose(
        np.abs((back["quats"] * torch.nn.functional.normalize(p["quats"], dim=-1).detach().numpy()).sum(1)),
        1.0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        back["log_scales"][:, :2], p["scales"].detach().numpy()[:, :2] - np.log(scale), atol=1e-5
    )
    assert (back["log_scales"][:, 2] < back["log_scales"][:, :2].min(1) - 5).all()  # flat third axis
    np.testing.assert_allclose(back["opacity_logits"], p["opacities"].detach().numpy(), atol=1e-6)
    assert back["sh"].shape[1] == (9 if colour_model == "sh" else 1)


def test_normal_drives_shading():
    """In the shaded model, tilting a surfel changes its colour (so sigma(render) can see geometry)."""
    from privsplat.cameras import Cameras, look_at

    model = SurfelModel.from_points(np.zeros((1, 3)) + [[0, 0, 0]], np.array([[0.0, 0.0, 1.0]]), FitConfig(), seed=0)
    with torch.no_grad():
        model.light[3] = 1.0  # light from +x
        K = torch.tensor([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
        cam = Cameras(K, torch.tensor(look_at(np.array([0, 0, 3.0]), np.zeros(3)), dtype=torch.float32), 64, 64)
        c0, _ = model.colours_for(cam)
        model.params["quats"][:] = torch.tensor([np.cos(0.3), 0.0, np.sin(0.3), 0.0])  # tilt about y
        c1, _ = model.colours_for(cam)
    assert (c1 - c0).abs().max() > 0.05


def test_depth_shading_follows_the_surface_not_the_surfel_tilt():
    """stage2_shading="depth": a plane of surfels shades by the rendered depth's normal, so tilting
    the surfels in place barely changes the image, while surfel shading changes it a lot."""
    from privsplat.cameras import Cameras, look_at

    g = np.linspace(-0.6, 0.6, 25)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = np.c_[pts, np.zeros(len(pts))]
    model = SurfelModel.from_points(pts, np.tile([0.0, 0.0, 1.0], (len(pts), 1)), FitConfig(), seed=0)
    with torch.no_grad():
        model.params["opacities"][:] = 4.0
        model.light[:] = 0.0
        model.light[0] = 1.0  # ambient
        model.light[3] = 0.6  # light from +x
    K = torch.tensor([[60.0, 0, 24], [0, 60.0, 24], [0, 0, 1]])
    cam = Cameras(
        K[None], torch.tensor(look_at(np.array([0.2, 0.1, 3.0]), np.zeros(3)), dtype=torch.float32)[None], 48, 48
    )

    def centre(shading):
        with torch.no_grad():
            return model.render(cam, backend="torch", shading=shading).rgb[0, 16:32, 16:32]

    s0, d0 = centre("surfel"), centre("depth")
    assert (s0 - d0).abs().max() < 0.05  # same picture while surfel normals and the surface agree
    with torch.no_grad():
        model.params["quats"][:] = torch.tensor([np.cos(0.25), 0.0, np.sin(0.25), 0.0])  # 29° about y
    s1, d1 = centre("surfel"), centre("depth")
    assert (s1 - s0).abs().mean() > 4 * (d1 - d0).abs().mean(), ((s1 - s0).abs().mean(), (d1 - d0).abs().mean())


@pytest.fixture(scope="module")
def tiny_protected(tmp_path_factory):
    """A 12-view 32-px ICT head; the 6 most frontal views protected."""
    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.privacy.protect import protect

    root = tmp_path_factory.mktemp("tiny")
    data = root / "head"
    synthesize(mesh="ict", out=data, views=12, resolution=32, identity_seed=1)
    neutral, sensitive = rear_view_names(data, 6)
    protect(data, root / "prot", sensitive=",".join(sensitive), resolution=32)
    return data, root / "prot"


@pytest.mark.slow
def test_two_stage_fit_lowers_gradient_loss_and_meshes_near_truth(tiny_protected, tmp_path):
    from privsplat.eval.geometry import evaluate_mesh
    from privsplat.pipeline import fit_run

    data, prot = tiny_protected
    cfg = TINY.replace(dist_weight=0.0, stage2_lr_factor=1.0)  # as head64: no distortion loss, stage 2 at full rate
    m = fit_run(prot, tmp_path / "run", cfg, device="cpu", progress=False)
    s2 = m["stages"]["stage2"]
    assert s2["final_losses"]["grad"] < 0.85 * s2["initial_losses"]["grad"]
    assert m["stages"]["stage1"]["final_losses"]["rgb"] < m["stages"]["stage1"]["initial_losses"]["rgb"]
    for name in ["mesh.ply", "splats.ply", "metrics.json", "config.yaml"]:
        assert (tmp_path / "run" / name).is_file()
    assert any((tmp_path / "run" / "renders").glob("protected_*.png"))
    assert m["mesh"]["triangles"] > 500
    scores = evaluate_mesh(tmp_path / "run" / "mesh.ply", data / "gt_mesh.ply", n_samples=20000)
    # stage 2 must improve on stage 1 alone (the paper's claim). Measured: 0.59 cm for the two stages
    # vs 0.75 for stage 1 only; with TINY's distortion loss and half-rate stage 2, 0.90 vs 0.94 (stage 1
    # alone got far better at 32 px once mixed silhouette pixels left its photometric loss: 6.2 cm before)
    s1 = fit_run(prot, tmp_path / "s1", cfg.replace(stage2_iters=1), device="cpu", progress=False, report=False)
    assert s1["stages"]["stage2"]["iterations"] == 1
    stage1_only = evaluate_mesh(tmp_path / "s1" / "mesh.ply", data / "gt_mesh.ply", n_samples=20000)
    assert scores["chamfer"] < 0.9 * stage1_only["chamfer"], (scores["chamfer"], stage1_only["chamfer"])


def test_resume_after_interrupt(tiny_protected, tmp_path, monkeypatch):
    from privsplat.pipeline import fit_run
    from privsplat.train import trainer as T

    _, prot = tiny_protected
    cfg = TINY.replace(stage1_iters=120, stage2_iters=60, mesh_orbit_views=0)
    real_step = T.Trainer._train_step
    calls = {"n": 0}

    def dying_step(self, frac):
        calls["n"] += 1
        if calls["n"] == 130:  # in stage 2, after the checkpoint at stage 1's end
            raise KeyboardInterrupt
        return real_step(self, frac)

    monkeypatch.setattr(T.Trainer, "_train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        fit_run(prot, tmp_path / "run", cfg, device="cpu", progress=False)
    assert not (tmp_path / "run" / "mesh.ply").exists()
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    assert (ckpt["stage_index"], ckpt["step"]) == (1, 0)
    monkeypatch.setattr(T.Trainer, "_train_step", real_step)
    calls["n"] = 0
    counted = {"n": 0}

    def counting_step(self, frac):
        counted["n"] += 1
        return real_step(self, frac)

    monkeypatch.setattr(T.Trainer, "_train_step", counting_step)
    m = fit_run(prot, tmp_path / "run", cfg, device="cpu", progress=False, resume=True)
    assert counted["n"] == 60  # only stage 2 ran again
    assert (tmp_path / "run" / "mesh.ply").is_file() and m["stages"]["stage2"]["iterations"] == 60


def test_fit_refuses_tampered_protected_folder(tiny_protected, tmp_path):
    import shutil

    from privsplat.pipeline import fit_run

    _, prot = tiny_protected
    bad = tmp_path / "bad"
    shutil.copytree(prot, bad)
    manifest = json.loads((bad / "privsplat_manifest.json").read_text())
    victim = next(f["name"] for f in manifest["frames"] if f["kind"] == "protected")
    path = next(
        bad / rel
        for rel in manifest["files"]
        if Path(rel).stem == victim and rel.endswith(".png") and not rel.startswith("masks")
    )
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(PrivsplatError):
        fit_run(bad, tmp_path / "run", TINY, device="cpu", progress=False)
    assert not (tmp_path / "run" / "mesh.ply").exists()


def test_fit_refuses_output_inside_input(tiny_protected):
    from privsplat.pipeline import fit_run

    _, prot = tiny_protected
    with pytest.raises(PrivsplatError, match="inside the input"):
        fit_run(prot, prot / "run", TINY, device="cpu", progress=False)


def test_render_scale_auto_renders_gsplat_blob_fits_at_512_px_or_more():
    """gsplat's full-strength screen-space blob pulls a fit about a pixel inside (ICT 1 at 64 px: 0.805 cm
    at 1x, 0.201 cm at 4x on an H100; at 256 px: 0.240 cm at 1x on the H100, 0.118 cm at 2x); auto
    renders such fits at >= 512 px (at most 4x), the area low-pass at 1x."""
    from privsplat.train.trainer import render_scale_for

    cpu = torch.device("cpu")
    area, blob = FitConfig(), FitConfig().replace(lowpass="gsplat")
    assert area.render_scale == 0  # auto is the default
    assert render_scale_for(area, cpu, 64, 64) == 1.0
    assert [render_scale_for(blob, cpu, w, w) for w in (32, 64, 100, 128, 256, 300, 512)] == [4, 4, 4, 4, 2, 2, 1]
    assert render_scale_for(blob, cpu, 48, 64) == 4.0  # the long side decides
    assert render_scale_for(blob.replace(render_scale=1.5), cpu, 64, 64) == 1.5  # an explicit scale wins
    assert render_scale_for(area.replace(render_scale=2.0), cpu, 64, 64) == 2.0
    # a blob in stage 2 alone renders every stage at the blob's scale
    assert render_scale_for(area.replace(stage2_lowpass="gsplat"), cpu, 64, 64) == 4.0
    assert render_scale_for(blob.replace(stage2_lowpass="area"), cpu, 64, 64) == 4.0
    with pytest.raises(PrivsplatError, match="render-scale"):
        FitConfig().replace(render_scale=-1).validate()


def test_sigma_of_a_supersampled_render_is_taken_at_the_frames_size(tmp_path):
    """A render at render_scale 2 comes back to the frame's size before σ, as protect took σ of the
    photo: with σ's resolution (64) above a 24 px frame the protected image stays 24 px, and a σ of
    the 48 px render would have been 48 px (the fit stopped with a size error before the fix)."""
    from privsplat.data.load import load_dataset
    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.privacy.protect import protect
    from privsplat.run import RunFolder
    from privsplat.train.trainer import Trainer

    data = synthesize(mesh="ict", out=tmp_path / "head", views=6, resolution=24, identity_seed=1)
    _, sensitive = rear_view_names(data, 3)
    protect(data, tmp_path / "prot", sensitive=",".join(sensitive), verbose=False)
    ds = load_dataset(tmp_path / "prot")
    cfg = TINY.replace(n_init=200, stage1_iters=2, stage2_iters=2, render_scale=2.0, checkpoint_every=0)
    (tmp_path / "run").mkdir()
    trainer = Trainer(ds, cfg, RunFolder(tmp_path / "run"), torch.device("cpu"), progress=False)
    m = trainer.fit()
    assert m["render_scale"] == 2.0 and "stage2" in m["stages"]
    view = trainer.protected_views[0]
    assert view.magnitude.shape == (24, 24) and view.camera.width == 48


def test_stage2_settle_steps_hold_the_final_centre_rate_and_do_not_densify(tiny_protected, tmp_path):
    """stage2_settle_iters appends steps to stage 2 after its schedule: the decay and the densification
    window keep the length they have without them, and the appended steps run at the final rate.
    The full-RGB baseline gets them too (the same number of steps as the privacy fit)."""
    from privsplat.data.load import load_dataset
    from privsplat.run import RunFolder
    from privsplat.train.stages import plan_stages
    from privsplat.train.trainer import Trainer

    _, prot = tiny_protected
    ds = load_dataset(prot)
    cfg = TINY.replace(
        n_init=300, stage1_iters=20, stage2_iters=40, stage2_settle_iters=30, densify_every=10, checkpoint_every=0
    )
    (tmp_path / "run").mkdir()
    trainer = Trainer(ds, cfg, RunFolder(tmp_path / "run"), torch.device("cpu"), progress=False)
    seen = []
    real_step = trainer._train_step

    def step(frac):
        out = real_step(frac)
        seen.append((trainer.stage, trainer.step, trainer.optimizers["means"].param_groups[0]["lr"], trainer.model.n))
        return out

    trainer._train_step = step
    trainer.fit()
    s2 = [x for x in seen if x[0] == "stage2"]
    assert len(s2) == 70 and trainer.metrics["stages"]["stage2"]["iterations"] == 70
    final = cfg.lr_means_final * cfg.stage2_lr_factor
    lrs = [lr for _, k, lr, _ in s2]
    assert all(lr > final * (1 + 1e-6) for lr in lrs[:39]), "the decay must span the 40 scheduled steps"
    np.testing.assert_allclose(lrs[40:], final, rtol=1e-6)
    assert len({n for _, k, _, n in s2 if k >= int(cfg.densify_stop * 40)}) == 1, "no densification after the window"
    # the full-RGB baseline gets the same budget, settle steps included; a stage-1-only fit gets none;
    # bad values are refused
    assert [(st.iters, st.settle) for st in plan_stages(cfg, 10, 0, False)] == [(90, 30)]
    assert [st.iters for st in plan_stages(cfg.replace(stage2_iters=0), 10, 10, False)] == [20, 0]
    with pytest.raises(PrivsplatError, match="stage2-settle-iters"):
        TINY.replace(stage2_settle_iters=-1)


def test_normal_smoothness_is_sign_free_and_penalises_bent_neighbours():
    """1 - (n_i . n_j)^2 over neighbours: zero for a flat sheet whatever each normal's sign, positive
    (and differentiable) once a neighbour tilts."""
    from privsplat.train.losses import normal_smoothness

    nb = torch.tensor([[1, 2], [0, 2], [0, 1]])
    flat = torch.tensor([[0.0, 0, 1], [0, 0, -1], [0, 0, 1]])
    assert normal_smoothness(flat, nb).item() == pytest.approx(0.0, abs=1e-7)
    bent = flat.clone().requires_grad_(True)
    with torch.no_grad():
        bent[1] = torch.tensor([np.sin(0.3), 0.0, -np.cos(0.3)])
    loss = normal_smoothness(bent, nb)
    assert loss.item() == pytest.approx(4 * np.sin(0.3) ** 2 / 6, rel=1e-5)
    loss.backward()
    assert bent.grad[1].abs().sum() > 0


def test_normal_smoothness_applies_in_stage_2_only(tiny_protected, tmp_path):
    """normal_smooth_weight adds the term to stage 2's loss (logged as "nsmooth"), never to stage 1,
    and a weight of 0 (the default) leaves it out."""
    from privsplat.pipeline import fit_run

    _, prot = tiny_protected
    cfg = TINY.replace(n_init=300, stage1_iters=20, stage2_iters=20, checkpoint_every=0, normal_smooth_weight=0.05)
    for weight in (0.05, 0.0):
        run = tmp_path / f"run{weight}"
        fit_run(
            prot, run, cfg.replace(normal_smooth_weight=weight), device="cpu", progress=False, mesh=False, report=False
        )
        lines = [json.loads(x) for x in (run / "losses.jsonl").read_text().splitlines()]
        stage2 = [x for x in lines if x["stage"] == "stage2"]
        assert stage2 and not any("nsmooth" in x for x in lines if x["stage"] == "stage1")
        if weight:
            assert all(0 < x["nsmooth"] < weight for x in stage2)
        else:
            assert not any("nsmooth" in x for x in stage2)
    with pytest.raises(PrivsplatError, match="normal-smooth-weight"):
        TINY.replace(normal_smooth_weight=-1)


def test_max_scale_px_caps_every_surfel_at_that_many_pixels(tmp_path):
    """max_scale_px: after a fit no surfel's sigma exceeds the cap (pixels of the frames' cameras at
    the median camera distance), while the uncapped fit of the same data has larger ones."""
    from privsplat.cameras import camera_distances
    from privsplat.data.load import load_dataset
    from privsplat.data.synth import synthesize
    from privsplat.run import RunFolder
    from privsplat.train.trainer import Trainer

    data = synthesize(mesh="ict", out=tmp_path / "head", views=6, resolution=24, identity_seed=1)
    ds = load_dataset(data, warn_unprotected=False)
    footprint = float(np.median(camera_distances(ds.w2cs())[1])) / float(np.median([f.K[0, 0] for f in ds.frames]))
    largest = {}
    for cap in (0.0, 0.5):
        cfg = TINY.replace(n_init=200, stage1_iters=20, stage2_iters=0, checkpoint_every=0, max_scale_px=cap)
        (tmp_path / f"run{cap}").mkdir()
        trainer = Trainer(ds, cfg, RunFolder(tmp_path / f"run{cap}"), torch.device("cpu"), progress=False)
        trainer.fit()
        largest[cap] = float(torch.exp(trainer.model.params["scales"][:, :2]).max()) / footprint
    assert largest[0.5] <= 0.5 * (1 + 1e-5) < largest[0.0], largest
    with pytest.raises(PrivsplatError, match="max-scale-px"):
        TINY.replace(max_scale_px=-1.0)


def test_gradient_loss_pyramid_sees_an_edge_it_does_not_overlap():
    """grad_levels 1 is the paper's eq. 5; with more levels an edge three pixels from its target
    still gets a gradient toward it (at one level a non-overlapping edge's loss is flat in its shift)."""
    from privsplat.train.losses import gradient_loss

    def edge(x0: float) -> torch.Tensor:
        cols = torch.arange(32, dtype=torch.float32)
        return torch.exp(-0.5 * ((cols - x0) / 0.5) ** 2).expand(32, 32)

    target = edge(10.0)
    m = torch.rand(32, 32)
    assert torch.isclose(gradient_loss(m, target), (m - target).abs().mean())
    region = torch.zeros(32, 32)
    region[:, :16] = 1.0
    assert torch.isclose(gradient_loss(m, target, region), ((m - target).abs() * region).sum() / region.sum())
    shift = torch.tensor(14.0, requires_grad=True)

    def pull(levels: int) -> float:
        shift.grad = None
        cols = torch.arange(32, dtype=torch.float32)
        render = torch.exp(-0.5 * ((cols - shift) / 0.5) ** 2).expand(32, 32)
        gradient_loss(render, target, levels=levels).backward()
        return float(shift.grad)

    one, three = pull(1), pull(3)
    assert abs(one) < 1e-4  # no overlap: (almost) no pull, only the Gaussians' far tails
    assert three > 100 * abs(one)  # the loss falls as the edge moves toward x = 10


def test_sigma_of_a_masked_protected_view_is_taken_over_black(protected_head, tmp_path):
    """protect blacks out a masked photo's backdrop before σ; the fit must take σ of its render over
    black too, whatever --background it composites on (white here)."""
    from privsplat.data import load_dataset
    from privsplat.run import RunFolder
    from privsplat.train.trainer import Trainer, sigma_input

    ds = load_dataset(protected_head)
    cfg = load_preset("head64").replace(stage1_iters=1, stage2_iters=1, n_init=500, checkpoint_every=0)
    trainer = Trainer(ds, cfg, RunFolder(tmp_path / "run"), torch.device("cpu"), progress=False)
    view = next(v for v in trainer.views if v.magnitude is not None)
    assert view.mask is not None
    with torch.no_grad():
        white = trainer.model.render(view.camera, background=(1.0, 1.0, 1.0))
        black = trainer.model.render(view.camera, background=(0.0, 0.0, 0.0))
    assert float((white.rgb - black.rgb).abs().max()) > 0.5  # the background shows
    over_black = sigma_input(white.rgb[0], white.alpha[0], (1.0, 1.0, 1.0), masked=True)
    torch.testing.assert_close(over_black, black.rgb[0], atol=1e-5, rtol=0)
    # a view without a mask shows its real background in every pixel: σ of the render as it is
    rgb = white.rgb[0]
    assert sigma_input(rgb, white.alpha[0], (1.0, 1.0, 1.0), masked=False) is rgb
