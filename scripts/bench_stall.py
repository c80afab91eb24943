#!/usr/bin/env python
"""Thread-stall benchmark: a short `privsplat fit` alone and beside one busy-loop process.

Prints one JSON document. For each thread policy it runs the same fit (same data, seed
and iterations, --no-mesh) alone and while one single-threaded busy loop runs, and reports
the stage seconds (the training steps, from the fit log), wall seconds and the ratio
beside/alone. Policies:
  old:  torch's defaults (one spinning OpenMP thread per core), what main did before
  new:  privsplat.threads.configure_cpu_threads(0) before torch loads (the CLI default)
  one:  --threads 1
The target is ratio <= 2.5 for "new". Timings are noisy on a shared machine: every run
also records the 1-minute load average before it started.

    .venv/bin/python scripts/bench_stall.py [--iters 60] [--policies old new one] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The driver runs the real CLI in a fresh interpreter. "old" replaces configure_cpu_threads
# by a no-op (and drops OMP_WAIT_POLICY) so that it reproduces the previous default even
# once the CLI calls it; "new" calls it explicitly, which is harmless if the CLI also does.
DRIVER = r"""
import sys
policy, argv = sys.argv[1], sys.argv[2:]
import privsplat.threads as threads
if policy == "old":
    threads.configure_cpu_threads = lambda threads=0: 0
elif policy == "new":
    threads.configure_cpu_threads(0)
from privsplat.commands import main
sys.exit(main(argv))
"""

BUSY = "while True:\n    pass\n"
STAGE_RE = re.compile(r"(\w+) done: (\d+) iterations in ([\d.]+) s")


def make_data(root: Path, resolution: int, views: int) -> Path:
    data = root / "synth"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "privsplat",
            "synth",
            "--out",
            str(data),
            "--views",
            str(views),
            "--resolution",
            str(resolution),
        ],
        check=True,
        capture_output=True,
        env=_env("one"),
    )
    return data


def _env(policy: str) -> dict:
    env = dict(os.environ)
    for var in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT"):
        env.pop(var, None)  # every policy starts from a clean environment
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_fit(policy: str, data: Path, out: Path, iters: int, timeout: float) -> dict:
    argv = [
        "fit",
        "--data",
        str(data),
        "--out",
        str(out),
        "--overwrite",
        "--no-mesh",
        "--no-progress",
        "--stage1-iters",
        str(iters),
        "--stage2-iters",
        "0",
        "--seed",
        "0",
    ]
    if policy == "one":
        argv += ["--threads", "1"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, policy, *argv],
            capture_output=True,
            text=True,
            env=_env(policy),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"wall_s": None, "stage_s": None, "timed_out": True, "load_before": round(load, 2)}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fit failed ({policy}):\n{proc.stderr[-3000:]}")
    stages = [(m.group(1), int(m.group(2)), float(m.group(3))) for m in STAGE_RE.finditer(proc.stderr + proc.stdout)]
    stage_s = sum(s for _, _, s in stages) if stages else None
    return {
        "wall_s": round(wall, 2),
        "stage_s": stage_s,
        "iters": sum(i for _, i, _ in stages),
        "load_before": round(load, 2),
    }


def measure(policy: str, data: Path, root: Path, iters: int, timeout: float, busy: bool) -> dict:
    proc = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        if busy:
            time.sleep(0.5)  # let the busy loop own a core
        return run_fit(policy, data, root / f"run-{policy}-{int(busy)}", iters, timeout)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=60, help="stage-1 iterations per fit")
    ap.add_argument("--resolution", type=int, default=48)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--policies", nargs="+", default=["old", "new", "one"], choices=["old", "new", "one"])
    ap.add_argument("--repeats", type=int, default=1, help="runs per (policy, alone/beside); the median is used")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a fit counts as stalled")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="privsplat-stall-") as tmp:
        root = Path(tmp)
        data = make_data(root, args.resolution, args.views)
        for policy in args.policies:
            row = {}
            for busy in (False, True):
                runs = [measure(policy, data, root, args.iters, args.timeout, busy) for _ in range(args.repeats)]
                key = "beside_busy" if busy else "alone"
                row[key] = runs
                row[key + "_stage_s"] = _median([r["stage_s"] for r in runs])
                print(json.dumps({policy: {key: runs}}), file=sys.stderr, flush=True)
            a, b = row["alone_stage_s"], row["beside_busy_stage_s"]
            row["ratio"] = round(b / a, 2) if a and b else None
            results[policy] = row
    doc = {
        "benchmark": "stall",
        "iters": args.iters,
        "resolution": args.resolution,
        "views": args.views,
        "cores": os.cpu_count(),
        "note": "shared machine: timings are noisy (see load_before)",
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    return 0


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


if __name__ == "__main__":
    sys.exit(main())
