"""Annotation tools driven with real mouse and key events on a slide view, geometry checked in level-0 pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QColor
from shapely.geometry import MultiPolygon, Polygon, box

from qt_events import click, ctrl_wheel, double_click, drag, drag_path, key, move
from core.annotations import Annotation, AnnotationStore, ops
from core.slide.array_reader import ArrayReader
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory
from gui.tools import TOOLS


@pytest.fixture
def view(qtbot):
    white = np.full((3000, 4000, 3), 255, np.uint8)
    v = SlideView(ArrayReader(white, mpp=(0.5, 0.5)), TileMemory(64 * 1024 * 1024), (0.5, 0.5), workers=2)
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.show()
    qtbot.waitExposed(v)
    # screen (x, y) shows level-0 (2000 + 2 (x - 400), 1500 + 2 (y - 300))
    v.set_viewport(v.viewport.centred_on(2000, 1500, 0.5))
    yield v
    v.close_view()


def use(view, tool_id):
    tool = TOOLS[tool_id]()
    view.set_tool(tool)
    return tool


def only(view) -> Annotation:
    assert len(view.annotations) == 1
    return view.annotations.annotations()[0]


def same_shape(a, b, tol=1e-6) -> bool:
    return a.symmetric_difference(b).area <= tol * max(a.area, 1)


def test_every_tool_is_registered_with_a_shortcut_and_tooltip():
    shortcuts = [t.shortcut for t in TOOLS.values()]
    assert len(set(shortcuts)) == len(shortcuts)
    assert not set(shortcuts) & {"0", "1", "G", "O", "S"}
    assert {"pan", "select", "vertex", "polygon", "freehand", "brush", "rectangle", "ellipse", "eraser"} <= set(TOOLS)
    for tool in TOOLS.values():
        assert f"({tool.shortcut})" in tool.tooltip() and tool.icon


def test_polygon_by_clicks_is_exact_in_level0_at_any_zoom(view, qtbot):
    use(view, "polygon")
    for p in [(300, 200), (500, 200), (500, 400)]:
        click(view, QPoint(*p))
    double_click(view, QPoint(300, 400))
    ann = only(view)
    expected = box(1800, 1300, 2200, 1700)
    assert ann.class_name == "Tumour" and ann.area_l0 == pytest.approx(160000)
    assert same_shape(ann.geometry, expected)
    assert view.selection == {ann.id}
    # the same outline at full resolution gives the same level-0 geometry; Enter closes
    view.set_viewport(view.viewport.centred_on(2000, 1500, 1.0))
    for p in [(200, 100), (600, 100), (600, 500), (200, 500)]:
        click(view, QPoint(*p))
    key(view, Qt.Key_Return)
    second = view.annotations.annotations()[1]
    assert same_shape(second.geometry, expected)
    # undo and redo restore exactly
    view.undo_stack.undo()
    assert view.annotations.annotations() == [ann]
    view.undo_stack.redo()
    assert view.annotations.annotations()[1] == second


def test_polygon_backspace_and_escape(view):
    tool = use(view, "polygon")
    for p in [(300, 200), (500, 200), (450, 250), (500, 400)]:
        click(view, QPoint(*p))
    key(view, Qt.Key_Backspace)
    assert len(tool.points_l0) == 3
    key(view, Qt.Key_Escape)
    assert tool.points_l0 == [] and len(view.annotations) == 0
    key(view, Qt.Key_Return)  # nothing to close: no empty edit on the stack
    assert view.undo_stack.count() == 0


def test_freehand_lasso(view):
    use(view, "freehand")
    circle = [(400 + 100 * math.cos(t / 40 * 2 * math.pi), 300 + 100 * math.sin(t / 40 * 2 * math.pi))
              for t in range(41)]
    drag_path(view, [QPoint(round(x), round(y)) for x, y in circle])
    ann = only(view)
    assert ann.area_l0 == pytest.approx(math.pi * 200**2, rel=0.03)
    x0, y0, x1, y1 = ann.bounds
    assert (x0, y0, x1, y1) == pytest.approx((1800, 1300, 2200, 1700), abs=4)
    assert len(ann.geometry.exterior.coords) <= 42  # thinned by screen distance, not one point per event


def test_rectangle_and_ellipse_with_shift(view):
    use(view, "rectangle")
    drag(view, QPoint(300, 200), QPoint(500, 350))
    assert same_shape(only(view).geometry, box(1800, 1300, 2200, 1600))
    drag(view, QPoint(300, 200), QPoint(500, 350), modifiers=Qt.ShiftModifier)
    square = view.annotations.annotations()[1]
    assert same_shape(square.geometry, box(1800, 1300, 2200, 1700))
    use(view, "ellipse")
    drag(view, QPoint(100, 100), QPoint(300, 200))
    ell = view.annotations.annotations()[2]
    assert ell.area_l0 == pytest.approx(math.pi * 200 * 100, rel=0.01)
    assert ell.bounds == pytest.approx((1400, 1100, 1800, 1300), abs=0.5)
    drag(view, QPoint(100, 100), QPoint(300, 200), modifiers=Qt.ShiftModifier)
    circle = view.annotations.annotations()[3]
    assert circle.area_l0 == pytest.approx(math.pi * 200 * 200, rel=0.01)


def test_brush_adds_one_edit_per_stroke_and_alt_subtracts(view):
    tool = use(view, "brush")
    tool.set_radius_px(10)  # 20 level-0 pixels at scale 0.5
    drag(view, QPoint(300, 300), QPoint(500, 300), steps=20)
    ann = only(view)
    assert ann.area_l0 == pytest.approx(400 * 40 + math.pi * 20**2, rel=0.02)
    assert view.undo_stack.count() == 1  # the whole stroke is one edit
    # a second stroke adds to the selected mark of the current class
    drag(view, QPoint(500, 300), QPoint(500, 400), steps=10)
    grown = only(view)
    assert grown.id == ann.id and grown.area_l0 > ann.area_l0
    # Alt-drag across cuts it in two
    drag(view, QPoint(400, 250), QPoint(400, 350), steps=10, modifiers=Qt.AltModifier)
    cut = only(view)
    assert isinstance(cut.geometry, MultiPolygon) and cut.area_l0 < grown.area_l0
    view.undo_stack.undo()
    assert only(view) == grown
    view.undo_stack.undo()
    assert only(view) == ann


def test_brush_size_keys_and_ctrl_wheel(view):
    tool = use(view, "brush")
    tool.set_radius_px(20)
    key(view, Qt.Key_BracketRight)
    assert tool.radius_px == pytest.approx(24)
    key(view, Qt.Key_BracketLeft)
    key(view, Qt.Key_BracketLeft)
    assert tool.radius_px == pytest.approx(20 / 1.2)
    scale = view.viewport.scale
    ctrl_wheel(view, QPoint(400, 300), 1)
    assert tool.radius_px == pytest.approx(20) and view.viewport.scale == scale  # no zoom


def test_eraser_cuts_across_two_marks_in_one_edit(view):
    store = view.annotations
    view.apply_edit(ops.add(box(1600, 1300, 1900, 1700), "Tumour"))
    view.apply_edit(ops.add(box(2100, 1300, 2400, 1700), "Benign"))
    before = store.annotations()
    tool = use(view, "eraser")
    tool.set_radius_px(10)
    drag(view, QPoint(200, 300), QPoint(600, 300), steps=20)
    after = store.annotations()
    assert len(after) == 2 and all(isinstance(a.geometry, MultiPolygon) for a in after)
    for a, b in zip(before, after):
        assert b.area_l0 == pytest.approx(a.area_l0 - 300 * 40, rel=0.01)
    assert view.undo_stack.count() == 3
    view.undo_stack.undo()
    assert store.annotations() == before


def test_vertex_drag_insert_and_delete(view):
    view.apply_edit(ops.add(box(1800, 1300, 2200, 1700), "Tumour"))
    ann = only(view)
    use(view, "vertex")
    click(view, QPoint(400, 300))  # picks the mark
    assert view.selection == {ann.id}
    drag(view, QPoint(300, 200), QPoint(280, 180))  # the corner at (1800, 1300)
    moved = only(view)
    coords = set(moved.geometry.exterior.coords)
    assert (1760, 1260) in coords and (1800, 1300) not in coords
    assert {(2200, 1300), (2200, 1700), (1800, 1700)} <= coords
    double_click(view, QPoint(400, 400))  # the middle of the bottom edge
    assert len(only(view).geometry.exterior.coords) == 6 and (2000, 1700) in set(only(view).geometry.exterior.coords)
    click(view, QPoint(400, 400), button=Qt.RightButton)
    assert len(only(view).geometry.exterior.coords) == 5
    view.undo_stack.undo()
    view.undo_stack.undo()
    assert only(view) == moved


def test_select_move_delete_and_class(view):
    view.apply_edit(ops.add(box(1800, 1300, 2200, 1700), "Tumour"))
    view.apply_edit(ops.add(box(2400, 1300, 2600, 1500), "Benign"))
    first, second = view.annotations.annotations()
    use(view, "select")
    click(view, QPoint(400, 300))
    assert view.selection == {first.id}
    click(view, QPoint(650, 250), modifiers=Qt.ShiftModifier)
    assert view.selection == {first.id, second.id}
    click(view, QPoint(50, 50))
    assert view.selection == set()
    drag(view, QPoint(250, 150), QPoint(700, 450))  # rubber band over both
    assert view.selection == {first.id, second.id}
    click(view, QPoint(400, 300))
    drag(view, QPoint(400, 300), QPoint(450, 320))
    assert same_shape(view.annotations.get(first.id).geometry, box(1900, 1340, 2300, 1740))
    view.apply_edit(ops.set_class(view.annotations, view.selection, "Exclude"))
    assert view.annotations.get(first.id).class_name == "Exclude"
    key(view, Qt.Key_Delete)
    assert [a.id for a in view.annotations] == [second.id] and view.selection == set()
    view.undo_stack.undo()
    assert view.annotations.get(first.id).class_name == "Exclude"


def test_new_marks_take_the_current_class(view):
    view.current_class = "Benign"
    use(view, "rectangle")
    drag(view, QPoint(300, 200), QPoint(500, 350))
    assert only(view).class_name == "Benign"


def test_layer_paints_class_colour_with_holes(view, qtbot):
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=5000)
    ring = Polygon([(1600, 1100), (2400, 1100), (2400, 1900), (1600, 1900)], [[(1900, 1400), (2100, 1400),
                                                                               (2100, 1600), (1900, 1600)]])
    view.annotations = AnnotationStore([Annotation(ring, "Tumour"), Annotation(box(1300, 900, 1500, 1100), "Benign")])
    img = view.grab().toImage()
    r, g, b, _ = QColor(img.pixel(260, 160)).getRgb()  # inside the tumour ring
    assert r > 200 and g < r - 40 and b < r - 40
    r, g, b, _ = QColor(img.pixel(400, 300)).getRgb()  # the hole stays white
    assert (r, g, b) == (255, 255, 255)
    r, g, b, _ = QColor(img.pixel(100, 50)).getRgb()  # benign is green
    assert g > r + 30
    view.annotation_layer.set_class_visible("Tumour", False)
    assert QColor(view.grab().toImage().pixel(260, 160)).getRgb()[:3] == (255, 255, 255)


def test_layer_skips_subpixel_marks_and_caches_paths(view):
    marks = [Annotation(box(x, y, x + 1.5, y + 1.5)) for x in range(0, 4000, 40) for y in range(0, 3000, 40)]
    view.annotations = AnnotationStore(marks + [Annotation(box(100, 100, 900, 900))])
    view.zoom_to_fit()
    view.grab()
    assert view.annotation_layer.painted_count == 1  # thousands of tiny ones skipped at low zoom
    view.set_viewport(view.viewport.centred_on(2000, 1500, 2.0))
    view.grab()
    assert view.annotation_layer.painted_count == pytest.approx(10 * 8, abs=12)  # only the visible ones
    cached = len(view.annotation_layer.paths)
    view.pan_by(5, 0)
    view.grab()
    assert len(view.annotation_layer.paths) <= cached + 12  # panning reuses the paths


def test_hover_and_overlays_paint_without_errors(view):
    for tool_id in ("brush", "eraser", "polygon", "select"):
        use(view, tool_id)
        move(view, QPoint(400, 300))
        view.grab()
