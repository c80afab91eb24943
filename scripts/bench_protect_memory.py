#!/usr/bin/env python
"""Peak memory and time of `privsplat protect --max-size N` on a folder of big distorted photos.

Writes N JPEGs of W x H (default 40 x 4000x3000, 12 MP; a textured room rendered small and
upscaled, so writing them is quick), a nerfstudio transforms.json with an OPENCV lens
(k1 = -0.1) and no masks, then runs `privsplat protect` on them in a child process (every view
but the first five sensitive) and reports the child's peak RSS (getrusage) and wall time as JSON.

    python scripts/bench_protect_memory.py [--views 40] [--size 4000x3000] [--max-size 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=40)
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--max-size", type=int, default=1024)
    ap.add_argument("--work", type=Path, default=None, help="folder for the photos (default: a temporary one)")
    args = ap.parse_args()
    W, H = (int(v) for v in args.size.lower().split("x"))

    import cv2

    from privsplat.cameras import intrinsics_from_fov
    from privsplat.data.synth_room import orbit, render_room, room_texture

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-protect-"))
    data = work / "photos"
    (data / "images").mkdir(parents=True, exist_ok=True)
    K = intrinsics_from_fov(W, H, np.deg2rad(65))
    small = 8
    Ks = K.copy()
    Ks[:2] /= small
    tex = room_texture(0)
    frames = []
    t0 = time.perf_counter()
    for i, w2c in enumerate(orbit(args.views)):
        img = render_room(Ks, w2c, W // small, H // small, tex)
        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_CUBIC)
        name = f"images/p{i:03d}.jpg"
        cv2.imwrite(str(data / name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        c2w = np.linalg.inv(w2c) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
    meta = {
        "camera_model": "OPENCV",
        "fl_x": K[0, 0],
        "fl_y": K[1, 1],
        "cx": K[0, 2],
        "cy": K[1, 2],
        "w": W,
        "h": H,
        "k1": -0.1,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
    }
    (data / "transforms.json").write_text(json.dumps(meta))
    write_s = time.perf_counter() - t0
    sensitive = ",".join(f"p{i:03d}" for i in range(5, args.views))
    cmd = [sys.executable, "-m", "privsplat", "protect", "--data", str(data), "--out", str(work / "protected")]
    cmd += ["--sensitive", sensitive, "--max-size", str(args.max_size), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return 1
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size_mb = sum(p.stat().st_size for p in (work / "protected").rglob("*") if p.is_file()) / 2**20
    photos_mb = sum(p.stat().st_size for p in (data / "images").iterdir()) / 2**20
    print(
        json.dumps(
            {
                "views": args.views,
                "photo_size": [W, H],
                "megapixels": round(W * H / 1e6, 1),
                "max_size": args.max_size,
                "photos_mb": round(photos_mb, 1),
                "write_photos_s": round(write_s, 1),
                "protect_s": round(wall, 1),
                "protect_peak_rss_mb": round(peak_kb / 1024, 1),
                "protected_folder_mb": round(size_mb, 1),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
