#!/usr/bin/env python
"""Table-1 reproduction: face-region Chamfer of full-RGB, stage 1, privacy (1+2) and ablations.

Heads from `privsplat synth` (ICT identities, ±3σ identities, expressions, nefertiti, and heads
scripts/make_head.py builds), 36 views with the rear views neutral, each rendered with each
appearance (textured: procedural skin-like texture; plaster: near-uniform albedo, so shading is
the only signal). Prints a markdown table and writes results.json, table.md and, per head and
appearance, turntables/<head>-<appearance>.png (rows: GT, full-RGB mesh, privacy mesh).

    .venv/bin/python scripts/bench_quality.py --out bench-quality [--heads ict1 mh ...] [--rows ...]
        [--appearances textured plaster] [--set seed=1]
    .venv/bin/python scripts/bench_quality.py --out merged --merge DIR [DIR ...]
    .venv/bin/python scripts/bench_quality.py --out DIR --rescore

--merge reads the results.json of several runs of this script (halves of the heads run in two
processes, or the same fits with other seeds) and writes one table: a fit present in several runs
counts with the mean of its metrics, and results.json keeps each run's Chamfer. --heads, --rows and
--appearances select what the table shows. --rescore scores the meshes of the fits in --out again
with the current evaluation (privsplat.eval.geometry) and rewrites its results.json and table.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HEADS = {
    "ict1": dict(mesh="ict", identity_seed=1),
    "ict2": dict(mesh="ict", identity_seed=2),
    "ict3": dict(mesh="ict", identity_seed=3),
    "ict1-jaw": dict(mesh="ict", identity_seed=1, expression=("jawOpen:0.6",)),
    "ict1-3s": dict(mesh="ict", identity_seed=1, identity_scale=3.0),
    "ict2-neg3s": dict(mesh="ict", identity_seed=2, identity_scale=-3.0),
    "ict1-smile": dict(mesh="ict", identity_seed=1, expression=("mouthSmile_L:1", "mouthSmile_R:1")),
    "nefertiti": dict(mesh="nefertiti"),
    "mh": dict(make_head=()),  # scripts/make_head.py with these arguments (cm, face +z)
    "mh-nose": dict(make_head=("--nose", "1.6", "--sockets", "1.4")),
}
APPEARANCES = ("textured", "plaster")
UNITS = {"nefertiti": "mm"}  # the others are in cm
# row -> (which folder: "rgb" = unprotected, "prot" = protected; config overrides)
ROWS = {
    "full-RGB": ("rgb", {}),
    "stage 1 only": ("prot", {"stage2_iters": 0}),
    "privacy (1+2)": ("prot", {}),
    "no colour reg": ("prot", {"colour_reg": "none"}),
    "colour frozen": ("prot", {"colour_reg": "freeze"}),
    "colour drift": ("prot", {"colour_reg": "drift"}),
    "depth shading": ("prot", {"stage2_shading": "depth"}),
    "plain SH colour": ("prot", {"colour_model": "sh"}),
    "stage 2 from template": ("prot", {"template": "always"}),
    "single stage (mixed)": ("prot", {"single_stage": True}),
}


def prepare(head: str, appearance: str, root: Path, resolution: int, neutral: int) -> tuple[Path, Path]:
    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.privacy.protect import protect

    name = f"{head}-{appearance}-{resolution}"
    data, prot = root / name, root / f"{name}-protected"
    if not (data / "gt_mesh.ply").exists():
        kw = dict(HEADS[head])
        if "make_head" in kw:
            mesh = root / f"{head}.ply"
            root.mkdir(parents=True, exist_ok=True)
            script = Path(__file__).with_name("make_head.py")
            subprocess.run([sys.executable, str(script), "--out", str(mesh), *kw.pop("make_head")], check=True)
            kw["mesh"] = str(mesh)
        synthesize(out=data, resolution=resolution, overwrite=True, appearance=appearance, **kw)
    if not (prot / "privsplat_manifest.json").exists():
        _, sensitive = rear_view_names(data, neutral)
        protect(data, prot, sensitive=",".join(sensitive), overwrite=True)
    return data, prot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-quality"))
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument(
        "--appearances", nargs="+", default=None, choices=APPEARANCES, help="default: textured (both with --merge)"
    )
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--neutral-views", type=int, default=15)
    ap.add_argument("--preset", default="head64")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = default)")
    ap.add_argument("--set", nargs="*", default=[], help="extra config overrides key=value (YAML values)")
    ap.add_argument("--merge", nargs="+", type=Path, help="merge these runs' results.json into --out (no fits)")
    ap.add_argument("--rescore", action="store_true", help="score the meshes of --out's fits again (no fits)")
    args = ap.parse_args()
    if args.rescore:
        return rescore(args)
    if args.merge:
        args.appearances = args.appearances or list(APPEARANCES)
        return merge(args)
    args.appearances = args.appearances or ["textured"]

    import yaml

    from privsplat.io import write_json
    from privsplat.pipeline import setup_logging
    from privsplat.train.config import load_preset

    setup_logging()
    base = load_preset(args.preset)
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    cases = [(h, a) for h in args.heads for a in args.appearances]
    for head, appearance in cases:
        case = f"{head}-{appearance}"
        data, prot = prepare(head, appearance, args.out / "data", args.resolution, args.neutral_views)
        for row in args.rows:
            if f"{case}|{row}" not in results:
                results[f"{case}|{row}"] = fit_row(
                    args, base.replace(**{**extra, **ROWS[row][1]}), case, row, data, prot
                )
                write_json(results_path, results)
        rgb, priv = (run_dir(args, case, r) for r in ("full-RGB", "privacy (1+2)"))
        if (rgb / "mesh.ply").is_file() and (priv / "mesh.ply").is_file():
            path = args.out / "turntables" / f"{case}.png"
            turntable(data / "gt_mesh.ply", rgb / "mesh.ply", priv / "mesh.ply", path)
            print(f"wrote {path}", flush=True)
        (args.out / "table.md").write_text(table(results, cases, args.rows, args.resolution))
    md = table(results, cases, args.rows, args.resolution)
    print(md)
    print(json.dumps(results, indent=1))
    return 0


METRICS = ("chamfer", "accuracy", "completeness", "normal_consistency", "fscore_1pct")


def merge(args) -> int:
    """One table from several runs' results: each fit's metrics averaged over the runs that have it."""
    from privsplat.io import write_json

    runs = [read_results(d) for d in args.merge]
    if any(r is None for r in runs):
        return 2
    merged: dict = {}
    for key in dict.fromkeys(k for r in runs for k in r):
        entries = [r[key] for r in runs if key in r]
        merged[key] = {**entries[0], **{m: float(np.mean([e[m] for e in entries])) for m in METRICS}}
        merged[key]["runs"] = len(entries)
        merged[key]["chamfer_runs"] = [e["chamfer"] for e in entries]
    cases, rows = cases_and_rows(merged, args.heads, args.appearances, args.rows)
    spread = [max(v["chamfer_runs"]) / min(v["chamfer_runs"]) for v in merged.values() if v["runs"] > 1]
    md = table(merged, cases, rows, args.resolution)
    if spread:
        counts = sorted({v["runs"] for v in merged.values()})
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        md += (
            f"Each Chamfer is the mean of {n} fits (seeds); max / min of a fit's runs: median "
            f"{np.median(spread):.3f}, largest {max(spread):.3f}.\n"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", merged)
    (args.out / "table.md").write_text(md)
    print(md)
    return 0


def read_results(folder: Path) -> dict | None:
    """folder/results.json as written by this script, or None (said on stderr) when it is missing."""
    path = folder / "results.json"
    if not path.is_file():
        print(f"error: {path} does not exist (pass folders this script wrote with --out)", file=sys.stderr)
        return None
    return json.loads(path.read_text())


def cases_and_rows(results: dict, heads, appearances, rows) -> tuple[list[tuple[str, str]], list[str]]:
    """The (head, appearance) cases and the rows of `results` that the table shows, in their order."""
    cases = [
        (h, a)
        for h, a in dict.fromkeys(tuple(v["head"].rsplit("-", 1)) for v in results.values())
        if h in heads and a in appearances
    ]
    return cases, [r for r in rows if any(v["row"] == r for v in results.values())]


def run_dir(args, case: str, row: str) -> Path:
    return args.out / "runs" / f"{case}-{args.resolution}-{row.replace(' ', '_').replace('(', '').replace(')', '')}"


def score(run: Path, data: Path) -> dict:
    """The face-region metrics of run/mesh.ply against the synth dataset's GT mesh and face mask."""
    from privsplat.eval.geometry import evaluate_mesh

    s = evaluate_mesh(run / "mesh.ply", data / "gt_mesh.ply", gt_face_mask=np.load(data / "gt_face_mask.npy"))
    return {
        "chamfer": s["chamfer"],
        "accuracy": s["accuracy"],
        "completeness": s["completeness"],
        "normal_consistency": s["normal_consistency"],
        "fscore_1pct": next(f["fscore"] for f in s["fscore"] if f["fraction_of_diagonal"] == 0.01),
        "face_region": s["face_region"],
    }


