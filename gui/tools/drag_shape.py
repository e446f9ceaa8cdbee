"""What the rectangle and ellipse tools share: drag from corner to corner, Shift for equal sides."""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QMouseEvent, QPainter

from core.annotations import ops
from core.view.viewport import Viewport
from gui.tools.base import Tool, paint_draft_outline


class DragShapeTool(Tool):
    """Subclasses give :meth:`shape` (level-0 corners to a polygon) and :meth:`outline` (screen points)."""

    cursor = Qt.CrossCursor

    def __init__(self) -> None:
        super().__init__()
        self.start_l0: tuple[float, float] | None = None
        self.end_l0: tuple[float, float] | None = None

    def shape(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float):
        raise NotImplementedError

    def outline(self, viewport: Viewport, l0_x0, l0_y0, l0_x1, l0_y1) -> list[tuple[float, float]]:
        raise NotImplementedError

    def _corner(self, event: QMouseEvent) -> tuple[float, float]:
        l0_x, l0_y = self.l0_pos(event)
        if event.modifiers() & Qt.ShiftModifier:  # square / circle: the longer side wins
            x0, y0 = self.start_l0
            side = max(abs(l0_x - x0), abs(l0_y - y0))
            l0_x = x0 + (side if l0_x >= x0 else -side)
            l0_y = y0 + (side if l0_y >= y0 else -side)
        return l0_x, l0_y

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self.start_l0 = self.end_l0 = self.l0_pos(event)
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        if self.start_l0 is None:
            return False
        self.end_l0 = self._corner(event)
        self.repaint()
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self.start_l0 is None or event.button() != Qt.LeftButton:
            return False
        end = self._corner(event)
        start, self.start_l0, self.end_l0 = self.start_l0, None, None
        view = self.view
        edit = ops.add(self.shape(*start, *end), view.current_class, label=self.label)
        if view.apply_edit(edit):
            view.selection = {a.id for a in edit.after}
        self.repaint()
        return True

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if self.start_l0 is not None and self.end_l0 != self.start_l0:
            paint_draft_outline(painter, self.outline(viewport, *self.start_l0, *self.end_l0))
