"""`prepare`: renders of a textured room through a distorted lens → SfM → a pinhole dataset whose
poses match the renders' after a similarity alignment."""

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("pycolmap")

from privsplat.cameras import intrinsics_from_fov  # noqa: E402
from privsplat.data import load_dataset, load_rgb  # noqa: E402
from privsplat.data.capture import extract_video_frames, prepare, sharpness  # noqa: E402
from privsplat.data.dataset import SourceCamera  # noqa: E402
from privsplat.data.synth_room import orbit, pose_errors, render_room, room_texture  # noqa: E402
from privsplat.errors import PrivsplatError  # noqa: E402

W, H, RADIUS = 320, 240, 2.5
K = intrinsics_from_fov(W, H, np.deg2rad(65))
LENS = SourceCamera("OPENCV", K, (-0.1, 0.0, 0.0, 0.0), W, H)  # what SIMPLE_RADIAL can model


def render_views(n: int, lens=LENS, size=(W, H)):
    tex = room_texture()
    poses = orbit(n, RADIUS)
    return [render_room(K, w, *size, tex, lens) for w in poses], np.stack(poses)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    views, poses = render_views(30)
    (root / "photos").mkdir()
    for i, img in enumerate(views):
        cv2.imwrite(str(root / "photos" / f"v{i:03d}.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    report = prepare(root / "out", images=root / "photos", max_size=256, threads=1, verbose=False)
    return root, report, poses


@pytest.mark.slow  # SfM on 30 photos: 12-30 s
def test_prepare_recovers_poses(prepared):
    root, report, gt = prepared
    assert report.total == 30 and len(report.registered) == 30 and not report.failed
    assert report.mean_reprojection_error_px < 1.0 and report.points > 500
    ds = load_dataset(root / "out", warn_unprotected=False)
    assert ds.format == "nerfstudio" and len(ds.frames) == 30
    est = np.stack([f.extra["w2c_input"] for f in ds.frames])
    rot, centre = pose_errors(gt[[int(f.name[1:]) for f in ds.frames]], est)
    assert rot.max() < 1.0
    assert centre.max() < 0.01 * RADIUS
    # the dataset is pinhole, undistorted and capped at max_size
    f = ds.frames[0]
    assert f.source is None and (f.width, f.height) == (256, 192) and load_rgb(f).shape == (192, 256, 3)
    meta = json.loads((root / "out" / "transforms.json").read_text())
    assert meta["camera_model"] == "PINHOLE" and (root / "out" / "sparse_pc.ply").is_file()
    saved = json.loads((root / "out" / "prepare.json").read_text())
    assert saved["registered_share"] == 1.0
    print(
        f"\nprepare 30 views 320x240: rotation error max {rot.max():.3f} deg, centre error max "
        f"{100 * centre.max() / RADIUS:.3f} % of the radius, {report.summary()}"
    )


@pytest.mark.slow  # SfM on 30 photos: 12-30 s
def test_prepare_undistorts_to_the_render_of_a_pinhole_camera(prepared):
    """The output image is what a pinhole camera with the dataset's K sees (SfM's lens estimate is right)."""
    root, _, gt = prepared
    ds = load_dataset(root / "out", warn_unprotected=False)
    f = ds.frames[3]
    i = int(f.name[1:])
    want = render_room(f.K, gt[i], f.width, f.height, room_texture()).astype(np.float32) / 255
    # rendered from the true pose with the dataset's K: matches only if SfM's focal length and
    # distortion are right and the undistortion uses them correctly
    got = load_rgb(f)
    err = np.abs(cv2.GaussianBlur(got, (0, 0), 2) - cv2.GaussianBlur(want, (0, 0), 2)).mean()
    assert err < 0.02  # 1 % off in focal length gives 0.021 here


def test_refuses_when_too_few_register(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(4):  # unrelated images: nothing can register
        img = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 1.5)
        cv2.imwrite(str(tmp_path / "photos" / f"n {i}.png"), img)  # spaces: COLMAP pair lists split on them
    with pytest.raises(PrivsplatError, match=r"registered only 0 of 4 images.*n_0.png, n_1.png.*Try"):
        prepare(tmp_path / "out", images=tmp_path / "photos", threads=1, verbose=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrivsplatError, match="exactly one"):
        prepare(tmp_path / "out", threads=1, verbose=False)


def test_video_frames_are_sharp_and_spread(tmp_path):
    """One frame per equal time segment, never a blurred one, from an mp4 of the orbit."""
    views, _ = render_views(12, lens=None, size=(160, 120))
    video = tmp_path / "orbit.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    blurred = set()
    for i, img in enumerate(views):
        for k in range(3):  # three frames per view: the middle one sharp, the others motion-blurred
            frame = img[:, :, ::-1]
            if k != 1:
                frame = cv2.blur(frame, (9, 1))
                blurred.add(3 * i + k)
            vw.write(np.ascontiguousarray(frame))
    vw.release()
    names = extract_video_frames(video, tmp_path / "frames", 12, verbose=False)
    idx = [int(n[6:12]) for n in names]
    assert idx == [3 * i + 1 for i in range(12)]
    assert sharpness(cv2.imread(str(tmp_path / "frames" / names[0]))) > 2 * sharpness(
        cv2.blur(cv2.imread(str(tmp_path / "frames" / names[0])), (9, 1))
    )


@pytest.mark.slow
def test_prepare_from_video(tmp_path):
    """An mp4 orbit (48 frames, distorted lens) → 24 frames, sequential matching → poses."""
    views, gt = render_views(48)
    video = tmp_path / "orbit.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 24, (W, H))
    for img in views:
        vw.write(np.ascontiguousarray(img[:, :, ::-1]))
    vw.release()
    report = prepare(tmp_path / "out", video=video, frames=24, threads=1, verbose=False)
    assert report.matching == "sequential" and report.total == 24 and len(report.registered) >= 23
    ds = load_dataset(tmp_path / "out", warn_unprotected=False)
    est = np.stack([f.extra["w2c_input"] for f in ds.frames])
    rot, centre = pose_errors(gt[[int(f.name[6:12]) for f in ds.frames]], est)
    assert rot.max() < 1.0 and centre.max() < 0.01 * RADIUS
    print(
        f"\nprepare video 24 of 48 frames: rotation error max {rot.max():.3f} deg, centre error max "
        f"{100 * centre.max() / RADIUS:.3f} % of the radius, {report.summary()}"
    )


def test_pose_errors_see_a_similarity_through_and_nothing_else():
    """est = gt in another world (x' = s Q x + t): zero error; one camera turned by 2 degrees: 2 degrees."""
    gt = np.stack(orbit(10, RADIUS))
    s, Q, t = 0.3, cv2.Rodrigues(np.array([0.3, -1.0, 0.5]))[0], np.array([1.0, 2.0, 3.0])
    est = np.tile(np.eye(4), (10, 1, 1))
    for e, w in zip(est, gt):
        c = -w[:3, :3].T @ w[:3, 3]
        e[:3, :3] = w[:3, :3] @ Q.T
        e[:3, 3] = -e[:3, :3] @ (s * Q @ c + t)
    rot, centre = pose_errors(gt, est)
    assert rot.max() < 1e-5 and centre.max() < 1e-9
    est[0, :3, :3] = cv2.Rodrigues(np.array([0.0, np.deg2rad(2), 0]))[0] @ est[0, :3, :3]
    est[0, :3, 3] = cv2.Rodrigues(np.array([0.0, np.deg2rad(2), 0]))[0] @ est[0, :3, 3]  # same centre
    rot, centre = pose_errors(gt, est)
    assert rot[0] == pytest.approx(2.0, abs=1e-4) and rot[1:].max() < 1e-5 and centre.max() < 1e-9
