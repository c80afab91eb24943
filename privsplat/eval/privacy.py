"""Face-recognition privacy report (paper Table 2 style), fully offline with dlib.

Recogniser: dlib's ResNet face descriptor (128-d), faces aligned by dlib.get_face_chip from
5-point landmarks; a pair is "verified" when the descriptor distance is below 0.6 (dlib's
own operating point, ~99.4% on LFW).

The attacker is strong: the face box and landmarks are found on the ORIGINAL view and reused,
scaled, on the candidate (which is first resized to the original's size). A candidate is
never re-detected, so protected images are not "safe" merely because a detector misses
them; the only question is whether the aligned candidate carries the identity.

Pairs reported per candidate set:
- same view: candidate of view i against original view i (the attacker's best case);
- cross view: candidate of view i against originals j != i of the same identity;
- false accepts: candidate i against originals of other identities (needs >= 2 identities).
"original" itself gets the liveness check: originals against other originals of the same
identity (cross view), so a low score elsewhere is meaningful only where this one is high.

Two ways in:
- a fit run (evaluate_privacy_run): the candidate sets are derived from the run folder: the
  protected |g| of its dataset's protected frames, the attack on them, renders of the fitted
  model's colour and shaded renders of RUN/mesh.ply from those frames' cameras (optionally a
  full-RGB baseline run's renders); originals are matched by frame name;
- folders (evaluate_privacy_folders): files are matched by their path relative to each folder,
  without the suffix (the "key"): originals/alice/v03.png pairs with protected/alice/v03.png (or
  .npy). The identity of a view is its sub-folder (alice); files directly in the folder share
  one identity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from ..errors import PrivsplatError
from ..run import RunFolder

VERIFY_THRESHOLD = 0.6
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
Attack = Literal["none", "poisson", "optim"]


@dataclass(frozen=True)
class FaceModels:
    detector: object  # dlib HOG frontal face detector
    shape_predictor: object  # dlib 5-point landmarks
    recognizer: object  # dlib ResNet face descriptor


@dataclass(frozen=True)
class FaceLandmarks:
    """Where the face is in one original view: box (left, top, right, bottom) and 5 points [5, 2]."""

    box: tuple[int, int, int, int]
    points: np.ndarray
    image_size: tuple[int, int]  # (H, W) of the view they were found in


@functools.lru_cache(maxsize=1)
def load_face_models() -> FaceModels:
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as e:
        raise PrivsplatError(
            f"face-recognition evaluation needs dlib and its models ({e.name} is missing); "
            "install them with: pip install -e .[fr]"
        ) from None
    return FaceModels(
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """[H,W] / [H,W,1|3|4], float in 0..1 or uint8/uint16 → contiguous uint8 [H,W,3]."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise PrivsplatError(f"expected an image [H, W] or [H, W, 3], got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return np.ascontiguousarray((a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8))
    return np.ascontiguousarray((np.clip(a.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8))


def find_face(image: np.ndarray, max_side: int = 1024) -> FaceLandmarks | None:
    """Largest frontal face in an original view and its 5 landmarks, or None.

    dlib's HOG detector needs faces of ~80 px, so small views are searched on its upsampled
    pyramid (x2 per step) until a face appears, up to `max_side` pixels (cost grows 4x a step).
    """
    m = load_face_models()
    img = to_rgb_uint8(image)
    steps = max(0, int(np.floor(np.log2(max_side / max(img.shape[:2])))))
    for upsample in range(steps + 1):
        rects = m.detector(img, upsample)
        if len(rects):
            break
    else:
        return None
    rect = max(rects, key=lambda r: r.area())
    shape = m.shape_predictor(img, rect)
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    return FaceLandmarks((rect.left(), rect.top(), rect.right(), rect.bottom()), points, img.shape[:2])


def face_descriptor(image: np.ndarray, face: FaceLandmarks) -> np.ndarray:
    """128-d descriptor of `image` aligned with landmarks found on the original (never re-detected)."""
    import cv2
    import dlib

    m = load_face_models()
    img = to_rgb_uint8(image)
    H, W = face.image_size
    if img.shape[:2] != (H, W):
        shrink = img.shape[0] > H
        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    shape = dlib.full_object_detection(
        dlib.rectangle(*face.box), [dlib.point(int(round(x)), int(round(y))) for x, y in face.points]
    )
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
    return np.asarray(m.recognizer.compute_face_descriptor(chip), dtype=np.float64)


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def identity_of(key: str) -> str:
    """The identity of a view key: its sub-folder ("" for files directly in the folder)."""
    return key.rsplit("/", 1)[0] if "/" in key else ""


def _share(distances: list[float], threshold: float) -> dict:
    d = np.asarray(distances, dtype=np.float64)
    return {
        "pairs": int(d.size),
        "verified": float((d < threshold).mean()) if d.size else None,
        "mean_distance": float(d.mean()) if d.size else None,
    }


def verification_report(
    originals: dict[str, np.ndarray],
    candidate_sets: dict[str, dict[str, object]],
    threshold: float = VERIFY_THRESHOLD,
    faces: dict[str, FaceLandmarks | None] | None = None,
) -> dict:
    """Verification shares for each candidate set against the originals.

    originals: key -> original view. candidate_sets: set name -> key -> candidate image, or a
    list of images (several guesses of one attacker, e.g. both polarities of an inversion):
    a pair then counts as verified when any guess is, i.e. its distance is the smallest.
    faces: find_face of each original, if already known.
    """
    if faces is None:
        faces = {k: find_face(img) for k, img in originals.items()}
    found = {k: f for k, f in faces.items() if f is not None}
    desc = {k: face_descriptor(originals[k], f) for k, f in found.items()}
    keys = sorted(found)
    multi_id = len({identity_of(k) for k in keys}) >= 2

    live = [
        descriptor_distance(desc[a], desc[b])
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if identity_of(a) == identity_of(b)
    ]
    impostor = [
        descriptor_distance(desc[a], desc[b])
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
        if identity_of(a) != identity_of(b)
    ]
    report = {
        "threshold": threshold,
        "recogniser": "dlib ResNet (dlib_face_recognition_resnet_model_v1), 5-point alignment",
        "n_originals": len(originals),
        "n_faces_found": len(found),
        "no_face_found": sorted(set(originals) - set(found)),
        "identities": sorted({identity_of(k) for k in originals}),
        "sets": {
            "original": {
                "same_view": None,
                "cross_view": _share(live, threshold),
                "false_accept": _share(impostor, threshold) if multi_id else None,
                "n_candidates": len(originals),
                "missing": [],
            }
        },
    }
    for name, cands in candidate_sets.items():
        same, cross, false_acc = [], [], []
        for k in keys:
            if k not in cands:
                continue
            guesses = cands[k] if isinstance(cands[k], (list, tuple)) else [cands[k]]
            gdesc = [face_descriptor(g, found[k]) for g in guesses]
            dist_to = lambda other: min(descriptor_distance(g, desc[other]) for g in gdesc)  # noqa: E731
            same.append(dist_to(k))
            for o in keys:
                if o != k:
                    (cross if identity_of(o) == identity_of(k) else false_acc).append(dist_to(o))
        report["sets"][name] = {
            "same_view": _share(same, threshold),
            "cross_view": _share(cross, threshold),
            "false_accept": _share(false_acc, threshold) if multi_id else None,
            "n_candidates": len(cands),
            "missing": sorted(set(keys) - set(cands)),
        }
    return report


def format_markdown(report: dict) -> str:
    """The report as a markdown table (verified share in %, pairs in brackets)."""

    def cell(s):
        if s is None:
            return "—"
        if s["verified"] is None:
            return "no pairs"
        return f"{100 * s['verified']:.1f}% ({s['pairs']}, d̄={s['mean_distance']:.2f})"

    lines = [
        f"Face verification (dlib ResNet, distance < {report['threshold']}); faces found in "
        f"{report['n_faces_found']}/{report['n_originals']} originals; landmarks from the originals.",
        "",
        "| set | same view | cross view (same identity) | false accept (other identities) |",
        "|---|---|---|---|",
    ]
    for name, s in report["sets"].items():
        label = "original (liveness)" if name == "original" else name
        lines.append(f"| {label} | {cell(s['same_view'])} | {cell(s['cross_view'])} | {cell(s['false_accept'])} |")
    missing = {n: s["missing"] for n, s in report["sets"].items() if s["missing"]}
    for name, keys in missing.items():
        lines.append(
            f"\n{name}: no candidate for {len(keys)} view(s) with a face: {', '.join(keys[:5])}"
            + (" …" if len(keys) > 5 else "")
        )
    fa = report["sets"]["original"]["false_accept"]
    if fa and fa["verified"] is not None and fa["verified"] >= 0.2:
        lines.append(
            f"\nWARNING: {100 * fa['verified']:.0f}% of pairs of originals of DIFFERENT identities are "
            "verified: the recogniser cannot tell these identities apart, so a verified share above "
            "measures face-likeness, not identity leakage; compare each share with its false-accept "
            "column."
        )
    if report["no_face_found"]:
        lines.append(f"\nno face found (not scored) in {len(report['no_face_found'])} original(s)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Folders


def read_image(path: Path) -> np.ndarray:
    """RGB float32 [H,W,3] in 0..1 (or [H,W] for grey files); .npy arrays are returned as stored."""
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise PrivsplatError(f"cannot read image {path}; is it a valid PNG/JPEG?")
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    a = a.astype(np.float32) / scale
    if a.ndim == 3:
        a = cv2.cvtColor(a[..., :3], cv2.COLOR_BGR2RGB)
    return a


def read_magnitude(path: Path) -> np.ndarray:
    """A protected |g| file as [h, w] scaled to 0..1 by its maximum (its absolute scale is not needed)."""
    a = read_image(path)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    return (a / max(float(a.max()), 1e-12)).astype(np.float32)


def list_views(folder: Path, suffixes=IMAGE_SUFFIXES, what: str = "folder") -> dict[str, Path]:
    """key (relative path without suffix, '/'-separated) -> file, for every image under `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PrivsplatError(f"{what} {folder} is not a folder; pass a folder of images")
    views = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."):
            key = p.relative_to(folder).with_suffix("").as_posix()
            if key in views:
                raise PrivsplatError(
                    f"{what} {folder} has two files for view {key!r} ({views[key].name}, {p.name}); keep one"
                )
            views[key] = p
    if not views:
        raise PrivsplatError(f"{what} {folder} holds no images ({', '.join(suffixes)})")
    return views


def evaluate_privacy_folders(
    originals: Path,
    protected: Path | None = None,
    renders: Path | None = None,
    mesh_renders: Path | None = None,
    attack: Attack = "optim",
    kernel: str = "sobel",
    threshold: float = VERIFY_THRESHOLD,
    mesh: Path | None = None,
    cameras: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Load the folders, run the attack on the protected views, and return verification_report's dict.

    mesh + cameras: also render the mesh (in the dataset's input units, as `privsplat fit`
    writes it) shaded from every camera of the dataset folder `cameras`, keyed by frame name.
    """
    if (mesh is None) != (cameras is None):
        raise PrivsplatError("--mesh and --cameras go together: the mesh is rendered from the dataset's cameras")
    load_face_models()  # fail early with the install hint
    orig_files = list_views(originals, what="--originals")
    orig = {k: read_image(p) for k, p in orig_files.items()}
    if progress:
        progress(f"finding faces in {len(orig)} original(s)")
    faces = {k: find_face(img) for k, img in orig.items()}
    sets: dict[str, dict] = {}
    if protected is not None:
        prot_files = list_views(protected, IMAGE_SUFFIXES + (".npy",), what="--protected")
        mags = {k: read_magnitude(p) for k, p in prot_files.items() if k in orig}
        _check_overlap(mags, "--protected", orig_files)
        sets["protected"] = mags
        if attack != "none":
            sets[inverted_set_name(attack)] = invert_views(mags, orig, faces, attack, kernel, progress)
    for name, folder, flag in (
        ("model renders", renders, "--renders"),
        ("mesh renders", mesh_renders, "--mesh-renders"),
    ):
        if folder is not None:
            files = list_views(folder, what=flag)
            imgs = {k: read_image(p) for k, p in files.items() if k in orig}
            _check_overlap(imgs, flag, orig_files)
            sets[name] = imgs
    if mesh is not None:
        if progress:
            progress(f"rendering {mesh} from the cameras of {cameras}")
        shaded = render_mesh_views(mesh, cameras)
        _check_overlap({k: v for k, v in shaded.items() if k in orig}, "--cameras", orig_files)
        sets["mesh renders (shaded)"] = {k: v for k, v in shaded.items() if k in orig}
    if progress:
        progress("running face recognition")
    report = verification_report(orig, sets, threshold, faces)
    report["inputs"] = {
        "originals": str(originals),
        "protected": _str(protected),
        "renders": _str(renders),
        "mesh_renders": _str(mesh_renders),
        "mesh": _str(mesh),
        "cameras": _str(cameras),
        "attack": attack,
        "kernel": kernel,
    }
    return report


def inverted_set_name(attack: str) -> str:
    return f"inverted ({attack}, 2 guesses)"


def invert_views(
    mags: dict[str, np.ndarray],
    orig: dict[str, np.ndarray],
    faces: dict[str, FaceLandmarks | None],
    attack: Attack,
    kernel: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list]:
    """key -> [x, 1 - x]: the attack's grey image at the original's size, in both polarities
    (|g| has no sign, so the attacker tries both). Views without a face are not scored: skipped."""
    from .inversion import invert_gradient_magnitude

    inverted = {}
    with_face = sorted(k for k in mags if faces.get(k) is not None)
    for i, k in enumerate(with_face):
        if progress:
            progress(f"inverting |g| ({attack}) {i + 1}/{len(with_face)}: {k}")
        x = invert_gradient_magnitude(mags[k], orig[k].shape[:2], attack, kernel=kernel)
        inverted[k] = [x, 1.0 - x]
    return inverted


def render_mesh_views(mesh: Path, cameras: Path) -> dict[str, np.ndarray]:
    """frame name -> shaded grey render [H, W] of `mesh` from that frame's camera."""
    return shade_mesh_frames(mesh, _load_dataset_quietly(cameras))


def shade_mesh_frames(mesh: Path, dataset, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """frame name -> shaded grey render [H, W] of `mesh` (input units, as `privsplat fit` writes
    it) from the camera of each frame of `dataset` (all, or those in `names`)."""
    from .geometry import load_mesh
    from .mesh_render import shade_mesh

    V, F = load_mesh(mesh, "mesh")
    V = dataset.to_normalised(V)  # cameras live in the normalised world
    return {
        f.name: shade_mesh(V, F, f.K, f.w2c, f.width, f.height)[0]
        for f in dataset.frames
        if names is None or f.name in names
    }


def _load_dataset_quietly(folder: Path):
    """load_dataset without its "no protection manifest" note: only cameras/originals are read here."""
    from ..data.load import load_dataset

    return load_dataset(folder, warn_unprotected=False)


def _check_overlap(found: dict, flag: str, orig_files: dict) -> None:
    if not found:
        some = ", ".join(list(orig_files)[:3])
        raise PrivsplatError(
            f"{flag}: no file matches an original by name (originals are e.g. {some}); "
            "files are matched by their path relative to the folder, without the suffix"
        )


def _str(p):
    return None if p is None else str(p)


# ---------------------------------------------------------------------------------------------
# Fit runs: the candidate sets derived from a `privsplat fit` run folder


MODEL_RENDERS = "model renders"
MESH_RENDERS = "mesh renders (shaded)"
BASELINE_RENDERS = "full-RGB run renders"


@dataclass
class RunViews:
    """Everything the report scores for one run, keyed by sensitive frame name."""

    originals: dict[str, np.ndarray]
    faces: dict[str, FaceLandmarks | None]
    sets: dict[str, dict[str, object]]
    inputs: dict


@dataclass(frozen=True)
class FitRun:
    dataset: object  # privsplat.data.Dataset the run was fitted on (normalised frame)
    config: dict  # FitConfig as a flat dict (config.yaml's "config")
    run: RunFolder


def open_run(run: Path, flag: str = "--run") -> FitRun:
    """A `privsplat fit` run folder: its config and the dataset it was fitted on."""
    folder = RunFolder.open(run, flag)
    saved = folder.read_config()
    return FitRun(folder.load_dataset(quiet=True), saved.config.to_dict(), folder)


def render_run_views(run: FitRun, names: set[str], device: str = "auto") -> dict[str, np.ndarray]:
    """frame name -> colour render [H, W, 3] in 0..1 of the run's fitted model from the camera of
    each frame in `names` (frames of the run's own dataset: each run has its own normalisation)."""
    import torch

    from ..cameras import Cameras
    from ..train.trainer import resolve_device

    dev = resolve_device(device)
    model = run.run.load_model(dev)
    background = tuple(run.config.get("background", (0.0, 0.0, 0.0)))
    backend = run.config.get("backend", "auto")
    out = {}
    with torch.no_grad():
        for f in run.dataset.frames:
            if f.name in names:
                cam = Cameras.from_numpy(f.K[None], f.w2c[None], f.width, f.height, device=dev)
                rgb = model.render(cam, backend=backend, background=background).rgb[0]
                out[f.name] = rgb.clamp(0, 1).cpu().numpy()
    return out


def load_originals(folder: Path) -> dict[str, np.ndarray]:
    """Original views by frame name: a dataset folder (the one you protected from: transforms.json,
    COLMAP, cameras.npz) keyed by its frame names, or a plain folder of images keyed by file path
    without suffix."""
    from ..data import load_rgb
    from ..data.formats import detect_format

    folder = Path(folder)
    if not folder.is_dir():
        raise PrivsplatError(f"--originals {folder} is not a folder; pass the folder you protected from")
    try:
        detect_format(folder)
    except PrivsplatError:
        return {k: read_image(p) for k, p in list_views(folder, what="--originals").items()}
    dataset = _load_dataset_quietly(folder)
    if dataset.frames_of("protected"):
        raise PrivsplatError(
            f"--originals {folder} is a protected folder (its sensitive views hold only "
            "|g|); pass the unprotected folder you ran `privsplat protect` on"
        )
    return {f.name: load_rgb(f) for f in dataset.frames}


def collect_run_views(
    run: Path,
    originals: Path,
    attack: Attack = "optim",
    baseline_run: Path | None = None,
    device: str = "auto",
    kernel: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunViews:
    """The originals of the run's sensitive (protected) views and every candidate set for them:
    the protected |g| images, the attack on them, renders of the fitted model's colour and shaded
    renders of RUN/mesh.ply from the same cameras, and (baseline_run) renders of a full-RGB fit.
    kernel: σ's derivative kernel for the attack; None = the one in the run data's manifest."""
    from ..data import load_protected

    say = progress or (lambda msg: None)
    load_face_models()  # fail early with the install hint
    fit = open_run(run)
    mesh = Path(run) / "mesh.ply"
    if not mesh.is_file():
        raise PrivsplatError(f"--run {run} has no mesh.ply; finish the fit or run `privsplat mesh --run {run}`")
    sensitive = fit.dataset.frames_of("protected")
    if not sensitive:
        raise PrivsplatError(
            f"--run {run} was fitted on {fit.dataset.root}, which has no protected views: "
            "nothing sensitive to score. Pass a run fitted on a `privsplat protect` output "
            "(a full-RGB run goes in --baseline-run)"
        )
    all_orig = load_originals(originals)
    names = {f.name for f in sensitive}
    orig = {k: v for k, v in all_orig.items() if k in names}
    if not orig:
        raise PrivsplatError(
            f"--originals {originals}: no view is named like a protected view of the run "
            f"(e.g. {', '.join(sorted(names)[:3])}; originals are e.g. "
            f"{', '.join(list(all_orig)[:3])}); pass the folder the run's data was protected from"
        )
    missing = sorted(names - set(orig))
    say(f"finding faces in {len(orig)} original(s) of the {len(names)} protected view(s)")
    faces = {k: find_face(img) for k, img in orig.items()}
    if kernel is None:  # the attacker is assumed to know σ's parameters
        kernel = (fit.dataset.protection or {}).get("kernel", "sobel")
    mags = {}
    for f in sensitive:
        if f.name in orig:
            mag, _ = load_protected(f)
            mags[f.name] = mag / max(float(mag.max()), 1e-12)
    sets: dict[str, dict[str, object]] = {"protected": mags}
    if attack != "none":
        sets[inverted_set_name(attack)] = invert_views(mags, orig, faces, attack, kernel, progress)
    say(f"rendering the fitted model from {len(orig)} protected camera(s)")
    sets[MODEL_RENDERS] = render_run_views(fit, set(orig), device)
    say(f"rendering {mesh} shaded from the same cameras")
    sets[MESH_RENDERS] = shade_mesh_frames(mesh, fit.dataset, set(orig))
    if baseline_run is not None:
        base = open_run(baseline_run, "--baseline-run")
        say(f"rendering the full-RGB run {baseline_run} from the same cameras")
        sets[BASELINE_RENDERS] = render_run_views(base, set(orig), device)
        if not sets[BASELINE_RENDERS]:
            raise PrivsplatError(
                f"--baseline-run {baseline_run} has no frame named like the protected views "
                f"(e.g. {', '.join(sorted(orig)[:3])}); fit it on the unprotected folder"
            )
    inputs = {
        "run": str(run),
        "originals": str(originals),
        "data": str(fit.dataset.root),
        "baseline_run": _str(baseline_run),
        "attack": attack,
        "kernel": kernel,
        "protected_views": len(names),
        "protected_without_original": missing,
    }
    return RunViews(orig, faces, sets, inputs)


def evaluate_privacy_run(
    run: Path,
    originals: Path,
    attack: Attack = "optim",
    threshold: float = VERIFY_THRESHOLD,
    baseline_run: Path | None = None,
    device: str = "auto",
    kernel: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """verification_report's dict for a fit run (see collect_run_views), with its inputs."""
    views = collect_run_views(run, originals, attack, baseline_run, device, kernel, progress)
    if progress:
        progress("running face recognition")
    report = verification_report(views.originals, views.sets, threshold, views.faces)
    report["inputs"] = views.inputs
    return report
