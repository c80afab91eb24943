"""Mesh-to-mesh geometry metrics: accuracy, completeness, Chamfer, F-score, normal consistency.

Both surfaces are sampled uniformly by area with a fixed seed, so the numbers are
reproducible and do not depend on how finely either mesh is tessellated.

Face-region scoring (H3DS-like crop): the crop decides which samples are *scored*;
each scored sample's distance is still measured to the whole other surface. A perfect
prediction therefore scores 0 right up to the crop's border, instead of being charged
for the gap between a cropped GT and a predicted point just outside it.

With a GT face mask (region "nearest", the default) a predicted sample is scored when the
closest point of the GT surface to it lies on a face triangle and is at most the margin away:
the predicted surface that stands for the face, floaters near it included. Region "margin"
(before 2026-11-27) scored every predicted sample within the margin (5 % of the GT diagonal,
~2.3 cm on an ICT head) of a GT face sample, which also scored the neck below the face mask
down to the ICT mesh's open cut: that band, not the face, held most of the gap between the
privacy and full-RGB fits of identity-1 ICT heads (docs/bench_quality/README.md).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np

from ..errors import PrivsplatError

MeshLike = Union[str, Path, tuple]  # a PLY/OBJ path, or (vertices [V,3], faces [F,3])
Align = Literal["none", "icp"]

DEFAULT_FSCORE_FRACTIONS = (0.005, 0.01, 0.02)  # of the GT bounding-box diagonal
FACE_MARGIN_FRACTION = 0.05  # predicted samples kept this close to the GT face region
FaceRegion = Literal["nearest", "margin"]


def load_mesh(src: MeshLike, what: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V,3] float64, faces [F,3] int64) from a path (PLY/OBJ via open3d) or a tuple."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise PrivsplatError(f"{what} file {path} does not exist; pass the path of a PLY or OBJ mesh")
        import open3d as o3d

        from ..io import check_ply_header

        counts = None
        if path.suffix.lower() == ".ply":
            counts = check_ply_header(path, what)  # before open3d allocates for what the header claims
        mesh = o3d.io.read_triangle_mesh(str(path))
        V, F = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.triangles, np.int64)
        source = str(path)
        # open3d only warns when a file ends early and returns what it read: compare with the header
        # (polygons may become several triangles, never fewer).
        if counts is not None and (len(V) != counts.get("vertex", 0) or len(F) < counts.get("face", 0)):
            raise PrivsplatError(
                f"{what} {path} is truncated or corrupt: its header promises "
                f"{counts.get('vertex', 0)} vertices and {counts.get('face', 0)} faces, "
                f"but only {len(V)} and {len(F)} could be read; re-export it"
            )
    else:
        V, F = (np.asarray(a) for a in src)
        V, F = V.astype(np.float64).reshape(-1, 3), F.astype(np.int64).reshape(-1, 3)
        source = f"the {what} arrays"
    if len(V) == 0 or len(F) == 0:
        raise PrivsplatError(
            f"{what}: {source} has no triangles ({len(V)} vertices, {len(F)} faces); "
            "metrics need a triangle mesh, not a point cloud"
        )
    if F.min() < 0 or F.max() >= len(V):
        raise PrivsplatError(f"{what}: {source} has face indices outside its {len(V)} vertices")
    if not np.isfinite(V).all():
        raise PrivsplatError(f"{what}: {source} has non-finite vertex coordinates")
    return V, F


def triangle_areas_normals(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(areas [F], unit normals [F,3]); non-finite where coordinates are so large that they overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        cross = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
        length = np.linalg.norm(cross, axis=1)
        normals = cross / np.maximum(length, 1e-30)[:, None]
    return 0.5 * length, normals


def sample_surface(V: np.ndarray, F: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n points uniform by area: (points [n,3], unit face normals [n,3], triangle index [n])."""
    areas, normals = triangle_areas_normals(V, F)
    with np.errstate(over="ignore"):
        total = areas.sum()
    if not np.isfinite(total):
        raise PrivsplatError(
            "mesh coordinates are too large for its triangle areas to be computed (they overflow); "
            "the file is corrupt or in absurd units: re-export it"
        )
    if not total > 0:
        raise PrivsplatError("mesh has zero surface area (all triangles degenerate); nothing to sample")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(F), size=n, p=areas / total)
    # Uniform barycentric coordinates: reflect (u, v) outside the triangle back inside.
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    a, b, c = V[F[tri, 0]], V[F[tri, 1]], V[F[tri, 2]]
    points = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    return points, normals[tri], tri


