"""Real Qt mouse events for GUI tests (QTest.mouseMove sends no buttons, so drags need this)."""

from __future__ import annotations

from PyQt5.QtCore import QEvent, QPoint, QPointF, Qt
from PyQt5.QtGui import QMouseEvent, QWheelEvent
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
