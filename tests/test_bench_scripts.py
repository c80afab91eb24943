"""The benchmark scripts' own bookkeeping (the fits themselves are benchmarks, not tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _fit(head: str, row: str, chamfer: float) -> dict:
    return {
        "head": head,
        "row": row,
        "chamfer": chamfer,
        "accuracy": chamfer,
        "completeness": chamfer,
        "normal_consistency": 0.9,
        "fscore_1pct": 0.95,
        "seconds": 1.0,
    }


def test_bench_quality_merges_runs_and_averages_seeds(tmp_path):
    """Two seeds of one head and a half-table of another: one table, each fit the mean of its runs."""
    runs = {
        "seed0": {
            "mh-plaster|full-RGB": _fit("mh-plaster", "full-RGB", 0.10),
            "mh-plaster|privacy (1+2)": _fit("mh-plaster", "privacy (1+2)", 0.10),
        },
        "seed1": {
            "mh-plaster|full-RGB": _fit("mh-plaster", "full-RGB", 0.10),
            "mh-plaster|privacy (1+2)": _fit("mh-plaster", "privacy (1+2)", 0.14),
        },
        "other": {
            "ict1-textured|full-RGB": _fit("ict1-textured", "full-RGB", 0.20),
            "ict1-textured|privacy (1+2)": _fit("ict1-textured", "privacy (1+2)", 0.21),
        },
    }
    for name, results in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    out = tmp_path / "merged"
    cmd = [sys.executable, str(SCRIPTS / "bench_quality.py"), "--out", str(out), "--merge"]
    done = subprocess.run(cmd + [str(tmp_path / n) for n in runs], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    merged = json.loads((out / "results.json").read_text())
    assert abs(merged["mh-plaster|privacy (1+2)"]["chamfer"] - 0.12) < 1e-12
    assert merged["mh-plaster|privacy (1+2)"]["chamfer_runs"] == [0.10, 0.14]
    table = (out / "table.md").read_text()
    assert "| mh (cm) | plaster | 0.1000 | 0.1200 | 1.20 ✗ |" in table
    assert "| ict1 (cm) | textured | 0.2000 | 0.2100 | 1.05 |" in table
    assert "met on 1 of 2" in table and "max / min of a fit's runs: median" in table
    missing = subprocess.run(cmd + [str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
