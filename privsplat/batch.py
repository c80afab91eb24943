"""`privsplat batch`: many fits at once, each a Ray task (fit → mesh → eval → report).

Scaling out uses Ray (PyPI `ray`), not a home-made job runner: without an address a local Ray
instance sized to the machine is started; with `--address auto` or `ray://HOST:PORT` the jobs
run on an existing cluster (every node needs privsplat installed and the datasets and --out on
a shared filesystem at the same paths).

What runs where:
- on the driver (this process): reading JOBS, and checking every job's input before anything
  is scheduled: the preset and overrides parse, the dataset has a protection manifest and
  `load_dataset` verifies it (every file's SHA-256, every sensitive frame a protected |g|
  image). A job that fails the check is refused whole and never reaches a worker.
- on a worker (one Ray task per job, with the CPUs/GPUs asked for): `fit_run` (which verifies
  the manifest again), the mesh, the geometry eval when ground truth is given, the report.

Retries: a task whose worker process dies (killed, out of memory, node lost) is retried by Ray
up to max_retries times and resumes from RUN/checkpoints/latest.pt. A job that fails with an
error (bad input, a bug) is not retried: its error is recorded and the other jobs go on.
Re-running the same command skips the jobs that finished.
"""

from __future__ import annotations

import html
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import PrivsplatError

log = logging.getLogger("privsplat")

# The batch's own files live in DIR/.batch/<job>/, not in the run folder DIR/<job>/: a run folder
# holds what a fit writes and nothing else (fit --overwrite refuses a folder with foreign files).
STATE_DIR = ".batch"
JOB_RECORD = "job.json"  # the job's spec, status, error, attempts, seconds
ATTEMPTS_LOG = "attempts.jsonl"  # one line per start of the job's task
JOB_LOG = "job.log"  # the job's log lines
ERROR_TXT = "error.txt"  # the traceback of an unexpected exception
JOB_KEYS = {"name", "dataset", "preset", "overrides", "gt", "gt_face_mask"}
FINAL = ("done", "skipped", "failed", "refused")


@dataclass
class Job:
    """One dataset to reconstruct. Paths are absolute once loaded."""

    name: str
    dataset: Path
    preset: str = "head64"
    overrides: dict[str, Any] = field(default_factory=dict)  # FitConfig fields over the preset
    gt: Path | None = None  # ground-truth mesh: evaluate mesh.ply against it
    gt_face_mask: Path | None = None  # per-GT-vertex .npy: score the face region only

    def spec(self) -> dict:
        """JSON form: what a finished job is compared with on a re-run."""
        return {
            "name": self.name,
            "dataset": str(self.dataset),
            "preset": self.preset,
            "overrides": self.overrides,
            "gt": str(self.gt) if self.gt else None,
            "gt_face_mask": str(self.gt_face_mask) if self.gt_face_mask else None,
        }

    def resolved(self) -> "Job":
        """The same job with absolute paths: a Ray worker's working directory is not the driver's."""

        def res(p):
            return None if p is None else Path(p).expanduser().resolve()

        return Job(
            self.name, res(self.dataset), self.preset, dict(self.overrides), res(self.gt), res(self.gt_face_mask)
        )

    @classmethod
    def from_spec(cls, d: dict) -> "Job":
        return cls(
            d["name"],
            Path(d["dataset"]),
            d["preset"],
            dict(d["overrides"]),
            Path(d["gt"]) if d.get("gt") else None,
            Path(d["gt_face_mask"]) if d.get("gt_face_mask") else None,
        )


@dataclass
class JobResult:
    name: str
    status: str  # done | skipped (done by an earlier run) | failed | refused
    run_dir: Path
    error: str | None = None
    seconds: float | None = None  # from the first attempt's start on a worker to the end (not queueing)
    attempts: int = 0
    summary: dict = field(default_factory=dict)  # a few numbers from metrics.json / eval.json