def rescore(args) -> int:
    """Score the meshes of the fits in --out again (the evaluation changed, the fits did not). Each
    entry keeps the scores it replaces under "previous_scores"."""
    from privsplat.io import write_json

    results = read_results(args.out)
    if results is None:
        return 2
    for key, entry in results.items():
        case, row = entry["head"], entry["row"]
        run, data = run_dir(args, case, row), args.out / "data" / f"{case}-{args.resolution}"
        if not (run / "mesh.ply").is_file() or not (data / "gt_mesh.ply").is_file():
            print(f"error: {key}: {run / 'mesh.ply'} or {data / 'gt_mesh.ply'} is missing", file=sys.stderr)
            return 2
        new = score(run, data)
        entry["previous_scores"] = {k: entry[k] for k in new if k in entry}
        entry.update(new)
        print(
            f"{case:20s} {row:24s} chamfer {entry['previous_scores']['chamfer']:.4f} -> {new['chamfer']:.4f}",
            flush=True,
        )
    write_json(args.out / "results.json", results)
    cases, rows = cases_and_rows(results, HEADS, APPEARANCES, ROWS)
    (args.out / "table.md").write_text(table(results, cases, rows, args.resolution))
    return 0


def fit_row(args, cfg, case: str, row: str, data: Path, prot: Path) -> dict:
    from privsplat.pipeline import fit_run

    run = run_dir(args, case, row)
    t = time.perf_counter()
    m = fit_run(
        data if ROWS[row][0] == "rgb" else prot,
        run,
        cfg,
        device=args.device,
        overwrite=True,
        progress=False,
        preset=args.preset,
        threads=args.threads,
    )
    scores = score(run, data)
    seconds = round(time.perf_counter() - t, 1)
    print(f"{case:20s} {row:24s} chamfer {scores['chamfer']:.4f}  ({seconds} s)", flush=True)
    return {
        "head": case,
        "row": row,
        **scores,
        "seconds": seconds,
        "fit_seconds": {k: v["seconds"] for k, v in m["stages"].items()},
        "surfels": m["surfels"],
        "device": m["device"],
    }


