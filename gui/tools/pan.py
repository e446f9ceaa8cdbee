"""Move around the slide by dragging."""

from __future__ import annotations

from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QMouseEvent

from gui.tools.base import Tool


class PanTool(Tool):
    """Drag with the left button to move the slide; the view also pans with the middle button or Space."""

    tool_id = "pan"
    label = "Move"
    shortcut = "M"
    icon = "pan"
    cursor = Qt.OpenHandCursor
    help = "drag to move around the slide (middle drag or Space+drag work with every tool)"

    def __init__(self) -> None:
        super().__init__()
        self._last: QPoint | None = None

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self._last = event.pos()
        self.view.setCursor(Qt.ClosedHandCursor)
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        if self._last is None:
            return False
        delta = event.pos() - self._last
        self._last = event.pos()
        self.view.pan_by(delta.x(), delta.y())
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self._last is None or event.button() != Qt.LeftButton:
            return False
        self._last = None
        self.view.setCursor(self.cursor)
        return True
