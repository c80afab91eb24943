#!/usr/bin/env python
"""Table-2 reproduction: face-recognition verification share of each candidate set of fit runs.

For each run (a `privsplat fit` folder on a protected dataset) and the folder its data was
protected from, `privsplat privacy-eval --run` derives the sets: protected |g|, an inversion
attack on them, the fitted model's colour renders and shaded mesh.ply renders from the
sensitive cameras, and optionally a full-RGB fit's renders (--baseline-run). Shares are pooled
over the runs (verified pairs / pairs); with two or more distinct originals folders, a pooled
report across identities adds the false-accept column. Writes JSON + markdown, prints both.

    .venv/bin/python scripts/bench_privacy.py --demo /tmp/demo1 [--demo D2 ...]
    .venv/bin/python scripts/bench_privacy.py --run R1 --originals O1 [--baseline-run B1] --run R2 --originals O2
    (each --originals / --baseline-run pairs with the --run in the same position; one --originals
    for all runs is allowed; '-' as --baseline-run means none for that run)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Paper Table 2: FR verification accuracy (%), mean of 7 recognisers (deepface), heads at 64 px.
PAPER = {
    "original": 91.67,
    "protected": 6.05,
    "mesh renders (shaded)": 6.12,
    "model renders": 33.95,
    "full-RGB run renders": 77.64,
}
PAPER_LABEL = {
    "original": "original",
    "protected": "protected",
    "mesh renders (shaded)": "mesh renders",
    "model renders": "their renders",
    "full-RGB run renders": "VolSDF full-RGB renders",
}


def parse_cases(args) -> list[dict]:
    cases = [{"run": d / "run", "originals": d / "head", "baseline_run": None} for d in args.demo]
    runs = args.run or []
    if runs:
        origs = args.originals or []
        if len(origs) not in (1, len(runs)):
            sys.exit(f"give one --originals for all runs or one per --run ({len(runs)} runs, {len(origs)} given)")
        bases = args.baseline_run or []
        if bases and len(bases) != len(runs):
            sys.exit(f"give one --baseline-run per --run ('-' for none): {len(runs)} runs, {len(bases)} given")
        for i, run in enumerate(runs):
            base = bases[i] if bases else None
            cases.append(
                {
                    "run": run,
                    "originals": origs[0] if len(origs) == 1 else origs[i],
                    "baseline_run": None if base in (None, Path("-")) else base,
                }
            )
    if not cases:
        sys.exit("nothing to evaluate: pass --demo D or --run RUN --originals DIR")
    return cases


def pooled_share(reports: list[dict], name: str, column: str) -> dict | None:
    """Verified pairs / pairs of one set and column over several reports."""
    pairs = verified = 0
    dist = 0.0
    for r in reports:
        s = r["sets"].get(name, {}).get(column)
        if s and s["pairs"]:
            pairs += s["pairs"]
            verified += round(s["verified"] * s["pairs"])
            dist += s["mean_distance"] * s["pairs"]
    return {"pairs": pairs, "verified": verified / pairs, "mean_distance": dist / pairs} if pairs else None


def cross_identity_report(views_by_identity: dict[str, object], threshold: float) -> dict:
    """One report over several identities (one run each): keys become identity/frame."""
    from privsplat.eval.privacy import verification_report

    orig, faces, sets = {}, {}, {}
    for ident, v in views_by_identity.items():
        for k in v.originals:
            orig[f"{ident}/{k}"], faces[f"{ident}/{k}"] = v.originals[k], v.faces[k]
        for name, cands in v.sets.items():
            sets.setdefault(name, {}).update({f"{ident}/{k}": c for k, c in cands.items()})
    return verification_report(orig, sets, threshold, faces)


def table(results: dict) -> str:
    def pct(s):
        if s is None:
            return "—"
        return "no pairs" if s["verified"] is None else f"{100 * s['verified']:.1f}% ({s['pairs']})"

    runs = results["runs"]
    names = list(results["pooled"])
    lines = [
        f"Face verification share, dlib ResNet (distance < {results['threshold']}), landmarks from the "
        f"originals; {len(runs)} run(s), faces found in {results['faces_found']}/{results['originals']} "
        "protected views' originals (only those are scored). Paper: mean of 7 recognisers.",
        "",
        "| set | paper Table 2 | ours: same view | ours: cross view | ours: false accept | "
        + " | ".join(f"run {i + 1} same view" for i in range(len(runs)))
        + " |",
        "|---|---|---|---|---|" + "---|" * len(runs),
    ]
    for name in names:
        p = results["pooled"][name]
        paper = f"{PAPER[name]:.2f}% ({PAPER_LABEL[name]})" if name in PAPER else "— (not in the paper)"
        label = "original (liveness: other originals)" if name == "original" else name
        per_run = [
            pct(r["report"]["sets"].get(name, {}).get("same_view"))
            if name != "original"
            else pct(r["report"]["sets"]["original"]["cross_view"])
            for r in runs
        ]
        lines.append(
            f"| {label} | {paper} | {pct(p['same_view'])} | {pct(p['cross_view'])} | "
            f"{pct(p['false_accept'])} | " + " | ".join(per_run) + " |"
        )
    lines.append("")
    for i, r in enumerate(runs):
        lines.append(
            f"run {i + 1}: {r['run']} (originals {r['originals']}"
            + (f", baseline {r['baseline_run']}" if r["baseline_run"] else "")
            + f"; {r['seconds']} s)"
        )
    fa = results["pooled"]["original"]["false_accept"]
    if fa and fa["verified"] is not None and fa["verified"] >= 0.2:
        lines.append("")
        lines.append(
            f"WARNING: {100 * fa['verified']:.0f}% of pairs of originals of DIFFERENT identities are "
            "verified: the recogniser cannot tell these identities apart at this resolution, so a verified share "
            "above measures face-likeness, not identity leakage; compare each share with its false-accept "
            "column."
        )
    if results.get("false_accept_note"):
        lines.append("")
        lines.append(results["false_accept_note"])
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, action="append", default=[], help="a `privsplat demo --out D` folder")
    ap.add_argument("--run", type=Path, action="append", help="a `privsplat fit` run on a protected folder")
    ap.add_argument("--originals", type=Path, action="append", help="the folder the run's data was protected from")
    ap.add_argument("--baseline-run", type=Path, action="append", help="a full-RGB fit of the originals ('-': none)")
    ap.add_argument("--attack", choices=["optim", "poisson", "none"], default="optim")
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("bench-privacy"))
    args = ap.parse_args()
    cases = parse_cases(args)

    from privsplat.errors import PrivsplatError
    from privsplat.eval.privacy import collect_run_views, verification_report
    from privsplat.io import atomic_path, write_json

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    runs, views_by_originals = [], {}
    for case in cases:
        t = time.perf_counter()
        try:
            views = collect_run_views(
                case["run"], case["originals"], args.attack, case["baseline_run"], args.device, progress=say
            )
        except PrivsplatError as e:
            say(f"error: {e}")
            return 2
        report = verification_report(views.originals, views.sets, args.threshold, views.faces)
        report["inputs"] = views.inputs
        runs.append(
            {
                **{k: None if v is None else str(v) for k, v in case.items()},
                "seconds": round(time.perf_counter() - t, 1),
                "report": report,
            }
        )
        views_by_originals.setdefault(str(Path(case["originals"]).resolve()), views)  # one run per identity

    reports = [r["report"] for r in runs]
    names = list(dict.fromkeys(n for r in reports for n in r["sets"]))
    cross = None
    if len(views_by_originals) >= 2:
        ids = {f"id{i}": v for i, v in enumerate(views_by_originals.values())}
        cross = cross_identity_report(ids, args.threshold)
    pooled = {
        n: {
            "same_view": pooled_share(reports, n, "same_view"),
            "cross_view": pooled_share(reports, n, "cross_view"),
            "false_accept": cross["sets"].get(n, {}).get("false_accept") if cross else None,
        }
        for n in names
    }
    results = {
        "threshold": args.threshold,
        "attack": args.attack,
        "paper_table2": PAPER,
        "originals": sum(r["n_originals"] for r in reports),
        "faces_found": sum(r["n_faces_found"] for r in reports),
        "pooled": pooled,
        "runs": runs,
        "cross_identity": cross,
    }
    if cross is None:
        results["false_accept_note"] = (
            "false accept: needs runs of two or more distinct originals folders "
            "(identities); with one identity it is not measured."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", results)
    md = table(results)
    with atomic_path(args.out / "table.md") as tmp:
        tmp.write_text(md)
    print(json.dumps({k: v for k, v in results.items() if k not in ("runs", "cross_identity")}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
