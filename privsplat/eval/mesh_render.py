"""Shaded renders of a mesh (grey Lambertian, headlight), for the privacy report's "mesh renders".

Geometry alone, no texture: what someone holding only the returned mesh could show a
face recogniser. Ray cast with open3d's RaycastingScene (CPU, exact, no GPU needed).
"""

from __future__ import annotations

import numpy as np

AMBIENT = 0.15  # so surfaces seen edge-on stay distinguishable from the black background


def shade_mesh(
    vertices: np.ndarray, faces: np.ndarray, Ks: np.ndarray, w2cs: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Grey renders [C, H, W] in 0..1 of the mesh from C pinhole cameras (OpenCV w2c [C,4,4]).

    Shade = AMBIENT + (1 - AMBIENT)·|n·v| with the light at the camera (a headlight), so the
    image shows shape by shading alone; background pixels are 0.
    """
    import open3d as o3d

    from .geometry import triangle_areas_normals

    V = np.asarray(vertices, np.float64)
    F = np.asarray(faces, np.int64)
    Ks, w2cs = np.asarray(Ks, np.float64).reshape(-1, 3, 3), np.asarray(w2cs, np.float64).reshape(-1, 4, 4)
    _, tri_normals = triangle_areas_normals(V, F)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(V.astype(np.float32)), o3d.core.Tensor(F.astype(np.uint32)))
    # Pixel centres at integer + 0.5, as privsplat.cameras.Cameras defines them.
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    out = np.zeros((len(Ks), height, width), np.float32)
    for c, (K, w2c) in enumerate(zip(Ks, w2cs)):
        R, t = w2c[:3, :3], w2c[:3, 3]
        dirs = (pix @ np.linalg.inv(K).T) @ R  # camera rays rotated to world (R^T d, row form)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        origin = np.broadcast_to(-R.T @ t, dirs.shape)
        rays = o3d.core.Tensor(np.hstack([origin, dirs]).astype(np.float32))
        hit = scene.cast_rays(rays)
        tri = hit["primitive_ids"].numpy().astype(np.int64)
        valid = np.isfinite(hit["t_hit"].numpy())
        shade = np.zeros(len(dirs), np.float32)
        cos = np.abs(np.sum(tri_normals[tri[valid]] * dirs[valid], axis=1))
        shade[valid] = AMBIENT + (1 - AMBIENT) * cos
        out[c] = shade.reshape(height, width)
    return out
