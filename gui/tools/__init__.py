"""Interaction tools of a slide view, registered in one place."""

from gui.tools.base import Tool
from gui.tools.brush import BrushTool
from gui.tools.ellipse import EllipseTool
from gui.tools.eraser import EraserTool
from gui.tools.freehand import FreehandTool
from gui.tools.pan import PanTool
from gui.tools.polygon import PolygonTool
from gui.tools.rectangle import RectangleTool
from gui.tools.ruler import RulerTool
from gui.tools.select import SelectTool
from gui.tools.vertex import VertexTool

#: Every tool by its id, in toolbar order.
TOOLS: dict[str, type[Tool]] = {
    tool.tool_id: tool
    for tool in (PanTool, SelectTool, VertexTool, PolygonTool, FreehandTool, BrushTool, RectangleTool,
                 EllipseTool, EraserTool, RulerTool)
}

__all__ = ["Tool", "PanTool", "SelectTool", "VertexTool", "PolygonTool", "FreehandTool", "BrushTool",
           "RectangleTool", "EllipseTool", "EraserTool", "RulerTool", "TOOLS"]
