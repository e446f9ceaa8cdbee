"""Annotating in the main window: Annotate toolbar, undo per tab, the annotations dock, a rendered screenshot."""

from __future__ import annotations

import shutil

import pytest
from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QColor
from PyQt5.QtTest import QTest
from shapely import union_all
from shapely.geometry import box

from qt_events import click, drag
from core.annotations import Annotation, AnnotationStore
from gui.docks.annotations_dock import NOTE
from tests.gui.test_main_window import open_and_wait

WINDOW_SIZE = (1600, 1000)
SCREENSHOT = "/tmp/annotations_window.png"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from core.synth import write_synthetic_slide

    return write_synthetic_slide(tmp_path_factory.mktemp("annot") / "case3.tiff", width=6000, height=4000, seed=3)


def marks_for(synth) -> list[Annotation]:
    """The slide's true tumour regions as Tumour marks, plus benign tissue and an excluded corner."""
    tumour = [Annotation(p, "Tumour", note=f"carcinoma {i + 1}") for i, p in enumerate(synth.tumour_polygons)]
    tissue = synth.tissue_polygons[0].difference(union_all([p.buffer(150) for p in synth.tumour_polygons]))
    centre = tissue.representative_point()
    benign = Annotation(centre.buffer(180).intersection(tissue), "Benign", note="normal ducts")
    exclude = Annotation(box(300, 300, 1100, 800), "Exclude", note="pen mark")
    return [*tumour, benign, exclude]


def test_window_with_marks_renders_and_lists_areas(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    marks = marks_for(synth)
    view.annotations = AnnotationStore(marks)
    dock = window.annotate.dock
    qtbot.waitUntil(lambda: dock.table.rowCount() == len(marks), timeout=3000)
    for row, ann in enumerate(marks):
        assert dock.table.item(row, 0).text() == ann.class_name
        assert dock.table.item(row, 1).text() == f"{ann.area_l0 * 0.25 / 1e6:.4f}"  # 0.5 µm/px
        assert dock.table.item(row, NOTE).text() == ann.note
    # a click on a row selects the mark and centres the view on it
    click(dock.table.viewport(), dock.table.visualItemRect(dock.table.item(0, 0)).center())
    assert view.selection == {marks[0].id}
    x0, y0, x1, y1 = marks[0].bounds
    assert (view.viewport.l0_cx, view.viewport.l0_cy) == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))
    view.zoom_to_fit()
    window.annotate.select_tool("select")
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=20000)
    qtbot.wait(50)
    image = window.grab_window()
    assert image.save(SCREENSHOT, "PNG")
    img = view.grab().toImage()
    sx, sy = view.viewport.l0_to_screen(700, 550)  # inside the excluded corner: grey wash
    r, g, b, _ = QColor(img.pixel(int(sx), int(sy))).getRgb()
    assert abs(r - g) < 25 and abs(g - b) < 25


def test_tools_from_toolbar_and_shortcuts(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    window.annotate.actions["tool_polygon"].trigger()
    assert view.tool.tool_id == "polygon"
    window.activateWindow()
    view.setFocus()
    QTest.keyClick(view, Qt.Key_Q)
    assert view.tool.tool_id == "rectangle"  # the single-key shortcut
    window.annotate.select_tool("rectangle")
    assert window.annotate.actions["tool_rectangle"].isChecked()
    drag(view, QPoint(300, 300), QPoint(400, 380))
    assert len(view.annotations) == 1
    qtbot.waitUntil(lambda: window.annotate.dock.table.rowCount() == 1, timeout=3000)
    assert window.annotate.actions["undo"].isEnabled()
    window.annotate.actions["undo"].trigger()
    assert len(view.annotations) == 0
    window.annotate.actions["redo"].trigger()
    assert len(view.annotations) == 1
    view.selection = {view.annotations.annotations()[0].id}
    window.annotate.actions["delete"].trigger()
    assert len(view.annotations) == 0


def test_undo_follows_the_current_tab(qtbot, window, synth, tmp_path):
    first = open_and_wait(qtbot, window, synth.slide_path)
    copy = tmp_path / "copy.tiff"
    shutil.copy(synth.slide_path, copy)
    second = open_and_wait(qtbot, window, copy)
    window.annotate.select_tool("rectangle")
    assert first.tool.tool_id == second.tool.tool_id == "rectangle"
    drag(second, QPoint(300, 300), QPoint(400, 380))
    window.tabs.setCurrentWidget(first)
    drag(first, QPoint(200, 200), QPoint(260, 260))
    drag(first, QPoint(300, 200), QPoint(360, 260))
    assert window.annotate.undo_group.activeStack() is first.undo_stack
    window.annotate.actions["undo"].trigger()
    assert len(first.annotations) == 1 and len(second.annotations) == 1
    window.tabs.setCurrentWidget(second)
    window.annotate.actions["undo"].trigger()
    assert len(second.annotations) == 0 and len(first.annotations) == 1


def test_dock_controls_classes_display_and_notes(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    view.annotations = AnnotationStore(marks_for(synth))
    dock = window.annotate.dock
    tumour_ids = {a.id for a in view.annotations if a.class_name == "Tumour"}
    # filter by class
    dock.filter_combo.setCurrentText("Tumour")
    dock.refresh()
    assert set(dock.row_ids()) == tumour_ids
    # show / hide by class, fill and opacity
    dock.class_checks["Benign"].setChecked(False)
    assert "Benign" in view.annotation_layer.hidden_classes
    dock.fill_check.setChecked(False)
    assert not view.annotation_layer.fill
    dock.opacity_slider.setValue(60)
    assert view.annotation_layer.fill_opacity == pytest.approx(0.6)
    # the class for new marks, and the class of the selection
    dock.class_combo.setCurrentText("Exclude")
    dock.class_combo.activated.emit(dock.class_combo.currentIndex())
    assert view.current_class == "Exclude"
    one = sorted(tumour_ids)[0]
    view.selection = {one}
    dock.set_class_button.click()
    assert view.annotations.get(one).class_name == "Exclude"
    # notes edited in the list are undoable edits
    qtbot.waitUntil(lambda: one not in dock.row_ids(), timeout=3000)  # filtered out now
    dock.filter_combo.setCurrentText("All classes")
    dock.refresh()
    row = dock.row_ids().index(one)
    dock.table.item(row, NOTE).setText("re-check margin")
    assert view.annotations.get(one).note == "re-check margin"
    view.undo_stack.undo()
    assert view.annotations.get(one).note != "re-check margin"


def test_class_editor_is_undoable_and_refuses_classes_in_use(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    view.annotations = AnnotationStore(marks_for(synth))
    editor = window.annotate.dock.edit_classes()
    assert editor.add_class("Necrosis", (20, 20, 20))
    assert view.annotations.class_named("Necrosis").color == (20, 20, 20)
    assert editor.recolour_class("Necrosis", (90, 0, 90))
    assert not editor.add_class("Tumour")
    assert not editor.remove_class("Benign") and "still use" in editor.messages[-1]
    assert editor.rename_class("Benign", "Normal")
    assert {a.class_name for a in view.annotations} == {"Tumour", "Normal", "Exclude"}
    view.undo_stack.undo()  # the rename and its marks in one step
    assert {a.class_name for a in view.annotations} == {"Tumour", "Benign", "Exclude"}
    assert view.annotations.class_named("Normal") is None
    assert editor.remove_class("Necrosis")
    assert view.annotations.class_named("Necrosis") is None
    qtbot.waitUntil(lambda: window.annotate.dock.class_combo.count() == 3, timeout=3000)
    editor.close()