@dataclass
class Progress:
    """Where the batch stands; passed to run_batch's on_progress after every poll."""

    done: int
    running: int
    queued: int
    failed: int
    total: int
    elapsed_s: float
    eta_s: float | None
    running_jobs: list[str]

    def line(self) -> str:
        eta = "?" if self.eta_s is None else _duration(self.eta_s)
        return (
            f"batch: {self.done}/{self.total} done, {self.running} running, {self.queued} queued, "
            f"{self.failed} failed; {_duration(self.elapsed_s)} elapsed, ETA {eta}"
        )


def state_dir(run_dir: Path) -> Path:
    """DIR/.batch/<job> for the run folder DIR/<job>: where the batch keeps its files about the job."""
    run_dir = Path(run_dir)
    return run_dir.parent / STATE_DIR / run_dir.name


# --- reading JOBS ----------------------------------------------------------------------------


def load_jobs(jobs: str | Path) -> list[Job]:
    """A folder of datasets (every non-hidden sub-folder is one job, named after it) or a YAML
    list of {dataset, name?, preset?, overrides?, gt?, gt_face_mask?} (paths relative to the
    YAML file's folder)."""
    path = Path(jobs)
    if path.is_dir():
        return _jobs_from_folder(path)
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        return _jobs_from_yaml(path)
    raise PrivsplatError(f"JOBS {path} is neither a folder of datasets nor a .yaml job list")


def _jobs_from_folder(root: Path) -> list[Job]:
    if any((root / n).exists() for n in ("transforms.json", "cameras.npz", "sparse")):
        raise PrivsplatError(
            f"{root} is one dataset, not a folder of datasets; pass its parent folder or list it in a .yaml job file"
        )
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise PrivsplatError(f"{root} holds no dataset folders; put one protected dataset per sub-folder")
    return [Job(p.name, p.resolve()) for p in subs]


