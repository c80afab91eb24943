#!/usr/bin/env python
"""CPU rasterizer benchmark: torch vs numba backends, forward and forward+backward.

Prints one JSON document: per backend and case (N_SURFELSxSIZE, the head-like scenes of
`privsplat render-bench`) the median fwd and fwd+bwd milliseconds of a 2DGS training
loss, the pair counts (composited pairs; box / span / evaluated candidates for numba),
the numba JIT cost (first call in this process: compile, or load from numba's cache) and
the process peak RSS. Single-threaded by default; the machine may be shared, so medians
over --repeats runs are reported, wall clock and process CPU time (which excludes the time
other processes held the core), plus the least CPU time seen, and the load average.

    .venv/bin/python scripts/bench_render.py [--backends torch numba] [--cases 20000x64 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

DEFAULT_CASES = ("5000x64", "20000x64", "20000x128", "50000x256")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=["torch", "numba"], choices=["torch", "numba"])
    ap.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch (and numba) CPU threads")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()

    from privsplat.threads import configure_cpu_threads

    configure_cpu_threads(args.threads)  # before torch loads
    import torch

    from privsplat.render.bench import _training_loss, head_scene

    impls = {}
    jit_s = None
    if "torch" in args.backends:
        from privsplat.render.torch_backend import rasterize_torch

        impls["torch"] = rasterize_torch
    if "numba" in args.backends:
        t0 = time.perf_counter()
        from privsplat.render.numba_backend import rasterize_numba

        impls["numba"] = rasterize_numba
        jit_s = {"import_s": round(time.perf_counter() - t0, 2)}
    results = []
    for backend, fn in impls.items():
        for case in args.cases:
            n, size = (int(x) for x in case.lower().split("x"))
            means, quats, scales, opac, colors, cams = head_scene(n, size, 0)
            params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]

            def fwd():
                return fn(*params, cams)

            def fwd_bwd():
                out = fwd()
                _training_loss(out).backward()
                for p in params:
                    p.grad = None

            t0 = time.perf_counter()
            fwd_bwd()  # warm-up (the numba kernels compile or load from cache on the first call)
            if backend == "numba" and "first_call_s" not in jit_s:
                jit_s["first_call_s"] = round(time.perf_counter() - t0, 2)
            with torch.no_grad():
                out = fwd()
            row = {"backend": backend, "n_surfels": n, "size": size, "load_avg_1m": round(os.getloadavg()[0], 2)}
            for name, f in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
                wall, cpu = _times_ms(f, args.repeats)
                row[f"{name}_ms"] = _median(wall)  # wall clock, median
                row[f"{name}_cpu_ms"] = _median(cpu)  # process CPU time, median
                row[f"{name}_cpu_min_ms"] = min(cpu)  # least disturbed run
            for key in ("n_pairs", "n_candidates", "n_box_pixels", "n_span_pixels"):
                if out.meta.get(key) is not None:
                    row[key] = out.meta[key]
            row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    doc = {
        "benchmark": "render-cpu",
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "numba_jit": jit_s,
        "cpu_count": os.cpu_count(),
        "note": "shared machine: timings are noisy (see load_avg_1m per case)",
        "results": results,
    }
    if "numba" in impls:
        import numba

        doc["numba"] = numba.__version__
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(text + "\n")
    return 0


def _times_ms(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU milliseconds per run. With one thread on a shared machine the CPU
    time excludes the time other processes held the core, so it is the steadier number."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(round((time.perf_counter() - t0) * 1e3, 2))
        cpu.append(round((time.process_time() - c0) * 1e3, 2))
    return wall, cpu


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


if __name__ == "__main__":
    sys.exit(main())