def closest_on_surface(V: np.ndarray, F: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance from each point to the mesh surface, the unit normal of the closest triangle and
    that triangle's index.

    Point-to-surface, not point-to-sample: distances between two sample sets have a floor of
    about half the sample spacing (0.4 mm for 200k samples on a head), as large as the
    errors being measured; the exact distance to the triangles has none.
    """
    import open3d as o3d

    # open3d works in float32: centre the mesh so precision does not depend on where it sits.
    center = V.mean(axis=0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((V - center).astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))
    closest = scene.compute_closest_points(o3d.core.Tensor((points - center).astype(np.float32)))
    nearest = closest["points"].numpy().astype(np.float64) + center
    tri = closest["primitive_ids"].numpy().astype(np.int64)
    _, normals = triangle_areas_normals(V, F)
    return np.linalg.norm(points - nearest, axis=1), normals[tri], tri


def icp_align(
    src_points: np.ndarray, dst_points: np.ndarray, dst_normals: np.ndarray, max_distance: float, iterations: int = 50
) -> np.ndarray:
    """4x4 rigid transform taking src onto dst (point-to-plane ICP from the identity)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    src = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(src_points))
    dst = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(dst_points))
    dst.normals = o3d.utility.Vector3dVector(dst_normals)
    result = reg.registration_icp(
        src,
        dst,
        max_distance,
        np.eye(4),
        reg.TransformationEstimationPointToPlane(),
        reg.ICPConvergenceCriteria(relative_fitness=1e-9, relative_rmse=1e-9, max_iteration=iterations),
    )
    return np.asarray(result.transformation, dtype=np.float64)


