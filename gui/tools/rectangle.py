"""Draw a rectangle by dragging between two corners (Shift: a square)."""

from __future__ import annotations

from core.annotations.geometry import rectangle
from core.view.viewport import Viewport
from gui.tools.drag_shape import DragShapeTool


class RectangleTool(DragShapeTool):
    tool_id = "rectangle"
    label = "Rectangle"
    shortcut = "Q"
    icon = "rectangle"
    help = "drag from corner to corner; Shift for a square"

    def shape(self, l0_x0, l0_y0, l0_x1, l0_y1):
        return rectangle(l0_x0, l0_y0, l0_x1, l0_y1)

    def outline(self, viewport: Viewport, l0_x0, l0_y0, l0_x1, l0_y1):
        corners = [(l0_x0, l0_y0), (l0_x1, l0_y0), (l0_x1, l0_y1), (l0_x0, l0_y1)]
        return [viewport.l0_to_screen(x, y) for x, y in corners]
