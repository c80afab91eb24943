"""Benchmark `prepare`: time and registered share for N photos of a textured room at a given size.

Renders an orbit of the room (privsplat.data.synth_room) through a SIMPLE_RADIAL-like lens
(k1 = -0.1), writes JPEGs, runs prepare on them (photos: exhaustive matching, or --matching)
and reports per case: seconds per step, registered share, mean reprojection error and pose
errors after a similarity alignment (rotation in degrees, centre in % of the orbit radius).

    python scripts/bench_prepare.py --views 36 100 --sizes 512x384 1920x1080 --threads 2 --out bench.json

Timings depend on the CPU and on whatever else runs on it; say which machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def run_case(n: int, size: tuple[int, int], threads: int, matching: str, work: Path, tex) -> dict:
    import cv2

    from privsplat.cameras import intrinsics_from_fov
    from privsplat.data import load_dataset
    from privsplat.data.capture import prepare
    from privsplat.data.dataset import SourceCamera
    from privsplat.data.synth_room import orbit, pose_errors, render_room

    W, H = size
    K = intrinsics_from_fov(W, H, np.deg2rad(65))
    lens = SourceCamera("OPENCV", K, (-0.1, 0.0, 0.0, 0.0), W, H)
    radius = 2.5
    gt = np.stack(orbit(n, radius))
    photos = work / f"photos_{n}_{W}x{H}"
    photos.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, w in enumerate(gt):
        cv2.imwrite(
            str(photos / f"v{i:03d}.jpg"),
            render_room(K, w, W, H, tex, lens)[:, :, ::-1],
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
    render_s = time.perf_counter() - t0
    out = work / f"out_{n}_{W}x{H}"
    case = {"views": n, "width": W, "height": H, "threads": threads, "render_s": round(render_s, 1)}
    t0 = time.perf_counter()
    try:
        rep = prepare(out, images=photos, matching=matching, threads=threads, min_registered=0.01, verbose=False)
    except Exception as e:  # a failed case is a result too
        case.update(error=f"{type(e).__name__}: {e}", prepare_s=round(time.perf_counter() - t0, 1))
        return case
    ds = load_dataset(out, warn_unprotected=False)
    est = np.stack([f.extra["w2c_input"] for f in ds.frames])
    rot, centre = pose_errors(gt[[int(f.name[1:]) for f in ds.frames]], est)
    case.update(
        prepare_s=round(rep.seconds["total"], 1),
        seconds={k: round(v, 1) for k, v in rep.seconds.items()},
        registered=len(rep.registered),
        registered_share=round(rep.registered_share, 3),
        failed=rep.failed,
        matching=rep.matching,
        mean_reprojection_error_px=round(rep.mean_reprojection_error_px, 3),
        points=rep.points,
        rotation_error_deg_max=round(float(rot.max()), 3),
        rotation_error_deg_mean=round(float(rot.mean()), 3),
        centre_error_pct_radius_max=round(float(100 * centre.max() / radius), 3),
        centre_error_pct_radius_mean=round(float(100 * centre.mean() / radius), 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )
    return case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, nargs="+", default=[36, 100])
    ap.add_argument("--sizes", nargs="+", default=["512x384", "1920x1080"], help="WxH")
    ap.add_argument("--threads", type=int, default=2, help="pycolmap threads")
    ap.add_argument("--matching", default="auto", choices=["auto", "sequential", "exhaustive"])
    ap.add_argument("--out", type=Path, default=Path("bench_prepare.json"))
    args = ap.parse_args()
    from privsplat.data.synth_room import room_texture

    tex = room_texture()
    results = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "cases": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            W, H = (int(v) for v in size.lower().split("x"))
            for n in args.views:
                case = run_case(n, (W, H), args.threads, args.matching, Path(tmp), tex)
                print(json.dumps(case), flush=True)
                results["cases"].append(case)
                args.out.write_text(json.dumps(results, indent=2) + "\n")  # partial results survive a kill


if __name__ == "__main__":
    main()
