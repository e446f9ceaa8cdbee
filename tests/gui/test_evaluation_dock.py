"""The Evaluation dock offscreen: a saved prediction against the marks, its table, ROC and threshold; all slides.

Grids come from conftest's ``small_model`` run once over both synthetic slides of ``slide_pair`` (one of
them it was trained on); they are saved into each test's project as the Prediction dock saves them, so
opening a slide shows its grid and the dock compares it without running the model.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PyQt5.QtCore import Qt
from shapely.geometry import box

from core.annotations.model import Annotation
from core.evaluation.compare import compare, summarise, truth_for_grid
from core.inference.predict import ProbabilityGrid, predict_slide, prediction_path, saved_predictions
from core.project.document import PredictionState
from core.project.model import Project
from gui.core_measures import CoresTable
from gui.threshold_text import threshold_text
from tests.gui.test_pane_widths import cut_texts
from projects import marked_project

WINDOW_SIZE = (1400, 1000)
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def grids(slide_pair, small_model):
    """{slide path: ProbabilityGrid} of the small model over both slides (a second or two each)."""
    return {synth.slide_path: predict_slide(synth.slide_path, small_model, device="cpu") for synth in slide_pair}


@pytest.fixture
def project(tmp_path, slide_pair, grids):
    """Both slides with their tumour marks, fully annotated, each with its saved prediction."""
    project, ids = marked_project(tmp_path / "project", slide_pair, "Evaluation test")
    for synth, slide_id in zip(slide_pair, ids):
        grid = grids[synth.slide_path]
        grid.save(prediction_path(project, slide_id, grid.model))
    return project


def open_evaluation(qtbot, window, project, path):
    window.use_project(project, open_slides=False)
    dock = window.evaluation_dock
    with qtbot.waitSignal(dock.evaluated, timeout=TIMEOUT, check_params_cb=lambda c: c is not None):
        with qtbot.waitSignal(window.slide_opened, timeout=TIMEOUT) as opened:
            window.open_slide(path)
        window.actions["evaluate"].trigger()
    return opened.args[0], dock


def table_counts(dock) -> dict:
    return {name: int(item.text().replace(",", "")) for name, item in dock.cells.items()}


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_table_keeps_every_word_and_digit_in_a_narrow_panel(qtbot, make_window, project, slide_pair, size):
    window = make_window(size)
    _view, dock = open_evaluation(qtbot, window, project, slide_pair[0].slide_path)
    table = dock.table
    widest = "88,888" if size[0] < 1600 else "888,888"  # a whole slide's tiles: five digits, six on a wide screen
    for item in dock.cells.values():
        item.setText(widest)
    qtbot.wait(20)
    assert cut_texts(table) == []
    # the per-core table under it: six columns, the network's included, none cut or scrolled off
    cores = dock.findChildren(CoresTable)[0]
    qtbot.waitUntil(lambda: cores.table.rowCount() > 0 and not cores.table.isColumnHidden(5), timeout=TIMEOUT)
    qtbot.wait(20)
    assert cut_texts(cores.table) == []

def expected(view, grid, threshold):
    truth = truth_for_grid(grid, view.annotations.annotations(), fully_annotated=True)
    return compare(grid, truth, threshold)


def test_table_metrics_roc_and_target_threshold_follow_core(qtbot, window, project, slide_pair, grids):
    view, dock = open_evaluation(qtbot, window, project, slide_pair[0].slide_path)
    grid = view.document.prediction.grid
    assert view.document.prediction.state == PredictionState.SAVED and np.array_equal(grid.probs, grids[slide_pair[0].slide_path].probs,
                                                               equal_nan=True)
    want = expected(view, grid, 0.5).metrics
    c = want.counts
    assert table_counts(dock) == {"tn": c.tn, "fn": c.fn, "neg_total": c.tn + c.fn, "fp": c.fp, "tp": c.tp,
                                  "pos_total": c.fp + c.tp, "neg_truth": c.tn + c.fp, "pos_truth": c.fn + c.tp,
                                  "total": c.total}
    assert c.tp > 10 and c.tn > 10
    # the study's layout: screening test (rows) against true diagnosis (columns)
    assert dock.table.item(0, 1).text() == "True diagnosis" and dock.table.item(0, 0).text() == "Screening\ntest"
    assert [dock.table.item(1, col).text() for col in (1, 2, 3)] == ["Neg.", "Pos.", "Total"]
    assert dock.table.item(1, 1).toolTip().startswith("Negative")
    assert [dock.table.item(row, 0).text() for row in (2, 3, 4)] == ["Negative", "Positive", "Total"]
    for key, label in dock.metric_labels.items():
        assert label.text() == f"{getattr(want, key):.3f}", key
    assert want.auc > 0.9
    fpr, tpr, _ = want.roc()
    x, y = dock.roc_curve.getData()
    assert np.allclose(x, fpr) and np.allclose(y, tpr)
    px, py = dock.operating_point.getData()
    assert np.allclose([px[0], py[0]], [1 - want.specificity, want.sensitivity])

    dock.target.setValue(0.99)
    target = want.threshold_for_sensitivity(0.99)
    offered = threshold_text(target)
    assert dock.target_threshold == pytest.approx(target) and f"Threshold {offered} reaches" in dock.target_label.text()
    with qtbot.waitSignal(dock.evaluated, timeout=TIMEOUT):
        qtbot.mouseClick(dock.use_button, Qt.LeftButton)
    used = window.prediction_dock.threshold()
    assert used == dock.target_threshold and dock.threshold == used  # exactly the threshold offered
    assert window.prediction_dock.heatmap.threshold_box.text() == offered  # and shown with its digits
    assert f"at threshold {offered}" in dock.status.text()
    at_target = expected(view, grid, used).metrics
    assert at_target.sensitivity >= 0.99
    assert table_counts(dock)["fn"] == at_target.counts.fn and table_counts(dock)["tp"] == at_target.counts.tp
    assert view.disagreement_layer.comparison is dock.comparison

    # the marks change: the comparison follows (debounced, off the GUI thread)
    before = table_counts(dock)["total"]
    rows, cols = np.nonzero(grid.done)
    x0, y0 = grid.tile_rect(int(np.median(rows)), int(np.median(cols)))[:2]
    mark = Annotation(box(x0, y0, x0 + 4 * grid.tile_l0, y0 + 4 * grid.tile_l0), "Exclude")
    with qtbot.waitSignal(dock.evaluated, timeout=TIMEOUT):
        view.apply_edit(view.annotations.replace_all(view.annotations.annotations() + [mark], "Exclude"))
    assert table_counts(dock)["total"] == expected(view, grid, used).metrics.counts.total < before


def test_all_slides_summed_and_exported(qtbot, window, project, slide_pair, tmp_path):
    view, dock = open_evaluation(qtbot, window, project, slide_pair[0].slide_path)
    dock.tabs.setCurrentIndex(1)
    with qtbot.waitSignal(dock.summary_ready, timeout=TIMEOUT):
        qtbot.mouseClick(dock.all_slides.summary_button, Qt.LeftButton)
    comparisons = []
    for entry in project.slides:
        grid = view.document.prediction.grid if entry.id == view.document.slide_id else None
        if grid is None:
            grid = ProbabilityGrid.load(saved_predictions(project, entry.id)[0])
        truth = truth_for_grid(grid, project.load_annotations(entry.id).annotations(), fully_annotated=True)
        comparisons.append(compare(grid, truth, 0.5, name=entry.name))
    want = summarise(comparisons, 0.5)
    table = dock.all_slides.summary_table  # one column per slide, the sum last; rows as core.evaluation.compare.CSV_COLUMNS
    assert table.columnCount() == 3
    assert [table.horizontalHeaderItem(c).text() for c in range(3)] == [c.name for c in comparisons] + ["Total"]
    cut = [t for t in cut_texts(table) if t[0] not in [c.name for c in comparisons] + ["the columns"]]
    assert cut == []  # every number whole, in a column as wide as its numbers (a long slide name is cut)
    assert table.columnViewportPosition(1) + table.columnWidth(1) <= table.viewport().width()  # seen unscrolled
    assert table.verticalHeaderItem(0).text() == "Tiles" and table.verticalHeaderItem(11).text() == "AUC"
    assert [int(table.item(0, c).text().replace(",", "")) for c in range(3)] == \
        [c.metrics.counts.total for c in comparisons] + [want["total"]["n"]]
    assert table.item(11, 2).text() == f"{want['total']['auc']:.3f}"
    assert want["total"]["tp"] == sum(c.metrics.counts.tp for c in comparisons)

    csv_path = dock.export(tmp_path / "evaluation.csv", "csv")
    rows = list(csv.DictReader(csv_path.read_text(encoding="utf-8").splitlines()))
    assert [r["slide"] for r in rows] == [c.name for c in comparisons] + ["all slides"]
    assert [int(r["tp"]) for r in rows] == [s["tp"] for s in want["slides"]] + [want["total"]["tp"]]
    assert float(rows[-1]["auc"]) == pytest.approx(want["total"]["auc"], abs=1e-4)
    doc = json.loads(dock.export(tmp_path / "evaluation.json", "json").read_text(encoding="utf-8"))
    assert doc["total"]["n"] == want["total"]["n"] and len(doc["slides"]) == 2
    assert dock.all_slides.csv_button.isEnabled() and dock.all_slides.json_button.isEnabled() and dock.all_slides.report_button.isEnabled()

    dock.export_report(tmp_path / "report.html")
    qtbot.waitUntil(lambda: "Report written to" in dock.all_slides.summary_status.text(), timeout=TIMEOUT)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert report.count("data:image/jpeg;base64,") == 2 and "All slides (2), summed" in report
    assert f"<td class='num ok'>{want['total']['tp']:,}</td>" in report
    assert "Report written to" in dock.all_slides.summary_status.text()


def test_no_prediction_says_so(qtbot, window, tmp_path, slide_pair):
    project = Project.create(tmp_path / "empty", "Empty")
    window.use_project(project, open_slides=False)
    with qtbot.waitSignal(window.slide_opened, timeout=TIMEOUT):
        window.open_slide(slide_pair[1].slide_path)
    dock = window.evaluation_dock
    qtbot.waitUntil(lambda: window.current_view().document.prediction.state == PredictionState.NONE, timeout=TIMEOUT)
    assert "No prediction" in dock.status.text() and dock.cells["total"].text() == "–"
    assert not dock.use_button.isEnabled()
    with qtbot.waitSignal(dock.summary_ready, timeout=TIMEOUT):
        dock.compute_summary()
    assert dock.all_slides.summary_table.columnCount() == 0 and "No slide" in dock.all_slides.summary_status.text()
    assert not dock.all_slides.csv_button.isEnabled()
