"""RUN/report.html: every section present, images embedded, no sensitive original on the page."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest

from privsplat.train.config import FitConfig

TINY = FitConfig.flat(
    n_init=400, stage1_iters=40, stage2_iters=20, checkpoint_every=20, mesh_orbit_views=4, mesh_resolution=64
)
IMG = re.compile(r'<figure data-kind="(\w+)"(?: data-frame="([^"]*)")?><img src="data:image/png;base64,([^"]+)"')


@pytest.fixture(scope="module")
def finished_run(protected_head, tmp_path_factory):
    import torch

    from privsplat.pipeline import fit_run

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("report") / "run"
    fit_run(protected_head, run, TINY, device="cpu", progress=False, threads=1)
    return run


def _decode(b64: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    return img if img.ndim == 2 else img[..., ::-1]  # BGR -> RGB


def _data_of(run) -> str:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["data"]


def _section(page: str, key: str) -> str:
    start = page.index(f'<section id="{key}">')
    return page[start : page.index("</section>", start)]


@pytest.mark.slow  # a short fit
def test_report_names_every_section_and_is_self_contained(finished_run):
    from privsplat.report import SECTIONS, write_report

    path = write_report(finished_run)
    page = path.read_text()
    assert path == finished_run / "report.html"
    for key, heading in SECTIONS.items():
        assert f'<section id="{key}"><h2>{heading}</h2>' in page.replace("&lt;", "<").replace("&gt;", ">")
    # Self-contained: every image is a data: URI, nothing is fetched from elsewhere.
    assert re.findall(r'src="(?!data:)', page) == []
    assert "http" not in page.split("<body>", 1)[1].split("<pre>", 1)[0]
    # Real content in each section, not a "missing" note: 12 inputs, 3+3 rendered views, a turntable.
    assert 'class="note"' not in page
    kinds = [m[0] for m in IMG.findall(_section(page, "inputs"))]
    assert kinds.count("rgb") == 6 and kinds.count("protected") == 6
    assert len(IMG.findall(_section(page, "gradients"))) == 2 * 3  # |g| and σ(render), 3 views
    assert len(IMG.findall(_section(page, "geometry"))) == 2 * 6  # normals and depth, 6 views
    assert len(IMG.findall(_section(page, "mesh"))) == 8
    shaded = _decode(IMG.findall(_section(page, "mesh"))[0][2])
    assert 0.05 < (shaded.mean(axis=-1) > 0).mean() < 0.9  # the mesh is in view, not all of it
    curves = IMG.findall(_section(page, "losses"))
    assert "Loss terms per step from losses.jsonl" in page and len(curves) == 1
    assert _decode(curves[0][2]).shape[1] > 2 * 400  # one panel per stage, side by side
    assert "<th>surfels</th>" in page and "n_init: 400" in page


@pytest.mark.slow  # a short fit
def test_no_sensitive_original_reaches_the_page(finished_run, synth_head):
    """The inputs shown are the neutral originals (positive control) and grey |g| for the rest;
    no image anywhere on the page is a sensitive view's original."""
    from privsplat.data import load_dataset, load_rgb
    from privsplat.report import write_report

    page = write_report(finished_run).read_text()
    originals = {f.name: load_rgb(f) for f in load_dataset(synth_head, warn_unprotected=False).frames}
    frames = {f.name: f.kind for f in load_dataset(_data_of(finished_run)).frames}
    sensitive = [n for n, k in frames.items() if k == "protected"]
    assert len(sensitive) == 6

    for kind, frame, b64 in IMG.findall(_section(page, "inputs")):
        img = _decode(b64)
        if kind == "rgb":
            assert frames[frame] == "rgb"
            assert np.abs(img / 255.0 - originals[frame]).max() < 1 / 255 + 1e-6  # it IS the original
        else:
            assert frames[frame] == "protected" and img.ndim == 2  # a grey |g|, not RGB
    for _, _, b64 in IMG.findall(page):
        img = _decode(b64)
        if img.ndim != 3 or img.shape[:2] != (32, 32):
            continue
        for name in sensitive:
            assert np.abs(img / 255.0 - originals[name]).mean() > 0.02, f"{name}'s original is on the page"


@pytest.mark.slow  # a short fit
def test_losses_log_is_plotted_when_present(finished_run, copy_of):
    from privsplat.report import read_losses, write_report

    run = copy_of(finished_run)
    lines = [
        json.dumps({"stage": "stage1", "step": i, "terms": {"loss": 1.0 / (i + 1), "rgb": 0.5 / (i + 1)}})
        for i in range(30)
    ]
    lines.insert(10, '{"stage": "stage1", "st')  # a line cut by a kill
    lines.append(json.dumps({"stage": "stage1", "step": 5, "terms": {"loss": 9.0}}))  # resumed: step 5 again
    lines += [json.dumps({"stage": "stage2", "step": i, "terms": {"grad": 0.1}}) for i in range(5)]
    (run / "losses.jsonl").write_text("\n".join(lines) + "\n")
    curves = read_losses(run)
    assert list(curves) == ["stage1", "stage2"]
    steps, values = curves["stage1"]["loss"]
    assert steps == list(range(30)) and values[5] == 9.0 and values[29] == pytest.approx(1 / 30)
    page = write_report(run).read_text()
    assert "Loss terms per step from losses.jsonl" in page


@pytest.mark.slow  # a short fit
def test_trainer_loss_log_is_read(finished_run):
    """The trainer's own lines: terms flat beside stage, step and surfels."""
    from privsplat.report import read_losses

    curves = read_losses(finished_run)
    assert list(curves) == ["stage1", "stage2"]
    assert "surfels" not in curves["stage1"] and {"rgb", "loss"} <= set(curves["stage1"])
    assert "grad" in curves["stage2"] and curves["stage2"]["grad"][0][-1] == 20  # up to the last step
    assert all(v > 0 for _, vals in curves["stage1"].values() for v in vals)


@pytest.mark.slow  # a short fit
def test_metrics_fallback_without_a_loss_log(finished_run, copy_of):
    from privsplat.report import write_report

    run = copy_of(finished_run)
    (run / "losses.jsonl").unlink()
    page = write_report(run).read_text()
    assert "no per-step log (losses.jsonl)" in page and len(IMG.findall(_section(page, "losses"))) == 1


@pytest.mark.slow  # a short fit
def test_partial_run_still_gets_a_report(finished_run, copy_of):
    """No mesh, no metrics, a dataset that moved: the page says so section by section."""
    from privsplat.report import write_report

    run = copy_of(finished_run)
    (run / "mesh.ply").unlink()
    (run / "metrics.json").unlink()
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace(str(_data_of(run)), "/nonexistent/data"))
    page = write_report(run).read_text()
    assert _section(page, "inputs").count('class="note"') == 1 and "does not exist" in _section(page, "inputs")
    assert "no mesh.ply" in _section(page, "mesh")
    assert "no metrics.json" in _section(page, "metrics")
    shutil.rmtree(run / "checkpoints")
    assert "no fitted model" in _section(write_report(run).read_text(), "renders")


def test_not_a_run_folder(tmp_path):
    from privsplat.errors import PrivsplatError
    from privsplat.report import write_report

    with pytest.raises(PrivsplatError, match="not a privsplat run folder"):
        write_report(tmp_path)