def turntable(gt: Path, rgb: Path, priv: Path, path: Path, views: int = 6, size: int = 128) -> None:
    """PNG with rows GT / full-RGB mesh / privacy mesh, `views` turns about +y from the front (+z)."""
    import cv2

    from privsplat.data.images import write_png
    from privsplat.eval.geometry import load_mesh
    from privsplat.eval.mesh_render import shade_mesh
    from privsplat.report import turntable_cameras

    meshes = [load_mesh(p) for p in (gt, rgb, priv)]
    Ks, w2cs, size = turntable_cameras(meshes[0][0], None, views, size)  # GT's cameras for all rows
    rows = []
    for (V, F), label in zip(meshes, ("GT", "full-RGB", "privacy")):
        img = np.round(np.concatenate(list(shade_mesh(V, F, Ks, w2cs, size, size)), axis=1) * 255).astype(np.uint8)
        cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
        rows.append(img)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, np.concatenate(rows, axis=0))


def table(results: dict, cases: list[tuple[str, str]], rows: list[str], resolution: int) -> str:
    """One line per head and appearance: each row's Chamfer, privacy / full-RGB (target ≤ 1.10) and
    stage 1 only / privacy (target ≥ 1.5), then each row's mean ratio to full-RGB."""
    priv, stage1 = "privacy (1+2)", "stage 1 only"
    ratios = [(priv, "full-RGB", "≤ 1.10", lambda r: r <= 1.10), (stage1, priv, "≥ 1.5", lambda r: r >= 1.5)]
    ratios = [q for q in ratios if q[0] in rows and q[1] in rows]
    lines = [
        f"Face-region Chamfer ({resolution} px, 36 views; ICT and make_head heads in cm, nefertiti in its "
        "mm-like units)",
        "",
        "| head | appearance | "
        + " | ".join(rows)
        + "".join(f" | {a} / {b}" for a, b, _, _ in ratios)
        + "".join(f" | {r}: {m}" for r in rows for m in ("NC", "F@1%") if r == "privacy (1+2)")
        + " |",
        "|---|---|" + "---|" * (len(rows) + len(ratios) + 2 * ("privacy (1+2)" in rows)),
    ]
    chamfer = {
        (c, r): results[f"{c}|{r}"]["chamfer"]
        for c in (f"{h}-{a}" for h, a in cases)
        for r in rows
        if f"{c}|{r}" in results
    }
    met = {a: [] for a, _, _, _ in ratios}
    for head, appearance in cases:
        c = f"{head}-{appearance}"
        cells = [f"{chamfer[c, r]:.4f}" if (c, r) in chamfer else "—" for r in rows]
        for a, b, _, ok in ratios:
            if (c, a) in chamfer and (c, b) in chamfer and chamfer[c, b] > 0:
                q = chamfer[c, a] / chamfer[c, b]
                met[a].append(ok(q))
                cells.append(f"{q:.2f}" + ("" if ok(q) else " ✗"))
            else:
                cells.append("—")
        if priv in rows:
            res = results.get(f"{c}|{priv}", {})
            cells += [f"{res[k]:.3f}" if k in res else "—" for k in ("normal_consistency", "fscore_1pct")]
        lines.append(f"| {head} ({UNITS.get(head, 'cm')}) | {appearance} | " + " | ".join(cells) + " |")
    means = []
    for r in rows:
        q = [chamfer[c, r] / chamfer[c, "full-RGB"] for c, rr in chamfer if rr == r and chamfer.get((c, "full-RGB"))]
        means.append(f"{np.mean(q):.3f}" if q else "—")
    extra = len(ratios) + 2 * (priv in rows)
    lines.append("| mean ratio to full-RGB | | " + " | ".join(means) + " |" + " |" * extra)
    lines.append("")
    for a, b, target, _ in ratios:
        lines.append(f"{a} / {b} {target}: met on {sum(met[a])} of {len(met[a])} heads × appearances.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
