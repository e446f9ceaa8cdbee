"""Measure a line or polyline: click its points, the length shows live; double-click or Enter keeps it.

The kept line is a measurement (`gui.measurements`), not a mark: it has no class and labels no tile.
Backspace removes the last point, Esc cancels.
"""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QKeyEvent, QMouseEvent, QPainter

from core.view.viewport import Viewport
from gui.layers.measurement_layer import l0_length, paint_ruler
from gui.measurements import Measurement, length_text, polyline_um
from gui.tools.base import Tool

#: A click this close (screen pixels) to the previous point adds no new point.
SAME_POINT_PX = 2


class RulerTool(Tool):
    tool_id = "ruler"
    label = "Ruler"
    shortcut = "U"
    icon = "scale-bar"
    cursor = Qt.CrossCursor
    help = "click the points of a line; its length shows as you go; double-click or Enter keeps it, Esc cancels"

    def __init__(self) -> None:
        super().__init__()
        self.points_l0: list[tuple[float, float]] = []
        self._hover_l0: tuple[float, float] | None = None

    def deactivate(self, view) -> None:
        self.points_l0 = []
        super().deactivate(view)

    def live_points(self) -> list[tuple[float, float]]:
        """The points placed and, while the mouse moves, the one under it."""
        return [*self.points_l0, *([self._hover_l0] if self._hover_l0 is not None and self.points_l0 else [])]

    def live_text(self) -> str:
        """The length of the line so far, as drawn beside it."""
        points = self.live_points()
        return length_text(polyline_um(points, self.view.mpp), l0_length(points))

    def _add_point(self, l0_point) -> None:
        if self.points_l0:
            last = self.view.viewport.l0_to_screen(*self.points_l0[-1])
            here = self.view.viewport.l0_to_screen(*l0_point)
            if abs(last[0] - here[0]) + abs(last[1] - here[1]) < SAME_POINT_PX:
                return
        self.points_l0.append(l0_point)

    def finish(self) -> Measurement | None:
        points, self.points_l0 = self.points_l0, []
        self._hover_l0 = None
        self.repaint()
        if len(points) < 2:
            return None
        measurement = Measurement(tuple(points))
        self.view.measurement_layer.add(measurement)
        return measurement

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
            self.points_l0 = []
            self.repaint()
        elif key in (Qt.Key_Backspace, Qt.Key_Delete):
            self.points_l0.pop()
            self.repaint()
        else:
            return False
        return True

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        points = self.live_points()
        if len(points) >= 2:
            paint_ruler(painter, [viewport.l0_to_screen(x, y) for x, y in points], self.live_text())
