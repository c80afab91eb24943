"""`privsplat render-bench`: time the surfel rasterizer (JSON)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..errors import PrivsplatError
from ..io import atomic_path
from ..render.bench import DEFAULT_CASES, bench_case, parse_case, plan_backends
from ..threads import configure_cpu_threads


@dataclass
class RenderBench:
    """Time the surfel rasterizer (forward, forward+backward) on head-like scenes."""

    backends: Literal["auto", "torch", "numba", "gsplat", "all"] = "auto"
    """auto: gsplat with CUDA, else numba; all: torch and numba on CPU (+ torch and gsplat on CUDA)."""
    repeats: int = 10
    """timed repetitions per case (median reported); at least 10."""
    cases: tuple[str, ...] = DEFAULT_CASES
    """N_SURFELSxIMAGE_SIZE per case."""
    json_out: Path | None = None
    """also write the JSON here."""
    seed: int = 0
    threads: int = 0
    """CPU threads (0 = one per core; waiting threads sleep, so a busy machine does not stall the fit)."""

    def run(self) -> dict:
        configure_cpu_threads(self.threads)

        if self.repeats < 10:
            raise PrivsplatError(f"--repeats must be at least 10 for a stable median, got {self.repeats}")
        cases = [parse_case(c) for c in self.cases]
        results = []
        for backend, device in plan_backends(self.backends):
            for n, size in cases:
                results.append(bench_case(backend, device, n, size, self.repeats, self.seed))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        doc = {
            "benchmark": "render",
            "repeats": self.repeats,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "results": results,
        }
        text = json.dumps(doc, indent=2)
        print(text)
        if self.json_out is not None:
            with atomic_path(self.json_out) as tmp:
                Path(tmp).write_text(text + "\n")
        return doc
