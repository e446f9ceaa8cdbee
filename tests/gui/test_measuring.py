"""Measuring as a biopsy report needs, in the window: mark lengths, the per-core table, the ruler (U)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PyQt5.QtCore import QPoint, Qt
from shapely.geometry import box

from qt_events import click, double_click, key, move
from core.annotations import Annotation, AnnotationStore
from core.inference.predict import ProbabilityGrid
from gui.core_measures import CoresTable
from gui.docks.annotations_dock import COLUMNS
from tests.gui.test_main_window import open_and_wait

WINDOW_SIZE = (1400, 900)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from core.synth import write_synthetic_slide

    return write_synthetic_slide(tmp_path_factory.mktemp("measure") / "core.tiff", width=6000, height=4000, seed=5)


def test_a_2000_by_400_px_mark_at_half_a_micrometre_is_1_mm_long_and_0_2_mm2(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    assert view.mpp == (0.5, 0.5)
    mark = Annotation(box(1000, 1000, 3000, 1400), "Tumour")
    view.annotations = AnnotationStore([mark])
    dock = window.annotate.dock
    qtbot.waitUntil(lambda: dock.table.rowCount() == 1, timeout=3000)
    cell = {name: dock.table.item(0, col).text() for col, name in enumerate(COLUMNS)}
    assert (cell["Area (mm²)"], cell["Length (mm)"]) == ("0.2000", "1.000")


def measured(measurer) -> bool:
    """The measurer has numbers and nothing more is coming."""
    return bool(measurer.cores) and measurer._worker is None and not measurer._timer.isActive()


def test_the_core_table_gives_length_and_involvement_from_marks_and_network(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    measurer = window.core_measurer
    w, h = view.reader.dimensions
    # every core under a Tumour mark: 100 % involved
    view.annotations = AnnotationStore([Annotation(box(0, 0, w, h), "Tumour")])
    qtbot.waitUntil(lambda: measured(measurer), timeout=30000)
    core = max(measurer.cores, key=lambda c: c.area_mm2)
    assert core.length_mm > 0.5 and core.marks.percent_involved == pytest.approx(100.0)
    assert core.network is None
    tables = [t for dock in (window.annotate.dock, window.evaluation_dock) for t in dock.findChildren(CoresTable)]
    assert len(tables) == 2
    for table in tables:
        row = next(r for r in table.rows() if r[1] == f"{core.length_mm:.2f}")
        assert row[3] == "100" and len(row) == 4  # no prediction: no network columns

    # a prediction calling nothing: the network's columns appear, 0 mm and 0 %
    stride = 500
    rows, cols = h // stride, w // stride
    grid = ProbabilityGrid(probs=np.zeros((rows, cols), np.float32), origin=(0, 0), stride=stride, tile_l0=stride,
                           tile_px=64, mpp=4.0, slide_size=(w, h), complete=True,
                           predicted=np.ones((rows, cols), bool))
    view.document.prediction.grid = grid
    view.heatmap_layer.set_threshold(0.5)
    window.core_measurer.compute()
    qtbot.waitUntil(lambda: bool(measurer.cores) and measurer._worker is None and measurer.cores[0].network is not None,
                    timeout=30000)
    row = next(r for r in tables[0].rows() if r[1] == f"{core.length_mm:.2f}")
    assert row[3:] == ["100", "0.00", "0"]


def test_the_ruler_shows_its_length_live_keeps_it_in_the_project_and_exports_it(qtbot, window, synth, tmp_path):
    view = open_and_wait(qtbot, window, synth.slide_path)
    window.activateWindow()
    view.setFocus()
    key(view, Qt.Key_U)
    assert view.tool.tool_id == "ruler"
    view.zoom_to_scale(0.5)  # 1 screen px = 2 level-0 px = 1 µm
    a, b, c = QPoint(100, 200), QPoint(400, 200), QPoint(400, 600)
    click(view, a)
    move(view, b)
    assert view.tool.live_text() == "300 µm"  # 300 screen px = 600 level-0 px = 300 µm
    click(view, b)
    move(view, c)
    double_click(view, c)
    [ruler] = view.measurement_layer.measurements
    assert ruler.length_um(view.mpp) == pytest.approx(300 + 400)
    assert len(view.annotations) == 0  # a measurement, not a mark

    # kept in the project, in the slide's entry
    saved = json.loads((view.document.project.folder / "project.json").read_text())
    entry = next(e for e in saved["slides"] if e["id"] == view.document.entry.id)
    assert entry["settings"]["measurements"][0]["id"] == ruler.id

    # exported with the marks as a LineString feature saying it is a measurement; imported back
    view.annotations = AnnotationStore([Annotation(box(1000, 1000, 3000, 1400), "Tumour")])
    out = tmp_path / "marks.geojson"
    assert window.annotation_files.export_file(view, out)
    features = json.loads(out.read_text())["features"]
    line = next(f for f in features if f["geometry"]["type"] == "LineString")
    assert line["properties"]["biopsia_measurement"] is True
    assert line["properties"]["length_um"] == pytest.approx(700)
    view.measurement_layer.clear()
    assert not view.measurement_layer.measurements
    with qtbot.waitSignal(view.measurement_layer.edited, timeout=10000):
        window.annotation_files.import_file(view, out)
    assert [m.points_l0 for m in view.measurement_layer.measurements] == [ruler.points_l0]


def test_right_click_on_a_ruler_line_deletes_the_measurement(qtbot, window, synth):
    from gui.measurements import Measurement
    from tests.gui.test_mark_classes import right_click

    view = open_and_wait(qtbot, window, synth.slide_path)
    ruler = Measurement(((1000.0, 1000.0), (3000.0, 1000.0)))
    view.measurement_layer.add(ruler)
    x, y = view.viewport.l0_to_screen(2000, 1000)
    right_click(view, QPoint(round(x), round(y) + 2))  # within a few pixels of the line
    [delete] = [a for a in view.context_menu.actions() if a.text()]
    assert delete.text() == "Delete measurement"
    delete.trigger()
    assert view.measurement_layer.measurements == []
    view.context_menu.close()


def test_hidden_panels_measure_no_cores(qtbot, window, synth):
    for dock in (window.annotate.dock, window.evaluation_dock):
        dock.hide()
    view = open_and_wait(qtbot, window, synth.slide_path)
    measurer = window.core_measurer
    assert measurer.view is view and measurer._worker is None and measurer._stale  # nothing read
    window.annotate.dock.show()  # the table appears: it measures then
    qtbot.waitUntil(lambda: measured(measurer), timeout=30000)
