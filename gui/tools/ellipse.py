"""Draw an ellipse inscribed between two dragged corners (Shift: a circle)."""

from __future__ import annotations

from core.annotations.geometry import ellipse
from core.view.viewport import Viewport
from gui.tools.drag_shape import DragShapeTool


class EllipseTool(DragShapeTool):
    tool_id = "ellipse"
    label = "Ellipse"
    shortcut = "L"
    icon = "ellipse"
    help = "drag from corner to corner of its bounding box; Shift for a circle"

    def shape(self, l0_x0, l0_y0, l0_x1, l0_y1):
        return ellipse(l0_x0, l0_y0, l0_x1, l0_y1)

    def outline(self, viewport: Viewport, l0_x0, l0_y0, l0_x1, l0_y1):
        shape = ellipse(l0_x0, l0_y0, l0_x1, l0_y1)
        if shape is None:
            return []
        return [viewport.l0_to_screen(x, y) for x, y in shape.exterior.coords]
