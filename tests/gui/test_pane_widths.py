"""The slide gets the space: pane widths at 1280 x 800 and 1920 x 1080 with real widgets, and panels that fit."""

from __future__ import annotations

import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QFontMetrics
from PyQt5.QtWidgets import QAbstractScrollArea, QDockWidget, QMainWindow, QStyle, QTableWidget, QWidget

from core.demo import DEMO_MODEL
from gui.main_window import DOCK_MAX_PX, DOCK_MIN_PX, dock_width
from gui.split_view import SplitView
from tests.gui.test_heatmap_layer import make_grid

SIZES = [(1280, 800), (1920, 1080)]


def open_side_by_side(qtbot, make_window, open_view, synthetic_slide, size):
    window = make_window(size)
    view = open_view(window, synthetic_slide.slide_path)
    view.heatmap_layer.set_grid(make_grid(synthetic_slide))
    window.actions["side_by_side"].trigger()
    split = window.tabs.currentWidget()
    assert isinstance(split, SplitView)
    qtbot.waitUntil(lambda: split.primary.width() > 100 and split.secondary.width() > 100, timeout=5000)
    return window, view, split


def test_the_panels_column_takes_a_share_of_the_window_within_bounds():
    assert dock_width(1280) == 320 and dock_width(1920) == DOCK_MAX_PX and dock_width(800) == DOCK_MIN_PX


@pytest.mark.parametrize("size", SIZES)
def test_side_by_side_panes_and_the_slide_area_get_the_width(qtbot, make_window, open_view, synthetic_slide, size):
    window, view, split = open_side_by_side(qtbot, make_window, open_view, synthetic_slide, size)
    width = window.width()
    assert width == size[0]
    left, right = split.primary.width(), split.secondary.width()
    assert min(left, right) >= 0.35 * width, (left, right, width)  # each pane at least 35 % at 1280
    assert split.regions.isHidden()  # the regions list folded away
    area = split.width()  # the slide area: both panes and the handle between them
    if width >= 1920:
        assert area >= 0.70 * width, (area, width)  # at 1920 x 1080 the slide area is at least 70 %
    window.actions["side_by_side"].trigger()  # and the single view has the same room
    assert view.width() >= 0.70 * width or width < 1920
    assert view.minimap.width() <= 0.3 * min(left, right) + 4 or view.minimap.isHidden()


@pytest.mark.parametrize("size", SIZES)
def test_every_panel_fits_its_column_without_a_sideways_scroll(qtbot, make_window, open_view, synthetic_slide, size):
    window, view, split = open_side_by_side(qtbot, make_window, open_view, synthetic_slide, size)
    window.prediction_dock.set_model(DEMO_MODEL)  # the longest note a panel shows
    for dock in (window.annotate.dock, window.tiles_dock, window.prediction_dock, window.evaluation_dock,
                 window.layers_dock, window.info_dock, window.drafts.review):
        dock.show()
        dock.raise_()
        qtbot.waitUntil(dock.isVisible, timeout=3000)
        qtbot.wait(20)  # one layout pass
        for area in dock.findChildren(QAbstractScrollArea):
            if area.isVisible() and hasattr(area, "widget") and area.widget() is not None:
                bar = area.horizontalScrollBar()
                assert not bar.isVisible() or bar.maximum() == 0, (dock.objectName(), area.widget().minimumSizeHint())
        assert dock.width() <= dock_width(size[0]) + 2, (dock.objectName(), dock.width())



@pytest.mark.parametrize("size", SIZES)
def test_the_prediction_panel_fits_with_every_note_shown_and_no_slide(qtbot, make_window, monkeypatch, size):
    from core.inference import engines

    why = "NVIDIA H200 (compute capability 9.0) has no MXNet kernels: predicting with ONNX Runtime on it (model.onnx)"
    monkeypatch.setattr(engines, "choose_engine", lambda engine, device, info, precision="fp32": ("onnx", why))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # "OMP_NUM_THREADS=unset": the longest device line
    window = make_window(size)
    window.actions["predict"].trigger()
    dock = window.prediction_dock
    dock.set_model(DEMO_MODEL)  # its note, and Automatic's
    qtbot.waitUntil(lambda: dock.engine_label.isVisible() and dock.model_note.isVisible(), timeout=3000)
    qtbot.wait(20)
    area = dock.widget()
    bar = area.horizontalScrollBar()
    assert not bar.isVisible() or bar.maximum() == 0, area.widget().minimumSizeHint()
    assert not overlapping(dock), overlapping(dock)

