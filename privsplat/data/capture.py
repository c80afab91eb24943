"""`prepare`: a folder of photos or a video → camera poses → an undistorted pinhole dataset.

Runs on the user's own machine, on the original images; nothing is uploaded or downloaded.

1. Frames. A folder of images is used as it is. From a video, N sharp, well-spread frames:
   the video is cut into N equal time segments and the sharpest frame of each (variance of
   the Laplacian of a small grey copy) is kept, so blur is avoided without bunching.
2. Structure from motion with pycolmap (COLMAP): SIFT features (long side capped at
   `sift_max_size` to keep CPU time sane), matching (sequential for video frames, which
   are ordered, with the orbit's end matched to its start; exhaustive for photo sets),
   incremental mapping; the largest model wins.
   One shared camera (intrinsics and distortion) for video frames and for photos of one
   size; one per photo when sizes differ or `cameras="per_image"`.
3. Refusal. Fewer than `min_registered` (share) of the images registered → PrivsplatError
   naming the failures and what to try; no dataset is written.
4. Output (the folder `protect` and `fit` read): images/<name>.jpg undistorted to a pinhole
   camera (privsplat.data.undistort's rule: no invalid pixels, same size) and capped at
   `max_size`; transforms.json (camera_model PINHOLE, poses in the SfM frame);
   sparse_pc.ply (the SfM points, same frame, nerfstudio's ply_file_path); prepare.json
   (registered/failed images, mean reprojection error, timings); colmap/ (the SfM
   database, the raw model and, for a video, the extracted frames) for reruns and debugging.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PrivsplatError
from .dataset import Frame

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# COLMAP models SfM may refine that privsplat can undistort (SIMPLE_RADIAL: f, cx, cy, k1 — robust)
SFM_CAMERA_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "SIMPLE_PINHOLE", "PINHOLE")
SHARPNESS_SIZE = 480
RANSAC_TRIALS = 2000  # two-view verification (see match_pairs)  # long side of the grey copy whose Laplacian variance scores a video frame


@dataclass
class PrepareReport:
    total: int  # images given to SfM
    registered: list[str]  # names that got a pose (in the output dataset)
    failed: list[str]  # names that did not
    mean_reprojection_error_px: float  # in the SfM images (before undistortion and max_size)
    points: int  # SfM points
    matching: str  # "sequential" or "exhaustive"
    camera_model: str  # COLMAP model SfM refined (e.g. SIMPLE_RADIAL)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def registered_share(self) -> float:
        return len(self.registered) / max(1, self.total)

    def summary(self) -> str:
        return (
            f"registered {len(self.registered)}/{self.total} images, mean reprojection error "
            f"{self.mean_reprojection_error_px:.2f} px, {self.points} points "
            f"({self.matching} matching, {self.seconds.get('total', 0.0):.0f} s)"
        )


# ----------------------------------------------------------------------------- frames


def list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise PrivsplatError(f"--images {folder} is not a folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise PrivsplatError(f"--images {folder} holds no .jpg/.png/.tif images")
    return names


def without_spaces(image_dir: Path, names: list[str], work: Path) -> tuple[Path, list[str]]:
    """COLMAP's pair lists split on whitespace: link images whose names hold spaces under safe names."""
    if not any(any(c.isspace() for c in n) for n in names):
        return image_dir, names
    links = work / "images"
    links.mkdir()
    safe: list[str] = []
    for n in names:
        s = "_".join(n.split())
        while s in safe or (s != n and s in names):
            s = "_" + s
        (links / s).symlink_to(image_dir / n)
        safe.append(s)
    return links, safe


def image_sizes(folder: Path, names: list[str]) -> set[tuple[int, int]]:
    """The distinct (width, height) of the images (header only where Pillow is available)."""
    sizes = set()
    for n in names:
        try:
            from PIL import Image

            with Image.open(folder / n) as im:
                sizes.add(im.size)
        except ImportError:
            from .images import read_image

            sizes.add(read_image(folder / n).shape[1::-1])
        except OSError:
            raise PrivsplatError(f"cannot read image {folder / n}; remove it or re-export it as JPEG") from None
    return sizes


