"""privsplat batch: job lists, the driver-side protection check, and (slow) Ray runs with a bad
job, a killed worker that resumes from its checkpoint, and a re-run that skips finished jobs."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from privsplat.errors import PrivsplatError

# Tiny fits: about ten seconds each on a busy 2-core CPU.
TINY = {
    "n_init": 400,
    "stage1_iters": 40,
    "stage2_iters": 20,
    "stage2_settle_iters": 0,
    "checkpoint_every": 20,
    "mesh_orbit_views": 4,
    "mesh_resolution": 64,
}


def _yaml(path, jobs: list[dict]):
    import yaml

    path.write_text(yaml.safe_dump(jobs, sort_keys=False))
    return path


# --- job lists and the driver-side check (no Ray) --------------------------------------------


def test_yaml_jobs_resolve_paths_against_the_file(tmp_path, protected_head):
    from privsplat.batch import load_jobs

    (tmp_path / "sub").mkdir()
    jobs = load_jobs(
        _yaml(
            tmp_path / "sub" / "jobs.yaml",
            [
                {"dataset": str(protected_head), "name": "a", "overrides": {"stage1_iters": 7}, "gt": "../gt.ply"},
                str(protected_head.parent / "head"),
            ],
        )
    )
    assert [j.name for j in jobs] == ["a", "head"]
    assert jobs[0].gt == tmp_path / "gt.ply" and jobs[0].overrides == {"stage1_iters": 7}
    assert jobs[1].dataset == protected_head.resolve() and jobs[1].preset == "head64"


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"dataset": "x", "presett": "head64"}], "unknown keys"),
        ([{"dataset": "x", "name": "j"}, {"dataset": "y", "name": "j"}], "more than once"),
        ([{"name": "no-dataset"}], "'dataset' key"),
        ([], "non-empty list"),
        ([{"dataset": "x", "overrides": [1]}], "'overrides' must be a mapping"),
    ],
)
def test_bad_job_lists_are_refused_whole(tmp_path, entries, message):
    from privsplat.batch import load_jobs

    with pytest.raises(PrivsplatError, match=message):
        load_jobs(_yaml(tmp_path / "jobs.yaml", entries))


def test_folder_of_datasets_is_one_job_per_subfolder(tmp_path, protected_head):
    from privsplat.batch import load_jobs

    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    assert [(j.name, j.dataset) for j in load_jobs(tmp_path)] == [("a", tmp_path / "a"), ("b", tmp_path / "b")]
    with pytest.raises(PrivsplatError, match="one dataset, not a folder of datasets"):
        load_jobs(protected_head)


def test_driver_check_refuses_unprotected_and_altered_inputs(synth_head, protected_head, copy_of):
    from privsplat.batch import Job, check_job

    check_job(Job("ok", protected_head, overrides=TINY))  # passes
    with pytest.raises(PrivsplatError, match="not a protected dataset"):
        check_job(Job("raw", synth_head))
    check_job(Job("raw", synth_head), allow_unprotected=True)  # the explicit opt-in
    # A sensitive frame whose |g| was swapped for its original RGB: refused before scheduling.
    bad = copy_of(protected_head)
    manifest = json.loads((bad / "privsplat_manifest.json").read_text())
    sensitive = next(f["name"] for f in manifest["frames"] if f["kind"] == "protected")
    (bad / "protected" / f"{sensitive}.png").write_bytes((synth_head / "images" / f"{sensitive}.png").read_bytes())
    with pytest.raises(PrivsplatError, match="changed after protection"):
        check_job(Job("swapped", bad))
    # ... even when the manifest's hash is forged to match.
    from privsplat.io import sha256_file

    manifest["files"][f"protected/{sensitive}.png"] = sha256_file(bad / "protected" / f"{sensitive}.png")
    (bad / "privsplat_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PrivsplatError, match="is not a protected"):
        check_job(Job("forged", bad))
    with pytest.raises(PrivsplatError, match="unknown config keys"):
        check_job(Job("typo", protected_head, overrides={"stage1_iter": 5}))
    with pytest.raises(PrivsplatError, match="does not exist"):
        check_job(Job("nogt", protected_head, gt=protected_head / "missing.ply"))


@pytest.mark.slow  # two short fits
def test_job_error_is_recorded_and_a_rerun_resumes(protected_head, tmp_path):
    """run_job (the Ray task's body, called here directly): a job failing late (a ground truth
    that is no mesh) returns its clean error; run again, it resumes from the finished checkpoint."""
    from privsplat.batch import Job, read_attempts, run_job

    empty = tmp_path / "empty.ply"
    empty.write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    spec = Job("j", protected_head, overrides=TINY, gt=empty).spec()
    run = tmp_path / "out" / "j"
    res = run_job(spec, str(run), "cpu", 1)
    assert res["status"] == "failed" and "has no triangles" in res["error"]
    assert (run / "mesh.ply").is_file() and not (run / "report.html").exists()
    res = run_job(spec, str(run), "cpu", 1)
    attempts = read_attempts(run)
    assert res["status"] == "failed" and [a["pid"] for a in attempts] == [os.getpid()] * 2
    assert "resumed_from" not in attempts[0] and attempts[1]["resumed_from"] == {"stage_index": 2, "step": 0}
    assert "has no triangles" in (tmp_path / "out" / ".batch" / "j" / "job.log").read_text()
    # A checkpoint that is not one (truncated, foreign): a clean per-job error, never executed.
    (run / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    res = run_job(spec, str(run), "cpu", 1)
    assert res["status"] == "failed" and "checkpoint" in res["error"] and "refused" in res["error"]
    assert "refused" in read_attempts(run)[2]["checkpoint_error"]
    from privsplat.pipeline import LOCK_NAME, RUN_OUTPUTS

    assert {p.name for p in run.iterdir()} <= {*RUN_OUTPUTS, LOCK_NAME}  # the batch's own files live elsewhere


def test_rerun_skips_done_and_refuses_a_changed_spec_without_starting_ray(protected_head, synth_head, tmp_path):
    from privsplat.batch import Job, run_batch
    from privsplat.io import write_json

    out = tmp_path / "out"
    done, changed = Job("done", protected_head, overrides=TINY), Job("changed", protected_head, overrides=TINY)
    write_json(
        out / ".batch" / "done" / "job.json",
        {"spec": done.resolved().spec(), "status": "done", "seconds": 12.5, "attempts": 1, "summary": {"surfels": 77}},
    )
    (out / "done").mkdir()
    (out / "done" / "report.html").write_text("<html></html>")
    old = Job("changed", protected_head, overrides={**TINY, "seed": 5}).resolved().spec()
    write_json(out / ".batch" / "changed" / "job.json", {"spec": old, "status": "failed"})
    (out / "changed" / "checkpoints").mkdir(parents=True)
    summary = run_batch([done, changed, Job("raw", synth_head)], out)
    rows = {r["name"]: r for r in summary["jobs"]}
    assert rows["done"]["status"] == "skipped" and rows["done"]["surfels"] == 77 and rows["done"]["seconds"] == 12.5
    assert rows["changed"]["status"] == "refused" and "different job spec" in rows["changed"]["error"]
    assert rows["raw"]["status"] == "refused"
    assert json.loads((out / ".batch" / "changed" / "job.json").read_text())["spec"] == old  # left as it was
    assert 'href="done/report.html"' in (out / "index.html").read_text()


# --- on Ray (local, 2 CPUs) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=80 * 2**20,
            logging_level="ERROR",
        )
    except Exception as e:  # no /dev/shm, no ports, a sandbox: skip rather than fail
        pytest.skip(f"Ray cannot start here: {e}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_three_jobs_one_bad_then_a_rerun_skips_the_finished(local_ray, protected_head, synth_head, tmp_path):
    from privsplat.batch import read_attempts, run_batch

    jobs = _yaml(
        tmp_path / "jobs.yaml",
        [
            {
                "name": "a",
                "dataset": str(protected_head),
                "overrides": TINY,
                "gt": str(synth_head / "gt_mesh.ply"),
                "gt_face_mask": str(synth_head / "gt_face_mask.npy"),
            },
            {"name": "b", "dataset": str(protected_head), "overrides": {**TINY, "seed": 1}},
            {"name": "bad", "dataset": str(synth_head), "overrides": TINY},  # not protected
        ],
    )
    out = tmp_path / "out"
    seen = []
    summary = run_batch(jobs, out, poll_s=0.5, on_progress=seen.append)
    rows = {r["name"]: r for r in summary["jobs"]}
    assert summary["counts"] == {"done": 2, "skipped": 0, "failed": 0, "refused": 1}
    assert "not a protected dataset" in rows["bad"]["error"] and rows["bad"]["report"] is None
    assert read_attempts(out / "bad") == [] and not (out / "bad").exists()  # refused on the driver
    assert rows["a"]["log"] == ".batch/a/job.log" and 'href=".batch/a/job.log"' in (out / "index.html").read_text()
    assert 0 < rows["a"]["chamfer"] < 5 and (out / "a" / "eval.json").is_file()
    assert "chamfer" not in rows["b"] and rows["b"]["surfels"] > 0
    # Progress went through running to done, and the summary links every finished job's report.
    assert max(p.running for p in seen) >= 1 and seen[-1].done == 2 and seen[-1].eta_s == 0
    index = (out / "index.html").read_text()
    for name in ("a", "b"):
        assert rows[name]["report"] == f"{name}/report.html" and (out / name / "report.html").is_file()
        assert f'href="{name}/report.html"' in index
    assert len((out / "summary.md").read_text().splitlines()) == 4 + 3
    assert json.loads((out / "summary.json").read_text()) == summary

    t0 = time.time()
    again = run_batch(jobs, out, poll_s=0.5)
    assert again["counts"] == {"done": 0, "skipped": 2, "failed": 0, "refused": 1}
    assert all(len(read_attempts(out / n)) == 1 for n in ("a", "b"))  # no job started again
    assert time.time() - t0 < 20


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(local_ray, protected_head, tmp_path):
    from privsplat.batch import Job, read_attempts, run_batch

    job = Job("k", protected_head, overrides={**TINY, "stage1_iters": 300, "stage2_iters": 100})
    out = tmp_path / "out"
    run = out / "k"
    killed = []

    def kill_once(progress):
        # Kill the worker process (not this driver) once it has written a checkpoint.
        attempts = read_attempts(run)
        if not killed and attempts and (run / "checkpoints" / "latest.pt").is_file():
            os.kill(attempts[0]["pid"], signal.SIGKILL)
            killed.append(attempts[0]["pid"])

    summary = run_batch([job], out, max_retries=2, poll_s=0.2, on_progress=kill_once)
    assert killed and killed[0] != os.getpid()
    row = summary["jobs"][0]
    assert row["status"] == "done" and row["attempts"] == 2
    first, second = read_attempts(run)
    assert second["pid"] != first["pid"]
    resumed = second["resumed_from"]
    assert (resumed["stage_index"], resumed["step"]) > (0, 0)  # from the checkpoint, not from scratch
    assert "resumed at" in (out / ".batch" / "k" / "job.log").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"]["stage1"]["iterations"] == 300 and metrics["stages"]["stage2"]["iterations"] == 100
    assert (run / "report.html").is_file()


@pytest.mark.slow
def test_worker_dying_more_often_than_retries_fails_that_job_only(local_ray, protected_head, tmp_path):
    from privsplat.batch import Job, read_attempts, run_batch

    job = Job("dies", protected_head, overrides={**TINY, "stage1_iters": 300, "stage2_iters": 100})
    run = tmp_path / "out" / "dies"
    killed = set()

    def kill_each(progress):
        for a in read_attempts(run):
            if a["pid"] not in killed:
                os.kill(a["pid"], signal.SIGKILL)
                killed.add(a["pid"])

    summary = run_batch([job], tmp_path / "out", max_retries=1, poll_s=0.2, on_progress=kill_each)
    row = summary["jobs"][0]
    assert row["status"] == "failed" and "worker died 2 times" in row["error"] and len(killed) == 2
