"""Real Qt mouse events for GUI tests (QTest.mouseMove sends no buttons, so drags need this)."""

from __future__ import annotations

from PyQt5.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt5.QtGui import QKeyEvent, QMouseEvent, QWheelEvent
from PyQt5.QtWidgets import QApplication


def _send(widget, kind, pos: QPoint, button, buttons, modifiers=Qt.NoModifier) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def drag(widget, start: QPoint, end: QPoint, button=Qt.LeftButton, steps: int = 5, modifiers=Qt.NoModifier) -> None:
    """Press at ``start``, move in ``steps`` to ``end`` with the button held, release."""
    _send(widget, QEvent.MouseButtonPress, start, button, button, modifiers)
    for i in range(1, steps + 1):
        p = QPoint(start.x() + (end.x() - start.x()) * i // steps, start.y() + (end.y() - start.y()) * i // steps)
        _send(widget, QEvent.MouseMove, p, Qt.NoButton, button, modifiers)
    _send(widget, QEvent.MouseButtonRelease, end, button, Qt.NoButton, modifiers)


def wheel(widget, pos: QPoint, notches: float) -> None:
    """Turn the mouse wheel by ``notches`` (positive: away from the user, zoom in) over ``pos``."""
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, int(120 * notches)),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def click(widget, pos: QPoint, button=Qt.LeftButton, modifiers=Qt.NoModifier) -> None:
    """Press and release at ``pos``."""
    _send(widget, QEvent.MouseButtonPress, pos, button, button, modifiers)
    _send(widget, QEvent.MouseButtonRelease, pos, button, Qt.NoButton, modifiers)


def double_click(widget, pos: QPoint, button=Qt.LeftButton, modifiers=Qt.NoModifier) -> None:
    """What Qt delivers for a double-click: press, release, double-click, release."""
    click(widget, pos, button, modifiers)
    _send(widget, QEvent.MouseButtonDblClick, pos, button, button, modifiers)
    _send(widget, QEvent.MouseButtonRelease, pos, button, Qt.NoButton, modifiers)


def move(widget, pos: QPoint, buttons=Qt.NoButton, modifiers=Qt.NoModifier) -> None:
    """Move the cursor to ``pos`` (hovering unless ``buttons`` are held)."""
    _send(widget, QEvent.MouseMove, pos, Qt.NoButton, buttons, modifiers)


def drag_path(widget, points, button=Qt.LeftButton, modifiers=Qt.NoModifier) -> None:
    """Press at the first point, move through the others with the button held, release at the last."""
    points = [QPoint(*p) if not isinstance(p, QPoint) else p for p in points]
    _send(widget, QEvent.MouseButtonPress, points[0], button, button, modifiers)
    for p in points[1:]:
        _send(widget, QEvent.MouseMove, p, Qt.NoButton, button, modifiers)
    _send(widget, QEvent.MouseButtonRelease, points[-1], button, Qt.NoButton, modifiers)


def key(widget, key_code, modifiers=Qt.NoModifier, text: str = "") -> None:
    """A key press and release sent straight to ``widget`` (its shortcuts are not consulted)."""
    for kind in (QEvent.KeyPress, QEvent.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, key_code, modifiers, text))


def ctrl_wheel(widget, pos: QPoint, notches: float) -> None:
    """The wheel turned with Ctrl held."""
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, int(120 * notches)),
                        Qt.NoButton, Qt.ControlModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def choose_from_menu(qtbot, menu, action) -> None:
    """Pick ``action`` from ``menu`` as a user does: the menu opens, and a mouse click lands on the item."""
    from PyQt5.QtTest import QTest

    menu.popup(menu.parentWidget().mapToGlobal(QPoint(0, 0)) if menu.parentWidget() else QPoint(0, 0))
    qtbot.waitUntil(menu.isVisible, timeout=5000)
    where = menu.actionGeometry(action).center()
    assert menu.actionAt(where) is action, f"{action.text()} is not where the menu shows it"
    QTest.mouseMove(menu, where)
    QTest.mouseClick(menu, Qt.LeftButton, Qt.NoModifier, where)