def sharpness(img_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of a small grey copy: low for motion blur and defocus."""
    import cv2

    grey = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY) if img_bgr.ndim == 3 else img_bgr
    s = SHARPNESS_SIZE / max(grey.shape)
    if s < 1:
        grey = cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def extract_video_frames(video: Path, out_dir: Path, n: int, verbose: bool = True) -> list[str]:
    """Write the sharpest frame of each of n equal time segments of `video` to out_dir; their names."""
    import cv2
    from tqdm import tqdm

    if not video.is_file():
        raise PrivsplatError(f"--video {video} does not exist")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise PrivsplatError(f"cannot open video {video}; convert it to H.264 MP4 (e.g. with ffmpeg)")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if total <= 0:  # some containers do not store a frame count
        total = _count_frames(video)
    if total < 2:
        raise PrivsplatError(f"video {video} has {total} readable frames; record a longer orbit")
    n = min(n, total)
    bounds = np.linspace(0, total, n + 1).round().astype(int)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, best, seg = [], (-1.0, None, -1), 0
    cap = cv2.VideoCapture(str(video))

    def flush():
        if best[1] is not None:
            name = f"frame_{best[2]:06d}.png"
            cv2.imwrite(str(out_dir / name), best[1])
            names.append(name)

    for i in tqdm(range(total), desc="scanning video frames", unit="frame", disable=not verbose):
        ok, img = cap.read()
        if not ok:
            break
        while seg < n and i >= bounds[seg + 1]:
            flush()
            seg, best = seg + 1, (-1.0, None, -1)
        score = sharpness(img)
        if score > best[0]:
            best = (score, img, i)
    flush()
    cap.release()
    if len(names) < 3:
        raise PrivsplatError(f"could read only {len(names)} frames from {video}; convert it to H.264 MP4")
    return names


# ----------------------------------------------------------------------------- SfM


def import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise PrivsplatError(
            "privsplat prepare needs pycolmap (structure from motion, CPU): pip install 'pycolmap>=4.2'"
        ) from None
    return pycolmap


def _chunks(items: list, n_chunks: int = 20, min_size: int = 1) -> list[list]:
    """About n_chunks pieces for a progress bar; min_size bounds the per-call overhead of pycolmap."""
    size = max(min_size, -(-len(items) // n_chunks))
    return [items[i : i + size] for i in range(0, len(items), size)]


def sequential_pairs(names: list[str], overlap: int = 10, loop: bool = True) -> list[tuple[str, str]]:
    """Pairs for ordered frames: each with its next `overlap` frames, plus the last `overlap` against
    the first ones, since an orbit ends where it began (no vocabulary tree, so no other loop
    detection: nothing may be downloaded). COLMAP's quadratic overlap (frames 2^k ahead) is left
    out: on an orbit those pairs rarely overlap, and a pair that does not costs the most (RANSAC
    runs to its trial limit)."""
    n = len(names)
    pairs = {(i, j) for i in range(n) for j in range(i + 1, min(n, i + overlap + 1))}
    if loop:
        pairs |= {(i, j) for i in range(min(overlap, n)) for j in range(max(0, n - overlap), n) if i < j}
    return [(names[i], names[j]) for i, j in sorted(pairs)]


def exhaustive_pairs(names: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]


def extract_features(
    db: Path,
    image_dir: Path,
    names: list[str],
    camera_model: str,
    single_camera: bool,
    sift_max_size: int,
    threads: int,
    verbose: bool,
) -> None:
    """SIFT into the database, in chunks so the bar moves; one shared camera if single_camera."""
    import pycolmap
    from tqdm import tqdm

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = sift_max_size
    extraction.num_threads = threads
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.AUTO
    with tqdm(total=len(names), desc="SfM features", unit="image", disable=not verbose) as bar:
        for chunk in _chunks(names):
            pycolmap.extract_features(
                db,
                image_dir,
                image_names=chunk,
                camera_mode=mode,
                reader_options=reader,
                extraction_options=extraction,
                device=pycolmap.Device.cpu,
            )
            if single_camera and reader.existing_camera_id < 0:  # later chunks reuse the first chunk's camera
                cams = pycolmap.Database.open(db).read_all_cameras()
                reader.existing_camera_id = cams[0].camera_id
                mode = pycolmap.CameraMode.AUTO
            bar.update(len(chunk))


def match_pairs(db: Path, work: Path, pairs: list[tuple[str, str]], threads: int, verbose: bool) -> None:
    """Match and verify the given image pairs, in chunks so the bar moves."""
    import pycolmap
    from tqdm import tqdm

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    verification = pycolmap.TwoViewGeometryOptions()
    # COLMAP tries up to 10000 RANSAC samples; a pair that needs more than RANSAC_TRIALS has under
    # ~30 % inliers and is close to useless, while non-overlapping pairs (most of an exhaustive
    # orbit) always run to the limit: this cap cuts exhaustive matching time several-fold
    verification.ransac.max_num_trials = RANSAC_TRIALS
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(work / "pairs.txt")
    with tqdm(total=len(pairs), desc="SfM matching", unit="pair", disable=not verbose) as bar:
        for chunk in _chunks(pairs, min_size=200):
            (work / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in chunk))
            pycolmap.match_image_pairs(
                db,
                matching_options=matching,
                pairing_options=pairing,
                verification_options=verification,
                device=pycolmap.Device.cpu,
            )
            bar.update(len(chunk))


def run_sfm(
    image_dir: Path,
    names: list[str],
    work: Path,
    sequential: bool,
    camera_model: str,
    single_camera: bool,
    sift_max_size: int,
    threads: int,
    verbose: bool,
) -> tuple[object, dict[str, float]]:
    """pycolmap features → matches → incremental mapping; (largest reconstruction or None, seconds per step).

    pycolmap runs in this thread only: it links its own SQLite, and a second SQLite library touching
    the database at the same time (e.g. Python's, to poll progress) corrupts it (SIGBUS).
    """
    pycolmap = import_pycolmap()
    from tqdm import tqdm

    pycolmap.logging.minloglevel = 2  # COLMAP's own log is too chatty for a CLI; the bars show progress
    db = work / "database.db"
    if db.exists():
        db.unlink()
    seconds = {}
    t0 = time.perf_counter()
    extract_features(db, image_dir, names, camera_model, single_camera, sift_max_size, threads, verbose)
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = sequential_pairs(names) if sequential else exhaustive_pairs(names)
    match_pairs(db, work, pairs, threads, verbose)
    seconds["matching"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.min_model_size = 3
    options.random_seed = 0
    sparse = work / "sparse"
    sparse.mkdir(parents=True, exist_ok=True)
    n = len(names)
    with tqdm(total=n, desc="SfM registering", unit="image", disable=not verbose) as bar:
        # the mapper may start over for a second model; the bar counts registrations, capped at n
        models = pycolmap.incremental_mapping(
            db,
            image_dir,
            sparse,
            options,
            initial_image_pair_callback=lambda: bar.update(min(2, n - bar.n)),
            next_image_callback=lambda: bar.update(min(1, n - bar.n)),
        )
    seconds["mapping"] = time.perf_counter() - t0
    if not models:
        return None, seconds
    return max(models.values(), key=lambda r: r.num_reg_images()), seconds


def _refusal(report: PrepareReport, sequential: bool, min_registered: float) -> str:
    failed = ", ".join(report.failed[:12]) + (f" and {len(report.failed) - 12} more" if len(report.failed) > 12 else "")
    tips = [
        "keep neighbouring views overlapping by ~2/3 (steps of 10-20 degrees around the subject)",
        "include textured surroundings (not a blank wall) and avoid motion blur and moving people",
        "remove or retake the failed images",
    ]
    if sequential:
        tips.insert(0, "use more frames (--frames) or a slower orbit")
    else:
        tips.append("for many photos taken in order around the subject, --matching sequential is faster")
    return (
        f"structure from motion registered only {len(report.registered)} of {report.total} images "
        f"(need {min_registered:.0%}); not registered: {failed or 'all'}. Try: "
        + "; ".join(tips)
        + ". Or lower --min-registered to keep the registered part."
    )


# ----------------------------------------------------------------------------- output


def reconstruction_frames(rec, image_dir: Path) -> list[Frame]:
    """Frames (stored camera with its distortion, OpenCV w2c) of the registered images."""
    from .colmap import ColmapCamera, camera_lens
    from .formats import check_intrinsics, unique_names

    images = sorted((rec.image(i) for i in rec.reg_image_ids()), key=lambda im: im.name)
    paths = [image_dir / im.name for im in images]
    frames = []
    for name, path, im in zip(unique_names(paths, image_dir), paths, images):
        cam = im.camera
        where = f"SfM camera of {im.name}"
        K, lens = camera_lens(
            ColmapCamera(cam.model_name, int(cam.width), int(cam.height), np.asarray(cam.params, dtype=np.float64)),
            where,
        )
        check_intrinsics(K, int(cam.width), int(cam.height), where)
        w2c = np.eye(4)
        w2c[:3, :4] = im.cam_from_world().matrix()
        frames.append(
            Frame(
                name=name,
                kind="rgb",
                image_path=path,
                K=K,
                w2c=w2c,
                width=int(cam.width),
                height=int(cam.height),
                source=lens,
                extra={"w2c_input": w2c},
            )
        )
    return frames


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    from ..io import atomic_path

    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = np.zeros(len(xyz), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    rows["p"], rows["c"] = xyz, rgb
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode() + rows.tobytes())


def write_dataset(rec, image_dir: Path, out: Path, max_size: int | None, verbose: bool) -> list[Frame]:
    """Undistorted pinhole images (≤ max_size), transforms.json and sparse_pc.ply in `out`."""
    import cv2
    from tqdm import tqdm

    from .. import io as pio
    from .formats import frame_to_nerfstudio
    from .images import read_image
    from .undistort import apply_pinhole, to_pinhole

    frames = reconstruction_frames(rec, image_dir)
    apply_pinhole(frames, max_size)
    entries = []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for f in tqdm(frames, desc="undistorting images", unit="image", disable=not verbose):
        img = to_pinhole(read_image(f.image_path), f)
        if img.dtype != np.uint8:
            img = (img / 257).round().astype(np.uint8)
        if img.ndim == 3:
            img = img[:, :, 2::-1]  # RGB(A) -> BGR for OpenCV, alpha dropped
        path = out / "images" / f"{f.name}.jpg"
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise PrivsplatError(f"could not write {path}")
        pinhole = Frame(f.name, "rgb", path, f.K, f.w2c, f.width, f.height)
        entries.append(frame_to_nerfstudio(pinhole, out, f.extra["w2c_input"]))
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    write_points_ply(out / "sparse_pc.ply", xyz, rgb)
    pio.write_json(
        out / "transforms.json", {"camera_model": "PINHOLE", "ply_file_path": "sparse_pc.ply", "frames": entries}
    )
    return frames


def prepare(
    out: str | Path,
    images: str | Path | None = None,
    video: str | Path | None = None,
    *,
    max_size: int | None = None,
    frames: int = 100,
    matching: str = "auto",
    cameras: str = "auto",
    camera_model: str = "SIMPLE_RADIAL",
    min_registered: float = 0.6,
    sift_max_size: int = 1600,
    threads: int = -1,
    overwrite: bool = False,
    verbose: bool = True,
) -> PrepareReport:
    """Photos (`images` folder) or a `video` → pinhole dataset in `out` (see the module docstring)."""
    from .. import io as pio

    if (images is None) == (video is None):
        raise PrivsplatError("give exactly one of --images DIR or --video FILE")
    if matching not in ("auto", "sequential", "exhaustive"):
        raise PrivsplatError(f"--matching must be auto, sequential or exhaustive, got {matching!r}")
    if camera_model not in SFM_CAMERA_MODELS:
        raise PrivsplatError(f"--camera-model must be one of {', '.join(SFM_CAMERA_MODELS)}, got {camera_model!r}")
    if cameras not in ("auto", "single", "per_image"):
        raise PrivsplatError(f"--cameras must be auto, single or per_image, got {cameras!r}")
    if not 0 < min_registered <= 1:
        raise PrivsplatError("--min-registered must be a share in (0, 1]")
    if frames < 3:
        raise PrivsplatError("--frames must be at least 3")
    out = Path(out)
    src = Path(images if images is not None else video)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise PrivsplatError(f"--out {out} must not be inside the input {src}")
    t_start = time.perf_counter()
    with pio.atomic_dir(out, overwrite=overwrite) as tmp:
        work = tmp / "colmap"
        work.mkdir()
        t0 = time.perf_counter()
        if video is not None:
            image_dir = work / "frames"
            names = extract_video_frames(Path(video), image_dir, frames, verbose)
        else:
            image_dir, names = without_spaces(Path(images).resolve(), list_images(Path(images)), work)
        t_frames = time.perf_counter() - t0
        if len(names) < 3:
            raise PrivsplatError(f"structure from motion needs at least 3 images, got {len(names)}")
        sequential = matching == "sequential" or (matching == "auto" and video is not None)
        # one shared camera (far better conditioned than one per image) unless the photos differ in size;
        # per_image for photos from several cameras or zoom settings
        single = (
            video is not None or (cameras == "auto" and len(image_sizes(image_dir, names)) == 1) or cameras == "single"
        )
        rec, seconds = run_sfm(
            image_dir,
            names,
            work,
            sequential,
            camera_model,
            single_camera=single,
            sift_max_size=sift_max_size,
            threads=threads,
            verbose=verbose,
        )
        seconds = {"frames": t_frames, **seconds}
        registered = sorted(rec.image(i).name for i in rec.reg_image_ids()) if rec is not None else []
        report = PrepareReport(
            total=len(names),
            registered=registered,
            failed=sorted(set(names) - set(registered)),
            mean_reprojection_error_px=float(rec.compute_mean_reprojection_error())
            if rec is not None
            else float("nan"),
            points=rec.num_points3D() if rec is not None else 0,
            matching="sequential" if sequential else "exhaustive",
            camera_model=camera_model,
            seconds=seconds,
        )
        if len(registered) < 3 or report.registered_share < min_registered:
            raise PrivsplatError(_refusal(report, sequential, min_registered))
        t0 = time.perf_counter()
        (work / "model").mkdir()
        rec.write(work / "model")  # the model the dataset uses (sparse/ holds every model the mapper made)
        write_dataset(rec, image_dir, tmp, max_size, verbose)
        report.seconds["undistort"] = time.perf_counter() - t0
        report.seconds["total"] = time.perf_counter() - t_start
        pio.write_json(
            tmp / "prepare.json",
            {**asdict(report), "registered_share": report.registered_share, "source": str(src), "max_size": max_size},
        )
    if verbose:
        print(f"{report.summary()}; dataset written to {out}")
        if report.failed:
            print(f"not registered (left out): {', '.join(report.failed)}")
    return report
