"""Rebuild the shipped meshes from the development data (run once, by a developer).

    python -m privsplat.assets.build_assets /path/to/shared/data

Nothing at run time reads the development data; the package ships only the outputs:
- ict_head_small.npz: ICT-FaceKit light model (MIT, LICENSE-ICT-FaceKit.txt beside it),
  full-resolution topology, the first 20 identity modes and all 12 expression modes, float16.
- nefertiti_small.npz: the Nefertiti bust scan (public domain, Nora Al-Badri and Jan Nikolai
  Nelles, 2016; low-resolution version from odedstein/meshes), decimated to 12k triangles
  and rotated 180° about z so that up is +y (the scan has up = -y); face toward +z, units
  as in the scan (about millimetres).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def build(data_dir: Path) -> None:
    import open3d as o3d

    d = np.load(data_dir / "ict_head.npz")
    np.savez_compressed(
        HERE / "ict_head_small.npz",
        vertices=d["vertices"].astype(np.float32),
        faces=d["faces"].astype(np.int32),
        region=d["region"].astype(np.uint8),
        identity_modes=d["identity_modes"][:20].astype(np.float16),
        expression_modes=d["expression_modes"].astype(np.float16),
        expression_names=d["expression_names"],
        landmarks68=d["landmarks68"].astype(np.int32),
        units=np.array("cm"),
    )
    mesh = o3d.io.read_triangle_mesh(str(data_dir / "nefertiti.ply"))
    mesh = mesh.simplify_quadric_decimation(target_number_of_triangles=12000)
    mesh.remove_unreferenced_vertices()
    v = np.asarray(mesh.vertices) * np.array([-1.0, -1.0, 1.0])  # 180° about z: up -y -> +y
    np.savez_compressed(
        HERE / "nefertiti_small.npz",
        vertices=v.astype(np.float32),
        faces=np.asarray(mesh.triangles).astype(np.int32),
        units=np.array("mm"),
    )


if __name__ == "__main__":
    build(Path(sys.argv[1]))
