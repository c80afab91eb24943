"""protect: the privacy promise (try to break it), the output contract, the guard."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from privsplat.data import load_dataset, load_mask, load_protected, load_rgb, load_rgb_outside
from privsplat.data.protected import MANIFEST_NAME
from privsplat.errors import PrivsplatError
from privsplat.io import sha256_file
from privsplat.privacy.detect import Detection, pose_rule
from privsplat.privacy.protect import protect
from privsplat.privacy.sigma import SigmaParams, gradient_magnitude


def sensitive_names(out: Path) -> list[str]:
    m = json.loads((out / MANIFEST_NAME).read_text())
    return [f["name"] for f in m["frames"] if f["kind"] == "protected"]


def _grey(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)
    if f.ndim == 3:
        f = f[:, :, :3].mean(axis=2)
    return f


def _corr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    a, b = a[where], b[where]
    if a.size < 32 or a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def leaks(folder: Path, originals: dict[str, tuple[Path, np.ndarray]]) -> list[str]:
    """Every way we can think of that `folder` might still hold a sensitive view.

    originals: name -> (original image file, bool [H,W] private area). Walks every file
    (hidden ones too): byte copies of the file or of its raw pixel rows (uint8, float32),
    and every decodable image, at its own size and downsampled, correlated with the
    original over the private area.
    """
    found = []
    probes = []
    for name, (path, area) in originals.items():
        raw = path.read_bytes()
        rgb = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :, :3][:, :, ::-1]
        row = int(np.argmax(area.sum(1)))
        cols = np.nonzero(area[row])[0]
        span = np.ascontiguousarray(rgb[row, cols.min() : cols.max() + 1])
        probes.append(
            (
                name,
                [raw[len(raw) // 2 : len(raw) // 2 + 48], span.tobytes(), (span.astype(np.float32) / 255).tobytes()],
                _grey(rgb),
                area,
            )
        )
    for dirpath, _, files in os.walk(folder):
        for fn in files:
            p = Path(dirpath) / fn
            data = p.read_bytes()
            img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            for name, needles, grey, area in probes:
                if any(len(n) >= 16 and n in data for n in needles):
                    found.append(f"{p} holds bytes of {name}")
                if img is None or img.ndim < 2:
                    continue
                g = _grey(img)
                for size in (grey.shape[0], grey.shape[0] // 2, grey.shape[0] // 4):
                    a = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
                    b = cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA)
                    m = cv2.resize(area.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.99
                    c = _corr(a, b, m)
                    if abs(c) > 0.95:  # a copy or thumbnail scores > 0.99; neighbouring views less
                        found.append(f"{p} correlates {c:.2f} with {name} at {size} px")
    return found


def private_areas(data: Path, names, region_dir: Path | None = None):
    out = {}
    for n in names:
        area = cv2.imread(str(data / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) > 127
        if region_dir is not None and (region_dir / f"{n}.png").is_file():
            area &= cv2.imread(str(region_dir / f"{n}.png"), cv2.IMREAD_GRAYSCALE) > 127
        out[n] = (data / "images" / f"{n}.png", area)
    return out


def test_no_sensitive_rgb_anywhere_in_output(synth_head, protected_head):
    names = sensitive_names(protected_head)
    assert len(names) == 6
    originals = private_areas(synth_head, names)
    # the checker must be able to see a leak: the input folder itself is full of them
    assert len(leaks(synth_head, originals)) >= len(names)
    assert leaks(protected_head, originals) == []
    # no path back to the input (nothing that would let a server fetch the originals)
    for dirpath, _, files in os.walk(protected_head):
        for fn in files:
            assert str(synth_head).encode() not in (Path(dirpath) / fn).read_bytes()


def test_output_reproduces_cameras_sigma_and_neutral_rgb(synth_head, protected_head):
    a, b = load_dataset(synth_head), load_dataset(protected_head)
    assert b.protection == SigmaParams(resolution=32).to_dict()
    np.testing.assert_allclose(b.center, a.center, atol=1e-12)
    assert b.scale == pytest.approx(a.scale) and b.normalisation == a.normalisation
    for fa, fb in zip(a.frames, b.frames):
        assert fa.name == fb.name
        np.testing.assert_allclose(fb.w2c, fa.w2c, atol=1e-9)
        np.testing.assert_allclose(fb.K, fa.K, atol=1e-12)
        np.testing.assert_array_equal(load_mask(fb), load_mask(fa))
        if fb.kind == "rgb":
            np.testing.assert_array_equal(load_rgb(fb), load_rgb(fa))
        else:
            mag, region = load_protected(fb)
            ref = gradient_magnitude(load_rgb(fa), SigmaParams(resolution=32))
            assert region is None and mag.shape == ref.shape == (32, 32)
            np.testing.assert_allclose(mag, ref, atol=ref.max() / 65535 + 1e-7)


def _rehash(root: Path, *rels: str):
    """What a careless (or hostile) editor would do: fix up the manifest's hashes."""
    m = json.loads((root / MANIFEST_NAME).read_text())
    for rel in rels:
        m["files"][rel] = sha256_file(root / rel)
    (root / MANIFEST_NAME).write_text(json.dumps(m))


