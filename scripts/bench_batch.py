"""Batch benchmark: N demo-sized jobs, one after another vs `privsplat batch` on local Ray.

Each job is the demo's dataset for a different ICT identity (36 views at 64 px, the 15 rear
views RGB, the rest protected) fitted with the head64 preset. Both sides do the same work per
job (privsplat.batch.run_job: fit -> mesh -> eval -> report, one torch thread):
- sequential: each job in its own fresh Python process, one after another (what typing
  `privsplat fit` N times does);
- batch: run_batch on a local Ray with --cpus CPUs and 1 CPU per job.

    .venv/bin/python scripts/bench_batch.py --out /tmp/bench_batch            # 4 demo-sized jobs
    .venv/bin/python scripts/bench_batch.py --out /tmp/bb --size small        # a quick check

Prints JSON (also written to OUT/bench_batch.json). Timings on a shared machine are noisy.
Ray workers import privsplat from the driver's working directory first: while the tree is being
edited, run from outside it (e.g. `git archive HEAD privsplat configs` into a folder on
PYTHONPATH, `cd /tmp`), or the two sides may run different code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SIZES = {
    # views, resolution, neutral views, config overrides on head64
    "demo": (36, 64, 15, {}),
    "small": (12, 32, 5, {"n_init": 1000, "stage1_iters": 300, "stage2_iters": 150, "mesh_orbit_views": 8}),
}


def make_datasets(root: Path, n: int, size: str) -> list[Path]:
    from privsplat.data.synth import rear_view_names, synthesize
    from privsplat.privacy.protect import protect

    views, res, neutral, _ = SIZES[size]
    out = []
    for i in range(n):
        raw, prot = root / "raw" / f"ict{i + 1}", root / "jobs" / f"ict{i + 1}"
        if not _loads(prot):  # made by an older privsplat (or never): make it again
            synthesize(mesh="ict", out=raw, views=views, resolution=res, identity_seed=i + 1, overwrite=True)
            _, sensitive = rear_view_names(raw, neutral)
            protect(raw, prot, sensitive=",".join(sensitive), resolution=res, overwrite=True, verbose=False)
        out.append(prot)
    return out


def _loads(folder: Path) -> bool:
    from privsplat.data import load_dataset
    from privsplat.errors import PrivsplatError

    try:
        return folder.is_dir() and load_dataset(folder).protection is not None
    except PrivsplatError:
        return False


def jobs_for(datasets: list[Path], root: Path, size: str):
    from privsplat.batch import Job

    overrides = SIZES[size][3]
    return [
        Job(
            d.name,
            d,
            "head64",
            dict(overrides),
            root / "raw" / d.name / "gt_mesh.ply",
            root / "raw" / d.name / "gt_face_mask.npy",
        )
        for d in datasets
    ]


def run_sequential(jobs, out: Path) -> dict:
    per_job = []
    t0 = time.perf_counter()
    for job in jobs:
        code = (
            "import json,sys; from privsplat.batch import run_job; "
            "r = run_job(json.loads(sys.argv[1]), sys.argv[2], 'cpu', 1); "
            "sys.exit(r['status'] != 'done')"
        )
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(job.spec()), str(out / job.name)],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        per_job.append(round(time.perf_counter() - t, 1))
    return {"wall_s": round(time.perf_counter() - t0, 1), "per_job_s": per_job, **_fit_times(jobs, out)}


def run_ray_batch(jobs, out: Path, cpus: int) -> dict:
    from privsplat.batch import run_batch

    t0 = time.perf_counter()
    summary = run_batch(jobs, out, num_cpus=cpus, cpus_per_job=1, max_retries=1, poll_s=1.0)
    wall = time.perf_counter() - t0
    bad = [j for j in summary["jobs"] if j["status"] != "done"]
    if bad:
        raise SystemExit(f"batch jobs failed: {bad}")
    return {"wall_s": round(wall, 1), "per_job_s": [j["seconds"] for j in summary["jobs"]], **_fit_times(jobs, out)}


def _fit_times(jobs, out: Path) -> dict:
    metrics = [json.loads((out / j.name / "metrics.json").read_text()) for j in jobs]
    evals = [json.loads((out / j.name / "eval.json").read_text()) for j in jobs]
    return {
        "fit_mesh_s": [m["total_seconds"] for m in metrics],
        "face_chamfer_cm": [round(e["chamfer"], 4) for e in evals],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench_batch"))
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (1 per job)")
    ap.add_argument("--size", choices=sorted(SIZES), default="demo")
    ap.add_argument("--skip-sequential", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import ray

    datasets = make_datasets(args.out, args.jobs, args.size)
    jobs = jobs_for(datasets, args.out, args.size)
    result = {
        "jobs": args.jobs,
        "size": args.size,
        "ray_cpus": args.cpus,
        "cpus_per_job": 1,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work; timings noisy)",
        "python": platform.python_version(),
        "ray": ray.__version__,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The batch first: on a machine others share, its number is the one this benchmark is for.
    result["batch"] = run_ray_batch(jobs, args.out / f"batch-{stamp}", args.cpus)
    _write(args.out, result)
    if not args.skip_sequential:
        result["sequential"] = run_sequential(jobs, args.out / f"seq-{stamp}")
    if "sequential" in result:
        result["speedup"] = round(result["sequential"]["wall_s"] / result["batch"]["wall_s"], 2)
    print(_write(args.out, result))


def _write(out: Path, result: dict) -> str:
    text = json.dumps(result, indent=2)
    (out / "bench_batch.json").write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
