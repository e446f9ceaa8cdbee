"""The tool contract: a small class per tool with its own mouse handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt5.QtGui import QKeyEvent, QMouseEvent

if TYPE_CHECKING:
    from gui.slide_view import SlideView


class Tool:
    """Receives the view's mouse events while active. Handlers return True when they used the event."""

    tool_id = "tool"
    label = "Tool"
    shortcut = ""
    icon = ""
    cursor = None  # a Qt.CursorShape, or None for the arrow

    def __init__(self) -> None:
        self.view: SlideView | None = None

    def activate(self, view: "SlideView") -> None:
        self.view = view
        if self.cursor is not None:
            view.setCursor(self.cursor)

    def deactivate(self, view: "SlideView") -> None:
        view.unsetCursor()
        self.view = None

    def mouse_press(self, event: QMouseEvent) -> bool:
        return False

    def mouse_move(self, event: QMouseEvent) -> bool:
        return False

    def mouse_release(self, event: QMouseEvent) -> bool:
        return False

    def mouse_double_click(self, event: QMouseEvent) -> bool:
        return False

    def key_press(self, event: QKeyEvent) -> bool:
        return False
