"""Draw a closed outline freehand (a lasso): press, trace the region, release."""

from __future__ import annotations

import math

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QMouseEvent, QPainter

from core.annotations import ops
from core.annotations.geometry import polygon_from_points
from core.view.viewport import Viewport
from gui.tools.base import Tool, paint_draft_outline

#: Points closer than this on screen (pixels) are dropped while tracing.
MIN_STEP_PX = 3.0


class FreehandTool(Tool):
    tool_id = "freehand"
    label = "Freehand"
    shortcut = "F"
    icon = "freehand"
    cursor = Qt.CrossCursor
    help = "drag around a region; releasing closes the outline"

    def __init__(self) -> None:
        super().__init__()
        self.points_l0: list[tuple[float, float]] | None = None
        self._last_screen: tuple[float, float] | None = None

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        self.points_l0 = [self.l0_pos(event)]
        self._last_screen = (event.localPos().x(), event.localPos().y())
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        if self.points_l0 is None:
            return False
        here = (event.localPos().x(), event.localPos().y())
        if math.dist(here, self._last_screen) >= MIN_STEP_PX:  # thin by screen distance: detail the eye can see
            self.points_l0.append(self.l0_pos(event))
            self._last_screen = here
            self.repaint()
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self.points_l0 is None or event.button() != Qt.LeftButton:
            return False
        here = (event.localPos().x(), event.localPos().y())
        if math.dist(here, self._last_screen) >= 1:
            self.points_l0.append(self.l0_pos(event))
        points, self.points_l0 = self.points_l0, None
        view = self.view
        edit = ops.add(polygon_from_points(points), view.current_class, label="Freehand")
        if view.apply_edit(edit):
            view.selection = {a.id for a in edit.after}
        self.repaint()
        return True

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if self.points_l0 and len(self.points_l0) > 1:
            paint_draft_outline(painter, [viewport.l0_to_screen(x, y) for x, y in self.points_l0], closed=False)