def _edit_transforms(root: Path, fn):
    meta = json.loads((root / "transforms.json").read_text())
    fn(meta)
    (root / "transforms.json").write_text(json.dumps(meta))


def test_guard_refuses_tampering(protected_head, copy_of):
    name = sensitive_names(protected_head)[0]
    neutral = next(f.name for f in load_dataset(protected_head).frames if f.kind == "rgb")

    d = copy_of(protected_head)
    p = d / "protected" / f"{name}.png"
    p.write_bytes(p.read_bytes()[:-1] + b"\0")
    with pytest.raises(PrivsplatError, match="changed after protection"):
        load_dataset(d)

    d = copy_of(protected_head)  # a sensitive frame flipped to RGB
    _edit_transforms(
        d, lambda m: [f.update(privsplat_kind="rgb") for f in m["frames"] if f["file_path"].endswith(f"/{name}.png")]
    )
    with pytest.raises(PrivsplatError, match="transforms.json changed"):
        load_dataset(d)
    _rehash(d, "transforms.json")
    with pytest.raises(PrivsplatError, match="changed kind"):
        load_dataset(d)

    d = copy_of(protected_head)  # the protected image swapped for an RGB one, manifest patched
    img = cv2.imread(str(d / "images" / f"{neutral}.png"))
    cv2.imwrite(str(d / "protected" / f"{name}.png"), img)
    _rehash(d, f"protected/{name}.png")
    with pytest.raises(PrivsplatError, match="not a protected"):
        load_dataset(d)

    d = copy_of(protected_head)  # a frame added after protection
    (d / "images" / "extra.png").write_bytes((d / "images" / f"{neutral}.png").read_bytes())
    _edit_transforms(
        d, lambda m: m["frames"].append({**m["frames"][0], "file_path": "images/extra.png", "privsplat_kind": "rgb"})
    )
    _rehash(d, "transforms.json", "images/extra.png")
    with pytest.raises(PrivsplatError, match="added after protection"):
        load_dataset(d)

    d = copy_of(protected_head)  # a file the manifest does not cover
    (d / "masks" / "new.png").write_bytes((d / "masks" / f"{name}.png").read_bytes())
    _edit_transforms(d, lambda m: m["frames"][0].update(mask_path="masks/new.png"))
    _rehash(d, "transforms.json")
    with pytest.raises(PrivsplatError, match="does not cover"):
        load_dataset(d)

    d = copy_of(protected_head)
    m = json.loads((d / MANIFEST_NAME).read_text())
    m["sigma"]["kernel"] = "laplace"
    (d / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(PrivsplatError, match="σ parameters"):
        load_dataset(d)

    d = copy_of(protected_head)
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(PrivsplatError, match="no privsplat_manifest.json"):
        load_dataset(d)


def test_region_protection(synth_head, tmp_path):
    names = sensitive_names_by_angle(synth_head, 3)
    regions = tmp_path / "regions"
    regions.mkdir()
    for n in names[:2]:  # the third has no region mask: fully protected
        r = np.zeros((32, 32), np.uint8)
        r[6:20, 8:24] = 255
        cv2.imwrite(str(regions / f"{n}.png"), r)
    out = tmp_path / "out"
    protect(synth_head, out, ",".join(names), region_masks=regions, resolution=16, dilate_px=2, verbose=False)
    a, b = load_dataset(synth_head), load_dataset(out)
    by_name = {f.name: f for f in b.frames}
    for n in names[:2]:
        f, orig = by_name[n], next(g for g in a.frames if g.name == n)
        rgb, valid = load_rgb_outside(f)
        grown = (
            cv2.dilate(
                (cv2.imread(str(regions / f"{n}.png"), 0) > 0).astype(np.uint8),
                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)),
            )
            > 0
        )
        np.testing.assert_array_equal(valid, (~grown).astype(np.float32))
        assert rgb[grown].max() == 0.0
        np.testing.assert_allclose(rgb[~grown], load_rgb(orig)[~grown], atol=0.5 / 255)
        mag, region = load_protected(f)
        assert mag.shape == region.shape == (16, 16)
        assert mag[region == 0].max() == 0.0 and mag[region > 0].max() > 0
        assert region[4:9, 5:11].min() == 1.0 and region[0, 0] == 0.0
    assert load_protected(by_name[names[2]])[1] is None and by_name[names[2]].rgb_outside_path is None
    assert leaks(out, private_areas(synth_head, names, regions)) == []


