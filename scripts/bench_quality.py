#!/usr/bin/env python
"""Table-1 reproduction: face-region Chamfer of full-RGB, stage 1, privacy (1+2) and ablations.

Heads from `privsplat synth` (ICT identities, one with an expression, nefertiti), 36 views with
the rear views neutral. Prints a markdown table and writes JSON + markdown.

    .venv/bin/python scripts/bench_quality.py --out bench-quality [--heads ict1 ict2 ...] [--rows ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HEADS = {
    "ict1": dict(mesh="ict", identity_seed=1),
    "ict2": dict(mesh="ict", identity_seed=2),
    "ict3": dict(mesh="ict", identity_seed=3),
    "ict1-jaw": dict(mesh="ict", identity_seed=1, expression=("jawOpen:0.6",)),
    "nefertiti": dict(mesh="nefertiti"),
}
# row -> (which folder: "rgb" = unprotected, "prot" = protected; config overrides)
ROWS = {
    "full-RGB": ("rgb", {}),
    "stage 1 only": ("prot", {"stage2_iters": 0}),
    "privacy (1+2)": ("prot", {}),
    "no colour reg": ("prot", {"colour_reg": "none"}),
    "plain SH colour": ("prot", {"colour_model": "sh"}),
    "stage 2 from template": ("prot", {"template": "always"}),
    "single stage (mixed)": ("prot", {"single_stage": True}),
}


def prepare(head: str, root: Path, resolution: int, neutral: int) -> tuple[Path, Path]:
    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.privacy.protect import protect

    data, prot = root / f"{head}-{resolution}", root / f"{head}-{resolution}-protected"
    if not (data / "gt_mesh.ply").exists():
        synthesize(out=data, resolution=resolution, overwrite=True, **HEADS[head])
    if not (prot / "privsplat_manifest.json").exists():
        _, sensitive = rear_view_names(data, neutral)
        protect(data, prot, sensitive=",".join(sensitive), overwrite=True)
    return data, prot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-quality"))
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--neutral-views", type=int, default=15)
    ap.add_argument("--preset", default="head64")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value (YAML values)")
    args = ap.parse_args()

    import yaml

    from privsplat.eval.geometry import evaluate_mesh
    from privsplat.io import write_json
    from privsplat.pipeline import fit_run, setup_logging
    from privsplat.train.config import load_preset

    setup_logging()
    base = load_preset(args.preset)
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for head in args.heads:
        data, prot = prepare(head, args.out / "data", args.resolution, args.neutral_views)
        mask = np.load(data / "gt_face_mask.npy")
        for row in args.rows:
            key = f"{head}|{row}"
            if key in results:
                continue
            which, overrides = ROWS[row]
            cfg = base.replace(**{**extra, **overrides})
            run = (
                args.out
                / "runs"
                / f"{head}-{args.resolution}-{row.replace(' ', '_').replace('(', '').replace(')', '')}"
            )
            t = time.perf_counter()
            m = fit_run(
                data if which == "rgb" else prot,
                run,
                cfg,
                device=args.device,
                overwrite=True,
                progress=False,
                preset=args.preset,
                threads=args.threads,
            )
            s = evaluate_mesh(run / "mesh.ply", data / "gt_mesh.ply", gt_face_mask=mask)
            results[key] = {
                "head": head,
                "row": row,
                "chamfer": s["chamfer"],
                "accuracy": s["accuracy"],
                "completeness": s["completeness"],
                "seconds": round(time.perf_counter() - t, 1),
                "fit_seconds": {k: v["seconds"] for k, v in m["stages"].items()},
                "surfels": m["surfels"],
                "device": m["device"],
            }
            write_json(results_path, results)
            print(f"{head:10s} {row:24s} chamfer {s['chamfer']:.4f}  ({results[key]['seconds']} s)", flush=True)
    md = table(results, args.heads, args.rows, args.resolution)
    (args.out / "table.md").write_text(md)
    print(md)
    print(json.dumps(results, indent=1))
    return 0


def table(results: dict, heads: list[str], rows: list[str], resolution: int) -> str:
    units = {h: ("mm" if h == "nefertiti" else "cm") for h in heads}
    lines = [
        f"Face-region Chamfer ({resolution} px, 36 views; ICT in cm, nefertiti in its mm-like units)",
        "",
        "| row | " + " | ".join(f"{h} ({units[h]})" for h in heads) + " | mean ratio to full-RGB |",
        "|---|" + "---|" * (len(heads) + 1),
    ]
    for row in rows:
        cells, ratios = [], []
        for h in heads:
            r = results.get(f"{h}|{row}")
            base = results.get(f"{h}|full-RGB")
            cells.append("—" if r is None else f"{r['chamfer']:.4f}")
            if r is not None and base is not None and base["chamfer"] > 0:
                ratios.append(r["chamfer"] / base["chamfer"])
        lines.append(
            f"| {row} | " + " | ".join(cells) + f" | {np.mean(ratios):.3f} |"
            if ratios
            else f"| {row} | " + " | ".join(cells) + " | — |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
