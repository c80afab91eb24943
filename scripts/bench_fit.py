#!/usr/bin/env python
"""Fit benchmark: wall time per stage, iterations per second, peak memory and face-region Chamfer
for the demo head (ICT identity 1, 15 rear views neutral) at the given resolutions. Prints JSON.

    .venv/bin/python scripts/bench_fit.py [--resolutions 64 256] [--device auto] [--out bench-fit]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-fit"))
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--identity-seed", type=int, default=1)
    ap.add_argument("--neutral-views", type=int, default=15)
    args = ap.parse_args()

    import numpy as np

    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.eval.geometry import evaluate_mesh
    from privsplat.pipeline import fit_run, setup_logging
    from privsplat.privacy.protect import protect
    from privsplat.train.config import load_preset

    setup_logging()
    report = {}
    for res in args.resolutions:
        data, prot, run = (args.out / f"head{res}", args.out / f"head{res}-protected", args.out / f"run{res}")
        synthesize(mesh="ict", out=data, resolution=res, identity_seed=args.identity_seed, overwrite=True)
        _, sensitive = rear_view_names(data, args.neutral_views)
        protect(data, prot, sensitive=",".join(sensitive), overwrite=True)
        preset = "head64" if res <= 128 else "head512"
        m = fit_run(prot, run, load_preset(preset), device=args.device, overwrite=True, progress=False, preset=preset)
        s = evaluate_mesh(run / "mesh.ply", data / "gt_mesh.ply", gt_face_mask=np.load(data / "gt_face_mask.npy"))
        report[f"{res}px"] = {
            "preset": preset,
            "device": m["device"],
            "stages": {
                k: {
                    "seconds": v["seconds"],
                    "iterations": v["iterations"],
                    "iterations_per_second": v["iterations_per_second"],
                    "surfels": v["surfels"],
                }
                for k, v in m["stages"].items()
            },
            "training_seconds": round(sum(v["seconds"] for v in m["stages"].values()), 2),
            "mesh_seconds": m["mesh"]["seconds"],
            "total_seconds": m["total_seconds"],
            "peak_rss_mb": m["peak_rss_mb"],
            "peak_cuda_mb": m.get("peak_cuda_mb"),
            "face_chamfer_cm": round(s["chamfer"], 5),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
