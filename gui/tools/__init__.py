"""Interaction tools of a slide view, registered in one place."""

from gui.tools.base import Tool
from gui.tools.pan import PanTool

#: Every tool by its id; later issues add annotation tools here.
TOOLS: dict[str, type[Tool]] = {PanTool.tool_id: PanTool}

__all__ = ["Tool", "PanTool", "TOOLS"]