def _jobs_from_yaml(path: Path) -> list[Job]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PrivsplatError(f"{path} is not valid YAML ({e})") from None
    if isinstance(data, dict) and "jobs" in data:
        data = data["jobs"]
    if not isinstance(data, list) or not data:
        raise PrivsplatError(f"{path} must hold a non-empty list of jobs (each a mapping with 'dataset')")
    base = path.parent.resolve()
    jobs = [_job_from_entry(entry, i, base, path) for i, entry in enumerate(data)]
    names = [j.name for j in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PrivsplatError(f"{path}: job names {dupes} appear more than once; give each job a unique 'name'")
    return jobs


def _job_from_entry(entry, i: int, base: Path, path: Path) -> Job:
    if isinstance(entry, str):
        entry = {"dataset": entry}
    if not isinstance(entry, dict) or "dataset" not in entry:
        raise PrivsplatError(f"{path}: job {i + 1} must be a mapping with a 'dataset' key")
    unknown = sorted(set(entry) - JOB_KEYS)
    if unknown:
        raise PrivsplatError(f"{path}: job {i + 1} has unknown keys {unknown}; valid keys: {sorted(JOB_KEYS)}")
    overrides = entry.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise PrivsplatError(f"{path}: job {i + 1}: 'overrides' must be a mapping of config keys to values")

    def resolve(p):
        return None if p is None else (base / Path(str(p)).expanduser()).resolve()

    dataset = resolve(entry["dataset"])
    name = str(entry.get("name") or dataset.name)
    if not name or "/" in name or name.startswith("."):
        raise PrivsplatError(f"{path}: job {i + 1} has an unusable name {name!r} (it names a folder in --out)")
    return Job(
        name,
        dataset,
        str(entry.get("preset", "head64")),
        overrides,
        resolve(entry.get("gt")),
        resolve(entry.get("gt_face_mask")),
    )


# --- the driver-side check -------------------------------------------------------------------


def job_config(job: Job):
    """The job's FitConfig: its preset with its overrides (unknown keys raise PrivsplatError)."""
    from .train.config import FitConfig, load_preset

    cfg = load_preset(job.preset)
    if not job.overrides:
        return cfg
    return FitConfig.from_dict({**cfg.to_dict(), **job.overrides})


def check_job(job: Job, allow_unprotected: bool = False) -> None:
    """Raise PrivsplatError unless the job may be scheduled: only protected data reaches a worker."""
    from .data import load_dataset

    job_config(job)
    if not job.dataset.is_dir():
        raise PrivsplatError(f"dataset folder {job.dataset} does not exist")
    # Verifies the manifest (every file's SHA-256; every sensitive frame a protected |g| image).
    dataset = load_dataset(job.dataset, warn_unprotected=False)
    if dataset.protection is None and not allow_unprotected:
        raise PrivsplatError(
            f"{job.dataset} has no protection manifest: it is not a protected dataset. Run "
            "`privsplat protect` on it first (a batch only takes protected data)"
        )
    for what, p in (("gt", job.gt), ("gt_face_mask", job.gt_face_mask)):
        if p is not None and not p.is_file():
            raise PrivsplatError(f"{what} file {p} does not exist")


# --- the task (runs on a Ray worker) ---------------------------------------------------------


def run_job(spec: dict, run_dir: str, device: str = "cpu", threads: int = 1) -> dict:
    """fit → mesh → (eval) → report for one job; resumes from the run's checkpoint when there
    is one (a retried task whose worker died). Returns {"status", "error"?, "summary"}."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    run, state = Path(run_dir), state_dir(Path(run_dir))
    state.mkdir(parents=True, exist_ok=True)
    job = Job.from_spec(spec)
    logger = logging.getLogger("privsplat")
    handler, level = _log_to_file(state / JOB_LOG), logger.level
    try:
        resume = (run / "checkpoints" / "latest.pt").is_file()
        _record_attempt(run, resume)
        try:
            return {"status": "done", "summary": _pipeline(job, run, device, threads, resume)}
        except PrivsplatError as e:
            log.error("privsplat: error: %s", e)
            return {"status": "failed", "error": str(e)}
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _pipeline(job: Job, run: Path, device: str, threads: int, resume: bool) -> dict:
    from .io import write_json
    from .pipeline import fit_run
    from .report import EVAL_NAME, write_report

    # overwrite=True without a checkpoint: a failed earlier attempt may have left some outputs.
    metrics = fit_run(
        job.dataset,
        run,
        job_config(job),
        device=device,
        resume=resume,
        overwrite=not resume,
        progress=False,
        preset=job.preset,
        threads=threads,
        mesh=True,
        report=False,
    )
    summary = {"surfels": metrics.get("surfels"), "fit_mesh_seconds": metrics.get("total_seconds")}
    if job.gt is not None:
        from .eval.geometry import evaluate_mesh

        scores = evaluate_mesh(run / "mesh.ply", job.gt, gt_face_mask=job.gt_face_mask)
        write_json(run / EVAL_NAME, scores)
        summary["chamfer"] = scores["chamfer"]
        summary["normal_consistency"] = scores["normal_consistency"]
    write_report(run)
    return summary


def _log_to_file(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("privsplat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # a fresh Ray worker has no logging set up
    return handler


def _record_attempt(run: Path, resume: bool) -> None:
    """One line per start of the task: its process (what an operator kills or inspects) and,
    on a retry, the checkpoint it resumes from."""
    from .run import RunFolder

    rec: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    if resume:
        try:
            state = RunFolder(run).load_checkpoint("cpu")
            rec["resumed_from"] = {"stage_index": state["stage_index"], "step": state["step"]}
        except PrivsplatError as e:  # fit_run refuses it too, and the job fails with this message
            rec["checkpoint_error"] = str(e)
    with open(state_dir(run) / ATTEMPTS_LOG, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_attempts(run: Path) -> list[dict]:
    """The task starts of the job whose run folder is `run` (pid, host, started, resumed_from)."""
    path = state_dir(run) / ATTEMPTS_LOG
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


# --- the driver ------------------------------------------------------------------------------


def run_batch(
    jobs: str | Path | list[Job],
    out: str | Path,
    address: str | None = None,
    gpus_per_job: float = 0,
    cpus_per_job: float = 1,
    max_retries: int = 2,
    *,
    num_cpus: int | None = None,
    allow_unprotected: bool = False,
    poll_s: float = 2.0,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict:
    """Run every job as a Ray task; write DIR/summary.json, summary.md and index.html.

    address: None = start a local Ray sized to the machine (num_cpus: override its CPU count);
        "auto" or "ray://HOST:PORT" = an existing cluster. A Ray already initialised in this
        process (a notebook, the tests) is used as it is.
    max_retries: how often a job whose worker dies is restarted (from its checkpoint).
    Returns the summary (also DIR/summary.json).
    """
    out = Path(out).resolve()
    job_list = [j.resolved() for j in (jobs if isinstance(jobs, list) else load_jobs(jobs))]
    names = [j.name for j in job_list]
    if len(set(names)) != len(names):
        raise PrivsplatError(f"job names must be unique (each names a folder in {out}); got {names}")
    if cpus_per_job <= 0 or gpus_per_job < 0 or max_retries < 0:
        raise PrivsplatError("--cpus-per-job must be > 0, --gpus-per-job and --max-retries >= 0")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict[str, JobResult] = {}
    to_run: list[Job] = []
    for job in job_list:
        r = _before_scheduling(job, out, allow_unprotected)
        if r is None:
            to_run.append(job)
        else:
            results[job.name] = r
    log.info(
        "batch: %d jobs: %d to run, %d already done, %d refused",
        len(job_list),
        len(to_run),
        sum(r.status == "skipped" for r in results.values()),
        sum(r.status == "refused" for r in results.values()),
    )
    if to_run:
        _run_on_ray(
            to_run, out, results, address, gpus_per_job, cpus_per_job, max_retries, num_cpus, poll_s, on_progress, t0
        )
    summary = write_summary(out, [results[j.name] for j in job_list], time.time() - t0)
    log.info("batch: %s", ", ".join(f"{v} {k}" for k, v in summary["counts"].items() if v) or "nothing to do")
    return summary


def _before_scheduling(job: Job, out: Path, allow_unprotected: bool) -> JobResult | None:
    """None when the job is to run; else its result (skipped: finished earlier; refused: bad input)."""
    run = out / job.name
    prev = _read_json(state_dir(run) / JOB_RECORD)
    if prev and prev.get("spec") != job.spec() and (run / "checkpoints").exists():
        # Resuming (or skipping) a run of another dataset, preset or overrides would be wrong.
        return JobResult(
            job.name,
            "refused",
            run,
            error=(
                f"{run} holds a run of a different job spec (dataset, preset or overrides changed); "
                "delete that folder or use another --out"
            ),
        )
    if prev and prev.get("status") == "done" and (run / "report.html").is_file():
        return JobResult(
            job.name,
            "skipped",
            run,
            seconds=prev.get("seconds"),
            attempts=prev.get("attempts", 0),
            summary=prev.get("summary", {}),
        )
    try:
        check_job(job, allow_unprotected)
    except PrivsplatError as e:
        return _record(JobResult(job.name, "refused", run, error=str(e)), job)
    return None


def _run_on_ray(
    jobs: list[Job],
    out: Path,
    results: dict[str, JobResult],
    address,
    gpus,
    cpus,
    retries,
    num_cpus,
    poll_s,
    on_progress,
    t0,
) -> None:
    ray, started = _start_ray(address, num_cpus)
    try:
        task = ray.remote(run_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False)
        slots = _slots(ray, cpus, gpus)
        device, threads = ("cuda" if gpus > 0 else "cpu"), max(1, int(cpus))
        pending = {task.remote(j.spec(), str(out / j.name), device, threads): j for j in jobs}
        durations: list[float] = []
        last_counts: tuple = ()
        last_time = 0.0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll_s)
            for ref in ready:
                job = pending.pop(ref)
                r = _collect(ray, ref, job, out / job.name, retries)
                results[job.name] = _record(r, job)
                durations.append(r.seconds or 0.0)  # a job that failed late took its time too
                log.info("batch: %s %s%s", job.name, r.status, f": {r.error}" if r.error else "")
            p = _progress(jobs, pending, results, out, durations, slots, t0)
            counts = (p.done, p.running, p.queued, p.failed)
            if counts != last_counts or time.time() - last_time > 60:  # on change, else once a minute
                log.info("%s", p.line())
                last_counts, last_time = counts, time.time()
            if on_progress is not None:
                on_progress(p)
    finally:
        if started:
            ray.shutdown()


def _start_ray(address: str | None, num_cpus: int | None):
    try:
        import ray
    except ImportError:
        raise PrivsplatError("privsplat batch needs Ray: pip install 'ray>=2.9'") from None
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError... for the same cause
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise PrivsplatError(
            f"could not start or reach {where}: {e}. Check `ray status` (cluster) "
            "or run without --address for a local instance"
        ) from None
    return ray, True


def _slots(ray, cpus: float, gpus: float) -> int:
    """How many jobs fit on the cluster at once (for the ETA)."""
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // cpus)
    if gpus > 0:
        n = min(n, int(res.get("GPU", 0) // gpus))
    return max(n, 1)


def _collect(ray, ref, job: Job, run: Path, retries: int) -> JobResult:
    from ray.exceptions import RayTaskError, TaskCancelledError, WorkerCrashedError

    starts = read_attempts(run)
    seconds = time.time() - starts[0]["started"] if starts else 0.0
    attempts = len(starts)
    try:
        res = ray.get(ref)
    except RayTaskError as e:  # an unexpected exception in the job: a bug, not bad input
        cause = e.cause if getattr(e, "cause", None) is not None else e
        _write_traceback(run, str(e))
        return JobResult(
            job.name,
            "failed",
            run,
            f"{type(cause).__name__}: {cause} (traceback in {STATE_DIR}/{run.name}/{ERROR_TXT})",
            round(seconds, 2),
            attempts,
        )
    except (WorkerCrashedError, TaskCancelledError) as e:
        return JobResult(
            job.name,
            "failed",
            run,
            f"its worker died {retries + 1} times (out of memory? "
            f"see {STATE_DIR}/{run.name}/{JOB_LOG}): {type(e).__name__}",
            round(seconds, 2),
            attempts,
        )
    except Exception as e:  # other Ray system errors (node lost, object lost)
        return JobResult(job.name, "failed", run, f"Ray error: {type(e).__name__}: {e}", round(seconds, 2), attempts)
    return JobResult(
        job.name, res["status"], run, res.get("error"), round(seconds, 2), attempts, res.get("summary", {})
    )


def _write_traceback(run: Path, text: str) -> None:
    state_dir(run).mkdir(parents=True, exist_ok=True)
    (state_dir(run) / ERROR_TXT).write_text(text)


def _progress(jobs, pending, results, out, durations, slots, t0) -> Progress:
    # A pending task is running once its attempt is logged (a queued one has not started).
    logs = {j.name: state_dir(out / j.name) / ATTEMPTS_LOG for j in pending.values()}
    running = [n for n, p in logs.items() if p.is_file() and p.stat().st_mtime >= t0]
    done = sum(r.status in ("done", "skipped") for r in results.values())
    failed = sum(r.status in ("failed", "refused") for r in results.values())
    left = len(pending)
    eta = None
    if durations:  # the jobs left, in waves of `slots`, each as long as the mean finished job
        waves = -(-left // min(slots, left)) if left else 0
        eta = sum(durations) / len(durations) * waves
    return Progress(
        done, len(running), left - len(running), failed, len(results) + left, time.time() - t0, eta, running
    )


def _record(r: JobResult, job: Job) -> JobResult:
    """Write RUN/batch_job.json (what a re-run reads to skip finished jobs)."""
    from .io import write_json

    write_json(
        state_dir(r.run_dir) / JOB_RECORD,
        {
            "spec": job.spec(),
            "status": r.status,
            "error": r.error,
            "seconds": r.seconds,
            "attempts": r.attempts,
            "summary": r.summary,
            "finished": time.time(),
        },
    )
    return r


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --- the summary -----------------------------------------------------------------------------


def write_summary(out: Path, results: list[JobResult], wall_s: float) -> dict:
    """DIR/summary.json, summary.md (a table) and index.html (links to every job's report)."""
    from .io import atomic_path, write_json

    rows = [_summary_row(out, r) for r in results]
    counts = {s: sum(r.status == s for r in results) for s in FINAL}
    summary = {"jobs": rows, "counts": counts, "wall_seconds": round(wall_s, 2)}
    write_json(out / "summary.json", summary)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(_markdown(rows, counts, wall_s))
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(_index_html(rows, counts, wall_s), encoding="utf-8")
    return summary


def _summary_row(out: Path, r: JobResult) -> dict:
    report, job_log = r.run_dir / "report.html", state_dir(r.run_dir) / JOB_LOG
    return {
        "name": r.name,
        "status": r.status,
        "error": r.error,
        "seconds": r.seconds,
        "attempts": r.attempts,
        "run_dir": os.path.relpath(r.run_dir, out),
        "report": os.path.relpath(report, out) if report.is_file() else None,
        "log": os.path.relpath(job_log, out) if job_log.is_file() else None,
        **r.summary,
    }


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _markdown(rows: list[dict], counts: dict, wall_s: float) -> str:
    lines = [
        f"# privsplat batch: {', '.join(f'{v} {k}' for k, v in counts.items() if v)} in {_duration(wall_s)}",
        "",
        "| job | status | seconds | attempts | surfels | Chamfer | report | error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        link = " ".join(f"[{k}]({r[k]})" for k in ("report", "log") if r[k])
        err = (r["error"] or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['name']} | {r['status']} | {_fmt(r['seconds'])} | {r['attempts']} | "
            f"{_fmt(r.get('surfels'))} | {_fmt(r.get('chamfer'))} | {link} | {err} |"
        )
    return "\n".join(lines) + "\n"


def _index_html(rows: list[dict], counts: dict, wall_s: float) -> str:
    colour = {"done": "#060", "skipped": "#060", "failed": "#a00", "refused": "#a00"}
    body = []
    for r in rows:
        name = html.escape(r["name"])
        link = f'<a href="{html.escape(r["report"])}">{name}</a>' if r["report"] else name
        if r["log"]:
            link += f' <small>(<a href="{html.escape(r["log"])}">log</a>)</small>'
        body.append(
            f'<tr><td>{link}</td><td style="color:{colour.get(r["status"], "#000")}">{r["status"]}</td>'
            f"<td>{_fmt(r['seconds'])}</td><td>{r['attempts']}</td><td>{_fmt(r.get('surfels'))}</td>"
            f"<td>{_fmt(r.get('chamfer'))}</td><td>{html.escape(r['error'] or '')}</td></tr>"
        )
    head = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>privsplat batch</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ddd;padding:3px 10px;text-align:left;vertical-align:top}"
        "td:last-child{max-width:40em}</style></head><body>"
        f"<h1>privsplat batch</h1><p>{html.escape(head)} in {_duration(wall_s)}</p>"
        "<table><tr><th>job</th><th>status</th><th>seconds</th><th>attempts</th><th>surfels</th>"
        "<th>Chamfer</th><th>error</th></tr>" + "".join(body) + "</table></body></html>\n"
    )


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


__all__ = [
    "Job",
    "JobResult",
    "Progress",
    "load_jobs",
    "check_job",
    "run_job",
    "run_batch",
    "write_summary",
    "read_attempts",
]