def sensitive_names_by_angle(data: Path, n: int) -> list[str]:
    frames = json.loads((data / "synth.json").read_text())["frames"]
    return [f["name"] for f in sorted(frames, key=lambda f: f["angle_to_face_deg"])[:n]]


def test_sensitive_spec_and_paths(synth_head, protected_head, tmp_path):
    with pytest.raises(PrivsplatError, match="valid names: frame_000"):
        protect(synth_head, tmp_path / "o1", "frame_000,nobody", verbose=False)
    assert not (tmp_path / "o1").exists()
    lst = tmp_path / "list.txt"
    lst.write_text("frame_001\n\nframe_002\n")
    d = protect(synth_head, tmp_path / "o2", f"@{lst}", resolution=16, verbose=False)
    assert [n for n, (s, _) in d.items() if s] == ["frame_001", "frame_002"]
    assert sum(s for s, _ in protect(synth_head, tmp_path / "o3", "none", verbose=False).values()) == 0
    with pytest.raises(PrivsplatError, match="exists and is not empty"):
        protect(synth_head, tmp_path / "o3", "all", verbose=False)
    for bad in (synth_head, synth_head / "sub"):
        with pytest.raises(PrivsplatError, match="inside"):
            protect(synth_head, bad, "all", verbose=False)
    with pytest.raises(PrivsplatError, match="contains the input"):
        protect(synth_head, synth_head.parent, "all", overwrite=True, verbose=False)
    with pytest.raises(PrivsplatError, match="already protected"):
        protect(protected_head, tmp_path / "o4", "all", verbose=False)


