#!/usr/bin/env python
"""A synthetic non-ICT head mesh for `privsplat synth --mesh PATH`: an ellipsoid (cm, face +z,
up +y) with a prominent nose ridge, deep eye sockets, a brow ridge, lips and a chin. Its face
is nothing like the ICT template, and the nose occludes the eyes from side views.

    .venv/bin/python scripts/make_head.py --out head.ply [--nose 1.0] [--sockets 1.0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def gauss(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def head_vertices(V: np.ndarray, nose: float = 1.0, sockets: float = 1.0) -> np.ndarray:
    """Map unit-sphere vertices onto the head: ellipsoid 15 x 21 x 19 cm plus frontal relief."""
    d = V / np.linalg.norm(V, axis=1, keepdims=True)
    P = d * np.array([7.5, 10.5, 9.5])
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    front = np.clip(z / 9.5, 0.0, 1.0) ** 2  # relief only on the front half
    relief = (
        nose * 2.8 * gauss(x, y, 0.0, -0.5, 0.7, 2.6) * np.clip((y + 3.5) / 2.0, 0, 1)  # ridge, ends at the tip
        + nose * 1.0 * gauss(x, y, 0.0, -2.8, 1.0, 0.8)  # tip
        - sockets * 1.6 * (gauss(x, y, 2.8, 2.0, 1.3, 1.0) + gauss(x, y, -2.8, 2.0, 1.3, 1.0))
        + 0.9 * gauss(x, y, 0.0, 3.6, 4.0, 0.6)  # brow ridge
        + 0.5 * gauss(x, y, 0.0, -5.0, 1.8, 0.5)  # lips
        + 0.8 * gauss(x, y, 0.0, -7.6, 2.2, 1.2)
    )  # chin
    n = P / np.array([7.5, 10.5, 9.5]) ** 2  # ellipsoid normal
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return P + (front * relief)[:, None] * n


def main() -> None:
    import open3d as o3d

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--nose", type=float, default=1.0)
    ap.add_argument("--sockets", type=float, default=1.0)
    ap.add_argument("--resolution", type=int, default=120)
    a = ap.parse_args()
    m = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=a.resolution)
    V = head_vertices(np.asarray(m.vertices), a.nose, a.sockets)
    m.vertices = o3d.utility.Vector3dVector(V)
    m.compute_vertex_normals()
    if not o3d.io.write_triangle_mesh(str(a.out), m):
        raise SystemExit(f"could not write {a.out} (does its folder exist?)")
    print(f"wrote {a.out}: {len(V)} vertices, extent {np.round(V.max(0) - V.min(0), 2)} cm")


if __name__ == "__main__":
    main()
