"""Cohorts on a real Dask cluster (a scheduler and two worker processes on loopback): the same grids as one
process, the rerun that skips, a damaged slide among good ones, and a worker killed in the middle of a slide."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from core.cohort import PredictOptions, done_with, plan_cohort, run_cohort, weights_sha256
from core.cohort.outputs import predict_to_folder
from core.inference.predict import ProbabilityGrid
from tests.core.cohort.dask_cluster import DEMO_MODEL, wait_until_idle

OPTIONS = PredictOptions(threshold=0.5, device="cpu", tiff=False)
FILES = ["grid.npz", "heatmap.png", "overview.png", "tiles.csv"]


def assert_same_grid(a_folder, b_folder):
    a, b = ProbabilityGrid.load(a_folder / "grid.npz"), ProbabilityGrid.load(b_folder / "grid.npz")
    assert b.complete and np.array_equal(np.isnan(a.probs), np.isnan(b.probs))
    assert np.nanmax(np.abs(a.probs - b.probs)) <= 1e-5
    assert a.model["sha256"] == b.model["sha256"]


def test_the_cluster_gives_a_plain_runs_folders(dask_cluster, cohort_slides, plain_run, tmp_path):
    out = tmp_path / "cohort"
    plan = plan_cohort(cohort_slides, out, DEMO_MODEL, OPTIONS)
    reports = []
    with dask_cluster.client() as client:
        workers = set(client.scheduler_info()["workers"])
        result = run_cohort(client, plan, on_tiles=reports.append)
    assert not result.failed and sorted(s["name"] for s in result.done) == ["case-0", "case-1", "case-2"]
    for summary in result.done:
        assert summary["worker"] in workers and summary["tiles"] > 0 and summary["tiles_per_s"] > 0
        json.dumps(summary)  # a small summary, never arrays
    assert {r["name"] for r in reports} == {"case-0", "case-1", "case-2"}
    assert all(0 < r["done"] <= r["total"] for r in reports)
    for slide in cohort_slides:
        folder = out / slide.stem
        assert sorted(p.name for p in folder.iterdir()) == FILES
        assert_same_grid(plain_run / slide.stem, folder)
        assert (folder / "tiles.csv").read_text() == (plain_run / slide.stem / "tiles.csv").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["case-0", "case-1", "case-2"]  # nothing half-written


def test_done_slides_are_skipped_for_the_same_weights_only(plain_run, cohort_slides, tmp_path):
    sha = weights_sha256(DEMO_MODEL)
    assert done_with(plain_run / "case-0", sha)
    assert not done_with(plain_run / "case-0", "0" * 64)
    assert not done_with(plain_run / "case-0", sha, precision="int8")
    assert not done_with(tmp_path / "missing", sha)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "grid.npz").write_bytes(b"half a file")
    assert not done_with(tmp_path / "damaged", sha)
    plan = plan_cohort(cohort_slides, plain_run, DEMO_MODEL, OPTIONS)
    assert plan.jobs == [] and [name for name, _ in plan.skipped] == ["case-0", "case-1", "case-2"]
    assert len(plan_cohort(cohort_slides, plain_run, DEMO_MODEL, OPTIONS, force=True).jobs) == 3


def test_a_damaged_slide_is_named_and_the_others_finish(dask_cluster, cohort_slides, tmp_path):
    broken = tmp_path / "broken.tiff"
    broken.write_bytes(b"II*\x00 this is not a slide")
    plan = plan_cohort([cohort_slides[0], broken], tmp_path / "out", DEMO_MODEL, OPTIONS)
    with dask_cluster.client() as client:
        result = run_cohort(client, plan)
    assert [s["name"] for s in result.done] == ["case-0"]
    [(name, message)] = result.failed
    assert name == "broken" and str(broken) in message and "Traceback" not in message
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case-0"]


def test_a_worker_killed_mid_slide_has_its_slide_redone(dask_cluster, cohort_slides, tmp_path):
    # overlapping tiles one per batch: the slide takes many batches, and the kill comes after the first
    options = PredictOptions(threshold=0.5, device="cpu", tiff=False, stride=128, batch=1)
    plan = plan_cohort(cohort_slides[2:], tmp_path / "out", DEMO_MODEL, options)
    killed = {}
    with dask_cluster.client() as client:
        pids = client.run(os.getpid)

        def kill_on_first_report(report):
            if not killed and report["done"] < report["total"]:
                killed.update(report, pid=pids[report["worker"]])
                os.kill(killed["pid"], signal.SIGKILL)

        result = run_cohort(client, plan, on_tiles=kill_on_first_report)
        client.wait_for_workers(2, timeout=120)  # the nanny starts the killed one again, for the other tests
    assert killed, "no tile report arrived before the slide finished"
    assert not result.failed
    [summary] = result.done
    assert summary["pid"] != killed["pid"]
    reference = tmp_path / "reference"
    predict_to_folder(cohort_slides[2], reference, DEMO_MODEL, options)
    assert_same_grid(reference, tmp_path / "out" / "case-2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case-2"]


def _worker_state() -> dict:
    import sys

    return {"mxnet_loaded": "mxnet" in sys.modules, "omp": os.environ.get("OMP_NUM_THREADS")}


def test_a_local_cluster_spawns_its_workers_and_shares_the_cores(plain_run):
    import sys

    from core.cohort.cluster import cohort_client, worker_environment

    assert "mxnet" in sys.modules  # this process has loaded MXNet (the plain run): a fork would inherit it
    with cohort_client(workers=2, timeout=120) as (client, info):
        states = client.run(_worker_state)
    assert info.local and info.workers == 2 and info.dashboard.startswith("http://127.0.0.1:")
    assert len(states) == 2
    assert all(not s["mxnet_loaded"] and s["omp"] == worker_environment(2)["OMP_NUM_THREADS"] for s in states.values()), \
        states


def test_an_unreachable_scheduler_is_one_clear_error():
    from core.cohort.cluster import cohort_client
    from core.errors import BiopsiaError

    with pytest.raises(BiopsiaError, match="tcp://127.0.0.1:9: cannot reach the Dask scheduler"):
        with cohort_client(scheduler="tcp://127.0.0.1:9", timeout=2):
            pass


def test_should_stop_cancels_and_leaves_only_complete_slides(dask_cluster, cohort_slides, tmp_path):

    from core.errors import Cancelled

    out = tmp_path / "out"
    plan = plan_cohort(cohort_slides * 2, out, DEMO_MODEL, OPTIONS)
    finished = []
    with dask_cluster.client() as client:
        with pytest.raises(Cancelled, match="6 slides cancelled"):
            run_cohort(client, plan, on_done=finished.append, should_stop=lambda: bool(finished))
        wait_until_idle(client)  # the tasks under way see the cancel event and stop, or finish writing
    kept = sorted(p.name for p in out.iterdir())
    assert finished and not any(name.startswith(".") for name in kept)
    for name in kept:
        assert ProbabilityGrid.load(out / name / "grid.npz").complete


def test_a_resolution_stored_here_travels_with_the_slide(cohort_slides, tmp_path):
    from core.project.mpp import remember_file_mpp

    remember_file_mpp(cohort_slides[1], 0.45)
    jobs = plan_cohort(cohort_slides, tmp_path / "out", DEMO_MODEL, OPTIONS).jobs
    assert [job.options.slide_mpp for job in jobs] == [None, (0.45, 0.45), None]
    given = PredictOptions(threshold=0.5, slide_mpp=(0.5, 0.5))
    assert all(job.options.slide_mpp == (0.5, 0.5) for job in plan_cohort(cohort_slides, tmp_path, DEMO_MODEL, given).jobs)


def test_a_folder_that_cannot_be_written_is_said_plainly(tmp_path):
    from core.cohort.run import _describe

    err = PermissionError(13, "Permission denied", str(tmp_path / "case-0" / "grid.npz"))
    assert _describe(err) == "cannot write its results (grid.npz: Permission denied); nothing of this run was kept there"


def test_a_stop_asked_for_during_the_last_batch_writes_nothing(cohort_slides, tmp_path):
    from core.errors import Cancelled

    stop = {}

    def progress(done, total):
        if done == total:
            stop["asked"] = True  # after the last batch: the grid is complete, the folder not yet written

    with pytest.raises(Cancelled, match="nothing was written"):
        predict_to_folder(cohort_slides[0], tmp_path / "case-0", DEMO_MODEL, OPTIONS, progress=progress,
                          should_stop=lambda: stop.get("asked", False))
    assert stop and not (tmp_path / "case-0").exists() and list(tmp_path.iterdir()) == []
