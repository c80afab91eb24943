"""privsplat.threads: the CPU thread policy, checked in fresh interpreters (the OpenMP
runtime reads its environment once, when torch is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from privsplat.errors import PrivsplatError
from privsplat.threads import configure_cpu_threads, usable_cores

PROBE = r"""
import json, os, sys
from privsplat.threads import configure_cpu_threads
early = sys.argv[1] == "early"
if not early:
    import torch
n = configure_cpu_threads(int(sys.argv[2]))
import torch
print(json.dumps({"returned": n, "torch": torch.get_num_threads(), "wait": os.environ.get("OMP_WAIT_POLICY"),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""


pytestmark = pytest.mark.slow  # fresh interpreters: ~16 s


def probe(when: str, threads: int, **env) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, when, str(threads)],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_automatic_default_uses_every_core_and_passive_waiting():
    r = probe("early", 0)
    assert r == {"returned": usable_cores(), "torch": usable_cores(), "wait": "PASSIVE", "omp": str(usable_cores())}


def test_explicit_count_wins_over_the_environment():
    r = probe("early", 1, OMP_NUM_THREADS="2")
    assert (r["returned"], r["torch"], r["omp"]) == (1, 1, "1")


def test_user_environment_is_respected():
    r = probe("early", 0, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert (r["returned"], r["torch"], r["wait"]) == (1, 1, "ACTIVE")


def test_after_torch_import_the_count_still_applies():
    r = probe("late", 1)
    assert (r["returned"], r["torch"]) == (1, 1)


def test_negative_count_is_a_user_error():
    with pytest.raises(PrivsplatError, match="--threads"):
        configure_cpu_threads(-1)
