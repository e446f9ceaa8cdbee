"""Model ▸ Train… offscreen: real synthetic slides, real MXNet training, the GUI kept responsive."""

from __future__ import annotations

import json
import threading

import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel

from core.project.model import Project
from core.models.train import ProgressEvent
from gui import training_panel
from gui.training_panel import FULL, TILES, USE
from projects import marked_project

WINDOW_SIZE = (1200, 800)
TRAIN_SEED, TEST_SEED = 8, 3  # about 300 and 640 labelled tiles of 64 px at 2 µm/px
TIMEOUT = 120_000


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Two synthetic slides with known tumour, 6144 x 4608 px at 1 µm/px (seconds to write)."""
    from core.synth import write_synthetic_slide

    out = tmp_path_factory.mktemp("training-slides")
    return {seed: write_synthetic_slide(out / f"synth-{seed}.tiff", seed=seed, width=6144, height=4608, mpp=1.0)
            for seed in (TRAIN_SEED, TEST_SEED)}


def make_project(folder, slides, marks: bool = True, fully_annotated: bool = True):
    """A project holding both slides, their tumour marks imported from the synthetic ground truth."""
    project, ids = marked_project(folder, slides.values(), "Training test", marks, fully_annotated)
    return project, dict(zip(slides, ids))


def open_panel(qtbot, window, project, ids, epochs: int = 3):
    """Model ▸ Train…, slide roles and cheap settings, as a user would choose them."""
    window.use_project(project, open_slides=False)
    assert window.actions["train"] in window.model_menu.actions()
    window.actions["train"].trigger()
    panel = window.training_panel
    qtbot.waitExposed(panel)
    assert panel.table.rowCount() == 2
    panel.set_slide_choice(ids[TRAIN_SEED], use=True, role="Train")
    panel.set_slide_choice(ids[TEST_SEED], use=True, role="Test")
    panel.tile_px.setValue(64)
    panel.tile_mpp.setValue(2.0)
    panel.epochs.setValue(epochs)
    panel.batch_size.setValue(32)
    panel.lr.setValue(0.003)
    panel.device.setCurrentText("cpu")
    return panel


class Hold:
    """Holds a training run on its thread at its first batch report until the test lets it go.

    The window is then checked mid-run at a moment that exists on any machine, however fast or busy:
    the first batch is shown while training waits. ``threads`` records where reports came from.
    """

    def __init__(self, monkeypatch):
        self.reached, self.released = threading.Event(), threading.Event()
        self.threads: set[int] = set()
        real = training_panel.run_job

        def held(job, partial, should_stop):
            def report(event):
                partial(event)
                if isinstance(event, ProgressEvent):
                    self.threads.add(threading.get_ident())
                    if event.metrics is None and not self.released.is_set():
                        self.reached.set()
                        if not self.released.wait(60):
                            raise RuntimeError("the test never released the run")
            return real(job, report, should_stop)
        monkeypatch.setattr(training_panel, "run_job", held)


def run(qtbot, panel, until=None, hold: Hold | None = None, cancel_when_held: bool = False) -> str:
    """Click Start (and Cancel once ``until()`` holds); the way the run ended.

    With ``hold``: while training waits after its first batch, the panel shows that batch and its buttons
    answer (the GUI thread is free while the model thread trains); then Cancel at once
    (``cancel_when_held``) or let the run go on.
    """
    with qtbot.waitSignal(panel.run_ended, timeout=TIMEOUT) as ended:
        qtbot.mouseClick(panel.start_button, Qt.LeftButton)
        if hold is not None:
            qtbot.waitUntil(lambda: hold.reached.is_set() and isinstance(panel._last_event, ProgressEvent),
                            timeout=TIMEOUT)
            assert panel.running and panel.cancel_button.isEnabled() and not panel.start_button.isEnabled()
            if cancel_when_held:
                qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
            hold.released.set()
        if until is not None:
            qtbot.waitUntil(until, timeout=TIMEOUT)
            assert panel.cancel_button.isEnabled() and not panel.start_button.isEnabled()
            qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    if hold is not None:
        assert hold.threads and threading.get_ident() not in hold.threads  # training never ran on the GUI thread
    return ended.args[0]


def test_trains_on_one_slide_validating_on_part_of_it_and_tests_on_the_other(qtbot, window, slides, tmp_path,
                                                                             monkeypatch):
    project, ids = make_project(tmp_path / "project", slides)
    panel = open_panel(qtbot, window, project, ids, epochs=3)
    name = panel.name.text()
    assert name.startswith("model-")
    qtbot.waitUntil(lambda: panel.device_label.text().startswith("Trains on: CPU"), timeout=TIMEOUT)

    state = run(qtbot, panel, hold=Hold(monkeypatch))

    assert state == "finished", panel.error
    result = panel.result
    bundle = project.folder / "models" / name / "best"
    assert result.bundle == bundle and (bundle / "model.json").is_file() and result.epochs_run == 3
    info = json.loads((bundle / "model.json").read_text(encoding="utf-8"))
    assert info["tile_px"] == 64 and info["mpp"] == 2.0
    rows = {panel.table.item(r, USE).data(Qt.UserRole): r for r in range(2)}
    shown = {seed: tuple(int(v.replace(",", "")) for v in panel.table.item(rows[ids[seed]], TILES).text().split(" / "))
             for seed in (TRAIN_SEED, TEST_SEED)}
    # validation was held out of the Train slide (the test slide never chose the epoch or the threshold) ...
    training = info["training"]
    assert sum(training["val_tiles"].values()) + sum(training["train_tiles"].values()) == sum(shown[TRAIN_SEED])
    assert "held out for validation" in panel.validation_label.text() and panel.validation_label.isVisible()
    # ... and the kept model was tested on the Test slide afterwards
    assert panel.tested["counts"] == {"Tumour": shown[TEST_SEED][0], "Non-tumour": shown[TEST_SEED][1]}
    assert panel.tested["auc"] >= 0.9, panel.tested
    assert panel.best_metrics["auc"] >= 0.9, result.history  # measured 0.943 on about 60 held-out tiles
    assert panel.best_metrics == next(h for h in result.history if h["epoch"] == result.best_epoch)
    for key in ("auc", "sensitivity", "specificity", "accuracy"):
        assert panel.best_box.metric_labels[key].text() == f"{panel.best_metrics[key]:.3f}"
    assert panel.best_box.path_edit.text() == str(bundle)
    status = panel.status.text()
    assert status.startswith("Done in ") and "— validation AUC 0.9" in status
    assert f"; Test slides ({sum(shown[TEST_SEED]):,} tiles): AUC {panel.tested['auc']:.3f}" in status
    # one point per finished epoch on every epoch curve, the running loss once per batch
    for curve in (panel.curves.train_curve, panel.curves.val_curve, *panel.curves.metric_curves.values()):
        assert list(curve.getData()[0]) == [1, 2, 3]
    batches = panel._last_event.batches
    assert len(panel.curves.batch_curve.getData()[0]) == 3 * batches
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.name.text() != name  # a fresh name for the next model


def test_cancel_at_the_first_batch_saves_nothing_and_the_gui_stays_responsive(qtbot, window, slides, tmp_path,
                                                                              monkeypatch):
    project, ids = make_project(tmp_path / "project", slides)
    panel = open_panel(qtbot, window, project, ids, epochs=20)
    name = panel.name.text()

    state = run(qtbot, panel, hold=Hold(monkeypatch), cancel_when_held=True)

    assert state == "cancelled"
    assert panel.result.cancelled and panel.result.bundle is None and panel.result.epochs_run == 0
    assert panel.status.text() == "Cancelled before an epoch ended: no model was saved."
    assert not (project.folder / "models" / name).exists()
    assert panel.start_button.isEnabled() and panel.table.isEnabled()


def test_cancel_after_an_epoch_keeps_the_best_epoch(qtbot, window, slides, tmp_path, monkeypatch):
    project, ids = make_project(tmp_path / "project", slides)
    panel = open_panel(qtbot, window, project, ids, epochs=20)

    state = run(qtbot, panel, until=lambda: len(panel.history) == 1, hold=Hold(monkeypatch))

    assert state == "cancelled"
    result = panel.result
    assert result.cancelled and result.epochs_run == 1 and result.best_epoch == 0
    assert (result.bundle / "model.json").is_file() and panel.best_box.path_edit.text() == str(result.bundle)
    assert panel.status.text().startswith("Cancelled: the best epoch is kept")


def test_slides_without_tumour_marks_say_what_to_mark(qtbot, window, slides, tmp_path):
    project, ids = make_project(tmp_path / "project", slides, marks=False, fully_annotated=True)
    panel = open_panel(qtbot, window, project, ids)

    state = run(qtbot, panel)

    assert state == "failed"
    assert panel.error.startswith("The training slides have no Tumour tiles: mark tumour regions")
    assert panel.error_label.isVisible() and "no Tumour tiles" in panel.error_label.text()
    assert panel.error not in window.errors  # said once, in the panel: no dialog on top of the banner
    assert panel.start_button.isEnabled() and not (project.folder / "models").exists()


def test_unmarked_tissue_of_partly_annotated_slides_is_not_non_tumour(qtbot, window, slides, tmp_path):
    project, ids = make_project(tmp_path / "project", slides, marks=True, fully_annotated=False)
    panel = open_panel(qtbot, window, project, ids)

    state = run(qtbot, panel)

    assert state == "failed"
    assert "no Non-tumour tiles: mark Benign regions or tick fully annotated" in panel.error
    # the fix, in the panel itself: ticking "fully annotated" is saved in the project
    for row in range(panel.table.rowCount()):
        assert panel.table.item(row, FULL).checkState() == Qt.Unchecked
        panel.table.item(row, FULL).setCheckState(Qt.Checked)
    assert all(e.settings.fully_annotated for e in Project.open(project.folder).slides)


def test_a_one_slide_project_trains_with_default_roles_validating_on_a_share_of_it(qtbot, window, slides,
                                                                                   tmp_path):
    project, (slide_id,) = marked_project(tmp_path / "project", [slides[TRAIN_SEED]], "One slide")
    window.use_project(project, open_slides=False)
    window.actions["train"].trigger()
    panel = window.training_panel
    qtbot.waitExposed(panel)
    assert panel._choices() == {slide_id: (True, "Train")}  # the default role: no Test slide needed
    panel.tile_px.setValue(64)
    panel.tile_mpp.setValue(2.0)
    panel.epochs.setValue(1)
    panel.batch_size.setValue(32)
    panel.device.setCurrentText("cpu")
    errors = len(window.errors)

    assert run(qtbot, panel) == "finished", panel.error

    assert panel.result.bundle is not None and panel.error is None and panel.tested is None
    label = panel.validation_label
    assert label.isVisible() and "of the Train slide's tiles held out for validation" in label.text()
    assert "may be optimistic" in label.text()  # said plainly: validation shares the slide
    assert len(window.errors) == errors


def test_default_roles_make_every_slide_a_train_slide(qtbot, window, slides, tmp_path):
    project, ids = make_project(tmp_path / "project", slides)
    window.use_project(project, open_slides=False)
    window.actions["train"].trigger()
    panel = window.training_panel
    assert {role for _use, role in panel._choices().values()} == {"Train"}
    assert "never chooses the best epoch" in panel.table.cellWidget(0, training_panel.ROLE).toolTip()



def test_before_a_run_the_curves_show_the_epochs_it_will_draw(qtbot, window, slides, tmp_path):
    project, ids = make_project(tmp_path / "project", slides)
    window.use_project(project, open_slides=False)
    window.actions["train"].trigger()
    panel = window.training_panel
    for epochs in (panel.epochs.value(), 25):
        panel.epochs.setValue(epochs)
        for plot in (panel.curves.loss_plot, panel.curves.metric_plot):
            x0, x1 = plot.viewRange()[0]
            assert x0 <= 0 < epochs <= x1 <= epochs * 1.1, (x0, x1)  # not a bare 0..1 with ticks at 0.2, 0.4...

def test_a_run_needs_a_train_slide_and_a_plain_name(qtbot, window, slides, tmp_path):
    project, ids = make_project(tmp_path / "project", slides)
    panel = open_panel(qtbot, window, project, ids)
    panel.set_slide_choice(ids[TRAIN_SEED], use=True, role="Test")
    errors = len(window.errors)
    assert panel.start() is None and not panel.running
    assert "Give at least one slide the role Train" in panel.error and panel.error_label.isVisible()
    assert len(window.errors) == errors  # the banner only
    panel.set_slide_choice(ids[TRAIN_SEED], use=True, role="Train")
    panel.name.setText("../elsewhere")
    assert panel.start() is None and "Model name" in panel.error


def test_the_best_epoch_shown_is_the_lowest_validation_loss_not_the_highest_auc(qtbot):
    """The panel shows the epoch core.models.train keeps (lowest validation loss), while it runs too."""
    from gui.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert any("the epoch with the lowest validation loss is kept" in label.text()
               for label in panel.slides_box.findChildren(QLabel))
    history = [{"epoch": 0, "loss": 0.40, "train_loss": 0.6, "auc": 0.90, "accuracy": 0.80, "sensitivity": 0.7,
                "specificity": 0.9},
               {"epoch": 1, "loss": 0.30, "train_loss": 0.5, "auc": 0.93, "accuracy": 0.85, "sensitivity": 0.8,
                "specificity": 0.9},
               {"epoch": 2, "loss": 0.35, "train_loss": 0.4, "auc": 0.97, "accuracy": 0.88, "sensitivity": 0.9,
                "specificity": 0.86}]
    for metrics in history:
        panel._on_report(ProgressEvent(metrics["epoch"], 3, 10, 10, metrics["train_loss"], metrics))
    assert panel.best_metrics == history[1]
    assert panel.best_box.metric_labels["auc"].text() == "0.930"
    assert panel.best_box.best_label.text().startswith("Epoch 2 of 3 so far (validation loss 0.300)")


def test_marks_that_miss_their_slide_are_reported_when_the_tiles_are_planned(qtbot, window):
    """The job's plan carries core.tiles.dataset's warnings (marks off the slide); the panel tells the user."""
    from core.models.training_job import Planned

    window.actions["train"].trigger()
    panel = window.training_panel
    counts = {"train": {"Non-tumour": 5, "Tumour": 3}, "test": {"Non-tumour": 4, "Tumour": 2}}
    warning = "/slides/a.svs: 2 of 7 marks lie entirely outside the slide (4096 x 3072 px) and are ignored"
    panel._on_report(Planned(counts, {}, [warning]))
    assert window.errors[-1] == warning
    errors = len(window.errors)
    panel._on_report(Planned(counts, {}))
    assert len(window.errors) == errors  # nothing to say, no message
