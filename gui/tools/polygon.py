"""Draw a polygon by clicking its corners; double-click or Enter closes it, Esc cancels, Backspace undoes a corner."""

from __future__ import annotations

from PyQt5.QtCore import QPointF, Qt
from PyQt5.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter

from core.annotations import ops
from core.annotations.geometry import polygon_from_points
from core.view.viewport import Viewport
from gui.tools.base import Tool, draft_pen, paint_draft_outline

#: A click this close (screen pixels) to the previous corner adds no new corner.
SAME_POINT_PX = 2


class PolygonTool(Tool):
    tool_id = "polygon"
    label = "Polygon"
    shortcut = "P"
    icon = "polygon"
    cursor = Qt.CrossCursor
    help = "click the corners; double-click or Enter closes, Backspace removes the last corner, Esc cancels"

    def __init__(self) -> None:
        super().__init__()
        self.points_l0: list[tuple[float, float]] = []
        self._hover_l0: tuple[float, float] | None = None

    def deactivate(self, view) -> None:
        self.points_l0 = []
        super().deactivate(view)

    def _add_point(self, l0_point) -> None:
        if self.points_l0:
            last = self.view.viewport.l0_to_screen(*self.points_l0[-1])
            here = self.view.viewport.l0_to_screen(*l0_point)
            if abs(last[0] - here[0]) + abs(last[1] - here[1]) < SAME_POINT_PX:
                return
        self.points_l0.append(l0_point)

    def finish(self) -> bool:
        """Close the polygon and add it as a mark of the current class."""
        points, self.points_l0 = self.points_l0, []
        self.repaint()
        view = self.view
        edit = ops.add(polygon_from_points(points), view.current_class, label="Polygon")
        if view.apply_edit(edit):
            view.selection = {a.id for a in edit.after}
            return True
        return False

    def cancel(self) -> None:
        self.points_l0 = []
        self.repaint()

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self._add_point(self.l0_pos(event))
        self.repaint()
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        self._hover_l0 = self.l0_pos(event)
        if self.points_l0:
            self.repaint()
        return bool(self.points_l0)

    def mouse_release(self, event: QMouseEvent) -> bool:
        return event.button() == Qt.LeftButton

    def mouse_double_click(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self._add_point(self.l0_pos(event))
        self.finish()
        return True

    def wants_key(self, event: QKeyEvent) -> bool:
        return bool(self.points_l0) and event.key() in (Qt.Key_Backspace, Qt.Key_Escape, Qt.Key_Return,
                                                         Qt.Key_Enter, Qt.Key_Delete)

    def key_press(self, event: QKeyEvent) -> bool:
        if not self.points_l0:
            return False
        key = event.key()
        if key in (Qt.Key_Return, Qt.Key_Enter):
            self.finish()
        elif key == Qt.Key_Escape:
            self.cancel()
        elif key in (Qt.Key_Backspace, Qt.Key_Delete):
            self.points_l0.pop()
            self.repaint()
        else:
            return False
        return True

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if not self.points_l0:
            return
        screen = [viewport.l0_to_screen(x, y) for x, y in self.points_l0]
        if self._hover_l0 is not None:
            screen.append(viewport.l0_to_screen(*self._hover_l0))
        paint_draft_outline(painter, screen, closed=False)
        if len(screen) >= 3:  # the closing edge, dashed
            painter.setPen(draft_pen(1, QColor(255, 200, 0), Qt.DashLine))
            painter.drawLine(QPointF(*screen[-1]), QPointF(*screen[0]))
        painter.setPen(draft_pen(1, QColor(30, 30, 30)))
        painter.setBrush(QColor(255, 200, 0))
        for x, y in screen[:len(self.points_l0)]:
            painter.drawEllipse(QPointF(x, y), 3.5, 3.5)
