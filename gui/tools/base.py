"""The tool contract: a small class per tool with its own mouse handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt5.QtCore import QPointF, Qt
from PyQt5.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter, QPen, QPolygonF, QWheelEvent

from core.view.viewport import Viewport

if TYPE_CHECKING:
    from gui.slide_view import SlideView

#: Colour of shapes being drawn (before they become annotations of a class).
DRAFT_COLOR = QColor(255, 200, 0)


class Tool:
    """Receives the view's mouse events while active. Handlers return True when they used the event.

    ``paint_overlay`` draws the tool's shape in progress (screen coordinates) above the annotations.
    """

    tool_id = "tool"
    label = "Tool"
    shortcut = ""
    icon = ""
    cursor = None  # a Qt.CursorShape, or None for the arrow
    help = ""  # one line on how to use it, shown in the tooltip

    def __init__(self) -> None:
        self.view: SlideView | None = None

    @classmethod
    def tooltip(cls) -> str:
        tip = f"{cls.label} ({cls.shortcut})" if cls.shortcut else cls.label
        return f"{tip}: {cls.help}" if cls.help else tip

    def activate(self, view: "SlideView") -> None:
        self.view = view
        if self.cursor is not None:
            view.setCursor(self.cursor)
        view.annotation_layer.overlay = self.paint_overlay

    def deactivate(self, view: "SlideView") -> None:
        view.unsetCursor()
        view.annotation_layer.overlay = None
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

    def wants_key(self, event: QKeyEvent) -> bool:
        """True to take a key before the window's shortcuts (Backspace while drawing a polygon)."""
        return False

    def wheel(self, event: QWheelEvent) -> bool:
        return False

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        """Draw the shape in progress (screen coordinates)."""

    # -- helpers for subclasses ----------------------------------------------------------
    def l0_pos(self, event) -> tuple[float, float]:
        """The event position in level-0 pixels."""
        pos = event.localPos() if hasattr(event, "localPos") else event.posF()
        return self.view.viewport.screen_to_l0(pos.x(), pos.y())

    def screen_px_to_l0(self, px: float) -> float:
        return px / self.view.viewport.scale

    def repaint(self) -> None:
        if self.view is not None:
            self.view.update()


def draft_pen(width: float = 2.0, color: QColor = DRAFT_COLOR, style=Qt.SolidLine) -> QPen:
    pen = QPen(color, width, style)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    return pen


def paint_draft_outline(painter: QPainter, screen_points, closed: bool = True) -> None:
    """A dark-under-light outline, visible on pink and white tissue alike."""
    polygon = QPolygonF([QPointF(x, y) for x, y in screen_points])
    for pen in (draft_pen(4, QColor(0, 0, 0, 140)), draft_pen(2)):
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        if closed:
            painter.drawPolygon(polygon)
        else:
            painter.drawPolyline(polygon)
