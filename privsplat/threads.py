"""CPU thread settings that survive a busy machine.

Why a fit stalled 40-100x beside one other CPU-bound process: torch's CPU kernels run in
an OpenMP (libgomp) thread team, and libgomp's default wait policy spins at every barrier
before it sleeps. With as many threads as cores and one core taken by another process,
one team thread is descheduled for a whole scheduler slice while its partner spins at the
barrier, on every one of the thousands of small parallel ops in a training step.
OMP_WAIT_POLICY=PASSIVE makes waiting threads sleep at once, which removes the stall
(scripts/bench_stall.py measures it); one thread removes it too, at the cost of the
second core when the machine is idle.

libgomp reads OMP_WAIT_POLICY and OMP_NUM_THREADS once, when it is loaded, which happens
at `import torch`; so `configure_cpu_threads` must run before torch is imported to take
full effect (the CLI calls it first thing). If torch is already imported it still sets
the thread count through torch.set_num_threads, but the wait policy can no longer change.
"""

from __future__ import annotations

import os
import sys

# Environment variables read by the OpenMP runtime(s) and numba when they load.
_WAIT_POLICY = "OMP_WAIT_POLICY"
# (numba's pool size is not set here: changing NUMBA_NUM_THREADS after numba started its
# threads is an error; the numba rasterizer follows torch.get_num_threads() per call instead)
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (affinity mask / cgroup cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def configure_cpu_threads(threads: int = 0) -> int:
    """Set the CPU thread policy for torch; returns the intra-op thread count.

    threads > 0: use exactly that many. threads == 0: respect OMP_NUM_THREADS if the user set
    it, else one thread per usable core. Either way, waiting threads sleep instead of spin
    (OMP_WAIT_POLICY=PASSIVE) unless the user chose a wait policy.
    """
    from .errors import PrivsplatError

    if threads < 0:
        raise PrivsplatError(f"--threads must be 0 (automatic) or a positive count, got {threads}")
    os.environ.setdefault(_WAIT_POLICY, "PASSIVE")
    if threads > 0:
        count = threads
    else:
        count = _env_count("OMP_NUM_THREADS") or usable_cores()
    for var in _THREAD_VARS:
        if threads > 0 or var not in os.environ:
            os.environ[var] = str(count)
    if "torch" in sys.modules:  # too late for the environment: set the count directly
        import torch

        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
    return count


def _env_count(var: str) -> int:
    try:
        return max(0, int(os.environ.get(var, "0")))
    except ValueError:
        return 0


def wait_policy_active() -> bool:
    """True when OpenMP threads will spin while they wait (the stall-prone default)."""
    return os.environ.get(_WAIT_POLICY, "").upper() != "PASSIVE"
