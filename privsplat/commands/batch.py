"""`privsplat batch`: many protected datasets as Ray tasks, with a summary linking every report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from ..batch import run_batch
from ..errors import PrivsplatError
from ..pipeline import setup_logging


@dataclass
class Batch:
    """Fit many protected datasets as Ray tasks (fit -> mesh -> eval -> report each); a summary with
    links to every report in --out/index.html. Only protected data is scheduled: each job's input is
    verified against its manifest here first, and refused whole otherwise."""

    jobs: tyro.conf.Positional[Path]
    """A folder of protected datasets (one job per sub-folder) or a YAML list of
    {dataset, name?, preset?, overrides?, gt?, gt_face_mask?}."""
    out: Path
    """Folder for one run folder per job, summary.json, summary.md and index.html."""
    address: Optional[str] = None
    """Ray cluster: 'auto' (the `ray start` cluster this machine belongs to) or ray://HOST:PORT;
    default: a local Ray sized to this machine."""
    gpus_per_job: float = 0
    cpus_per_job: float = 1
    max_retries: int = 2
    """Restarts of a job whose worker dies; it resumes from its last checkpoint."""
    num_cpus: int = 0
    """Local Ray only: CPUs to use (0 = all)."""
    allow_unprotected: bool = False
    """Also take datasets without a protection manifest (full-RGB baselines)."""

    def run(self) -> None:
        setup_logging()
        summary = run_batch(
            self.jobs,
            self.out,
            self.address,
            self.gpus_per_job,
            self.cpus_per_job,
            self.max_retries,
            num_cpus=self.num_cpus or None,
            allow_unprotected=self.allow_unprotected,
        )
        print(self.out / "index.html")
        bad = summary["counts"]["failed"] + summary["counts"]["refused"]
        if bad:  # non-zero exit when any job did not finish
            raise PrivsplatError(
                f"{bad} of {len(summary['jobs'])} jobs failed or were refused; see {self.out / 'summary.md'}"
            )