def parse_face_sphere(text: str) -> tuple[float, float, float, float]:
    """'x,y,z,r' -> (x, y, z, r), with a message a user can act on."""
    try:
        values = tuple(float(s) for s in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not np.isfinite(values).all() or values[3] <= 0:
        raise PrivsplatError(
            f"--face-sphere {text!r} is not 'x,y,z,r' with a positive radius r "
            "(four comma-separated numbers in the GT mesh's units)"
        )
    return values  # type: ignore[return-value]


def _face_region_selection(
    gt_F, gt_tri, pred_points, pred_closest, gt_points, gt_face_mask, face_sphere, margin, region
):
    """Boolean selections (pred, gt) of the samples to score, or all-True without a region.
    pred_closest: (distance, GT triangle index) of each predicted sample's closest GT point."""
    keep_pred = np.ones(len(pred_points), bool)
    keep_gt = np.ones(len(gt_points), bool)
    if gt_face_mask is not None:
        face_tri = gt_face_mask[gt_F].all(axis=1)  # a GT triangle is face when its three vertices are
        keep_gt &= face_tri[gt_tri]
        if not keep_gt.any():
            raise PrivsplatError(
                "the GT face mask selects no whole triangle; check that the mask "
                "belongs to this GT mesh (one bool per vertex, True on the face)"
            )
        if region == "nearest":
            dist, tri = pred_closest
            keep_pred &= face_tri[tri] & (dist <= margin)
        else:
            from scipy.spatial import cKDTree

            dist, _ = cKDTree(gt_points[keep_gt]).query(pred_points, distance_upper_bound=margin)
            keep_pred &= np.isfinite(dist)
    if face_sphere is not None:
        c, r = np.asarray(face_sphere[:3], np.float64), float(face_sphere[3])
        keep_gt &= np.linalg.norm(gt_points - c, axis=1) <= r
        keep_pred &= np.linalg.norm(pred_points - c, axis=1) <= r
        if not keep_gt.any():
            raise PrivsplatError(
                f"--face-sphere {tuple(face_sphere)} contains no point of the GT surface; "
                "give its centre and radius in the GT mesh's units"
            )
    return keep_pred, keep_gt


def evaluate_mesh(
    pred: MeshLike,
    gt: MeshLike,
    *,
    gt_face_mask: np.ndarray | str | Path | None = None,
    face_sphere: Sequence[float] | None = None,
    align: Align = "none",
    n_samples: int = 200_000,
    seed: int = 0,
    fscore_thresholds: Sequence[float] | None = None,
    face_margin: float = FACE_MARGIN_FRACTION,
    face_region: FaceRegion = "nearest",
) -> dict:
    """Geometry metrics of `pred` against `gt`, both meshes in the same units and frame.

    fscore_thresholds: fractions of the GT bounding-box diagonal (default 0.5%, 1%, 2%);
        the result also gives them in absolute units.
    gt_face_mask: per-GT-vertex bool (or a .npy path); GT samples on triangles whose three
        vertices are in the mask are scored, and predicted samples within
        face_margin x diagonal of them: region "nearest" (default), predicted samples whose
        closest GT point is on a face triangle, at most that far; "margin", predicted samples
        within that distance of a GT face sample (the older rule, which also scores the surface
        bordering the face region).
    face_sphere: (x, y, z, r); only samples inside this sphere are scored (both surfaces).
    align: "icp" moves pred onto gt (point-to-plane ICP from the identity, on the whole
        surfaces, before any crop) and reports the 4x4 transform.
    """

    if align not in ("none", "icp"):
        raise PrivsplatError(f"align must be 'none' or 'icp', not {align!r}")
    if face_region not in ("nearest", "margin"):
        raise PrivsplatError(f"face_region must be 'nearest' or 'margin', not {face_region!r}")
    if n_samples < 100:
        raise PrivsplatError(f"n_samples={n_samples} is too few for stable metrics; use at least 100")
    pred_V, pred_F = load_mesh(pred, "predicted mesh")
    gt_V, gt_F = load_mesh(gt, "GT mesh")
    mask = _load_face_mask(gt_face_mask, len(gt_V))
    diagonal = float(np.linalg.norm(gt_V.max(0) - gt_V.min(0)))
    fractions = tuple(fscore_thresholds) if fscore_thresholds is not None else DEFAULT_FSCORE_FRACTIONS

    pred_points, pred_normals, _ = sample_surface(pred_V, pred_F, n_samples, seed)
    gt_points, gt_normals, gt_tri = sample_surface(gt_V, gt_F, n_samples, seed + 1)

    transform = np.eye(4)
    if align == "icp":
        transform = icp_align(pred_points, gt_points, gt_normals, max_distance=0.05 * diagonal)
        pred_points = pred_points @ transform[:3, :3].T + transform[:3, 3]
        pred_normals = pred_normals @ transform[:3, :3].T

    d_all, n_all, tri_all = closest_on_surface(gt_V, gt_F, pred_points)  # accuracy side
    keep_pred, keep_gt = _face_region_selection(
        gt_F, gt_tri, pred_points, (d_all, tri_all), gt_points, mask, face_sphere, face_margin * diagonal, face_region
    )
    if not keep_pred.any():
        raise PrivsplatError(
            "no point of the predicted mesh lies in the face region; is it in the GT's "
            "frame and units? (try --align icp, or check the crop)"
        )

    pred_V_aligned = pred_V @ transform[:3, :3].T + transform[:3, 3]
    d_pred, n_pred = d_all[keep_pred], n_all[keep_pred]
    d_gt, n_gt, _ = closest_on_surface(pred_V_aligned, pred_F, gt_points[keep_gt])  # completeness side
    cos_pred = np.abs(np.sum(pred_normals[keep_pred] * n_pred, axis=1))
    cos_gt = np.abs(np.sum(gt_normals[keep_gt] * n_gt, axis=1))

    accuracy, completeness = float(d_pred.mean()), float(d_gt.mean())
    fscores = []
    for frac in fractions:
        tau = frac * diagonal
        precision, recall = float((d_pred < tau).mean()), float((d_gt < tau).mean())
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        fscores.append(
            {
                "fraction_of_diagonal": float(frac),
                "threshold": tau,
                "precision": precision,
                "recall": recall,
                "fscore": f,
            }
        )
    region = "whole surface"
    if mask is not None:
        region = (
            f"predicted samples nearest to the GT face mask, within {face_margin:g} x diagonal"
            if face_region == "nearest"
            else f"GT face mask + {face_margin:g} x diagonal margin"
        )
    if face_sphere is not None:
        region = (region + " and " if mask is not None else "") + f"sphere {tuple(map(float, face_sphere))}"
    return {
        "accuracy": accuracy,
        "completeness": completeness,
        "chamfer": 0.5 * (accuracy + completeness),
        "accuracy_median": float(np.median(d_pred)),
        "completeness_median": float(np.median(d_gt)),
        "normal_consistency": float(0.5 * (cos_pred.mean() + cos_gt.mean())),
        "fscore": fscores,
        "gt_bbox_diagonal": diagonal,
        "region": region,
        "n_samples": n_samples,
        "n_scored_pred": int(keep_pred.sum()),
        "n_scored_gt": int(keep_gt.sum()),
        "seed": seed,
        "align": align,
        "face_region": face_region if mask is not None else None,
        "transform": transform.tolist(),
    }


def _load_face_mask(mask, n_vertices: int) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, (str, Path)):
        path = Path(mask)
        if not path.is_file():
            raise PrivsplatError(f"GT face mask {path} does not exist; pass a .npy of one bool per GT vertex")
        try:
            mask = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):  # what numpy raises for a bad file
            mask = None
        if not isinstance(mask, np.ndarray):
            raise PrivsplatError(
                f"GT face mask {path} is not a .npy array; pass a .npy of one bool per GT "
                "vertex (privsplat synth writes gt_face_mask.npy)"
            ) from None
    mask = np.asarray(mask).reshape(-1)
    if len(mask) != n_vertices:
        raise PrivsplatError(
            f"GT face mask has {len(mask)} entries but the GT mesh has {n_vertices} "
            "vertices; the mask must be the per-vertex mask of this exact GT mesh"
        )
    return _as_bool_mask(mask)


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    """A bool mask as is; 0/1 numbers as bool; anything else (weights, NaN) refused.

    Casting a float mask to bool makes every nonzero weight True (0.01 -> True), so a mask of
    probabilities would silently score the whole head as "face".
    """
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf":
        raise PrivsplatError(f"GT face mask has type {mask.dtype}; pass a .npy of one bool per GT vertex")
    if not np.isin(mask, (0, 1)).all():
        raise PrivsplatError(
            "GT face mask holds values other than 0 and 1 (weights or probabilities?); "
            "threshold it yourself and save a bool array, e.g. np.save(path, mask > 0.5)"
        )
    return mask.astype(bool)


