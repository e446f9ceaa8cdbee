"""Model ▸ Retrain with new marks… in the window, on a synthetic slide the parent model never saw: predict,
propose, accept and reject drafts with the keys, retrain, and the heatmap follows the new model; Cancel keeps
the model in use; nothing to learn from is refused.

The parent is the session's ``small_model`` (64 px tiles at 2 µm/px); the retraining runs are one epoch.
"""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QPushButton

from core.annotations.proposals import is_draft
from core.inference.predict import model_identity
from core.models.bundle import read_info
from core.project.document import PredictionState
from core.project.model import Project
from tests.gui.test_drafts import key, select_by_click
from tests.qt_events import choose_from_menu

TIMEOUT = 120_000


def project_view(qtbot, window, folder, synth):
    project = Project.create(folder, "Retrain")
    project.add_slide(synth.slide_path)
    window.use_project(project, open_slides=False)
    with qtbot.waitSignal(window.slide_opened, timeout=TIMEOUT) as opened:
        window.open_slide(synth.slide_path)
    view = opened.args[0]
    qtbot.waitUntil(lambda: view.document.prediction.state != PredictionState.LOADING, timeout=TIMEOUT)
    return project, view


def predict(qtbot, window, model):
    dock = window.prediction_dock
    dock.set_model(model)
    dock.device.setCurrentText("cpu")
    dock.batch_size = 32
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        qtbot.mouseClick(dock.start_button, Qt.LeftButton)
    assert ended.args == ["finished"], dock.status.text()


def propose_and_decide(qtbot, window, view):
    """Model ▸ Propose marks, then A on the largest draft and R on the smallest (by the keys, as a doctor does)."""
    with qtbot.waitSignal(view.annotations_edited, timeout=TIMEOUT):
        window.drafts.actions["propose"].trigger()
    drafts = sorted((a for a in view.annotations if is_draft(a)), key=lambda a: a.geometry.area)
    assert len(drafts) >= 2, "the parent's calls make at least two drafts on this slide"
    window.activateWindow()
    view.setFocus()
    select_by_click(window, view, drafts[-1])
    key(view, Qt.Key_A)
    select_by_click(window, view, drafts[0])
    key(view, Qt.Key_R)
    decided = [view.annotations.get(d.id) for d in (drafts[-1], drafts[0])]
    assert [d.class_name for d in decided] == ["Tumour", "Benign"] and not any(map(is_draft, decided))
    return decided


def test_retrain_with_new_marks_fine_tunes_and_the_heatmap_follows(qtbot, window, slide_pair, small_model, tmp_path):
    synth = slide_pair[0]
    project, view = project_view(qtbot, window, tmp_path / "project", synth)
    predict(qtbot, window, small_model)
    before = view.document.prediction.grid
    assert before.model["sha256"] == model_identity(small_model)["sha256"]
    decisions = propose_and_decide(qtbot, window, view)

    run = window.retrain
    run.epochs = 1
    assert run.action in window.model_menu.actions()
    dock = window.prediction_dock
    with qtbot.waitSignal(run.ended, timeout=TIMEOUT) as ended:
        choose_from_menu(qtbot, window.model_menu, run.action)  # Model ▸ Retrain with new marks…, clicked
        assert run.dialog is not None and run.dialog.isVisible()
    assert ended.args == ["finished"], run.report
    assert run.dialog is None and "now the Prediction panel's model" in run.report
    out = project.folder / "models" / f"{small_model.parent.name}-retrained"
    assert run.result.bundle == out / "best"
    record = read_info(out / "best").training["parent"]
    assert record["sha256"] == model_identity(small_model)["sha256"]
    # the accepted draft's tiles are Tumour, the rejected one's Non-tumour, and no other tissue is labelled
    tumour, benign = (decided.geometry.area / (4 * 64) ** 2 for decided in decisions)
    counts = run.planned.counts
    labelled = {c: counts["train"][c] + counts["test"][c] for c in counts["train"]}
    assert 0 < labelled["Tumour"] <= tumour + 40 and 0 < labelled["Non-tumour"] <= benign + 40, (labelled, tumour, benign)
    assert dock.model_path() == out
    # the slide is predicted again with the new model: its heatmap follows
    qtbot.waitUntil(lambda: not dock.running and view.document.prediction.grid is not before, timeout=TIMEOUT)
    after = view.document.prediction.grid
    assert after.complete and after.model["sha256"] == model_identity(out / "best")["sha256"]
    assert view.heatmap_layer.state.grid is after


def test_cancel_keeps_the_model_in_use(qtbot, window, slide_pair, small_model, tmp_path):
    synth = slide_pair[0]
    project, view = project_view(qtbot, window, tmp_path / "project", synth)
    predict(qtbot, window, small_model)
    propose_and_decide(qtbot, window, view)
    run = window.retrain
    run.epochs = 200  # long enough by construction that Cancel lands in training
    run.action.trigger()
    qtbot.waitUntil(lambda: run.dialog is not None and run.dialog.labelText().startswith("Epoch"), timeout=TIMEOUT)
    with qtbot.waitSignal(run.ended, timeout=TIMEOUT) as ended:
        button = next(b for b in run.dialog.findChildren(QPushButton) if b.text() == "Cancel")
        qtbot.mouseClick(button, Qt.LeftButton)
    assert ended.args == ["cancelled"]
    assert "the model in use is unchanged" in run.report or "no model was saved" in run.report
    assert window.prediction_dock.model_path() == small_model
    assert not window.prediction_dock.running


def test_nothing_to_learn_from_or_no_model_is_refused(qtbot, window, slide_pair, small_model, tmp_path):
    synth = slide_pair[0]
    project, view = project_view(qtbot, window, tmp_path / "project", synth)
    window.retrain.action.trigger()
    assert window.retrain.worker is None and "No model chosen" in window.errors[-1]
    window.prediction_dock.set_model(small_model)
    with qtbot.waitSignal(window.retrain.ended, timeout=TIMEOUT) as ended:
        window.retrain.action.trigger()  # no marks, no decided drafts, no reviewed regions
    assert ended.args == ["failed"] and window.retrain.worker is None and window.retrain.dialog is None
    assert "no slide has marks, accepted or rejected drafts or reviewed regions" in window.errors[-1]
    assert not (project.folder / "models").exists()
