"""Model ▸ Predict all slides… in the window: the project's slides on a real Dask cluster (a local one, and a
scheduler set in the preferences), each heatmap in its open view, Cancel, and a damaged slide named.

The slides are `tests.core.cohort.dask_cluster`'s three small synthetic ones (13 to 21 tiles of the demo model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PyQt5.QtWidgets import QPushButton

from core.cohort import GRID_FILE
from core.inference.predict import ProbabilityGrid, saved_predictions
from core.project.document import PredictionState
from core.project.model import Project
from gui.cohort_run import CohortSlide
from tests.core.cohort.dask_cluster import DEMO_MODEL, copy_slides, wait_until_idle

#: Starting worker processes imports Biopsia and MXNet: on two busy cores that takes a while.
RUN_MS = 240_000


def project_window(qtbot, make_window, folder: Path, slides, damaged: bool = False):
    """A window with a project of ``slides`` (copied into ``folder``) open, and the demo model chosen."""
    paths = copy_slides(slides, folder / "slides")
    if damaged:
        broken = folder / "slides" / "broken-scan.svs"
        broken.write_bytes(np.random.default_rng(3).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
        paths.append(broken)
    project = Project.create(folder / "project", "Cohort")
    for path in paths:
        project.add_slide(path)
    win = make_window()
    win.use_project(project)
    qtbot.waitUntil(lambda: len(win.views()) == len(slides), timeout=60_000)
    win.prediction_dock.set_model(DEMO_MODEL)
    win.cohort_run.tiff, win.cohort_run.device = False, "cpu"
    return win, project


def dialog_button(win, text: str) -> QPushButton:
    return next(b for b in win.cohort_run.dialog.findChildren(QPushButton) if b.text() == text)


def test_refuses_without_a_model_or_slides(window):
    window.cohort_run.actions["predict"].trigger()
    assert window.cohort_run.worker is None
    assert "No model" in window.errors[-1]
    window.prediction_dock.set_model(DEMO_MODEL)
    window.cohort_run.actions["predict"].trigger()
    assert window.cohort_run.worker is None and "No slides" in window.errors[-1]


def test_the_cluster_setting_is_kept(window, monkeypatch):
    from gui import cohort_run
    from gui.settings import Preferences

    monkeypatch.setattr(cohort_run.QInputDialog, "getText", lambda *a, **k: (" tcp://10.0.0.5:8786 ", True))
    window.cohort_run.actions["cluster"].trigger()  # Model ▸ Cluster for all slides…
    assert window.prefs.cohort_scheduler == "tcp://10.0.0.5:8786"
    Preferences.flush()
    assert Preferences().cohort_scheduler == "tcp://10.0.0.5:8786"
    monkeypatch.setattr(cohort_run.QInputDialog, "getText", lambda *a, **k: ("", True))
    window.cohort_run.actions["cluster"].trigger()
    assert Preferences().cohort_scheduler == ""  # empty: a local cluster again



def test_the_cluster_is_asked_for_the_prediction_panels_engine(qtbot, window, tmp_path, monkeypatch):
    """Which engine each worker computes with, caught where the run is planned (no cluster starts)."""
    import core.cohort
    from core.cohort import CohortPlan
    from core.inference import engines

    asked = []

    def plan_only(slides, out_root, model, options, force=False):
        asked.append((options.engine, options.precision))
        return CohortPlan(jobs=[], skipped=[])  # nothing to run: no cluster

    monkeypatch.setattr(core.cohort, "plan_cohort", plan_only)
    slide = tmp_path / "one.png"
    slide.write_bytes(b"not read: the plan is caught first")
    window.prediction_dock.set_model(DEMO_MODEL)
    monkeypatch.setattr("gui.cohort_run.project_slides", lambda win: [CohortSlide(slide, None, None)])
    run = window.cohort_run
    dock = window.prediction_dock
    for index, note in ((0, None), (3, None)):  # Automatic (no GPU here: MXNet), ONNX Runtime by name
        dock.engine.setCurrentIndex(index)
        with qtbot.waitSignal(run.ended, timeout=60_000) as ended:
            run.actions["predict"].trigger()
        assert ended.args == ["finished"] and run.engine_note is note
    assert asked == [("mxnet", "fp32"), ("onnx", "fp32")]
    # Automatic where this computer's GPU has no MXNet kernels: ONNX Runtime for every worker, said why
    why = "NVIDIA H200 (compute capability 9.0) has no MXNet kernels: predicting with ONNX Runtime on it"
    monkeypatch.setattr(engines, "choose_engine", lambda engine, device, info, precision="fp32": ("onnx", why))
    dock.engine.setCurrentIndex(0)
    with qtbot.waitSignal(run.ended, timeout=60_000):
        run.actions["predict"].trigger()
    assert asked[-1] == ("onnx", "fp32") and run.engine_note == why and why in run.report

def test_all_slides_on_a_local_cluster_with_a_damaged_one(qtbot, make_window, cohort_slides, tmp_path):
    win, project = project_window(qtbot, make_window, tmp_path, cohort_slides, damaged=True)
    assert [a.text() for a in win.model_menu.actions()].count("Predict all &slides…") == 1
    win.prefs.cohort_scheduler, win.prefs.cohort_workers = "", 1  # the default: a local cluster
    run = win.cohort_run
    with qtbot.waitSignal(run.ended, timeout=RUN_MS) as ended:
        run.actions["predict"].trigger()  # Model ▸ Predict all slides…
        assert run.dialog is not None and run.dialog.isVisible()  # progress, with its Cancel button
    assert ended.args == ["finished"]
    assert sorted(run.finished) == sorted(p.stem for p in cohort_slides)
    assert [name for name, _ in run.failed] == ["broken-scan"]  # named, and the others finished
    assert "broken-scan" in run.report and "broken-scan" in win.errors[-1]
    assert run.dialog is None
    out = project.folder / "cohort" / DEMO_MODEL.name
    for slide in cohort_slides:
        grid = ProbabilityGrid.load(out / slide.stem / GRID_FILE)
        assert grid.complete and grid.done.any()
    assert not (out / "broken-scan").exists()
    # each open view shows its slide's new heatmap, loaded as a saved prediction of the project
    for view in win.views():
        qtbot.waitUntil(lambda v=view: v.document.prediction.state == PredictionState.SAVED, timeout=20_000)
        state = view.document.prediction
        assert state.path in saved_predictions(project, view.document.slide_id)
        assert view.heatmap_layer.state.grid is state.grid and view.heatmap_layer.visible
        assert np.array_equal(state.grid.probs, ProbabilityGrid.load(out / Path(view.reader.path).stem / GRID_FILE)
                              .probs, equal_nan=True)
    # run again without the damaged slide: every slide is done already with these weights, so no cluster starts
    [broken] = [s for s in project.slides if Path(s.path).name == "broken-scan.svs"]
    project.remove_slide(broken.id)
    with qtbot.waitSignal(run.ended, timeout=60_000) as ended:
        run.actions["predict"].trigger()
    assert ended.args == ["finished"] and run._jobs == 0 and not run.failed
    assert run.report.startswith("Predict all slides: 0 slides done, 0 failed, 3 done already."), run.report
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem for p in cohort_slides)


def test_cancel_on_a_scheduler_keeps_only_finished_slides(qtbot, make_window, dask_cluster, cohort_slides,
                                                          tmp_path):
    from core.synth import write_synthetic_slide

    # a slide of about 700 tissue tiles read one per batch: seconds of work on any machine, so Cancel, clicked
    # as soon as the first tiles are reported, lands before it is done, however fast the small ones go
    big = write_synthetic_slide(tmp_path / "big-case.tiff", seed=5, width=12288, height=9216).slide_path
    slides = [*cohort_slides, big]
    win, project = project_window(qtbot, make_window, tmp_path, slides)
    win.prefs.cohort_scheduler = dask_cluster.address  # the preference: an existing cluster
    run = win.cohort_run
    run.batch = 1  # many batches per slide, as on a real slide: Cancel lands between two
    run.actions["predict"].trigger()
    qtbot.waitUntil(lambda: bool(run._tiles), timeout=RUN_MS)  # the workers report tiles: slides are running
    with qtbot.waitSignal(run.ended, timeout=RUN_MS) as ended:
        dialog_button(win, "Cancel").click()
    assert ended.args == ["cancelled"]
    assert "Cancelled" in run.report
    out = project.folder / "cohort" / DEMO_MODEL.name

    def listing() -> list[str]:
        return sorted(p.name for p in out.iterdir()) if out.is_dir() else []

    # a remote task in its last batch when Cancel came may still be writing (a hidden folder until whole):
    # once the workers are idle, no hidden half is left and every slide folder there is whole
    with dask_cluster.client() as client:
        wait_until_idle(client)
    written = listing()
    assert not any(n.startswith(".") for n in written), written
    assert set(run.finished) <= set(written) and "big-case" not in written, (written, run.finished)
    for name in written:
        assert ProbabilityGrid.load(out / name / GRID_FILE).complete
