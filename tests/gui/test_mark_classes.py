"""Classes from the keyboard (1-9) and a right-click menu on a mark: its class, or delete."""

from __future__ import annotations

from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QContextMenuEvent
from PyQt5.QtTest import QTest
from PyQt5.QtWidgets import QApplication
from shapely.geometry import box

from core.annotations.model import Annotation


def test_keys_1_to_9_pick_the_class_to_draw(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    names = [c.name for c in view.annotations.classes]
    window.activateWindow()
    view.setFocus()
    QTest.keyClick(view, Qt.Key_2)
    assert view.current_class == names[1] and window.annotate.class_combo.currentText() == names[1]
    QTest.keyClick(view, Qt.Key_1)
    assert view.current_class == names[0]
    QTest.keyClick(view, Qt.Key_9)  # no ninth class: nothing changes
    assert view.current_class == names[0]
    scale = view.viewport.scale
    QTest.keyClick(view, Qt.Key_1, Qt.ControlModifier)  # full resolution moved to Ctrl+1
    assert view.viewport.scale == 1.0 != scale


def right_click(view, pos: QPoint) -> None:
    event = QContextMenuEvent(QContextMenuEvent.Mouse, pos, view.mapToGlobal(pos))
    QApplication.sendEvent(view, event)


def test_right_click_on_a_mark_offers_its_class_and_delete(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    mark = Annotation(box(1000, 800, 2000, 1600), "Tumour")
    view.apply_edit(view.annotations.replace_all([mark], "Mark"))
    at = QPoint(*(int(v) for v in view.viewport.l0_to_screen(1500, 1200)))
    right_click(view, at)
    menu = view.context_menu
    assert menu is not None and view.selection == {mark.id}
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert actions["Tumour"].isChecked() and set(actions) >= {"Benign", "Exclude", "Delete"}
    actions["Benign"].trigger()
    assert view.annotations.get(mark.id).class_name == "Benign"
    view.undo_stack.undo()  # undoable like any edit
    assert view.annotations.get(mark.id).class_name == "Tumour"
    menu.close()

    view.context_menu = None
    right_click(view, QPoint(5, 5))  # off any mark: no menu
    assert view.context_menu is None
    right_click(view, at)
    {a.text(): a for a in view.context_menu.actions()}["Delete"].trigger()
    assert len(view.annotations) == 0
    view.context_menu.close()


def test_the_right_pane_offers_no_edits(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    mark = Annotation(box(1000, 800, 2000, 1600), "Tumour")
    view.apply_edit(view.annotations.replace_all([mark], "Mark"))
    window.actions["side_by_side"].trigger()
    right = window.tabs.currentWidget().secondary
    qtbot.waitUntil(lambda: right.width() > 100, timeout=5000)
    right_click(right, QPoint(*(int(v) for v in right.viewport.l0_to_screen(1500, 1200))))
    assert right.context_menu is None