def test_nothing_half_written_on_a_corrupt_image(synth_head, copy_of, tmp_path):
    d = copy_of(synth_head)
    (d / "images" / "frame_007.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    before = set(tmp_path.iterdir())
    with pytest.raises(PrivsplatError, match="cannot decode"):
        protect(d, tmp_path / "out", "all", verbose=False)
    assert set(tmp_path.iterdir()) == before  # no output, no temporary folder left behind


def test_cli_prints_error_without_traceback(synth_head, tmp_path, capsys):
    from privsplat.commands import main

    assert main(["protect", "--data", str(synth_head), "--out", str(tmp_path / "o"), "--sensitive", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("privsplat: error: --sensitive names unknown frame(s) ['x']") and "Traceback" not in err


def test_pose_rule():
    az = np.radians(np.arange(0, 360, 30))
    dirs = np.stack([np.sin(az), np.zeros_like(az), np.cos(az)], axis=1)  # azimuth 0 = face
    dets = [Detection(a in (0, 30, 330), "test") for a in range(0, 360, 30)]
    out = pose_rule(dets, dirs, 119.0)
    assert [s for s, _ in out] == [True] * 4 + [False] * 5 + [True] * 3  # 120..240 neutral
    assert all(s for s, _ in pose_rule([Detection(False, "")] * 12, dirs, 120.0))


def test_auto_on_a_rendered_head(tmp_path, capsys, monkeypatch):
    pytest.importorskip("dlib")
    pytest.importorskip("open3d")
    from privsplat.data.synth import synthesize

    data = synthesize("ict", tmp_path / "h", views=12, resolution=64)
    angles = {f["name"]: f["angle_to_face_deg"] for f in json.loads((data / "synth.json").read_text())["frames"]}
    d = protect(data, tmp_path / "p", "auto", resolution=32)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and any("face found" in ln for ln in lines)
    for name, (sens, why) in d.items():
        if angles[name] < 100:
            assert sens, (name, why)  # everything that might show a face is protected
        if angles[name] > 150:
            assert not sens, (name, why)
    monkeypatch.setattr("privsplat.privacy.detect.available_detectors", lambda: [])
    d = protect(data, tmp_path / "p2", "auto", resolution=32, verbose=False)
    assert all(s for s, _ in d.values())


def test_a_masked_photos_backdrop_stays_out_of_the_protected_image(synth_head, protected_head, tmp_path):
    """A masked photo over a wall with edges: σ sees the backdrop black, as it sees the fit's render
    (an ICT head at 64 px over such a wall: privacy fit 0.13 -> 0.23 cm when the wall's edges and
    the changed outline were in |g|). Outside the subject |g| is 0, inside it is the black-backdrop
    one, and along the outline (mixed pixels, the wall taken out) close to it. Before the change
    the wall's edges were in the protected image."""
    import shutil

    from privsplat.data.images import write_png

    src = tmp_path / "walled"
    shutil.copytree(synth_head, src)
    for p in sorted((src / "images").glob("*.png")):
        img = cv2.imread(str(p))[..., ::-1].astype(np.float32) / 255
        a = cv2.imread(str(src / "masks" / p.name), cv2.IMREAD_GRAYSCALE).astype(np.float32)[..., None] / 255
        wall = np.full_like(img, 0.6)
        wall[:, img.shape[1] // 3 :] = 0.4  # a door frame
        wall[img.shape[0] // 2 : img.shape[0] // 2 + 2] = 0.1  # a shelf
        write_png(p, np.round(np.clip(img + (1 - a) * wall, 0, 1) * 255).astype(np.uint8))
    sensitive = [f.name for f in load_dataset(protected_head).frames if f.kind == "protected"]
    out = tmp_path / "walled-protected"
    protect(src, out, sensitive=",".join(sensitive), resolution=32, verbose=False)
    ref = {f.name: f for f in load_dataset(protected_head).frames}
    errors = []
    for f in load_dataset(out).frames:
        if f.kind != "protected":
            continue
        mag, _ = load_protected(f)
        want, _ = load_protected(ref[f.name])
        m = load_mask(f) > 0.5
        far = cv2.dilate((load_mask(f) > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        inner = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert far.any() and inner.any()
        assert mag[far].max() == 0.0  # no wall, no shelf
        np.testing.assert_allclose(mag[inner], want[inner], atol=2e-3 * max(want.max(), 1e-6) + 1e-6)
        errors.append(np.abs(mag - want).sum() / want.sum())  # the outline included
    assert errors and max(errors) < 0.1, errors


def test_backdrop_to_black_composites_straight_alpha_and_keeps_mixed_pixels():
    from privsplat.data.images import backdrop_to_black

    rgb = np.full((2, 3, 3), 0.8, np.float32)
    a = np.array([[0.0, 0.01, 0.5], [1.0, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(backdrop_to_black(rgb, a, straight_alpha=True), rgb * a[..., None])
    # a separate mask: the photo already mixes its outline with the backdrop, which is estimated
    # from the backdrop pixels nearby and taken out (a x subject remains, as over black)
    subject, wall = 0.8, 0.3
    a = np.zeros((9, 9), np.float32)
    a[:, 5:] = 1.0
    a[:, 4] = 0.5
    photo = (a * subject + (1 - a) * wall)[..., None].repeat(3, -1).astype(np.float32)
    out = backdrop_to_black(photo, a, straight_alpha=False)
    np.testing.assert_allclose(out[..., 0], a * subject, atol=1e-5)