def laid_out(parent: QWidget) -> list[QWidget]:
    """The widgets ``parent``'s layout (and the layouts inside it) place, in order."""
    found, layouts = [], [parent.layout()] if parent.layout() is not None else []
    while layouts:
        layout = layouts.pop()
        for i in range(layout.count()):
            item = layout.itemAt(i)
            if item.widget() is not None:
                found.append(item.widget())
            elif item.layout() is not None:
                layouts.append(item.layout())
    return found


def overlapping(root: QWidget) -> list[str]:
    """Pairs of visible widgets placed by one layout whose rectangles cross: one drawn over the other."""
    bad = []
    for parent in [root] + root.findChildren(QWidget):
        if not parent.isVisible() or isinstance(parent, QMainWindow):  # its docks are placed by hand
            continue
        kids = [k for k in laid_out(parent) if k.isVisible() and k.parentWidget() is parent]
        for i, a in enumerate(kids):
            bad += [f"{type(parent).__name__}: {type(a).__name__} {a.geometry().getRect()} over {type(b).__name__} "
                    f"{b.geometry().getRect()}" for b in kids[i + 1:] if a.geometry().intersects(b.geometry())]
    return bad


def cut_texts(table: QTableWidget) -> list[tuple[str, int, int]]:
    """``(text, px needed, px given)`` of every header and cell whose text does not fit its (spanned) column, and
    of the table itself when its columns run past what it shows (a sideways scroll)."""
    cut = []
    shown = [c for c in range(table.columnCount()) if not table.isColumnHidden(c)]
    total = sum(table.columnWidth(c) for c in shown)
    if total > table.viewport().width() + 1:
        cut.append(("the columns", total, table.viewport().width()))
    header = table.horizontalHeader()
    for col in shown:
        item = table.horizontalHeaderItem(col)
        if item is not None and not header.isHidden():
            margin = header.style().pixelMetric(QStyle.PM_HeaderMargin)
            need = QFontMetrics(header.font()).horizontalAdvance(item.text()) + 2 * margin
            if need > table.columnWidth(col):
                cut.append((item.text(), need, table.columnWidth(col)))
    for row in range(table.rowCount()):
        for col in shown:
            item = table.item(row, col)
            if item is None or not item.text():
                continue
            width = sum(table.columnWidth(c) for c in range(col, col + table.columnSpan(row, col)))
            font = item.font() if item.data(Qt.FontRole) is not None else table.font()  # the table's, unless set
            need = max(QFontMetrics(font).horizontalAdvance(line) for line in item.text().split("\n")) + 6
            if need > width:
                cut.append((item.text(), need, width))  # drawn elided, "1..."
    return cut


@pytest.mark.parametrize("size", SIZES)
def test_no_panel_draws_one_row_over_another(qtbot, make_window, open_view, synthetic_slide, size):
    window = make_window(size)
    open_view(window, synthetic_slide.slide_path)
    window.prediction_dock.set_model(DEMO_MODEL)  # the demo model's note: a tall wrapped row in a form
    for dock in window.findChildren(QDockWidget):
        dock.show()
        dock.raise_()
        qtbot.waitUntil(dock.isVisible, timeout=3000)
        qtbot.wait(20)  # one layout pass
        assert not overlapping(dock), (dock.objectName(), overlapping(dock))
    note, device = window.prediction_dock.model_note, window.prediction_dock.device
    assert note.isVisible() and device.y() >= note.geometry().bottom()  # the row below starts below its last line


def test_the_panels_are_tabs_down_the_side(qtbot, make_window, open_view, synthetic_slide):
    window = make_window((1280, 800))
    open_view(window, synthetic_slide.slide_path)
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible() and not d.visibleRegion().isEmpty()]
    assert len(docks) == 1, [d.objectName() for d in docks]  # one panel shown, the others a tab away
    assert set(window.tabifiedDockWidgets(window.annotate.dock)) >= {window.info_dock, window.prediction_dock,
                                                                       window.evaluation_dock, window.tiles_dock}
