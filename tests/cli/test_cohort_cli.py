"""``biopsia predict --scheduler`` / ``--workers`` run as a user runs them: lines per slide and where it ran,
a damaged slide named, the rerun that skips and ``--force``, and Ctrl+C leaving only complete slides."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import numpy as np

from core.inference.predict import ProbabilityGrid
from tests.cli.test_cli import ROOT, biopsia
from tests.core.cohort.dask_cluster import DEMO_MODEL, START_S, copy_slides, worker_env

FILES = ["grid.npz", "heatmap.png", "overview.png", "tiles.csv"]


def test_predict_on_a_scheduler_skips_on_rerun(dask_cluster, cohort_slides, plain_run, tmp_path):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    out = tmp_path / "out"
    common = ("--model", DEMO_MODEL, "--out", out, "--device", "cpu", "--no-tiff", "--scheduler", dask_cluster.address)
    done = biopsia("predict", *cohort_slides, broken, *common, timeout=600)
    assert done.returncode == 1, done.stderr  # one slide failed, the others were done
    assert f"{broken}" in done.stderr and "Traceback" not in done.stderr
    assert f"the cluster at {dask_cluster.address} (2 workers)" in done.stderr and "dashboard http" in done.stderr
    assert "on the cluster's workers (--device cpu)" in done.stderr
    for slide in cohort_slides:
        [line] = [s for s in done.stdout.splitlines() if s.startswith(f"{out / slide.stem}: ")]
        assert "tiles/s) on tcp://127.0.0.1:" in line
        assert sorted(p.name for p in (out / slide.stem).iterdir()) == FILES
        a = ProbabilityGrid.load(plain_run / slide.stem / "grid.npz")
        b = ProbabilityGrid.load(out / slide.stem / "grid.npz")
        assert np.nanmax(np.abs(a.probs - b.probs)) <= 1e-5
    assert sorted(p.name for p in out.iterdir()) == ["case-0", "case-1", "case-2"]
    # evaluate works unchanged on a cohort's folder (the synthetic slides' marks lie beside them)
    evaluated = biopsia("evaluate", out, "--threshold", "0.5", "--html", tmp_path / "report.html")
    assert evaluated.returncode == 0, evaluated.stderr
    assert [line.split(":")[0] for line in evaluated.stdout.splitlines()[:3]] == ["case-0", "case-1", "case-2"]
    assert (tmp_path / "report.html").stat().st_size > 0

    before = {s.stem: (out / s.stem / "grid.npz").stat().st_mtime_ns for s in cohort_slides}
    again = biopsia("predict", *cohort_slides, *common, timeout=600)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped, done already with this model's weights") == 3
    assert "nothing to run" in again.stderr and again.stdout == ""
    assert before == {s.stem: (out / s.stem / "grid.npz").stat().st_mtime_ns for s in cohort_slides}

    forced = biopsia("predict", cohort_slides[0], *common, "--force", timeout=600)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"{out / 'case-0'}: ")
    assert (out / "case-0" / "grid.npz").stat().st_mtime_ns != before["case-0"]


def test_ctrl_c_leaves_only_complete_slides(cohort_slides, tmp_path):
    slides = copy_slides(cohort_slides, tmp_path / "a") + copy_slides(cohort_slides, tmp_path / "b")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "predict", *map(str, slides), "--model",
                             str(DEMO_MODEL), "--out", str(out), "--device", "cpu", "--no-tiff", "--workers", "2"],
                            cwd=ROOT, env=worker_env(tmp_path / "home"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first, stderr = threading.Event(), []
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()
    lines = []

    def read_stdout():
        for line in proc.stdout:
            lines.append(line)
            first.set()
        first.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        assert first.wait(START_S * 3), "no slide finished"
        proc.send_signal(signal.SIGINT)  # Ctrl+C while the other slides are under way
        assert proc.wait(timeout=120) == 130, "".join(stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lines and "cancelled" in "".join(stderr)
    kept = sorted(out.iterdir())
    assert kept and all(not p.name.startswith(".") for p in kept), kept  # nothing half-written
    for folder in kept:
        assert sorted(p.name for p in folder.iterdir()) == FILES
        assert ProbabilityGrid.load(folder / "grid.npz").complete


def test_workers_must_be_positive(tmp_path):
    done = biopsia("predict", tmp_path / "x.svs", "--model", DEMO_MODEL, "--out", tmp_path, "--workers", "0")
    assert done.returncode == 2 and "--workers" in done.stderr
