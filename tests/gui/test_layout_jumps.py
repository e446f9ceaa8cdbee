"""No layout jumps: a comparison arriving, a new run, F6 off and on leave the panes and what they show alone."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtCore import Qt

from core.evaluation.compare import compare
from core.inference.predict import ProbabilityGrid
from core.project.document import PredictionState
from gui.split_view import SplitView
from tests.gui.test_heatmap_layer import make_grid
from tests.gui.test_prediction_dock import TIMEOUT, Gate, make_project, open_for_prediction, start

WINDOW_SIZE = (1400, 800)


def split(qtbot, win) -> SplitView:
    win.actions["side_by_side"].trigger()
    widget = win.tabs.currentWidget()
    assert isinstance(widget, SplitView)
    qtbot.waitUntil(lambda: widget.primary.slide_layer.is_sharp(), timeout=15000)
    return widget


def test_a_comparison_arriving_leaves_the_panes_where_they_are(qtbot, window, synthetic_slide, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    grid = make_grid(synthetic_slide)
    view.heatmap_layer.set_grid(grid)
    widget = split(qtbot, window)
    place = view.viewport
    truth = np.where(np.isnan(grid.probs), -1, (grid.probs < 0.5).astype(np.int8)).astype(np.int8)  # all wrong
    comparison = compare(grid, truth, 0.5)
    view.disagreement_layer.set_comparison(comparison)  # as the Evaluation panel does at a run's end
    assert widget.regions.comparison is comparison  # listed, to be shown when asked for
    assert widget.regions_button.isEnabled() and not widget.regions_button.isChecked()
    qtbot.wait(50)  # let any relayout happen
    left, right, regions = widget.splitter.sizes()
    assert widget.regions.isHidden() and regions == 0 and abs(left - right) <= 1  # the two panes share the width
    assert (view.viewport.l0_cx, view.viewport.l0_cy, view.viewport.scale) == (place.l0_cx, place.l0_cy, place.scale)


def test_f6_off_and_on_keeps_the_panes_choice(qtbot, window, synthetic_slide, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    view.heatmap_layer.set_grid(make_grid(synthetic_slide))
    widget = split(qtbot, window)
    widget.set_content("left", "Marks")
    widget.set_content("right", "Disagreement")
    window.actions["side_by_side"].trigger()  # F6: one view
    assert not isinstance(window.tabs.currentWidget(), SplitView)
    widget = split(qtbot, window)  # F6 again
    assert (widget.content("left"), widget.content("right")) == ("Marks", "Disagreement")
    widget.set_mode("overlay")
    window.actions["side_by_side"].trigger()
    widget = split(qtbot, window)
    assert widget.mode == "overlay" and widget.mode_box.currentText().startswith("Overlay")


def test_a_new_run_keeps_the_previous_heatmap_until_it_is_complete(qtbot, window, slide_pair, small_model, tmp_path,
                                                                   monkeypatch):
    synth = slide_pair[0]
    project, _ = make_project(tmp_path / "project", synth, small_model)
    view, dock = open_for_prediction(qtbot, window, project, synth.slide_path)
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT):
        start(qtbot, dock)
    first = view.document.prediction.grid
    assert first.complete and view.heatmap_layer.grid is first

    gate = Gate(monkeypatch)  # a second run, held after its first batch, then cancelled
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:
        start(qtbot, dock, batch_size=4)
        qtbot.waitUntil(lambda: gate.reached.is_set() and bool(dock.updates), timeout=TIMEOUT)
        assert view.heatmap_layer.grid is first and view.document.prediction.grid is first  # not wiped
        assert np.isfinite(view.heatmap_layer.grid.probs).sum() == np.isfinite(first.probs).sum()
        assert "previous one until this run ends" in dock.status.text()
        qtbot.mouseClick(dock.cancel_button, Qt.LeftButton)
        gate.release()
    assert ended.args == ["cancelled"]
    assert view.heatmap_layer.grid is first and view.document.prediction.grid is first and first.complete
    assert view.document.prediction.state == PredictionState.DONE
    assert "the previous heatmap is kept" in dock.status.text()

    gate.released.clear()
    gate.reached.clear()
    with qtbot.waitSignal(dock.run_ended, timeout=TIMEOUT) as ended:  # a third run, let through
        start(qtbot, dock)
        qtbot.waitUntil(gate.reached.is_set, timeout=TIMEOUT)
        assert view.heatmap_layer.grid is first
        gate.release()
    assert ended.args == ["finished"]
    new = view.document.prediction.grid
    assert new is not first and new.complete and view.heatmap_layer.grid is new  # replaced once it was whole
    assert np.array_equal(new.probs, first.probs, equal_nan=True)  # the same model on the same slide