def format_summary(metrics: dict) -> str:
    """A short human-readable report of evaluate_mesh's result."""
    lines = [
        f"region: {metrics['region']}  (scored {metrics['n_scored_pred']} predicted / "
        f"{metrics['n_scored_gt']} GT samples of {metrics['n_samples']})",
        f"GT bounding-box diagonal: {metrics['gt_bbox_diagonal']:.6g}",
        f"accuracy     (pred->GT): {metrics['accuracy']:.6g}   median {metrics['accuracy_median']:.6g}",
        f"completeness (GT->pred): {metrics['completeness']:.6g}   median {metrics['completeness_median']:.6g}",
        f"Chamfer (mean of both):  {metrics['chamfer']:.6g}   "
        f"({metrics['chamfer'] / metrics['gt_bbox_diagonal']:.3e} of the diagonal)",
        f"normal consistency:      {metrics['normal_consistency']:.4f}",
    ]
    for f in metrics["fscore"]:
        lines.append(
            f"F-score @ {100 * f['fraction_of_diagonal']:.2g}% diag ({f['threshold']:.4g}): "
            f"{f['fscore']:.4f}  (precision {f['precision']:.4f}, recall {f['recall']:.4f})"
        )
    if metrics["align"] == "icp":
        T = np.asarray(metrics["transform"])
        lines.append(f"ICP translation: {np.array2string(T[:3, 3], precision=5)}")
    return "\n".join(lines)
